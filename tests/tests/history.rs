//! E1–E3: history on join, resume after a dropped connection, ids only for who asks.

use chathttp_tests::{Response, Server, add_with_history, conformance};

fn bodies(responses: &[Response]) -> Vec<String> {
    responses.iter().map(Response::text).collect()
}

fn id(response: &Response) -> String {
    response.message_id().to_owned()
}

conformance! {
    also_over_tls_and_websocket;
    fn e2_e3_a_joiner_that_asks_gets_the_last_lines_with_ids_then_the_marker(rt: Runtime) {
        let server = Server::start(rt, &["--history", "3"]);
        let mut alice = server.member("alice");
        for n in 1..=4 {
            alice.request("POST", "alice", format!("line {n}").as_bytes());
        }
        let (mut bob, replayed, marker) = server.join_with_history("bob", "2");
        assert_eq!(bodies(&replayed), ["[ alice ] : line 3\n", "[ alice ] : line 4\n"]);
        assert_eq!(marker, "History: 2 messages replayed\n");
        // The id is the eighth header, after the seven of H2.
        let names: Vec<&str> = replayed[0].headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 8);
        assert_eq!(names[7], "Message_Id");
        assert_ne!(id(&replayed[0]), id(&replayed[1]));
        // Live lines: ids for bob, the seven headers only for alice, who did not ask.
        assert_eq!(alice.read_response().text(), "bob has just entered the chat room...\n");
        let mine = alice.request("POST", "alice", b"line 5");
        assert_eq!(mine.headers.len(), 7, "{mine:?}");
        let live = bob.read_response();
        assert_eq!(live.text(), "[ alice ] : line 5\n");
        assert_ne!(id(&live), id(&replayed[1]));
    }

    fn e2_e3_a_dropped_member_resumes_after_its_last_id_with_nothing_missed_or_doubled(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut alice = server.member("alice");
        let (mut bob, replayed, marker) = server.join_with_history("bob", "50");
        assert!(replayed.is_empty());
        assert_eq!(marker, "History: 0 messages replayed\n");
        assert_eq!(alice.read_response().text(), "bob has just entered the chat room...\n");
        alice.request("POST", "alice", b"before the drop");
        let last = bob.read_response();
        assert_eq!(last.text(), "[ alice ] : before the drop\n");
        drop(bob);
        assert_eq!(alice.read_response().text(), "bob has just left the chat room...\n");
        for n in 1..=3 {
            alice.request("POST", "alice", format!("while away {n}").as_bytes());
        }
        let (mut bob, replayed, marker) = server.join_with_history("bob", &format!("after {}", id(&last)));
        assert_eq!(
            bodies(&replayed),
            ["[ alice ] : while away 1\n", "[ alice ] : while away 2\n", "[ alice ] : while away 3\n"]
        );
        assert_eq!(marker, "History: 3 messages replayed\n");
        alice.request("POST", "alice", b"welcome back");
        assert_eq!(bob.read_response().text(), "[ alice ] : welcome back\n");
    }

    fn e1_e3_after_a_restart_a_resume_is_told_that_lines_were_missed(rt: Runtime) {
        let mut server = Server::start(rt, &[]);
        let addr = server.addr().to_string();
        let mut alice = server.member("alice");
        let (mut bob, _, _) = server.join_with_history("bob", "0");
        alice.request("POST", "alice", b"said before the restart");
        let last = bob.read_response();
        server.terminate();
        // An in-memory room's history ends with its process: a new epoch.
        let server = Server::start_on(rt, &addr, &[]);
        let mut carol = server.member("carol");
        carol.request("POST", "carol", b"said after the restart");
        let (_, replayed, marker) = server.join_with_history("bob", &format!("after {}", id(&last)));
        assert_eq!(bodies(&replayed), ["[ carol ] : said after the restart\n"]);
        assert_eq!(marker, "History: 1 messages replayed, some were missed\n");
    }

    fn e1_with_history_0_the_header_is_ignored(rt: Runtime) {
        let server = Server::start(rt, &["--history", "0"]);
        let mut alice = server.member("alice");
        alice.request("POST", "alice", b"before");
        let mut bob = server.guest();
        bob.send(&add_with_history("bob", "10"));
        assert_eq!(bob.read_response().text(), "Welcome, bob!\n");
        alice.read_response();
        let live = alice.request("POST", "alice", b"after");
        assert_eq!(live.text(), "[ alice ] : after\n");
        let seen = bob.read_response();
        assert_eq!(seen.text(), "[ alice ] : after\n", "no replay, no marker");
        assert_eq!(seen.headers.len(), 7);
    }

    fn e2_a_bad_history_header_is_a_400_and_the_connection_stays(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut bob = server.guest();
        bob.send(&add_with_history("bob", "lots"));
        let refused = bob.read_response();
        assert_eq!(refused.code(), 400);
        assert_eq!(refused.text(), "the History header must be a number of messages or \"after ID\"\n");
        assert_eq!(bob.request("ADD", "bob", b"").text(), "Welcome, bob!\n");
    }

    fn e2_a_replay_larger_than_one_slice_arrives_whole_in_a_quiet_room(rt: Runtime) {
        // A replay goes out a slice at a time (half the soft mark: 2 KiB here) as the joiner
        // drains. Each slice must follow the last without any other input to the server:
        // nobody else speaks.
        let server = Server::start(rt, &["--history", "40", "--max-output-bytes", "16384"]);
        let mut alice = server.member("alice");
        let line = "x".repeat(400);
        for _ in 0..40 {
            alice.request("POST", "alice", line.as_bytes());
        }
        let (_bob, replayed, marker) = server.join_with_history("bob", "40");
        assert_eq!(replayed.len(), 40);
        assert_eq!(marker, "History: 40 messages replayed\n");
    }
}
