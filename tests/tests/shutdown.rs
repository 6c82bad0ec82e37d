//! S11: shutdown on SIGTERM and SIGINT.

use std::time::{Duration, Instant};

use chathttp_tests::{Server, conformance};

const NOTICE: &str = "Server is shutting down...\n";

conformance! {
    fn s11_sigterm_tells_everyone_and_exits_0_even_if_some_do_not_read(rt: Runtime) {
        let mut server = Server::start(rt, &[]);
        let mut alice = server.member("Alice");
        let mut bob = server.member("Bob");
        let mut guest = server.guest();
        let mut midway = server.guest();
        midway.send(b"POST / HTTP/1.1\nContent_Length: 100\n\nhalf");
        // Sleepy joins, then reads nothing until the server is gone.
        let mut sleepy = server.member("Sleepy");
        assert_eq!(alice.read_response().text(), "Bob has just entered the chat room...\n");
        assert_eq!(alice.read_response().text(), "Sleepy has just entered the chat room...\n");
        assert_eq!(bob.read_response().text(), "Sleepy has just entered the chat room...\n");
        let expect_notice = |client: &mut chathttp_tests::Client| {
            let notice = client.read_response();
            assert_eq!(notice.status_line, "HTTP/1.1 503 Service Unavailable");
            assert_eq!(notice.text(), NOTICE, "no leave notices before it");
            client.expect_closed();
        };
        let started = Instant::now();
        let status = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| server.terminate());
            for client in [&mut alice, &mut bob, &mut guest, &mut midway] {
                expect_notice(client);
            }
            waiter.join().expect("the waiter ends")
        });
        assert_eq!(status.code(), Some(0), "exit code 0");
        assert!(started.elapsed() < Duration::from_secs(5), "exits within 5 s: {:?}", started.elapsed());
        expect_notice(&mut sleepy);
    }

    fn s11_sigint_exits_0(rt: Runtime) {
        let mut server = Server::start(rt, &[]);
        let mut member = server.member("Solo");
        server.signal("INT");
        let notice = member.read_response();
        assert_eq!(notice.text(), NOTICE);
        member.expect_closed();
        assert_eq!(server.wait().code(), Some(0));
    }
}
