//! B1, B2: the browser gateway on every binary. The session and history cases also run
//! through `/ws` (`on_*_ws` in session.rs and history.rs); these are the gateway's own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use chathttp_tests::http::{self, get};
use chathttp_tests::{Server, conformance, request};

/// The status of a WebSocket upgrade sent with these `Host` and `Origin` headers.
fn upgrade_status(addr: SocketAddr, host: &str, origin: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("the gateway accepts connections");
    http::upgrade(&mut stream, host, Some(origin))
}

/// The value of the sample `name` (with its labels, as written) in a `/metrics` scrape.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

conformance! {
    fn b1_the_page_health_and_unknown_paths(rt: Runtime) {
        let server = Server::start(rt.over_websocket(), &[]);
        let (code, head, body) = get(server.http_addr(), "/");
        assert_eq!(code, 200);
        assert!(body.contains("<script src=\"/app.js\""), "{body}");
        // B2: a strict policy: no inline script, nothing from elsewhere, never framed.
        assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self';"));
        assert!(head.contains("frame-ancestors 'none'"));
        assert!(head.contains("x-content-type-options: nosniff"));
        let (code, head, body) = get(server.http_addr(), "/app.js");
        assert_eq!(code, 200);
        assert!(head.contains("content-type: text/javascript"), "{head}");
        assert!(body.contains("textContent"), "peer text goes in as text");
        assert!(!body.contains("innerHTML"), "C1: never as HTML");
        let (code, _, body) = get(server.http_addr(), "/healthz");
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        assert_eq!(get(server.http_addr(), "/nothing-here").0, 404);
    }

    fn b1_browser_and_tcp_members_are_one_room(rt: Runtime) {
        let mut server = Server::start(rt.over_websocket(), &[]);
        let mut browser = server.member("alice");
        let mut tcp = server.tcp_member("bob");
        browser.read_until_body("bob has just entered the chat room...\n");
        browser.send(&request("POST", "alice", b"from the browser\n"));
        tcp.send(&request("POST", "bob", b"from a terminal\n"));
        // S7: one order for both, the same bytes in each.
        let seen_by_browser = browser.read_chat_lines(2);
        let seen_by_tcp = tcp.read_chat_lines(2);
        assert_eq!(seen_by_browser, seen_by_tcp);
        assert!(seen_by_tcp.contains(&"[ alice ] : from the browser\n".to_owned()));
        let list = tcp.request("GET", "bob", b"");
        assert_eq!(list.text(), "Online users:\nalice\nbob\n");
        // S5 through the gateway: the browser leaves, the terminal sees it.
        assert_eq!(browser.request("DELETE", "alice", b"").code(), 200);
        browser.expect_closed();
        tcp.read_until_body("alice has just left the chat room...\n");
        assert!(server.terminate().success());
    }

    fn b2_a_foreign_origin_is_refused_and_allowed_ones_are_not(rt: Runtime) {
        let server = Server::start(
            rt.over_websocket(),
            &["--http-allow-origin", "https://Chat.Example.org/"],
        );
        let own = format!("http://{}", server.http_addr());
        let error = server
            .connect_websocket(Some("https://evil.example"))
            .expect_err("a foreign origin");
        match error {
            tungstenite::Error::Http(response) => assert_eq!(response.status(), 403),
            other => panic!("expected 403, got {other:?}"),
        }
        for origin in [own.as_str(), "https://chat.example.org"] {
            let mut client = server.connect_websocket(Some(origin)).expect("allowed");
            assert_eq!(client.read_response().code(), 202, "{origin}");
        }
        let metrics = get(server.http_addr(), "/metrics").2;
        assert_eq!(sample(&metrics, "chathttp_foreign_origins_total"), 1, "{metrics}");
    }

    fn b2_a_name_in_host_is_not_trusted_unless_allowed(rt: Runtime) {
        // DNS rebinding: a hostile site's name pointed at the gateway; its page's Origin
        // matches the Host it sends.
        let server = Server::start(rt.over_websocket(), &[]);
        let port = server.http_addr().port();
        let (host, origin) = (format!("evil.example:{port}"), format!("http://evil.example:{port}"));
        assert_eq!(upgrade_status(server.http_addr(), &host, &origin), 403);
        let own = server.http_addr().to_string();
        assert_eq!(upgrade_status(server.http_addr(), &own, &format!("http://{own}")), 101);
        let local = format!("localhost:{port}");
        assert_eq!(upgrade_status(server.http_addr(), &local, &format!("http://{local}")), 101);
        let named = Server::start(rt.over_websocket(), &["--http-allow-origin", "https://chat.example.org"]);
        let host = "chat.example.org";
        assert_eq!(upgrade_status(named.http_addr(), host, "https://chat.example.org"), 101);
    }

    fn b1_max_connections_counts_browser_members(rt: Runtime) {
        let server = Server::start(rt.over_websocket(), &["--max-connections", "1"]);
        let _first = server.member("alice");
        let mut second = server.connect();
        let refused = second.read_response();
        assert_eq!(refused.code(), 503, "S10 over the gateway: {refused:?}");
        second.expect_closed();
    }

    fn b1_a_browser_member_that_stops_reading_is_cut(rt: Runtime) {
        let server = Server::start(rt.over_websocket(), &["--max-output-bytes", "65536"]);
        let stalled = server.member("stalled");
        socket2::SockRef::from(stalled.stream())
            .set_recv_buffer_size(4096)
            .expect("a small window");
        let mut talker = server.member("talker");
        // S8: with the browser not reading, its output passes the limit and it is cut; the
        // talker is never held up.
        let line = vec![b'x'; 4000];
        let mut cut = false;
        for _ in 0..400 {
            talker.send(&request("POST", "talker", &line));
            let body = talker.read_response().text();
            if body == "stalled has just left the chat room...\n" {
                cut = true;
                break;
            }
        }
        assert!(cut, "S8: the stalled browser member was not cut");
        let metrics = get(server.http_addr(), "/metrics").2;
        assert_eq!(sample(&metrics, "chathttp_cuts_total{cause=\"slow_reader\"}"), 1, "{metrics}");
    }

    fn b1_s9_timeouts_hold_for_browser_members(rt: Runtime) {
        let flags = ["--idle-timeout", "0.5", "--request-timeout", "0.5"];
        let server = Server::start(rt.over_websocket(), &flags);
        let mut silent = server.guest();
        silent.expect_closed();
        // Half a request in a message: the rest never comes.
        let mut slow = server.member("slow");
        slow.send(b"POST / HTTP/1.1\nContent_Length: 10\n\nabc");
        assert_eq!(slow.read_response().code(), 408);
        slow.expect_closed();
    }

    fn b1_s12_flood_control_holds_for_browser_members(rt: Runtime) {
        let flags = ["--message-rate", "0.01", "--message-burst", "2", "--flood-kick", "2"];
        let server = Server::start(rt.over_websocket(), &flags);
        let mut flooder = server.member("flood");
        assert_eq!(flooder.request("POST", "flood", b"a").code(), 200);
        assert_eq!(flooder.request("POST", "flood", b"b").code(), 429);
        assert_eq!(flooder.request("POST", "flood", b"c").code(), 429);
        flooder.expect_closed();
        let metrics = get(server.http_addr(), "/metrics").2;
        assert_eq!(sample(&metrics, "chathttp_cuts_total{cause=\"flood\"}"), 1, "{metrics}");
    }

    fn b1_a_binary_message_closes_only_its_websocket(rt: Runtime) {
        let server = Server::start(rt.over_websocket(), &[]);
        let mut member = server.member("alice");
        let mut rogue = server.guest();
        rogue.send(&[0xff, 0xfe, b'\n', b'\n']);
        rogue.expect_closed();
        member.send(&request("POST", "alice", b"still here\n"));
        assert_eq!(member.read_chat_lines(1), ["[ alice ] : still here\n"]);
    }

    fn b1_a_peer_that_pings_and_never_reads_gets_no_pile_of_pongs(rt: Runtime) {
        let server = Server::start(rt.over_websocket(), &[]);
        let addr = server.http_addr();
        // A small window from the start (set before connecting, so it is what is advertised).
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        socket.set_recv_buffer_size(4096).expect("a small window");
        socket.connect(&addr.into()).expect("the gateway");
        let mut stream = TcpStream::from(socket);
        assert_eq!(http::upgrade(&mut stream, &addr.to_string(), None), 101);
        // Masked pings with 125-byte payloads, and no pong read until the end: answering
        // each would queue as many bytes as the peer sends, for as long as it sends.
        let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
        ping.extend([b'p'; 125]);
        let pings: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 512).collect();
        for _ in 0..128 {
            stream.write_all(&pings).expect("the server reads on");
        }
        let sent = 128 * pings.len();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .expect("a timeout");
        let (mut answered, mut chunk) = (0, vec![0; 1 << 16]);
        while let Ok(n) = stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            answered += n;
        }
        assert!(answered > 0, "pings are answered while the peer reads");
        assert!(answered < sent / 4, "{answered} bytes of pongs for {sent} bytes of pings");
        chathttp_tests::assert_still_serving(&server);
    }

    fn b1_metrics_count_a_known_conversation(rt: Runtime) {
        let server = Server::start(rt.over_websocket(), &["--history", "10"]);
        let before = get(server.http_addr(), "/metrics").2;
        assert_eq!(sample(&before, "chathttp_members"), 0, "{before}");
        let mut alice = server.member("alice");
        let mut bob = server.member("bob");
        alice.read_until_body("bob has just entered the chat room...\n");
        for text in ["one\n", "two\n", "three\n"] {
            alice.send(&request("POST", "alice", text.as_bytes()));
        }
        bob.read_chat_lines(3);
        alice.read_chat_lines(3);
        // S12 is off in the suite; a 400 and a 404-like refusal are counted by status.
        let refused = bob.request("PATCH", "bob", b"");
        let metrics = get(server.http_addr(), "/metrics").2;
        assert_eq!(sample(&metrics, "chathttp_members"), 2, "{metrics}");
        assert_eq!(sample(&metrics, "chathttp_connections"), 2, "{metrics}");
        assert_eq!(sample(&metrics, "chathttp_guests"), 0, "{metrics}");
        assert_eq!(sample(&metrics, "chathttp_messages_total"), 3, "{metrics}");
        assert_eq!(sample(&metrics, "chathttp_joins_total"), 2, "{metrics}");
        assert_eq!(sample(&metrics, "chathttp_history_lines"), 3, "{metrics}");
        assert_eq!(sample(&metrics, "chathttp_websocket_upgrades_total"), 2, "{metrics}");
        let code = format!("chathttp_refused_total{{code=\"{}\"}}", refused.code());
        assert_eq!(sample(&metrics, &code), 1, "{metrics}");
        // Two greetings, two welcomes, one join notice, three lines to two members, the 4xx.
        assert_eq!(sample(&metrics, "chathttp_deliveries_total"), 2 + 2 + 1 + 6 + 1, "{metrics}");
        assert!(sample(&metrics, "chathttp_received_bytes_total") > 0);
        drop(bob);
        alice.read_until_body("bob has just left the chat room...\n");
        let metrics = get(server.http_addr(), "/metrics").2;
        assert_eq!(sample(&metrics, "chathttp_leaves_total{cause=\"peer_closed\"}"), 1, "{metrics}");
        assert_eq!(sample(&metrics, "chathttp_members"), 1, "{metrics}");
    }

    fn t4_the_gateway_serves_https_and_wss_with_the_same_pair(rt: Runtime) {
        let server = Server::start(rt.with_tls().over_websocket(), &[]);
        let mut alice = server.member("alice");
        alice.send(&request("POST", "alice", b"over wss\n"));
        assert_eq!(alice.read_chat_lines(1), ["[ alice ] : over wss\n"]);
        assert!(alice.server_certificate().is_some(), "WSS, verified against the tests' CA");
    }
}
