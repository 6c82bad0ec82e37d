//! Whole conversations through the room machine, as insta snapshots: one line per input
//! and per output, virtual time on the left. Each test names the PROTOCOL.md clause it
//! shows. Frames print as `CODE REASON "body"` after the renderer has checked the seven
//! headers of H2 (a frame that deviates prints whole, so the deviation shows).

mod support;

use std::time::Duration;

use chathttp_core::ServerConfig;
use chathttp_core::server::history::{Epoch, HistoryConfig};
use chathttp_core::server::pace;
use insta::assert_snapshot;
use support::*;

#[test]
fn seed_examples_byte_for_byte() {
    let mut s = Script::new(ServerConfig {
        server_header: "Python Socket Server".into(),
        developer_header: "Soros_Liu".into(),
        ..ServerConfig::default()
    });
    s.full_frames = true;
    s.now_ms = 14_000; // 10:17:48, the seed's POST
    let alice = s.open();
    let bob = s.open();
    s.send(bob, &add("Bob"));
    s.send(alice, SEED_ADD);
    s.send(alice, SEED_POST);
    s.send(alice, SEED_GET);
    s.send(alice, SEED_DELETE);
    assert_snapshot!(s.transcript);
}

#[test]
fn s1_greeting_and_s2_3_join_notices() {
    let mut s = Script::with_defaults();
    let a = s.open();
    s.send(a, &add("alice"));
    let b = s.open();
    s.send(b, &add("bob"));
    let c = s.open();
    s.send(c, &add("carol"));
    assert_snapshot!(s.transcript);
}

#[test]
fn s2_1_name_rules() {
    let mut s = Script::with_defaults();
    let a = s.open();
    for name in [
        "",
        "two words",
        "al\u{200B}ice",
        "[admin]",
        "a:b",
        &"x".repeat(33),
        "👩\u{200D}💻",
    ] {
        s.send(a, &add(name));
    }
    s.send(a, b"ADD / HTTP/1.1\nUser_Agent: \xff\xfe\n\n");
    s.send(a, b"ADD / HTTP/1.1\n\n");
    s.send(a, &add("  \t小明🦀\t "));
    assert_snapshot!(s.transcript);
}

#[test]
fn s2_2_names_are_unique_ignoring_case() {
    let mut s = Script::with_defaults();
    let a = s.open();
    s.send(a, &add("Émile"));
    let b = s.open();
    s.send(b, &add("émile"));
    s.send(b, &add("ÉMILE"));
    s.send(b, &add("Emile"));
    assert_snapshot!(s.transcript);
}

#[test]
fn s2_2_look_alike_names_collide_and_the_refusal_names_the_member() {
    let mut s = Script::with_defaults();
    for name in ["alice", "bob", "mallory"] {
        let member = s.open();
        s.send(member, &add(name));
    }
    let eve = s.open();
    s.note("Cyrillic а, a capital I for l, fullwidth, a zero for o, rn for m: each looks like a member");
    for name in ["\u{430}lice", "aIice", "ａｌｉｃｅ", "b0b", "rnallory"] {
        s.send(eve, &add(name));
    }
    s.note("invisible padding makes no name at all");
    for name in ["alice\u{3164}", "alice\u{34f}", "alice\u{200b}"] {
        s.send(eve, &add(name));
    }
    s.send(eve, &add("eve"));
    assert_snapshot!(s.transcript);
}

#[test]
fn s2_4_a_second_add_changes_nothing() {
    let mut s = Script::with_defaults();
    let a = s.open();
    s.send(a, &add("alice"));
    s.send(a, &add("mallory"));
    s.send(a, &request("GET", None, ""));
    assert_snapshot!(s.transcript);
}

#[test]
fn s3_say_speaker_is_bound_at_add() {
    let mut s = Script::with_defaults();
    let guest = s.open();
    s.send(guest, &request("POST", Some("alice"), "hi\n"));
    let a = s.open();
    s.send(a, &add("alice"));
    let m = s.open();
    s.send(m, &add("mallory"));
    s.note("mallory claims to be alice in User_Agent: the line still says mallory");
    s.send(m, &request("POST", Some("alice"), "I am alice\n"));
    s.note("one trailing LF or CRLF is dropped; inner newlines stay");
    s.send(a, &request("POST", None, "line one\nline two\r\n"));
    s.send(a, &request("POST", None, "no newline"));
    s.send(a, &request("POST", None, "two newlines\n\n"));
    s.note("empty after the trailing newline is dropped: refused");
    s.send(a, &request("POST", None, "\n"));
    s.send(a, &request("POST", None, "\r\n"));
    s.send(a, b"POST / HTTP/1.1\nContent_Length: 3\n\n\xff\xfe\n");
    assert_snapshot!(s.transcript);
}

#[test]
fn s4_users_in_join_order_also_before_joining() {
    let mut s = Script::with_defaults();
    let guest = s.open();
    s.send(guest, &request("GET", None, ""));
    for name in ["zoe", "adam", "小明"] {
        let c = s.open();
        s.send(c, &add(name));
    }
    s.send(guest, &request("GET", None, ""));
    assert_snapshot!(s.transcript);
}

#[test]
fn s5_leave_frees_the_name_at_once() {
    let mut s = Script::with_defaults();
    let a = s.open();
    s.send(a, &add("alice"));
    let b = s.open();
    s.send(b, &add("bob"));
    s.send(a, &request("DELETE", None, ""));
    s.note("bytes after DELETE on a closed connection are ignored");
    s.send(a, &post("still here?"));
    let c = s.open();
    s.send(c, &add("ALICE"));
    s.note("DELETE from a guest is refused");
    let g = s.open();
    s.send(g, &request("DELETE", None, ""));
    assert_snapshot!(s.transcript);
}

#[test]
fn s6_abrupt_disconnects_leave_no_ghosts() {
    let mut s = Script::with_defaults();
    let a = s.open();
    s.send(a, &add("alice"));
    let b = s.open();
    s.send(b, &add("bob"));
    s.disconnect(a);
    s.note("a late event for the closed connection is ignored");
    s.disconnect(a);
    s.send(b, &request("GET", None, ""));
    let c = s.open();
    s.send(c, &add("alice"));
    assert_snapshot!(s.transcript);
}

#[test]
fn s7_pipelined_requests_are_answered_in_order() {
    let mut s = Script::with_defaults();
    let a = s.open();
    let b = s.open();
    s.send(b, &add("bob"));
    let mut pipeline = add("alice");
    pipeline.extend(post("one"));
    pipeline.extend(request("GET", None, ""));
    pipeline.extend(post("two"));
    pipeline.extend(request("DELETE", None, ""));
    s.send(a, &pipeline);
    assert_snapshot!(s.transcript);
}

#[test]
fn s8_a_slow_reader_is_cut_and_nobody_waits() {
    let mut s = Script::new(ServerConfig {
        max_output_bytes: 900,
        ..ServerConfig::default()
    });
    let slow = s.open();
    s.send(slow, &add("slow"));
    let fast = s.open();
    s.send(fast, &add("fast"));
    s.note("the fast reader reports everything drained; the slow one never does");
    let queued = s.server.queued_bytes(fast).expect("open");
    s.drained(fast, queued);
    for text in ["one", "two", "three"] {
        s.send(fast, &post(text));
        let queued = s.server.queued_bytes(fast).expect("open");
        s.drained(fast, queued);
    }
    s.send(fast, &request("GET", None, ""));
    assert_snapshot!(s.transcript);
}

#[test]
fn s8_one_response_larger_than_the_limit_goes_to_an_empty_queue() {
    let mut s = Script::new(ServerConfig {
        max_output_bytes: 100,
        ..ServerConfig::default()
    });
    let a = s.open();
    let queued = s.server.queued_bytes(a).expect("open");
    s.drained(a, queued);
    s.send(a, &add("alice"));
    s.note("the queue holds the welcome now; alice, the whole room, has just drained and holds it (S8.1)");
    s.advance(pace::DRAIN_WINDOW.as_millis() as u64);
    s.note("she drained nothing for the drain window: the room goes on, and the next frame cuts");
    s.send(a, &request("GET", None, ""));
    assert_snapshot!(s.transcript);
}

#[test]
fn s9_idle_guests_are_closed_members_are_not() {
    let mut s = Script::new(ServerConfig {
        idle_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    });
    let guest = s.open();
    let member = s.open();
    s.send(member, &add("lurker"));
    s.advance(5_000);
    s.note("blank lines are not activity (W7)");
    s.send(guest, b"\r\n\n");
    s.advance(5_000);
    s.advance(3_600_000);
    s.send(member, &request("GET", None, ""));
    assert_snapshot!(s.transcript);
}

#[test]
fn s9_a_request_that_does_not_complete_gets_408() {
    let mut s = Script::new(ServerConfig {
        request_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    });
    let a = s.open();
    s.send(a, &add("alice"));
    let b = s.open();
    s.send(b, &add("bob"));
    s.send(a, b"POST / HTTP/1.1\nContent_Length: 100\n\nslow");
    s.advance(1_000);
    s.send(a, b"loris");
    s.advance(1_000);
    assert_snapshot!(s.transcript);
}

#[test]
fn s10_connections_past_the_limit_get_503() {
    let mut s = Script::new(ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    });
    let a = s.open();
    s.send(a, &add("alice"));
    let _b = s.open();
    let _c = s.open();
    s.disconnect(a);
    let d = s.open();
    s.send(d, &add("dave"));
    assert_snapshot!(s.transcript);
}

#[test]
fn s13_a_closing_connection_counts_against_the_limit_until_released() {
    let mut s = Script::new(ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    });
    s.hold_releases = true;
    let a = s.open();
    s.send(a, &add("alice"));
    let b = s.open();
    s.send(b, &add("bob"));
    s.send(b, &support::request("DELETE", None, ""));
    s.note("bob's socket still lingers: carol is turned away");
    let c = s.open();
    s.release(b);
    s.release(c);
    s.note("both released: dave gets in");
    let d = s.open();
    s.send(d, &add("dave"));
    assert_snapshot!(s.transcript);
    assert_eq!(s.server.closing_count(), 0);
    s.server.check_invariants().expect("consistent");
}

#[test]
fn s11_shutdown_notice_without_leave_notices() {
    let mut s = Script::with_defaults();
    let a = s.open();
    s.send(a, &add("alice"));
    let _guest = s.open();
    s.shutdown();
    let _late = s.open();
    assert_snapshot!(s.transcript);
}

#[test]
fn w2_w3_w4_crlf_header_spelling_and_missing_length() {
    let mut s = Script::with_defaults();
    let a = s.open();
    s.send(a, b"ADD / HTTP/1.1\r\nuser-agent:   alice  \r\n\r\n");
    s.send(
        a,
        b"POST / HTTP/1.1\r\nCONTENT_length: 4\r\nX-Unknown: ignored\r\n\r\nhey\n",
    );
    s.send(
        a,
        b"POST / HTTP/1.1\nContent-Length: 4\ncontent_length: 4\n\nyes\n",
    );
    s.note("no Content_Length: an empty body, so an empty message");
    s.send(a, b"POST / HTTP/1.1\n\n");
    assert_snapshot!(s.transcript);
}

#[test]
fn w7_stream_split_anywhere_and_blank_lines_skipped() {
    let mut s = Script::with_defaults();
    let a = s.open();
    let mut stream = b"\n\r\n".to_vec();
    stream.extend(add("alice"));
    stream.extend(b"\r\n");
    stream.extend(post("split"));
    for chunk in stream.chunks(7) {
        s.send(a, chunk);
    }
    assert_snapshot!(s.transcript);
}

#[test]
fn w8_unframeable_requests_get_400_and_a_close() {
    let cases: &[(&str, &[u8])] = &[
        ("one word", b"GET\n\n"),
        ("two words", b"GET /\n\n"),
        ("four words", b"GET / HTTP/1.1 extra\n\n"),
        ("double space", b"GET  / HTTP/1.1\n\n"),
        ("tab", b"GET\t/ HTTP/1.1\n\n"),
        ("NUL", b"GET /\0 HTTP/1.1\n\n"),
        ("leading space", b" GET / HTTP/1.1\n\n"),
        ("no colon", b"GET / HTTP/1.1\nUser_Agent alice\n\n"),
        (
            "space before colon",
            b"GET / HTTP/1.1\nUser_Agent : alice\n\n",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\nUser_Agent: alice\n  continued\n\n",
        ),
        ("empty name", b"GET / HTTP/1.1\n: value\n\n"),
        (
            "signed length",
            b"POST / HTTP/1.1\nContent_Length: +5\n\nhello",
        ),
        (
            "hex length",
            b"POST / HTTP/1.1\nContent_Length: 0x5\n\nhello",
        ),
        (
            "huge length",
            b"POST / HTTP/1.1\nContent_Length: 99999999999999999999999\n\n",
        ),
        (
            "conflicting lengths",
            b"POST / HTTP/1.1\nContent_Length: 5\nContent-Length: 6\n\nhello!",
        ),
        (
            "body too large",
            b"POST / HTTP/1.1\nContent_Length: 65537\n\n",
        ),
        ("lone CR before the start line", b"\rGET / HTTP/1.1\n\n"),
    ];
    let mut s = Script::with_defaults();
    for (label, bytes) in cases {
        s.note(label);
        let c = s.open();
        s.send(c, bytes);
    }
    assert_snapshot!(s.transcript);
}

#[test]
fn w5_head_and_header_count_limits() {
    let mut s = Script::with_defaults();
    let a = s.open();
    let mut big = b"GET / HTTP/1.1\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    s.send_quietly(a, &big, "a 9000-byte header line");
    let b = s.open();
    let mut many = b"GET / HTTP/1.1\n".to_vec();
    for i in 0..65 {
        many.extend(format!("X-{i}: y\n").as_bytes());
    }
    many.push(b'\n');
    s.send_quietly(b, &many, "65 header lines");
    let c = s.open();
    let mut exactly = b"GET / HTTP/1.1\n".to_vec();
    for i in 0..64 {
        exactly.extend(format!("X-{i}: y\n").as_bytes());
    }
    exactly.push(b'\n');
    s.send_quietly(c, &exactly, "64 header lines");
    s.note("a fresh client is still served");
    let d = s.open();
    s.send(d, &add("after"));
    assert_snapshot!(s.transcript);
}

#[test]
fn w8_requests_that_frame_but_make_no_sense_keep_the_connection() {
    let mut s = Script::with_defaults();
    let a = s.open();
    s.send(a, b"PATCH / HTTP/1.1\n\n");
    s.send(a, b"add / HTTP/1.1\n\n");
    s.send(a, b"GET / HTTP/1.0\n\n");
    s.send(a, b"ADD / HTTP/1.1\nUser_Agent: alice\nUser_Agent: bob\n\n");
    s.send(
        a,
        b"ADD / HTTP/1.1\nUser_Agent: alice\nUser-Agent: alice\n\n",
    );
    assert_snapshot!(s.transcript);
}

/// When every member stops reading and one leaves, the leave notices cascade: each fills
/// the others' queues until they are cut in turn. Every notice must go only to members
/// still open, and the cascade must end with an empty room, one leave per member.
#[test]
fn s6_s8_a_mass_cut_cascades_cleanly() {
    use chathttp_core::server::CHANGES_PER_CALL;
    use chathttp_core::{Disconnect, Output, Server, Timestamp};
    let limit = 80_000;
    let config = ServerConfig {
        max_output_bytes: limit,
        // S8 on its own: the talker sends far faster than flood control allows.
        flood: chathttp_core::limits::FloodLimits::OFF,
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, Timestamp::from_millis(0));
    let now = Timestamp::from_millis(0);
    let members: Vec<_> = (0..300)
        .map(|i| {
            let conn = server.handle_open(now);
            server.handle_received(now, conn, &add(&format!("m{i}")));
            conn
        })
        .collect();
    let mut open: std::collections::HashSet<_> = members.iter().copied().collect();
    let drain = |server: &mut Server, open: &mut std::collections::HashSet<_>| {
        while let Some(output) = server.poll_output() {
            if let Output::Close { conn, .. } = output {
                open.remove(&conn);
            }
        }
    };
    drain(&mut server, &mut open);
    assert_eq!(open.len(), 300, "everyone joined");
    for &conn in &members {
        let queued = server.queued_bytes(conn).expect("open");
        server.handle_drained(now, conn, queued);
    }
    // Past the drain window: a crowd that stopped reading no longer holds the room (S8.1).
    let now = now.saturating_add(chathttp_core::server::pace::DRAIN_WINDOW);
    // Then everybody stops reading, and m0 talks until no queue has room for a leave notice
    // (about 205 bytes; a chat line here is about 187).
    while server.queued_bytes(members[1]).expect("open") + 200 < limit {
        server.handle_received(now, members[0], &post("filling"));
        drain(&mut server, &mut open);
    }
    assert_eq!(open.len(), 300, "nobody cut yet");
    server.handle_closed(now, members[299], Disconnect::Eof);
    open.remove(&members[299]);
    let (mut leaves, mut deliveries, mut slices) = (0, 0, 0);
    loop {
        let mut slice = 0;
        while let Some(output) = server.poll_output() {
            match output {
                Output::Broadcast { to, .. } => {
                    deliveries += to.len();
                    assert!(
                        to.iter().all(|c| open.contains(c)),
                        "a notice went to a closed connection"
                    );
                }
                Output::Close { conn, .. } => {
                    open.remove(&conn);
                }
                Output::Event(chathttp_core::Event::Left { .. }) => slice += 1,
                _ => {}
            }
            server.check_invariants().expect("consistent mid-cascade");
        }
        assert!(slice <= CHANGES_PER_CALL, "one call applied {slice} leaves");
        leaves += slice;
        slices += 1;
        // Leaves still waiting make a deadline due now: the host calls back, as for timeouts.
        if server.poll_timeout().is_none_or(|due| due > now) {
            break;
        }
        server.handle_timeout(now);
    }
    assert!(slices > 300 / CHANGES_PER_CALL, "{slices} slices");
    server
        .check_invariants()
        .expect("consistent after the cascade");
    // The first notice cut everyone it reached; each cut member's leave then went to nobody.
    assert_eq!(
        leaves, 300,
        "one leave per member, the one who hung up included"
    );
    assert_eq!(
        deliveries, 0,
        "notices went only to open members: none were left"
    );
    assert!(server.room().is_empty() && open.is_empty());
}

#[test]
fn s9_a_wave_of_timeouts_is_cut_in_slices_and_in_full() {
    use chathttp_core::server::EXPIRIES_PER_CALL;
    use chathttp_core::{Output, Server, Timestamp};
    let config = ServerConfig {
        request_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let start = Timestamp::from_millis(0);
    let mut server = Server::new(config, start);
    let lorises = 3 * EXPIRIES_PER_CALL + 5;
    for _ in 0..lorises {
        let conn = server.handle_open(start);
        server.handle_received(start, conn, b"POST / HTTP/1.1\nUser_Ag");
    }
    while server.poll_output().is_some() {}
    let due = server.poll_timeout().expect("every loris has a deadline");
    let late = Timestamp::from_millis(60_000);
    assert!(due <= late);

    let mut slices = Vec::new();
    while server
        .poll_timeout()
        .is_some_and(|deadline| deadline <= late)
    {
        server.handle_timeout(late);
        let (mut timeouts, mut closes) = (0, 0);
        while let Some(output) = server.poll_output() {
            match output {
                Output::Send { frame, .. } => {
                    assert!(frame.starts_with(b"HTTP/1.1 408 "), "{frame:?}");
                    timeouts += 1;
                }
                Output::Close { .. } => closes += 1,
                _ => {}
            }
        }
        assert_eq!(timeouts, closes, "each 408 is followed by its close");
        slices.push(timeouts);
        server
            .check_invariants()
            .expect("consistent between slices");
        assert!(slices.len() <= lorises, "handle_timeout makes progress");
    }
    assert_eq!(slices.iter().sum::<usize>(), lorises, "every loris is cut");
    assert!(slices.iter().all(|&n| n <= EXPIRIES_PER_CALL));
    assert_eq!(slices.len(), 4, "{slices:?}");
    assert_eq!(server.poll_timeout(), None);
}

/// A broadcast that cuts a crowd of slow readers leaves more leaves to apply than one call
/// applies (S8). The requests that arrive meanwhile wait their turn in the room's order: a
/// member's message comes after every leave sequenced before it, and its `GET`, held behind
/// that message, lists the room as it is then (S7).
#[test]
fn s7_s8_requests_during_a_wave_of_leaves_wait_their_turn() {
    use chathttp_core::server::CHANGES_PER_CALL;
    use chathttp_core::{Output, Server, Timestamp};
    let config = ServerConfig {
        max_output_bytes: 40_000,
        // S8 on its own: the talker sends far faster than flood control allows.
        flood: chathttp_core::limits::FloodLimits::OFF,
        ..ServerConfig::default()
    };
    let now = Timestamp::from_millis(0);
    let mut server = Server::new(config, now);
    let crowd = 3 * CHANGES_PER_CALL;
    let members: Vec<_> = (0..crowd + 2)
        .map(|i| {
            let conn = server.handle_open(now);
            server.handle_received(now, conn, &add(&format!("m{i}")));
            conn
        })
        .collect();
    while server.poll_output().is_some() {}
    for &conn in &members {
        let queued = server.queued_bytes(conn).expect("everyone joined");
        server.handle_drained(now, conn, queued);
    }
    // Past the drain window: a crowd that stopped reading no longer holds the room (S8.1).
    let now = now.saturating_add(chathttp_core::server::pace::DRAIN_WINDOW);
    let (speaker, reader) = (members[0], members[1]);
    let (mut cut, mut left_at_once) = (0, 0);
    while cut == 0 {
        // The speaker and the reader keep up; the crowd never reads.
        for conn in [speaker, reader] {
            let queued = server.queued_bytes(conn).expect("open");
            server.handle_drained(now, conn, queued);
        }
        server.handle_received(now, speaker, &post("filling"));
        while let Some(output) = server.poll_output() {
            match output {
                Output::Close { .. } => cut += 1,
                Output::Event(chathttp_core::Event::Left { .. }) => left_at_once += 1,
                _ => {}
            }
        }
    }
    assert!(left_at_once <= CHANGES_PER_CALL);
    assert_eq!(cut, crowd, "one broadcast cut the whole crowd");
    assert!(
        server.poll_timeout().is_some_and(|due| due <= now),
        "leaves wait: the host is asked to call back now"
    );
    let mut pipeline = post("last");
    pipeline.extend(request("GET", None, ""));
    server.handle_received(now, reader, &pipeline);
    let mut seen = Vec::new();
    loop {
        // They keep up: a room where everyone who reads is behind would be paced (S8.1).
        for conn in [speaker, reader] {
            let queued = server.queued_bytes(conn).expect("open");
            server.handle_drained(now, conn, queued);
        }
        while let Some(output) = server.poll_output() {
            let frame = match output {
                Output::Send { conn, frame } if conn == reader => frame,
                Output::Broadcast { to, frame } if to.contains(&reader) => frame,
                _ => continue,
            };
            seen.push(render_frame(&frame));
        }
        if server.poll_timeout().is_none_or(|due| due > now) {
            break;
        }
        server.handle_timeout(now);
    }
    let leaves = seen.iter().filter(|t| t.contains("has just left")).count();
    assert_eq!(left_at_once + leaves, crowd, "{seen:#?}");
    let tail: Vec<&str> = seen[seen.len() - 2..].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "200 OK \"[ m1 ] : last\\n\"",
            "200 OK \"Online users:\\nm0\\nm1\\n\""
        ],
        "the message after every leave, the list after the message"
    );
    server.check_invariants().expect("consistent");
}

#[test]
fn s12_a_flooder_gets_429_with_the_retry_time_and_is_kicked_at_the_kth() {
    let mut s = Script::new(ServerConfig {
        server_header: "chathttp-test".into(),
        flood: chathttp_core::limits::FloodLimits {
            interval: Some(Duration::from_millis(200)),
            burst: 3,
            kick: 3,
        },
        ..ServerConfig::default()
    });
    let a = s.open();
    s.send(a, &add("alice"));
    let f = s.open();
    s.send(f, &add("flood"));
    s.note("the join took one of three tokens: two posts go out, the third is refused");
    for text in ["one", "two", "three"] {
        s.send(f, &post(text));
    }
    s.note("an empty POST is a 400: refused as usual, and it costs no token");
    s.send(f, &post(""));
    s.advance(200);
    s.note("a token came back after one interval");
    s.send(f, &post("four"));
    s.note("the second 429 within a minute, then the third: a kick, and a leave as in S6");
    s.send(f, &post("five"));
    s.send(f, &post("six"));
    assert_snapshot!(s.transcript);
}

/// Two members who have just drained everything, and a room of `max_output_bytes: 1000`,
/// whose soft mark (250 bytes) one long chat line passes (S8.1).
fn two_members_reading() -> (
    chathttp_core::Server,
    chathttp_core::ConnId,
    chathttp_core::ConnId,
) {
    use chathttp_core::{Server, Timestamp};
    let config = ServerConfig {
        max_output_bytes: 1000,
        max_connections: 2,
        ..ServerConfig::default()
    };
    let now = Timestamp::from_millis(0);
    let mut server = Server::new(config, now);
    let (a, b) = (server.handle_open(now), server.handle_open(now));
    server.handle_received(now, a, &add("alice"));
    server.handle_received(now, b, &add("bob"));
    while server.poll_output().is_some() {}
    for conn in [a, b] {
        let queued = server.queued_bytes(conn).expect("open");
        server.handle_drained(now, conn, queued);
    }
    while server.poll_output().is_some() {}
    (server, a, b)
}

/// What `server` sent `to` (bodies), and whether it asked the host to pause or resume.
fn bodies_and_pacing(
    server: &mut chathttp_core::Server,
    to: chathttp_core::ConnId,
) -> (Vec<String>, Vec<&'static str>) {
    use chathttp_core::Output;
    let (mut bodies, mut pacing) = (Vec::new(), Vec::new());
    while let Some(output) = server.poll_output() {
        match output {
            Output::Send { conn, frame } if conn == to => bodies.push(render_frame(&frame)),
            Output::Broadcast { to: all, frame } if all.contains(&to) => {
                bodies.push(render_frame(&frame))
            }
            Output::PauseReading => pacing.push("pause"),
            Output::ResumeReading => pacing.push("resume"),
            _ => {}
        }
    }
    (bodies, pacing)
}

#[test]
fn s8_1_what_a_peer_sent_before_it_closed_is_carried_out_though_the_room_is_paced() {
    use chathttp_core::{Disconnect, Timestamp};
    let (mut server, alice, bob) = two_members_reading();
    let now = Timestamp::from_millis(10);
    let long = "x".repeat(300);
    let mut chunk = post(&long);
    chunk.extend(post("second"));
    server.handle_received(now, alice, &chunk);
    let (bodies, pacing) = bodies_and_pacing(&mut server, bob);
    assert_eq!(pacing, ["pause"], "both are behind the mark and reading");
    assert_eq!(bodies.len(), 1, "the second line waits: {bodies:?}");
    assert_eq!(server.deferred_bytes(alice), Some(post("second").len()));
    server.handle_closed(now, alice, Disconnect::Eof);
    let (bodies, _) = bodies_and_pacing(&mut server, bob);
    assert_eq!(
        bodies,
        [
            "200 OK \"[ alice ] : second\\n\"",
            "200 OK \"alice has just left the chat room...\\n\""
        ],
        "her last line, then her leave"
    );
    server.check_invariants().expect("consistent");
}

#[test]
fn s8_1_a_connection_turned_away_during_a_pause_still_lets_the_room_resume() {
    use chathttp_core::Timestamp;
    let (mut server, alice, bob) = two_members_reading();
    let now = Timestamp::from_millis(10);
    server.handle_received(now, alice, &post(&"x".repeat(300)));
    let (_, pacing) = bodies_and_pacing(&mut server, bob);
    assert_eq!(pacing, ["pause"]);
    // Nobody drains any more: a drain window later nobody holds the room. The first input
    // then is a connection past the limit.
    let later = now.saturating_add(pace::DRAIN_WINDOW);
    let _turned_away = server.handle_open(later);
    let (_, pacing) = bodies_and_pacing(&mut server, bob);
    assert_eq!(pacing, ["resume"]);
    assert!(!server.is_paced());
    server.check_invariants().expect("consistent");
}

/// A room of `limit` bytes of output per connection keeping 10 lines (E1), where alice has
/// said `lines` lines of about 500 bytes, each read at once: more than a joiner can take in
/// one go.
fn room_with_long_lines(
    limit: usize,
    lines: usize,
    label: &str,
) -> (Script, chathttp_core::ConnId) {
    let mut s = Script::new(ServerConfig {
        server_header: "chathttp-test".into(),
        max_output_bytes: limit,
        history: HistoryConfig::in_memory(10, Epoch::new("e1").expect("a valid epoch")),
        ..ServerConfig::default()
    });
    let alice = s.open();
    s.send(alice, &add("alice"));
    say_long_lines(&mut s, alice, limit, 1..=lines, label, 'x');
    (s, alice)
}

/// `speaker` says a line of about 500 bytes for each of `numbers`, each read at once.
fn say_long_lines(
    s: &mut Script,
    speaker: chathttp_core::ConnId,
    limit: usize,
    numbers: std::ops::RangeInclusive<usize>,
    label: &str,
    fill: char,
) {
    for n in numbers {
        let text = format!("{label} {n} {}", fill.to_string().repeat(300));
        s.send_quietly(speaker, &post(&text), "a line");
        s.drained(speaker, limit);
    }
}

/// A room keeping `lines` chat lines under epoch `e1` (E1).
fn with_history(lines: usize) -> Script {
    Script::new(ServerConfig {
        server_header: "chathttp-test".into(),
        history: HistoryConfig::in_memory(lines, Epoch::new("e1").expect("a valid epoch")),
        ..ServerConfig::default()
    })
}

#[test]
fn e2_e3_a_count_replays_the_last_lines_then_the_marker_and_ids_only_for_who_asked() {
    let mut s = with_history(3);
    let alice = s.open();
    s.send(alice, &add("alice"));
    for n in 1..=4 {
        s.send_quietly(alice, &post(&format!("line {n}")), "a line");
    }
    s.note("the room keeps 3 lines: bob asks for 2 and gets lines 3 and 4, with their ids");
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "2"));
    s.note("a live line: bob's copy carries its id, alice's has the seven headers only");
    s.send(alice, &post("line 5"));
    s.note("asking for more than is kept replays what is kept; 0 replays nothing");
    let carol = s.open();
    s.send(carol, &add_with_history("carol", "50"));
    let dave = s.open();
    s.send(dave, &add_with_history("dave", "0"));
    s.note("without History a joiner is not history-aware");
    let erin = s.open();
    s.send(erin, &add("erin"));
    s.send(bob, &post("hi"));
    s.note("a History header that is neither a count nor after ID, or two that disagree: 400");
    let frank = s.open();
    s.send(frank, &add_with_history("frank", "ten"));
    s.send(
        frank,
        b"ADD / HTTP/1.1\nUser_Agent: frank\nHistory: 1\nHistory: 2\n\n",
    );
    assert_snapshot!(s.transcript);
}

#[test]
fn e2_e3_after_an_id_resumes_without_a_gap_or_says_what_was_missed() {
    let mut s = with_history(3);
    let alice = s.open();
    s.send(alice, &add("alice"));
    for n in 1..=5 {
        s.send_quietly(alice, &post(&format!("line {n}")), "a line");
    }
    s.note("lines 3 to 5 are kept; after e1.3 there is nothing missing");
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "after e1.3"));
    s.disconnect(bob);
    s.note("after e1.2: line 3 is the oldest kept, so nothing is missing either");
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "after e1.2"));
    s.disconnect(bob);
    s.note("after e1.1: line 2 is gone; every kept line, and the marker says so");
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "after e1.1"));
    s.disconnect(bob);
    s.note("an id of another epoch (a restarted room): every kept line, and missed");
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "after e0.5"));
    s.note("the newest id: nothing to replay");
    let carol = s.open();
    s.send(carol, &add_with_history("carol", "after e1.5"));
    assert_snapshot!(s.transcript);
}

#[test]
fn e3_a_long_replay_is_fed_as_the_joiner_drains_and_what_happens_meanwhile_waits_behind_the_marker()
{
    let limit = 4_000;
    let (mut s, alice) = room_with_long_lines(limit, 10, "line");
    s.note(&format!(
        "ten lines of about 500 bytes are more than the joiner's limit of {limit}: the replay \
         goes out while what bob has not read stays under half the soft mark ({} bytes)",
        limit / 8
    ));
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "10"));
    s.note("meanwhile alice speaks, carol joins, bob asks who is in: none of it reaches bob yet");
    s.send(alice, &post("live while bob catches up"));
    s.drained(alice, limit);
    let carol = s.open();
    s.send(carol, &add("carol"));
    s.send(bob, &request("GET", None, ""));
    s.note("bob reads: the next lines; at the end, the marker, then what waited, in order");
    for _ in 0..8 {
        s.drained(bob, 1_200);
    }
    assert!(
        s.server.is_open(bob),
        "bob was never cut for his own replay"
    );
    assert!(!s.server.is_replaying(bob));
    s.server.check_invariants().expect("consistent");
    assert_snapshot!(s.transcript);
}

#[test]
fn e1_with_history_off_the_header_is_ignored_as_by_a_revision_1_server() {
    let mut s = with_history(0);
    let alice = s.open();
    s.send(alice, &add("alice"));
    s.send(alice, &post("before"));
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "not even valid"));
    s.send(alice, &post("after"));
    assert_snapshot!(s.transcript);
}

/// A room whose lines the host must record before anyone receives them (E4).
fn recorded_history(lines: usize) -> Script {
    Script::new(ServerConfig {
        server_header: "chathttp-test".into(),
        history: HistoryConfig {
            recorded: true,
            ..HistoryConfig::in_memory(lines, Epoch::new("e1").expect("a valid epoch"))
        },
        ..ServerConfig::default()
    })
}

#[test]
fn e4_a_line_reaches_nobody_before_the_host_has_recorded_it_and_what_follows_waits_behind_it() {
    let mut s = recorded_history(10);
    let alice = s.open();
    s.send(alice, &add("alice"));
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "5"));
    s.note(
        "two lines in one batch, then carol joins: nothing goes out until the host has recorded",
    );
    s.send(alice, &post("one"));
    s.send(alice, &post("two"));
    let carol = s.open();
    s.send(carol, &add("carol"));
    s.note("the host recorded line 1 only: line 1 goes out, the rest waits for line 2");
    s.recorded(1);
    s.recorded(2);
    s.note("a GET that follows no unrecorded line is answered at once");
    s.send(bob, &request("GET", None, ""));
    assert_snapshot!(s.transcript);
}

#[test]
fn e4_a_failing_record_turns_history_off_and_chat_goes_on() {
    let mut s = recorded_history(10);
    let alice = s.open();
    s.send(alice, &add_with_history("alice", "0"));
    s.send(alice, &post("one"));
    s.record_failed("disk I/O error");
    s.note("lines go out unrecorded, without ids; History is ignored as with --history 0");
    s.send(alice, &post("two"));
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "5"));
    assert_snapshot!(s.transcript);
}

#[test]
fn e4_a_record_that_never_comes_back_times_out_instead_of_holding_the_room() {
    let mut s = recorded_history(10);
    let alice = s.open();
    s.send(alice, &add("alice"));
    s.send(alice, &post("one"));
    s.advance(1_999);
    s.note("still waiting at 1.999 s; at 2 s the room gives up on recording");
    s.advance(1);
    s.send(alice, &post("two"));
    assert_snapshot!(s.transcript);
}

#[test]
fn e4_a_restored_history_continues_its_numbering_and_replays_what_was_kept() {
    let mut s = recorded_history(3);
    let name = chathttp_core::UserName::parse("alice").expect("a valid name");
    let lines = (6..=8).map(|seq| chathttp_core::server::history::Line {
        seq,
        at: chathttp_core::Timestamp::from_millis(seq * 1000),
        name: name.as_str().into(),
        text: format!("said before the restart, {seq}").into(),
    });
    s.server.restore_history(9, lines);
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "after e1.6"));
    s.send(bob, &post("the next line is 10"));
    s.recorded(10);
    assert_snapshot!(s.transcript);
}

#[test]
fn e3_a_member_that_leaves_during_its_replay_still_gets_its_goodbye() {
    let (mut s, _alice) = room_with_long_lines(4_000, 6, "line");
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "10"));
    s.note("bob leaves before reading his replay: the rest of it is dropped, the goodbye is not");
    s.send(bob, &request("DELETE", None, ""));
    assert_snapshot!(s.transcript);
}

#[test]
fn e3_a_replay_that_the_room_outruns_stops_early_and_says_so_instead_of_cutting_the_joiner() {
    let limit = 4_000;
    let (mut s, alice) = room_with_long_lines(limit, 8, "old");
    let bob = s.open();
    s.send(bob, &add_with_history("bob", "10"));
    s.note("the room goes on faster than bob reads: live lines wait behind his replay");
    say_long_lines(&mut s, alice, limit, 1..=6, "new", 'y');
    s.note("bob reads a little: the next replayed line would pass his limit, so the replay ends");
    s.drained(bob, 450);
    assert!(s.server.is_open(bob), "bob is not cut for his own replay");
    assert!(!s.server.is_replaying(bob), "the replay ended early");
    s.server.check_invariants().expect("consistent");
    assert_snapshot!(s.transcript);
}

#[test]
fn e4_a_slow_recorder_pauses_reading_instead_of_letting_members_fall_behind() {
    let limit = 4_000;
    let mut s = Script::new(ServerConfig {
        server_header: "chathttp-test".into(),
        max_output_bytes: limit,
        history: HistoryConfig {
            recorded: true,
            ..HistoryConfig::in_memory(10, Epoch::new("e1").expect("a valid epoch"))
        },
        ..ServerConfig::default()
    });
    let alice = s.open();
    s.send(alice, &add("alice"));
    let bob = s.open();
    s.send(bob, &add("bob"));
    s.note("the disk is slow: what waits for it reaches the soft mark (1000 bytes), and reading pauses");
    for n in 1..=5 {
        s.send_quietly(
            alice,
            &post(&format!("line {n} {}", "x".repeat(100))),
            "a line",
        );
    }
    assert!(s.server.is_paced());
    s.note(
        "once the recorder catches up, what waited goes out, reading resumes, line 5 is taken up",
    );
    s.recorded(4);
    assert!(!s.server.is_paced());
    s.recorded(5);
    s.server.check_invariants().expect("consistent");
    assert_snapshot!(s.transcript);
}
