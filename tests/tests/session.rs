//! S1–S6 and H3: greeting, join, say, list, leave, disconnects.

use chathttp_tests::{Server, conformance};

/// H3: the four exact body forms a client tells apart by body alone.
fn reads_as_room_traffic(body: &str) -> bool {
    body.ends_with(" has just entered the chat room...\n")
        || body.ends_with(" has just left the chat room...\n")
        || body.starts_with("Online users:\n")
        || (body.starts_with("[ ") && body.contains(" ] : "))
}

conformance! {
    also_over_tls_and_websocket;
    fn s1_h3_greeting_is_202_accept_with_a_short_body(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.connect();
        let greeting = client.read_response();
        assert_eq!(greeting.status_line, "HTTP/1.1 202 Accept");
        assert!(!greeting.body.is_empty() && greeting.body.len() < 200);
        assert!(!reads_as_room_traffic(&greeting.text()), "H3: {greeting:?}");
    }

    fn s2_s2_3_h3_join_answers_the_joiner_and_tells_only_the_others(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut alice = server.member("Alice");
        let mut bob = server.guest();
        let joined = bob.request("ADD", "Bob", b"");
        assert_eq!(joined.code(), 200);
        assert!(!reads_as_room_traffic(&joined.text()), "H3: the joiner's reply {joined:?}");
        assert_eq!(alice.read_response().text(), "Bob has just entered the chat room...\n");
        // Bob's next response is his own GET: he got no notice of his own join.
        assert_eq!(bob.request("GET", "Bob", b"").text(), "Online users:\nAlice\nBob\n");
    }

    fn s2_1_valid_names_are_welcome(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut members = Vec::new();
        for name in ["小明", "José", "🦀", "a", "ZoëO'Brien-2", &"x".repeat(32), "  Padded\t"] {
            let mut client = server.guest();
            assert_eq!(client.request("ADD", name, b"").code(), 200, "{name:?} is valid");
            members.push(client);
        }
        let mut probe = server.guest();
        let users = probe.request("GET", "probe", b"").text();
        assert!(users.ends_with("\nPadded\n"), "the name is trimmed: {users:?}");
    }

    fn s2_1_invalid_names_get_400_and_the_connection_stays(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        for name in [
            "", "a b", "a\u{3000}b", "al\u{200B}ice", "\u{202E}ecila", "👩\u{200D}💻",
            "[admin]", "a:b", "x]", &"x".repeat(33),
        ] {
            let reply = client.request("ADD", name, b"");
            assert_eq!(reply.code(), 400, "{name:?} is invalid: {reply:?}");
            assert_eq!(reply.text().lines().count(), 1, "a one-line reason");
        }
        // A C1 control (Cc): framing passes it, the name rule does not.
        assert_eq!(client.request("ADD", "a\u{80}b", b"").code(), 400, "a control character");
        assert_eq!(client.request("ADD", "Valid", b"").code(), 200, "still open");
    }

    fn s2_2_names_are_unique_ignoring_case(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let _alice = server.member("Alice");
        let _emile = server.member("Émile");
        let mut client = server.guest();
        for taken in ["Alice", "alice", "ALICE", "émile", "ÉMILE"] {
            let reply = client.request("ADD", taken, b"");
            assert_eq!(reply.status_line, "HTTP/1.1 401 User Name Exist", "{taken} is taken");
        }
        assert_eq!(client.request("ADD", "Alicia", b"").code(), 200);
    }

    fn s2_4_a_second_add_changes_nothing(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut alice = server.member("Alice");
        let reply = alice.request("ADD", "Other", b"");
        assert_eq!(reply.code(), 403);
        assert_eq!(alice.request("GET", "x", b"").text(), "Online users:\nAlice\n");
    }

    fn s3_everyone_gets_the_line_and_the_speakers_copy_is_its_reply(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut alice = server.member("Alice");
        let mut bob = server.member("Bob");
        assert_eq!(alice.read_response().text(), "Bob has just entered the chat room...\n");
        let reply = alice.request("POST", "Alice", b"line one\nline two\n");
        assert_eq!(reply.text(), "[ Alice ] : line one\nline two\n", "one trailing LF dropped");
        assert_eq!(bob.read_response().text(), "[ Alice ] : line one\nline two\n");
        let crlf = bob.request("POST", "Bob", b"crlf\r\n");
        assert_eq!(crlf.text(), "[ Bob ] : crlf\n");
        assert_eq!(alice.read_response().text(), "[ Bob ] : crlf\n");
        let kept = bob.request("POST", "Bob", b"two\n\n");
        assert_eq!(kept.text(), "[ Bob ] : two\n\n", "only one newline is dropped");
        assert_eq!(alice.read_response().text(), "[ Bob ] : two\n\n");
    }

    fn s3_an_empty_message_is_refused_and_nothing_is_broadcast(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut alice = server.member("Alice");
        let mut bob = server.member("Bob");
        assert_eq!(alice.read_response().text(), "Bob has just entered the chat room...\n");
        for empty in [&b""[..], b"\n", b"\r\n"] {
            assert_eq!(alice.request("POST", "Alice", empty).code(), 400, "{empty:?}");
        }
        assert_eq!(bob.request("GET", "Bob", b"").text(), "Online users:\nAlice\nBob\n");
    }

    fn s3_the_speaker_is_the_joined_name_whatever_user_agent_says(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut alice = server.member("Alice");
        let mut mallory = server.member("Mallory");
        assert_eq!(alice.read_response().text(), "Mallory has just entered the chat room...\n");
        let spoof = mallory.request("POST", "Alice", b"I am Alice");
        assert_eq!(spoof.text(), "[ Mallory ] : I am Alice\n");
        assert_eq!(alice.read_response().text(), "[ Mallory ] : I am Alice\n");
        // A guest may say nothing, even with a member's name.
        let mut guest = server.guest();
        assert_eq!(guest.request("POST", "Alice", b"psst").code(), 403);
        assert_eq!(alice.request("GET", "Alice", b"").text(), "Online users:\nAlice\nMallory\n",
            "Alice got nothing from the guest");
    }

    fn s4_users_in_join_order_also_before_joining(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut guest = server.guest();
        assert_eq!(guest.request("GET", "g", b"").text(), "Online users:\n");
        let _c = server.member("Charlie");
        let _a = server.member("alice");
        let _b = server.member("Bob");
        assert_eq!(guest.request("GET", "g", b"").text(), "Online users:\nCharlie\nalice\nBob\n");
    }

    fn s5_h3_delete_answers_closes_and_frees_the_name_at_once(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut alice = server.member("Alice");
        let mut bob = server.member("Bob");
        assert_eq!(alice.read_response().text(), "Bob has just entered the chat room...\n");
        let goodbye = bob.request("DELETE", "Bob", b"");
        assert_eq!(goodbye.code(), 200);
        assert!(!reads_as_room_traffic(&goodbye.text()), "H3: {goodbye:?}");
        bob.expect_closed();
        assert_eq!(alice.read_response().text(), "Bob has just left the chat room...\n");
        let mut again = server.guest();
        assert_eq!(again.request("ADD", "bob", b"").code(), 200, "the name is free");
        assert_eq!(alice.read_response().text(), "bob has just entered the chat room...\n");
    }

    fn s6_eof_and_reset_leave_exactly_once_and_free_the_name(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut witness = server.member("Witness");
        let eof = server.member("Eof");
        let reset = server.member("Reset");
        assert_eq!(witness.read_response().text(), "Eof has just entered the chat room...\n");
        assert_eq!(witness.read_response().text(), "Reset has just entered the chat room...\n");
        drop(eof);
        assert_eq!(witness.read_response().text(), "Eof has just left the chat room...\n");
        reset.reset();
        assert_eq!(witness.read_response().text(), "Reset has just left the chat room...\n");
        let mut back = server.guest();
        assert_eq!(back.request("ADD", "Eof", b"").code(), 200);
        assert_eq!(back.request("GET", "Eof", b"").text(), "Online users:\nWitness\nEof\n",
            "no ghosts");
        assert_eq!(witness.read_response().text(), "Eof has just entered the chat room...\n",
            "each leave was told once");
    }

    fn s6_a_half_closed_peer_still_gets_its_replies(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        client.send(&chathttp_tests::request("GET", "nc", b""));
        client.stream().shutdown(std::net::Shutdown::Write).expect("half-close");
        assert_eq!(client.read_response().text(), "Online users:\n");
        client.expect_closed();
    }
}
