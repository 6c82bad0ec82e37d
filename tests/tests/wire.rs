//! W (framing), R (requests) and H (responses), and the seed's example messages.

use chathttp_tests::{
    Client, GUARD, Runtime, SERVER_HEADER, Server, assert_still_serving, conformance, request,
};

/// The seed's example requests, byte for byte (the seed shows them with LF line ends).
const SEED_ADD: &str = "ADD 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:07:40\nUser_Agent: Alice\n\
Host: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 0\n\
Content_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n";
const SEED_POST: &str = "POST 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:17:48\nUser_Agent: Alice\n\
Host: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 17\n\
Content_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\nHello, everyone!\n";
const SEED_GET: &str = "GET 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:19:52\nUser_Agent: Alice\n\
Host: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 0\n\
Content_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n";
const SEED_DELETE: &str = "DELETE 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:21:28\nUser_Agent: Alice\n\
Host: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 0\n\
Content_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n";
/// The seed's chat response, with this server's `Developer` and `Server` values.
fn seed_chat_response(datetime: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\nDatetime: {datetime}\nDeveloper: chathttp\nServer: {SERVER_HEADER}\n\
         Content_Length: 29\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n\
         [ Alice ] : Hello, everyone!\n"
    )
}

/// H2: exactly the seven headers, in order, spelled so; `Datetime` as `%Y-%m-%d %H:%M:%S`;
/// `Content_Length` the body's length.
fn assert_seven_headers(response: &chathttp_tests::Response) {
    let names: Vec<&str> = response.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Datetime",
            "Developer",
            "Server",
            "Content_Length",
            "Content_Language",
            "Content_Encoding",
            "Content_Type"
        ],
        "H2 header order in {response:?}"
    );
    let datetime = response.header("Datetime").unwrap_or_default().as_bytes();
    let shape_ok = datetime.len() == 19
        && datetime.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    assert!(shape_ok, "H2 Datetime format in {response:?}");
    assert_eq!(
        response.header("Content_Length"),
        Some(&*response.body.len().to_string())
    );
}

/// Sends `bad` (which cannot be framed) plus trailing junk the server will not read, and
/// checks W8: a `400` with a one-line reason arrives intact (no reset), then a clean close,
/// and a fresh client is still served.
fn assert_unframeable(server: &Server, bad: &[u8]) {
    let mut client = server.guest();
    let mut bytes = bad.to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 64 * 1024));
    client.send(&bytes);
    let reply = client.read_response();
    assert_eq!(
        reply.status_line,
        "HTTP/1.1 400 Bad Request",
        "W8 for {:?}",
        String::from_utf8_lossy(bad)
    );
    let reason = reply.text();
    assert!(
        reason.ends_with('\n') && reason.trim_end().lines().count() == 1,
        "one-line reason: {reason:?}"
    );
    assert_seven_headers(&reply);
    client.expect_closed();
    assert_still_serving(server);
}

/// Sends each request on one connection and collects the bodies of the responses, for
/// comparing ways of splitting the same stream.
fn session_bodies(rt: Runtime, split: &dyn Fn(&[u8]) -> Vec<Vec<u8>>) -> Vec<String> {
    let server = Server::start(rt, &[]);
    let mut client = server.guest();
    let mut script = Vec::new();
    script.extend(request("ADD", "Splitter", b""));
    script.extend(request("POST", "Splitter", b"one\ntwo\n"));
    script.extend(b"\n\r\n");
    script.extend(request("GET", "Splitter", b""));
    script.extend(request("POST", "Splitter", "naïve ☃".as_bytes()));
    script.extend(request("DELETE", "Splitter", b""));
    for chunk in split(&script) {
        client.send(&chunk);
    }
    let mut bodies = Vec::new();
    while let Ok(Some(response)) = client.next_response() {
        bodies.push(format!("{} {}", response.status_line, response.text()));
    }
    bodies
}

conformance! {
    fn w1_r2_h2_seed_examples_byte_for_byte(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut bob = server.member("Bob");
        let mut alice = server.guest();
        alice.send(SEED_ADD.as_bytes());
        let joined = alice.read_response();
        assert_eq!(joined.status_line, "HTTP/1.1 200 OK");
        assert_seven_headers(&joined);
        assert_eq!(bob.read_response().text(), "Alice has just entered the chat room...\n");
        alice.send(SEED_POST.as_bytes());
        for copy in [alice.read_response(), bob.read_response()] {
            let datetime = copy.header("Datetime").expect("Datetime").to_owned();
            assert_seven_headers(&copy);
            assert_eq!(String::from_utf8_lossy(&copy.raw), seed_chat_response(&datetime));
        }
        alice.send(SEED_GET.as_bytes());
        let users = alice.read_response();
        assert_eq!(users.text(), "Online users:\nBob\nAlice\n");
        let mut second = server.guest();
        second.send(SEED_ADD.as_bytes());
        let taken = second.read_response();
        assert_eq!(taken.status_line, "HTTP/1.1 401 User Name Exist");
        assert_seven_headers(&taken);
        alice.send(SEED_DELETE.as_bytes());
        assert_eq!(alice.read_response().code(), 200);
        alice.expect_closed();
        assert_eq!(bob.read_response().text(), "Alice has just left the chat room...\n");
    }

    fn h1_h2_every_response_has_the_seven_headers_in_order(rt: Runtime) {
        let server = Server::start(rt, &["--max-connections", "1"]);
        let mut client = server.connect();
        let mut responses = vec![client.read_response()];
        responses.push(client.request("POST", "x", b"hi"));
        responses.push(client.request("ADD", "", b""));
        responses.push(client.request("FOO", "x", b""));
        responses.push(client.request("ADD", "Hana", b""));
        responses.push(client.request("POST", "Hana", b"hello"));
        responses.push(client.request("GET", "Hana", b""));
        let mut full = server.connect();
        responses.push(full.read_response());
        for response in &responses {
            assert_seven_headers(response);
        }
        let status_lines: Vec<&str> = responses.iter().map(|r| r.status_line.as_str()).collect();
        assert_eq!(status_lines, [
            "HTTP/1.1 202 Accept",
            "HTTP/1.1 403 Forbidden",
            "HTTP/1.1 400 Bad Request",
            "HTTP/1.1 405 Method Not Allowed",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 503 Service Unavailable",
        ]);
    }

    fn w2_crlf_line_ends_are_accepted(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        client.send(b"ADD / HTTP/1.1\r\nUser_Agent: Crlf\r\nContent_Length: 0\r\n\r\n");
        assert_eq!(client.read_response().code(), 200);
        client.send(b"POST / HTTP/1.1\r\nContent_Length: 4\r\n\r\nhi\r\n");
        assert_eq!(client.read_response().text(), "[ Crlf ] : hi\n");
    }

    fn w3_header_names_ignore_case_and_dash_and_values_are_trimmed(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        client.send(b"ADD / HTTP/1.1\nuser-agent: \t Dash \t\nX_Unknown: ignored\ncontent-LENGTH:0\n\n");
        assert_eq!(client.read_response().code(), 200);
        client.send(b"POST / HTTP/1.1\nCONTENT-length:   3  \n\nabc");
        assert_eq!(client.read_response().text(), "[ Dash ] : abc\n");
    }

    fn w4_missing_content_length_means_empty_body(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        client.send(b"ADD / HTTP/1.1\nUser_Agent: Nolen\n\n");
        assert_eq!(client.read_response().code(), 200);
        client.send(b"POST / HTTP/1.1\n\n");
        let empty = client.read_response();
        assert_eq!(empty.code(), 400, "an empty message: {empty:?}");
        client.send(b"POST / HTTP/1.1\nContent_Length: 2\nContent-Length: 2\n\nok");
        assert_eq!(client.read_response().text(), "[ Nolen ] : ok\n", "agreeing lengths are fine");
    }

    fn w4_bad_or_conflicting_content_length_is_unframeable(rt: Runtime) {
        let server = Server::start(rt, &[]);
        for value in ["12a", "-1", "+5", "0x10", "", "1 2", "99999999999999999999999"] {
            assert_unframeable(&server, format!("GET / HTTP/1.1\nContent_Length: {value}\n\n").as_bytes());
        }
        assert_unframeable(&server, b"GET / HTTP/1.1\nContent_Length: 1\nContent-Length: 2\n\nab");
    }

    fn w5_oversized_head_and_body_are_refused_without_waiting_for_them(rt: Runtime) {
        let server = Server::start(rt, &[]);
        // A head line that never ends: the 400 must come without the end of the head.
        let mut endless = b"GET / HTTP/1.1\nX: ".to_vec();
        endless.extend(std::iter::repeat_n(b'a', 9000));
        assert_unframeable(&server, &endless);
        let mut many = b"GET / HTTP/1.1\n".to_vec();
        for i in 0..65 {
            many.extend(format!("X-{i}: y\n").as_bytes());
        }
        many.push(b'\n');
        assert_unframeable(&server, &many);
        // The body's length alone is enough to refuse it.
        assert_unframeable(&server, b"POST / HTTP/1.1\nContent_Length: 65537\n\n");
    }

    fn w5_limits_are_configurable(rt: Runtime) {
        // The seed's ten headers take about 230 bytes.
        let server = Server::start(rt, &["--max-header-bytes", "300", "--max-body-bytes", "16"]);
        let mut client = server.member("Limits");
        client.send(b"POST / HTTP/1.1\nContent_Length: 16\n\n0123456789abcdef");
        assert_eq!(client.read_response().text(), "[ Limits ] : 0123456789abcdef\n");
        let mut long_head = b"GET / HTTP/1.1\nX: ".to_vec();
        long_head.extend([b'a'; 300]);
        long_head.extend(b"\n\n");
        assert_unframeable(&server, &long_head);
        assert_unframeable(&server, b"POST / HTTP/1.1\nContent_Length: 17\n\n0123456789abcdefg");
    }

    fn w6_invalid_utf8_frames_and_keeps_the_connection(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        client.send(b"ADD / HTTP/1.1\nUser_Agent: \xff\xfe\n\n");
        assert_eq!(client.read_response().code(), 400);
        assert_eq!(client.request("ADD", "Utf", b"").code(), 200);
        client.send(b"POST / HTTP/1.1\nContent_Length: 3\n\na\xc0b");
        assert_eq!(client.read_response().code(), 400);
        assert_eq!(client.request("POST", "Utf", b"still here").text(), "[ Utf ] : still here\n");
    }

    fn w7_byte_by_byte_random_chunks_and_pipelining_give_the_same_result(rt: Runtime) {
        let whole = session_bodies(rt, &|script| vec![script.to_vec()]);
        assert_eq!(whole.len(), 5, "ADD, POST, GET, POST, DELETE: {whole:?}");
        assert_eq!(whole[1], "HTTP/1.1 200 OK [ Splitter ] : one\ntwo\n");
        assert_eq!(whole[2], "HTTP/1.1 200 OK Online users:\nSplitter\n");
        assert_eq!(whole[3], "HTTP/1.1 200 OK [ Splitter ] : naïve ☃\n");
        let bytewise = session_bodies(rt, &|script| script.chunks(1).map(<[u8]>::to_vec).collect());
        assert_eq!(bytewise, whole, "byte by byte");
        for seed in [1, 2, 3] {
            let chunked = session_bodies(rt, &|script| {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut chunks = Vec::new();
                let mut rest = script;
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(rng.usize(1..=40).min(rest.len()));
                    chunks.push(chunk.to_vec());
                    rest = tail;
                }
                chunks
            });
            assert_eq!(chunked, whole, "random chunks, seed {seed}");
        }
    }

    fn w8_unframeable_start_lines_get_400_then_close(rt: Runtime) {
        let server = Server::start(rt, &[]);
        for start in [
            &b"GET  / HTTP/1.1"[..],
            b"GET\t/ HTTP/1.1",
            b"GET / HTTP/1.1 extra",
            b"GET /\0 HTTP/1.1",
            b"GET",
            b"GET /",
            b" GET / HTTP/1.1",
        ] {
            let mut bad = start.to_vec();
            bad.extend(b"\nContent_Length: 0\n\n");
            assert_unframeable(&server, &bad);
        }
    }

    fn w8_unframeable_headers_get_400_then_close(rt: Runtime) {
        let server = Server::start(rt, &[]);
        assert_unframeable(&server, b"GET / HTTP/1.1\nUser_Agent Alice\n\n");
        assert_unframeable(&server, b"GET / HTTP/1.1\nUser_Agent : Alice\n\n");
        assert_unframeable(&server, b"GET / HTTP/1.1\nUser_Agent: Al\n ice\n\n");
        assert_unframeable(&server, b"GET / HTTP/1.1\nUser_Agent: Al\n\tice\n\n");
    }

    fn w8_requests_that_make_no_sense_get_4xx_and_keep_the_connection(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        let cases: [(&[u8], u16); 8] = [
            (b"FOO / HTTP/1.1\n\n", 405),
            (b"add / HTTP/1.1\nUser_Agent: lower\n\n", 405),
            (b"GET / HTTP/1.0\n\n", 400),
            (b"ADD / HTTP/1.1\nUser_Agent: a\nUser_Agent: b\n\n", 400),
            (b"POST / HTTP/1.1\nContent_Length: 2\n\nhi", 403),
            (b"DELETE / HTTP/1.1\n\n", 403),
            (b"ADD / HTTP/1.1\nUser_Agent: Solo\n\n", 200),
            (b"ADD / HTTP/1.1\nUser_Agent: Solo\n\n", 403),
        ];
        for (bad, code) in cases {
            client.send(bad);
            let reply = client.read_response();
            assert_eq!(reply.code(), code, "for {:?}: {reply:?}", String::from_utf8_lossy(bad));
            assert_eq!(reply.text().lines().count(), 1, "one-line body");
        }
        assert_eq!(client.request("GET", "Solo", b"").text(), "Online users:\nSolo\n");
    }

    fn w8_after_the_400_the_server_lingers_instead_of_resetting(rt: Runtime) {
        let (_server, client) = closed_after_a_400(rt);
        // The server has shut down its sending side but must go on reading (and
        // discarding) for a while: a socket closed with input arriving answers with a reset,
        // which on a real network can destroy the 400 still in flight. On loopback the 400
        // has already arrived, so the reset is only visible to writes. Twenty writes 10 ms
        // apart stay well inside the server's 2 s linger.
        let mut stream = client.stream();
        for i in 0..20 {
            if let Err(error) = std::io::Write::write_all(&mut stream, b"late junk\n") {
                panic!("write {i} after the 400 met {error}: closed without lingering");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn w8_a_peer_that_never_closes_is_let_go_after_the_linger(rt: Runtime) {
        let (_server, client) = closed_after_a_400(rt);
        // The peer keeps its end open and says nothing. The server lingers 2 s, then closes
        // for good: from then on a write meets a reset (the first write after the close
        // draws it, a later one reports it). Writes go on for 6 s at most.
        let mut stream = client.stream();
        let start = std::time::Instant::now();
        let refused = loop {
            if std::io::Write::write_all(&mut stream, b"still here\n").is_err() {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(6),
                "the server still holds the socket 6 s after the 400"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(
            refused > std::time::Duration::from_secs(1),
            "the server closed after {refused:?}, without lingering"
        );
    }

    fn w8_a_flood_after_a_bad_request_cannot_stall_others(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut member = server.member("Steady");
        let mut flooder = server.guest();
        flooder.send(b"BAD\n\n");
        // The server stops reading it; the flood must not hold anyone else up.
        let junk = vec![b'z'; 256 * 1024];
        let stream = flooder.stream().try_clone().expect("clone");
        let flood = std::thread::spawn(move || {
            let _ = stream.set_write_timeout(Some(GUARD));
            for _ in 0..8 {
                if std::io::Write::write_all(&mut &stream, &junk).is_err() {
                    break;
                }
            }
        });
        assert_eq!(member.request("POST", "Steady", b"fine").text(), "[ Steady ] : fine\n");
        assert_eq!(flooder.read_response().code(), 400);
        flood.join().expect("the flood thread ends");
        assert_still_serving(&server);
    }

    fn r1_the_uri_is_ignored_and_methods_are_case_sensitive(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        for uri in ["/", "*", "127.0.0.1", "chat.example/room?x=1"] {
            client.send(format!("GET {uri} HTTP/1.1\n\n").as_bytes());
            assert_eq!(client.read_response().code(), 200, "GET {uri}");
        }
        client.send(b"get / HTTP/1.1\n\n");
        assert_eq!(client.read_response().code(), 405);
    }

    fn r2_only_user_agent_and_content_length_are_needed(rt: Runtime) {
        let server = Server::start(rt, &[]);
        let mut client = server.guest();
        client.send(b"ADD / HTTP/1.1\nUser_Agent: Minimal\nContent_Length: 0\n\n");
        assert_eq!(client.read_response().code(), 200);
        client.send(b"POST / HTTP/1.1\nContent_Length: 5\n\nshort");
        assert_eq!(client.read_response().text(), "[ Minimal ] : short\n");
        assert_eq!(client.request("GET", "Minimal", b"").text(), "Online users:\nMinimal\n", "all ten headers");
    }
}

/// A guest that sent a bad request and read its `400` and the server's end of stream (W8),
/// its own end still open; and the server, which lives as long as the pair is held.
fn closed_after_a_400(rt: Runtime) -> (Server, Client) {
    let server = Server::start(rt, &[]);
    let mut client = server.guest();
    client.send(b"BAD\n\n");
    assert_eq!(client.read_response().code(), 400);
    client.expect_closed();
    (server, client)
}
