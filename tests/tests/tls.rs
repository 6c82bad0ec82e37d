//! T1 and T2: TLS on the listener, what it does with peers that do not speak it, the 503
//! inside TLS, and reloading the pair on SIGHUP. The session cases (S1–S6) run over TLS too,
//! in `session.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chathttp_tests::tls::{Pki, pki};
use chathttp_tests::{Client, GUARD, Server, conformance, request};

conformance! {
    fn t1_a_plaintext_client_gets_an_alert_and_a_close_and_costs_members_nothing(rt: Runtime) {
        let server = Server::start(rt.with_tls(), &[]);
        let mut alice = server.member("Alice");
        let mut plain = TcpStream::connect(server.addr()).expect("connect");
        plain.set_read_timeout(Some(GUARD)).expect("timeout");
        plain.write_all(b"GET / HTTP/1.1\n\n").expect("send");
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        assert_eq!(answer.first(), Some(&0x15), "a TLS alert record, not HTTP: {answer:?}");
        assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1"), "{answer:?}");
        let echo = alice.request("POST", "Alice", b"still here");
        assert_eq!(echo.text(), "[ Alice ] : still here\n");
    }

    fn t1_a_handshake_counts_against_the_request_timeout(rt: Runtime) {
        let server = Server::start(rt.with_tls(), &["--request-timeout", "0.5"]);
        let mut silent = TcpStream::connect(server.addr()).expect("connect");
        silent.set_read_timeout(Some(GUARD)).expect("timeout");
        let started = Instant::now();
        let mut byte = [0; 1];
        let ended = silent.read(&mut byte);
        assert!(matches!(ended, Ok(0) | Err(_)), "closed, not answered: {ended:?}");
        assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
        // A half-done handshake is cut the same way.
        let mut partial = TcpStream::connect(server.addr()).expect("connect");
        partial.set_read_timeout(Some(GUARD)).expect("timeout");
        partial.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01]).expect("send");
        assert!(matches!(partial.read(&mut byte), Ok(0) | Err(_)));
        let _member = server.member("Alice");
    }

    fn t1_a_burst_far_past_the_sealed_backlog_arrives_whole(rt: Runtime) {
        // Sealing stops at 64 KiB of records the kernel has not taken; when one round queues
        // far more for a member, the rest must follow as the kernel takes them, with no new
        // frame to push it.
        let server = Server::start(rt.with_tls(), &[]);
        let members: Vec<_> = (0..8).map(|i| server.member(&format!("m{i}"))).collect();
        let lines = everyone_posts(members, 250);
        for chat in &lines {
            assert_eq!(chat.len(), 2000, "every member got every line");
        }
    }

    fn t1_bytes_after_a_close_notify_are_dropped_and_the_room_goes_on(rt: Runtime) {
        let server = Server::start(rt.with_tls(), &[]);
        let mut alice = server.member("Alice");
        let config = chathttp_tests::tls::pki().client_config();
        let mut tcp = TcpStream::connect(server.addr()).expect("connect");
        let mut tls = chathttp_tests::tls::connect(&config, tcp.try_clone().expect("clone"));
        tls.write_all(b"GET / HTTP/1.1\n\n").expect("a request over TLS");
        tls.flush().expect("flush");
        tls.conn.send_close_notify();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut tcp).expect("close_notify");
        }
        tcp.write_all(b"after the end of the TLS stream").expect("raw bytes");
        let echo = alice.request("POST", "Alice", b"still here");
        assert_eq!(echo.text(), "[ Alice ] : still here\n");
    }

    fn t1_past_the_limit_the_503_comes_inside_tls(rt: Runtime) {
        let server = Server::start(rt.with_tls(), &["--max-connections", "1"]);
        let _alice = server.member("Alice");
        let mut late = server.connect();
        let refused = late.read_response();
        assert_eq!(refused.status_line, "HTTP/1.1 503 Service Unavailable");
        late.expect_closed();
    }

    fn t2_sighup_reloads_the_pair_and_members_stay(rt: Runtime) {
        let name = format!("reload-{}-{:?}", std::process::id(), rt.binary_name());
        let (first_cert, first_key) = pki().issue(&format!("{name}-1"), &["127.0.0.1"], None);
        let (second_cert, second_key) = pki().issue(&format!("{name}-2"), &["127.0.0.1"], None);
        let (cert, key) = (pki().dir().join(format!("{name}.pem")), pki().dir().join(format!("{name}.key")));
        std::fs::copy(&first_cert, &cert).expect("copy");
        std::fs::copy(&first_key, &key).expect("copy");
        let flags = ["--tls-cert", cert.to_str().expect("utf-8"), "--tls-key", key.to_str().expect("utf-8")];
        let server = Server::start(rt.with_tls(), &flags);
        let mut alice = server.member("Alice");
        assert_eq!(alice.server_certificate(), Some(Pki::der_of(&first_cert)));

        // Renewal: the files change, then SIGHUP.
        std::fs::copy(&second_cert, &cert).expect("copy");
        std::fs::copy(&second_key, &key).expect("copy");
        server.signal("HUP");
        let renewed = wait_for_certificate(&server, &Pki::der_of(&second_cert));
        assert!(renewed, "new handshakes use the new pair");
        let echo = alice.request("POST", "Alice", b"still here");
        assert_eq!(echo.text(), "[ Alice ] : still here\n", "members stay connected");

        // A broken pair is refused; the one in use stays.
        std::fs::write(&cert, "not a certificate\n").expect("write");
        server.signal("HUP");
        std::thread::sleep(Duration::from_millis(300));
        let mut bob = fresh_client(&server);
        assert_eq!(bob.read_response().code(), 202);
        assert_eq!(bob.request("ADD", "Bob", b"").code(), 200);
        assert_eq!(bob.server_certificate(), Some(Pki::der_of(&second_cert)));
        assert_eq!(alice.read_response().text(), "Bob has just entered the chat room...\n");
    }

    fn t2_reloads_while_members_chat_lose_nothing(rt: Runtime) {
        let server = Server::start(rt.with_tls(), &[]);
        let members: Vec<_> = (0..4).map(|i| server.member(&format!("m{i}"))).collect();
        let lines = std::thread::scope(|scope| {
            let chat = scope.spawn(|| everyone_posts(members, 50));
            for _ in 0..10 {
                server.signal("HUP");
                std::thread::sleep(Duration::from_millis(20));
            }
            chat.join().expect("the members chatted")
        });
        for chat in &lines {
            assert_eq!(chat.len(), 200, "every member got every line");
            assert_eq!(chat, &lines[0], "in one order");
        }
    }
}

/// Every member pipelines `posts` messages in one write, then reads until it has everyone's;
/// returns what each read, in member order.
fn everyone_posts(members: Vec<Client>, posts: usize) -> Vec<Vec<String>> {
    let total = members.len() * posts;
    std::thread::scope(|scope| {
        let readers: Vec<_> = members
            .into_iter()
            .map(|mut member| {
                scope.spawn(move || {
                    let batch: Vec<u8> = (0..posts)
                        .flat_map(|seq| request("POST", "x", format!("{seq}").as_bytes()))
                        .collect();
                    member.send(&batch);
                    member.read_chat_lines(total)
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("a member ends"))
            .collect()
    })
}

/// Connects until a handshake presents `der`, for up to [`GUARD`]: the reload happens on the
/// server's own thread a moment after the signal.
fn wait_for_certificate(server: &Server, der: &[u8]) -> bool {
    let started = Instant::now();
    while started.elapsed() < GUARD {
        let mut client = fresh_client(server);
        client.read_response();
        if client.server_certificate().as_deref() == Some(der) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A TLS client with a session cache of its own: one that resumed an earlier session would
/// be shown no certificate, and report the earlier one.
fn fresh_client(server: &Server) -> Client {
    let tcp = TcpStream::connect(server.addr()).expect("connect");
    Client::over_tls(chathttp_tests::tls::connect(&pki().client_config(), tcp))
}
