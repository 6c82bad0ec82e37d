//! S8 (slow readers), S8.1 (overload pacing), S9 (timeouts), S10 (capacity), S12 (flood
//! control) and S13 (bounded closes).

use std::time::{Duration, Instant};

use chathttp_tests::{Client, GUARD, Server, assert_still_serving, conformance, request};

conformance! {
    fn s8_a_slow_reader_is_cut_while_the_others_keep_chatting(rt: Runtime) {
        let server = Server::start(rt, &["--max-output-bytes", "262144"]);
        let slow = server.member("Slow");
        socket2::SockRef::from(slow.stream())
            .set_recv_buffer_size(4096)
            .expect("a small receive buffer");
        let mut talker = server.member("Talker");
        let mut watcher = server.member("Watcher");
        assert_eq!(talker.read_response().text(), "Watcher has just entered the chat room...\n");
        let filler = "x".repeat(32 * 1024);
        let mut cut_seen = [false, false];
        // The kernel's socket buffers absorb a few MB before the server's own queue for
        // Slow grows; 4,000 messages of 32 KiB (128 MB) are far more than enough.
        let mut sent = 0;
        while !(cut_seen[0] && cut_seen[1]) {
            assert!(sent < 4000, "Slow was never cut");
            let line = format!("{sent} {filler}");
            talker.send(&request("POST", "Talker", line.as_bytes()));
            for (client, cut) in [&mut talker, &mut watcher].into_iter().zip(&mut cut_seen) {
                // Every message arrives, in order; the leave notice may come between two.
                let mut response = client.read_response();
                if response.text() == "Slow has just left the chat room...\n" {
                    assert!(!*cut, "the leave is told once");
                    *cut = true;
                    response = client.read_response();
                }
                let chat = response.text();
                assert!(chat == format!("[ Talker ] : {line}\n"), "message {sent} missing or out of order");
            }
            sent += 1;
        }
        assert!(sent > 2, "Slow was cut only after its queue had grown past the limit");
        assert_eq!(talker.request("POST", "Talker", b"after").text(), "[ Talker ] : after\n");
        assert_eq!(watcher.read_response().text(), "[ Talker ] : after\n");
        assert_eq!(watcher.request("GET", "Watcher", b"").text(), "Online users:\nTalker\nWatcher\n");
        drop(slow);
    }

    fn s8_a_client_that_pipelines_without_reading_cannot_hurt_others(rt: Runtime) {
        let server = Server::start(rt, &["--max-output-bytes", "65536"]);
        let mut member = server.member("Reader");
        let greedy = server.guest();
        let stream = greedy.stream().try_clone().expect("clone");
        let writer = std::thread::spawn(move || {
            // A cut peer sometimes sees no reset until it reads (the server's side lingers
            // in FIN-WAIT-2 with a zero window), so a blocked write ends by this timeout.
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
            let burst = request("GET", "greedy", b"").repeat(1000);
            // Either the server cuts it or stops reading it; both end this loop.
            for _ in 0..100 {
                if std::io::Write::write_all(&mut &stream, &burst).is_err() {
                    break;
                }
            }
        });
        for i in 0..20 {
            let line = format!("still here {i}");
            assert_eq!(member.request("POST", "Reader", line.as_bytes()).text(), format!("[ Reader ] : {line}\n"));
        }
        writer.join().expect("the writer thread ends");
        assert_still_serving(&server);
        drop(greedy);
    }

    fn s8_1_members_that_read_slower_than_the_senders_send_are_paced_not_cut(rt: Runtime) {
        // Three senders pipeline far more chat than the members' 64 KiB queues hold, and the
        // members read it more slowly than the senders write: without pacing, every member
        // would be cut as a slow reader.
        let server = Server::start(rt, &["--max-output-bytes", "65536", "--message-rate", "0"]);
        let (senders, messages) = (3, 3000);
        let members: Vec<Client> = (0..8).map(|i| server.member(&format!("m{i}"))).collect();
        let stopper = server.member("Stopper");
        socket2::SockRef::from(stopper.stream())
            .set_recv_buffer_size(4096)
            .expect("a small receive buffer");
        let padding = format!(" {}", "y".repeat(200));
        let received = chathttp_tests::exchange_posts_with(members, senders, messages, &padding, |mut member| {
            let (mut chat, mut stopper_left) = (Vec::new(), false);
            while chat.len() < senders * messages {
                let body = member.read_response().text();
                if body.starts_with("[ ") {
                    // "[ m0 ] : 17", without the padding.
                    chat.push(body.split(' ').take(5).collect::<Vec<_>>().join(" "));
                    if chat.len() % 8 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                } else if body == "Stopper has just left the chat room...\n" {
                    stopper_left = true;
                }
            }
            (chat, stopper_left, member)
        });
        let chat: Vec<Vec<String>> = received.iter().map(|(chat, ..)| chat.clone()).collect();
        chathttp_tests::assert_one_order_exactly_once(&chat, senders, messages, |i| format!("m{i}"));
        assert!(received.iter().all(|(_, left, _)| *left), "the member that stopped reading was cut (S8)");
        let mut probe = server.guest();
        let online = probe.request("GET", "probe", b"").text();
        let expected: String = (0..8).map(|i| format!("m{i}\n")).collect();
        assert_eq!(online, format!("Online users:\n{expected}"), "every member that kept reading is still in");
        drop((stopper, received));
    }

    fn s9_a_silent_guest_is_closed_after_the_idle_timeout(rt: Runtime) {
        let server = Server::start(rt, &["--idle-timeout", "0.5"]);
        let started = Instant::now();
        let mut guest = server.guest();
        guest.expect_closed();
        assert!(started.elapsed() >= Duration::from_millis(400), "not before the timeout");
    }

    fn s9_w7_empty_lines_are_not_activity(rt: Runtime) {
        let server = Server::start(rt, &["--idle-timeout", "0.6"]);
        let mut guest = server.guest();
        let stream = guest.stream().try_clone().expect("clone");
        let keeper = std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < GUARD {
                if std::io::Write::write_all(&mut &stream, b"\r\n\n").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Were blank lines activity, this would wait for GUARD and fail.
        guest.expect_closed();
        drop(guest);
        keeper.join().expect("the keeper thread ends");
    }

    fn s9_members_are_not_cut_for_silence(rt: Runtime) {
        let server = Server::start(rt, &["--idle-timeout", "0.3"]);
        let mut lurker = server.member("Lurker");
        lurker.expect_silence(Duration::from_millis(1200));
        assert_eq!(lurker.request("GET", "Lurker", b"").text(), "Online users:\nLurker\n");
    }

    fn s9_a_request_not_completed_in_time_gets_408_and_close(rt: Runtime) {
        let server = Server::start(rt, &["--request-timeout", "0.5"]);
        let mut witness = server.member("Witness");
        let mut slowloris = server.member("Loris");
        assert_eq!(witness.read_response().text(), "Loris has just entered the chat room...\n");
        slowloris.send(b"POST / HTTP/1.1\nContent_Length: 10\n\nabc");
        let reply = slowloris.read_response();
        assert_eq!(reply.status_line, "HTTP/1.1 408 Request Timeout");
        slowloris.expect_closed();
        assert_eq!(witness.read_response().text(), "Loris has just left the chat room...\n");
        let mut head_only = server.guest();
        head_only.send(b"GET / HTTP/1.1\nUser_Agent: x\n");
        assert_eq!(head_only.read_response().code(), 408);
        head_only.expect_closed();
    }

    fn s9_a_wave_of_timeouts_all_get_408_and_a_clean_close(rt: Runtime) {
        // Far more than the servers carry out per round (32): the rest wait for later rounds.
        let server = Server::start(rt, &["--request-timeout", "0.5"]);
        let mut witness = server.member("Witness");
        let mut lorises: Vec<_> = (0..200).map(|_| server.guest()).collect();
        for loris in &mut lorises {
            loris.send(b"GET / HTTP/1.1\nUser_Agent: lor");
        }
        for loris in &mut lorises {
            assert_eq!(loris.read_response().code(), 408);
            loris.expect_closed();
        }
        assert_eq!(witness.request("POST", "Witness", b"still here").text(), "[ Witness ] : still here\n");
    }

    fn s10_past_the_limit_a_connection_gets_503_and_a_freed_slot_is_reused(rt: Runtime) {
        let server = Server::start(rt, &["--max-connections", "2"]);
        let mut alice = server.member("Alice");
        let _guest = server.guest();
        let mut extra = server.connect();
        let refused = extra.read_response();
        assert_eq!(refused.status_line, "HTTP/1.1 503 Service Unavailable");
        extra.expect_closed();
        drop(extra);
        assert_eq!(alice.request("POST", "Alice", b"untouched").text(), "[ Alice ] : untouched\n");
        assert_eq!(alice.request("DELETE", "Alice", b"").code(), 200);
        alice.expect_closed();
        drop(alice);
        let mut next = server.guest_once_a_place_is_free();
        assert_eq!(next.request("ADD", "Alice", b"").code(), 200, "the slot and the name are free");
    }

    fn s12_a_flooder_gets_429_then_is_cut_and_the_others_see_one_leave(rt: Runtime) {
        // One token per 100 s: nothing comes back during the test, so it is deterministic.
        let flags = ["--message-rate", "0.01", "--message-burst", "3", "--flood-kick", "4"];
        let server = Server::start(rt, &flags);
        let mut calm = server.member("Calm");
        let mut flooder = server.member("Flood");
        assert_eq!(calm.read_response().text(), "Flood has just entered the chat room...\n");
        // The ADD took one of three tokens; two messages go out.
        for text in ["a", "b"] {
            assert_eq!(flooder.request("POST", "Flood", text.as_bytes()).code(), 200);
            assert_eq!(calm.read_response().text(), format!("[ Flood ] : {text}\n"));
        }
        for (i, (method, body)) in [("POST", "c"), ("GET", ""), ("POST", "d")].iter().enumerate() {
            let refused = flooder.request(method, "Flood", body.as_bytes());
            assert_eq!(refused.code(), 429, "refusal {i}: {refused:?}");
            assert!(
                refused.text().starts_with("slow down: 0.01 requests/s, try again in "),
                "{refused:?}"
            );
        }
        // An empty POST is a 400 and costs nothing: still three refusals so far.
        assert_eq!(flooder.request("POST", "Flood", b"").code(), 400);
        // The fourth 429 within a minute is the last thing the flooder gets.
        assert_eq!(flooder.request("POST", "Flood", b"e").code(), 429);
        flooder.expect_closed();
        assert_eq!(calm.read_response().text(), "Flood has just left the chat room...\n");
        assert_eq!(calm.request("GET", "Calm", b"").text(), "Online users:\nCalm\n");
    }

    fn s13_five_hundred_closes_that_are_never_read_are_gone_within_the_linger(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut witness = server.member("Witness");
        // A first wave warms what a server keeps for reuse once it has served that many
        // connections at once (chat-server-std's thread stacks, which glibc caches, and the
        // allocators' pools); the second must bring the server back to where the first left it.
        let (fds, _) = settled(&server);
        let first = close_wave(&server, &mut witness);
        let back = wait_for_descriptors(&server, fds);
        drop(first);
        let (fds, rss) = settled(&server);
        let second = close_wave(&server, &mut witness);
        let back = back.max(wait_for_descriptors(&server, fds));
        assert!(back >= LINGER / 2, "closes were cut at {back:?}, long before the linger");
        // Memory is given back once the queues are dropped (the allocator may keep a little).
        let limit = rss + 4 * 1024;
        let deadline = Instant::now() + Duration::from_secs(2);
        while server.rss_kib() > limit && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(server.rss_kib() <= limit, "RSS {} KiB, {rss} KiB before", server.rss_kib());
        let echo = witness.request("POST", "Witness", b"after");
        assert_eq!(echo.text(), "[ Witness ] : after\n");
        drop(second);
    }

    fn s13_a_close_that_waits_holds_its_place_under_the_limit_until_the_linger(rt: Runtime) {
        let server = Server::start(rt, &["--max-connections", "2"]);
        let mut alice = server.member("Alice");
        // Answered and closed, but the peer neither reads nor closes: the close waits.
        let mut bad = server.connect();
        bad.send(b"GET\t/ HTTP/1.1\n\n");
        assert_eq!(alice.request("GET", "Alice", b"").code(), 200, "the 400 went out");
        let mut refused = server.connect();
        assert_eq!(refused.read_response().code(), 503, "the waiting close counts");
        refused.expect_closed();
        // Once the linger has run out, its place is free.
        let started = Instant::now();
        let mut next = server.guest_once_a_place_is_free();
        assert!(started.elapsed() >= LINGER / 2, "freed at {:?}", started.elapsed());
        assert_eq!(next.request("GET", "Next", b"").text(), "Online users:\nAlice\n");
        drop(bad);
    }
}

/// S13's linger.
const LINGER: Duration = Duration::from_secs(2);

/// 500 clients each make the server close them after a reply (a bad request, W8) and then
/// neither read nor close. Half first pipeline GETs whose replies do not fit their small
/// receive window, so that the close waits behind unsent bytes. Every 50 clients, the
/// witness must be served as usual. Returns the clients, still open.
fn close_wave(server: &Server, witness: &mut Client) -> Vec<Client> {
    let pipelined: Vec<u8> = b"GET / HTTP/1.1\n\n".repeat(400);
    let mut clients = Vec::new();
    for i in 0..500 {
        let mut client = if i % 2 == 0 {
            small_window(server)
        } else {
            server.connect()
        };
        if i % 2 == 0 {
            client.send(&pipelined);
        }
        client.send(b"GET\t/ HTTP/1.1\n\n");
        clients.push(client);
        if i % 50 == 49 {
            let text = format!("during the wave {i}");
            let echo = witness.request("POST", "Witness", text.as_bytes());
            assert_eq!(
                echo.text(),
                format!("[ Witness ] : {text}\n"),
                "served throughout"
            );
        }
    }
    clients
}

/// Waits until the server holds no more than `fds` descriptors, which must happen within
/// the linger and one second (S13), however the peers behave; returns how long it took.
fn wait_for_descriptors(server: &Server, fds: usize) -> Duration {
    let bound = LINGER + Duration::from_secs(1);
    let sent = Instant::now();
    while sent.elapsed() < bound {
        if server.open_fds() <= fds {
            return sent.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{} descriptors open {bound:?} after the wave, {fds} before",
        server.open_fds()
    );
}

/// The server's descriptors and resident memory once nothing is closing (a probe's socket
/// may still linger for a moment).
fn settled(server: &Server) -> (usize, u64) {
    let mut fds = server.open_fds();
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = server.open_fds();
        if now == fds || started.elapsed() > GUARD {
            return (now, server.rss_kib());
        }
        fds = now;
    }
}

/// A client whose receive window is small (4 KiB), set before connecting as TCP requires.
fn small_window(server: &Server) -> Client {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    socket
        .connect(&server.addr().into())
        .expect("the server accepts connections");
    Client::new(socket.into())
}
