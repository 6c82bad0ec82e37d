//! S8 (slow readers), S9 (timeouts) and S10 (capacity).

use std::time::{Duration, Instant};

use chathttp_tests::{GUARD, Server, assert_still_serving, conformance, request};

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
        assert_eq!(alice.request("POST", "Alice", b"untouched").text(), "[ Alice ] : untouched\n");
        assert_eq!(alice.request("DELETE", "Alice", b"").code(), 200);
        alice.expect_closed();
        let mut next = server.guest();
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
}
