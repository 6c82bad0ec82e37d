//! The room machine driven by an arbitrary sequence of inputs: opens, byte chunks, closes,
//! drains, clock ticks and a shutdown. After every input the machine's own invariants hold,
//! every broadcast goes only to open members, the host's count of unwritten bytes per
//! connection matches the machine's, and pauses and resumes of reading alternate.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use chathttp_core::server::history::{Epoch, HistoryConfig};
use chathttp_core::server::{Disconnect, Output, Server};
use chathttp_core::{ConnId, FrameLimits, ServerConfig, Timestamp};
use libfuzzer_sys::fuzz_target;

/// Requests the fuzzer can splice together, so it reaches joins and chat quickly.
const PIECES: &[&[u8]] = &[
    b"ADD / HTTP/1.1\nUser_Agent: alice\n\n",
    b"ADD / HTTP/1.1\nUser_Agent: ALICE\n\n",
    b"ADD / HTTP/1.1\nUser_Agent: bob\n\n",
    b"ADD / HTTP/1.1\nUser_Agent: carol\nHistory: 5\n\n",
    b"ADD / HTTP/1.1\nUser_Agent: dave\nHistory: after f.2\n\n",
    b"POST / HTTP/1.1\nContent_Length: 3\n\nhi\n",
    b"GET / HTTP/1.1\n\n",
    b"DELETE / HTTP/1.1\n\n",
    b"POST / HTTP/1.1\nContent_Length: 40\n\n",
];

fuzz_target!(|data: &[u8]| {
    let config = ServerConfig {
        frame: FrameLimits {
            max_head_bytes: 128,
            max_header_lines: 4,
            max_body_bytes: 64,
        },
        max_connections: 6,
        max_output_bytes: 1024,
        idle_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(3),
        history: HistoryConfig {
            // Half the inputs run a room whose lines the host records first (E4).
            recorded: data.len() % 2 == 1,
            ..HistoryConfig::in_memory(4, Epoch::new("f").expect("a valid epoch"))
        },
        ..ServerConfig::default()
    };
    // Lines handed out to record and not yet reported recorded (E4).
    let mut to_record: Vec<u64> = Vec::new();
    let mut now_ms = 0u64;
    let mut server = Server::new(config, Timestamp::from_millis(0));
    let mut conns: Vec<ConnId> = Vec::new();
    let mut unwritten: HashMap<ConnId, usize> = HashMap::new();
    // Closed connections whose sockets the host has not released yet (S13).
    let mut closing: Vec<ConnId> = Vec::new();
    // Whether the machine asked the host to stop reading (S8.1). This host reads on
    // regardless, so the machine's setting aside of input is exercised too.
    let mut paused = false;
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let now = Timestamp::from_millis(now_ms);
        let pick = |conns: &[ConnId]| conns.get(usize::from(arg) % conns.len().max(1)).copied();
        match op % 8 {
            0 => conns.push(server.handle_open(now)),
            1 => {
                if let Some(conn) = pick(&conns) {
                    server.handle_received(now, conn, PIECES[usize::from(arg >> 4) % PIECES.len()]);
                }
            }
            2 => {
                if let Some(conn) = pick(&conns) {
                    let len = usize::from(arg >> 3);
                    let chunk: Vec<u8> = bytes.by_ref().take(len).collect();
                    server.handle_received(now, conn, &chunk);
                }
            }
            3 => {
                if let Some(conn) = pick(&conns) {
                    server.handle_closed(now, conn, Disconnect::Eof);
                    unwritten.remove(&conn);
                    closing.push(conn);
                }
            }
            4 => {
                if let Some(conn) = pick(&conns) {
                    let pending = unwritten.entry(conn).or_default();
                    let count = (*pending).min(usize::from(arg) * 8);
                    *pending -= count;
                    server.handle_drained(now, conn, count);
                }
            }
            5 => {
                now_ms += u64::from(arg) * 50;
                server.handle_timeout(Timestamp::from_millis(now_ms));
            }
            6 => match arg {
                0xff => server.handle_shutdown(now),
                0xfe => server.handle_record_failed(now, "the disk is gone".into()),
                // The recorder commits some of what has queued.
                arg if arg & 0x80 != 0 && !to_record.is_empty() => {
                    let upto = usize::from(arg & 0x7f) % to_record.len();
                    let seq = to_record.drain(..=upto).next_back().unwrap_or(0);
                    server.handle_recorded(now, seq);
                }
                _ => {}
            },
            _ => {
                // Mostly a closed connection's socket going away; sometimes a stray release
                // of an open one, which the machine must ignore.
                let list = if closing.is_empty() || arg & 1 == 1 { &conns } else { &closing };
                if let Some(conn) = pick(list) {
                    server.handle_released(conn);
                    closing.retain(|&c| c != conn);
                }
            }
        }
        // As a host does: carry out the outputs, and call back while something is due now
        // (a slice of timeouts or of the room's log).
        loop {
            while let Some(output) = server.poll_output() {
                match output {
                    Output::Send { conn, frame } => {
                        *unwritten.entry(conn).or_default() += frame.len();
                    }
                    Output::Broadcast { to, frame } => {
                        for conn in to.iter() {
                            *unwritten.entry(*conn).or_default() += frame.len();
                        }
                    }
                    Output::Close { conn, .. } => {
                        unwritten.remove(&conn);
                        closing.push(conn);
                    }
                    Output::PauseReading => {
                        assert!(!paused, "paused twice");
                        paused = true;
                    }
                    Output::ResumeReading => {
                        assert!(paused, "resumed while reading");
                        paused = false;
                    }
                    Output::Record(line) => to_record.push(line.seq),
                    Output::StopRecording => to_record.clear(),
                    Output::Event(_) => {}
                }
            }
            let now = Timestamp::from_millis(now_ms);
            match server.poll_timeout() {
                Some(due) if due <= now => server.handle_timeout(now),
                _ => break,
            }
        }
        if let Err(broken) = server.check_invariants() {
            panic!("invariant broken: {broken}");
        }
        for (conn, name) in server.room().members() {
            assert!(server.is_open(conn), "ghost member {name}");
        }
        for (&conn, &pending) in &unwritten {
            if let (Some(queued), Some(withheld)) =
                (server.queued_bytes(conn), server.withheld_bytes(conn))
            {
                // What the host holds, plus what the machine holds back (E3, E4).
                assert_eq!(queued, pending + withheld, "queued bytes drifted for {conn:?}");
            }
        }
    }
});
