//! A custom host for the room machine: one thread, one readiness loop, the `polling` crate.
//!
//! This is the template for embedding `chathttp-core` in an event loop you already have.
//! The whole contract is the run loop in [`main`]:
//!
//! 1. wait for readiness, but no longer than [`Server::poll_timeout`] allows;
//! 2. read the clock once and feed what happened (`handle_open`, `handle_received`,
//!    `handle_closed`, `handle_drained`, `handle_timeout`, and `handle_released` once a
//!    closed connection's socket is dropped), all with that timestamp;
//! 3. drain [`Server::poll_output`] until it returns `None`, queueing bytes per connection,
//!    closing what it says to close, and reading nothing new while it says the room is
//!    paced;
//! 4. write what sockets will take, and report it with `handle_drained`; then drain the
//!    outputs again, since a report of a write can resume a paced room.
//!
//! The machine never blocks and never reads a clock, so the host decides everything about
//! threads and time. Run with `cargo run -p chathttp-core --example embed_polling [ADDR]`
//! (default `127.0.0.1:9994`) and join with the seed's `ADD` request from `nc`.
//!
//! Kept short on purpose: no logging set-up, no signals, and the `Datetime` header in UTC
//! (the core takes no time-zone dependency; a real host passes local time, as H2 asks).
//! The project's server binaries are fuller hosts built the same way.
//!
//! `polling` 2 is used rather than 3 because 3's registration functions are `unsafe`, and
//! this workspace forbids unsafe code.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use chathttp_core::{CloseMode, ConnId, Disconnect, Output, Server, ServerConfig, Timestamp};
use polling::{Event, PollMode, Poller};

/// The listener's key; connections use their `ConnId` as a number (`usize::MAX` is
/// reserved by `polling`).
const LISTENER: usize = usize::MAX - 1;
/// After the last byte of a closing connection, how long to discard input before closing,
/// so the final response is not destroyed by a reset (W8).
const LINGER: Duration = Duration::from_secs(2);

/// One connection as this host keeps it.
struct Connection {
    stream: TcpStream,
    /// Bytes the machine asked us to send, not yet written. Bounded by the machine's
    /// `max_output_bytes` arithmetic, so no limit is needed here.
    queue: VecDeque<Bytes>,
    /// Set when the machine closed it, or the peer did: write the rest, then linger.
    closing: bool,
    /// The peer closed its side: stop watching for input (level-triggered EOF never ends).
    peer_closed: bool,
    /// Set once the rest is written: discard input until EOF or this instant, then close.
    linger_until: Option<Instant>,
}

/// Both clock readings, taken together, in one place.
fn now(origin: Instant) -> Timestamp {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let utc = chrono::DateTime::from_timestamp(wall.as_secs() as i64, wall.subsec_nanos())
        .unwrap_or_default()
        .naive_utc();
    Timestamp::new(origin.elapsed(), utc)
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9994".into());
    let listener = TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);

    let poller = Poller::new()?;
    poller.add_with_mode(&listener, Event::readable(LISTENER), PollMode::Level)?;
    let origin = Instant::now();
    let mut server = Server::new(ServerConfig::default(), now(origin));
    let mut connections: HashMap<ConnId, Connection> = HashMap::new();
    let mut keys: HashMap<usize, ConnId> = HashMap::new();
    let mut events = Vec::new();
    let mut buffer = vec![0; 4096];
    // While the room is paced (S8.1), read nothing but the closing connections.
    let mut paused = false;

    loop {
        // 1. Sleep until something is ready or the machine's (or a linger's) deadline.
        let t = now(origin);
        let machine_wait = server
            .poll_timeout()
            .map(|deadline| t.duration_until(deadline));
        let linger_wait = connections
            .values()
            .filter_map(|c| c.linger_until)
            .map(|until| until.saturating_duration_since(Instant::now()))
            .min();
        let wait = [machine_wait, linger_wait].into_iter().flatten().min();
        events.clear();
        poller.wait(&mut events, wait)?;

        // 2. Feed what happened, all at one timestamp.
        let t = now(origin);
        for event in &events {
            if event.key == LISTENER {
                while let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(true)?;
                    stream.set_nodelay(true)?;
                    let conn = server.handle_open(t);
                    let key = conn.as_u64() as usize;
                    poller.add_with_mode(&stream, Event::readable(key), PollMode::Level)?;
                    keys.insert(key, conn);
                    let connection = Connection {
                        stream,
                        queue: VecDeque::new(),
                        closing: false,
                        peer_closed: false,
                        linger_until: None,
                    };
                    connections.insert(conn, connection);
                }
                continue;
            }
            let Some(&conn) = keys.get(&event.key) else {
                continue;
            };
            let Some(connection) = connections.get_mut(&conn) else {
                continue;
            };
            if event.readable {
                loop {
                    match (&connection.stream).read(&mut buffer) {
                        Ok(0) => {
                            // Ignored by the machine if it already closed `conn`.
                            server.handle_closed(t, conn, Disconnect::Eof);
                            (connection.closing, connection.peer_closed) = (true, true);
                            if connection.linger_until.is_some() {
                                connection.linger_until = Some(Instant::now());
                            }
                            break;
                        }
                        Ok(_) if connection.closing => {} // forgotten by the machine: discard
                        Ok(n) => server.handle_received(t, conn, &buffer[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            server.handle_closed(t, conn, Disconnect::Error);
                            connection.queue.clear();
                            (connection.closing, connection.peer_closed) = (true, true);
                            break;
                        }
                    }
                }
            }
        }
        server.handle_timeout(t);
        let over: Vec<ConnId> = connections
            .iter()
            .filter(|(_, c)| c.linger_until.is_some_and(|until| until <= Instant::now()))
            .map(|(&conn, _)| conn)
            .collect();
        for conn in over {
            if let Some(c) = connections.remove(&conn) {
                poller.delete(&c.stream)?;
                keys.remove(&(conn.as_u64() as usize));
                // Only a connection whose writes failed is still open in the machine.
                server.handle_closed(t, conn, Disconnect::Error);
                // The socket is gone: its id and its place under the limit are free (S13).
                server.handle_released(conn);
            }
        }

        // 3. Carry out everything the machine asks for.
        carry_out(&mut server, &mut connections, &mut paused);

        // 4. Write what the sockets take (one vectored write each) and report it.
        for (&conn, c) in connections.iter_mut() {
            if !c.queue.is_empty() {
                let slices: Vec<IoSlice<'_>> = c.queue.iter().map(|b| IoSlice::new(b)).collect();
                match (&c.stream).write_vectored(&slices) {
                    Ok(mut written) => {
                        server.handle_drained(t, conn, written);
                        while written > 0 {
                            let Some(front) = c.queue.front_mut() else {
                                break;
                            };
                            let step = written.min(front.len());
                            front.advance(step);
                            written -= step;
                            if front.is_empty() {
                                c.queue.pop_front();
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        c.queue.clear();
                        (c.closing, c.peer_closed) = (true, true);
                    }
                }
            }
        }
        // Reports of writes can resume a paused room, or let it take up input it set aside:
        // carry that out before choosing what to wait for.
        carry_out(&mut server, &mut connections, &mut paused);

        // 5. Choose what to wait for.
        for (&conn, c) in connections.iter_mut() {
            if c.closing && c.queue.is_empty() && c.linger_until.is_none() {
                let _ = c.stream.shutdown(Shutdown::Write);
                let linger = if c.peer_closed {
                    Duration::ZERO
                } else {
                    LINGER
                };
                c.linger_until = Some(Instant::now() + linger);
            }
            // Level-triggered interest: readable until EOF unless paced, writable while
            // bytes wait.
            let key = conn.as_u64() as usize;
            let interest = Event {
                key,
                readable: !c.peer_closed && (!paused || c.closing),
                writable: !c.queue.is_empty(),
            };
            poller.modify_with_mode(&c.stream, interest, PollMode::Level)?;
        }
    }
}

/// Carries out the machine's outputs, in order: queue frames, mark closes, note whether the
/// room is paced (S8.1), print events.
fn carry_out(
    server: &mut Server,
    connections: &mut HashMap<ConnId, Connection>,
    paused: &mut bool,
) {
    while let Some(output) = server.poll_output() {
        match output {
            Output::Send { conn, frame } => {
                if let Some(c) = connections.get_mut(&conn) {
                    c.queue.push_back(frame.into_bytes());
                }
            }
            Output::Broadcast { to, frame } => {
                let bytes = frame.into_bytes();
                for conn in to.iter() {
                    if let Some(c) = connections.get_mut(conn) {
                        c.queue.push_back(bytes.clone());
                    }
                }
            }
            Output::Close { conn, mode } => {
                if let Some(c) = connections.get_mut(&conn) {
                    c.closing = true;
                    if mode == CloseMode::Now {
                        c.queue.clear();
                        c.linger_until = Some(Instant::now()); // no linger: cut
                    }
                }
            }
            Output::PauseReading => *paused = true,
            Output::ResumeReading => *paused = false,
            // Only with recorded history (E4), which this example does not turn on: a host
            // that does writes the line durably, then calls `handle_recorded`.
            Output::Record(_) | Output::StopRecording => {}
            Output::Event(event) => println!("{event:?}"),
        }
    }
}
