//! The server room machine.
//!
//! # Theory of operation
//!
//! A [`Server`] owns every connection's framing state and phase, the room's
//! applied [`Roster`], this node's [`Room`] and the [`log`] that changes them. The host
//! reports what happens on its sockets and clock through the `handle_*` methods, then drains
//! [`poll_output`](Server::poll_output) until it returns `None`, then asks
//! [`poll_timeout`](Server::poll_timeout) when to call
//! [`handle_timeout`](Server::handle_timeout) next. The machine never blocks, never reads a
//! clock and never touches a socket. Every decision is taken in a `handle_*` call; the
//! `poll_*` methods only hand out what was decided.
//!
//! For each complete request, `Server::command` decides, in one table, what it means in
//! the connection's phase (see [Phases](self#phases)). Changes to the room are validated
//! against the applied state, appended to the log as [`LogEntry`] values and applied in log
//! order by one `apply`, whether the log loops back inside this machine or is shared with
//! other nodes (see [`log`]); replies and broadcasts are emitted as entries are applied, so
//! every member sees one order (S7).
//!
//! Backpressure is arithmetic (S8): each connection's *queued* count grows by every frame
//! the machine emits for it and shrinks by what the host reports written with
//! [`handle_drained`](Server::handle_drained). A frame that would take a non-empty queue past
//! `max_output_bytes` closes the connection instead. When most members fall behind at once,
//! the server is the bottleneck, and the room is paced instead (S8.1, see [`pace`]): it
//! takes no new requests, and asks the host to stop reading, until they catch up.
//!
//! Work per call is bounded: [`handle_timeout`](Server::handle_timeout) cuts at most
//! [`EXPIRIES_PER_CALL`] connections, and a call applies at most [`CHANGES_PER_CALL`]
//! joins and leaves from the in-process log. When more is due, `poll_timeout` returns a
//! deadline at or before the current time, and the host calls `handle_timeout` again.
//!
//! A peer's mistakes never surface as `Err`: they become `4xx` frames, closes and
//! [`Event`]s.
//!
//! # Connection ids
//!
//! An id is held from [`handle_open`](Server::handle_open) until the host reports with
//! [`handle_released`](Server::handle_released) that the socket is gone, whether the machine
//! asked for the close ([`Output::Close`]) or the peer went away
//! ([`handle_closed`](Server::handle_closed)). In between the connection is *closing*: the
//! machine has forgotten it and ignores its events, but it still counts against
//! `max_connections`, since its socket still holds a descriptor and kernel buffers until the
//! host's linger ends (S13). An id is never handed out again while its socket may exist.
//!
//! # Phases
//!
//! A connection is a guest, then joining (its `ADD` is in the log), then a member; closing
//! it ends its phase, and a member's leave is appended. While a connection's entries are in
//! flight its later requests are held, so replies keep request order (S7).

pub mod flood;
pub mod history;
pub mod log;
pub mod pace;
mod phase;
pub mod room;

use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::FrameError;
use crate::ids::{ConnId, UserName};
use crate::limits::ServerConfig;
use crate::time::{Timestamp, datetime_text};
use crate::wire::encode::{ResponseFields, write_response_with_id};
use crate::wire::{Frame, Progress, RequestDecoder, Status};

use history::{History, Replay};
use log::Log;
use pace::{Marks, Pace, RESUMES_PER_CALL};
use phase::{Held, Phase};

pub use log::{
    AppendRefusal, CHANGES_PER_CALL, LogEntry, LogKind, MAX_ENTRIES_IN_FLIGHT, MAX_SAYS_IN_FLIGHT,
    MemberRef, RESYNC_NOTICE, Roster, SLOW,
};
pub use room::{ChatRecipients, LeaveCause, Room};

/// The body of the greeting (S1). Any short body is allowed; this one tells a person at a
/// `nc` prompt what to do next.
pub const GREETING: &str = "Welcome to ChatHTTP! Join with ADD.\n";
/// The body sent to every connection on shutdown (S11).
pub const SHUTDOWN_NOTICE: &str = "Server is shutting down...\n";

/// Something the host must do, or may log. Drain them in order with
/// [`Server::poll_output`]: the order of sends to one connection is the order on its wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Queue `frame` for `conn`.
    Send {
        /// The recipient.
        conn: ConnId,
        /// The bytes.
        frame: Frame,
    },
    /// Queue the same `frame` for every connection in `to`. Ids the host no longer knows
    /// (closed since) are skipped.
    Broadcast {
        /// The recipients, shared between broadcasts while membership does not change.
        to: Arc<[ConnId]>,
        /// The bytes, encoded once.
        frame: Frame,
    },
    /// Close `conn`. The machine has forgotten it: later events for it are ignored.
    Close {
        /// The connection.
        conn: ConnId,
        /// Whether to deliver what is queued first.
        mode: CloseMode,
    },
    /// Stop reading from every connection: the room is paced (S8.1, see [`pace`]). Bytes
    /// already read may still be handed in; the machine sets them aside, in order, so a host
    /// loses nothing by finishing the reads it has started, but should start no new ones.
    PauseReading,
    /// Read from every connection again.
    ResumeReading,
    /// Record this chat line durably (E4), then report it with
    /// [`Server::handle_recorded`]: until then nothing decided after it reaches anyone.
    /// Only with [`HistoryConfig::recorded`](history::HistoryConfig::recorded).
    Record(Arc<history::Line>),
    /// Recording has stopped for good (E4): history is off, and lines may have gone out
    /// unrecorded, so the host's store must not hand out this epoch's ids again (clear it).
    StopRecording,
    /// Something worth a log line; no action needed.
    Event(Event),
}

/// How to close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseMode {
    /// Write everything queued, then shut down the sending side and let the peer's unread
    /// input drain, so the last response is not lost to a reset (W8).
    AfterFlush,
    /// Drop what is queued and close now: the peer is not reading (S8).
    Now,
}

/// A fact for the host's log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A member joined.
    Joined {
        /// Its connection.
        conn: ConnId,
        /// Its name.
        name: UserName,
    },
    /// A member left.
    Left {
        /// Its connection.
        conn: ConnId,
        /// Its name.
        name: UserName,
        /// Why.
        cause: LeaveCause,
    },
    /// A request was refused with a `4xx`. If the connection is closed for it, a
    /// [`Event::Left`] or [`Event::GuestClosed`] follows.
    Refused {
        /// The connection.
        conn: ConnId,
        /// The status sent.
        status: Status,
        /// The one-line reason sent as the body.
        reason: String,
    },
    /// A connection that was not a member closed (timeout, capacity, peer gone).
    GuestClosed {
        /// The connection.
        conn: ConnId,
        /// Why.
        cause: LeaveCause,
    },
    /// A connection arrived past `max_connections` and was turned away (S10).
    OverCapacity {
        /// The connection.
        conn: ConnId,
    },
    /// A member of another node joined (shared-log mode).
    RemoteJoined {
        /// Who.
        member: MemberRef,
        /// Its name.
        name: UserName,
    },
    /// A member of another node left (shared-log mode).
    RemoteLeft {
        /// Who.
        member: MemberRef,
        /// Its name.
        name: UserName,
    },
    /// History is off from now on (E4): the host could not record a line, or took longer
    /// than [`RECORD_TIMEOUT`](history::RECORD_TIMEOUT). Chat goes on unrecorded.
    HistoryOff {
        /// Why.
        reason: String,
    },
}

/// Whether decoding stops when the room is paced (S8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pacing {
    Obeyed,
    /// The connection is going: what it sent is carried out regardless.
    Ignored,
}

/// How a connection ended, as the host saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The peer closed its side (read returned 0).
    Eof,
    /// Reading or writing failed (reset, timeout of keepalive, ...).
    Error,
}

#[derive(Debug)]
struct Connection {
    decoder: RequestDecoder,
    phase: Phase,
    /// Requests waiting behind this connection's entries in flight.
    held: Held,
    /// Bytes emitted for this connection and not yet reported drained.
    queued: usize,
    /// When the host last reported bytes written, if ever (S8.1).
    last_drain: Option<Timestamp>,
    /// Input handed in while the room was paced, not yet decoded (S8.1).
    deferred: Vec<u8>,
    /// In the room's list of connections whose deferred input waits to be taken up.
    listed: bool,
    last_activity: Timestamp,
    request_started: Option<Timestamp>,
    deadline: Option<Timestamp>,
    /// Flood control (S12).
    bucket: flood::Bucket,
    /// A history-aware member's replay, while it is fed (E3).
    replay: Option<Replaying>,
}

/// A replay being fed to a history-aware joiner (E3), and what waits behind it.
#[derive(Debug)]
struct Replaying {
    replay: Replay,
    /// Frames due to the joiner since it joined (live lines, notices, replies), in order,
    /// sent after the marker. Counted in the connection's queue (S8).
    pending: VecDeque<Frame>,
    pending_bytes: usize,
}

/// One entry of the connection table.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    state: SlotState,
}

/// Where an id is between [`Server::handle_open`] and [`Server::handle_released`].
// Inline, not boxed: slots are reused, so the table's size follows the peak number of
// connections, and opening one allocates nothing beyond its decoder.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Default)]
enum SlotState {
    /// Free for the next connection, under the next generation.
    #[default]
    Free,
    /// Open: guest, joining or member.
    Open(Connection),
    /// Forgotten by the machine, its socket not yet released by the host (S13).
    Closing,
}

/// The most connections one [`Server::handle_timeout`] call cuts. Many slowloris
/// connections can time out within one tick of the clock; in slices of this size each
/// call's work (a `408` encoded, a close, an event per connection) stays bounded, and the
/// host handles the requests that arrive meanwhile between slices instead of after all of
/// them. Each cut is still at or after its deadline.
pub const EXPIRIES_PER_CALL: usize = 32;

/// The server room machine. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// Slots in [`SlotState::Open`].
    live: usize,
    /// Slots in [`SlotState::Closing`].
    closing: usize,
    /// This node's id: the `node` of its members' [`MemberRef`]s.
    node: Arc<str>,
    /// Every member of the room, as applied from the log.
    roster: Roster,
    /// This node's members, the connections broadcasts go to.
    room: Room,
    /// Where entries are sequenced (see [`log`]).
    log: Log,
    /// Overload pacing (S8.1).
    pace: Pace,
    /// The last chat lines, for replay (E1).
    history: History,
    /// Joins and leaves the current `handle_*` call may still apply from the in-process log.
    changes_left: usize,
    deadlines: BTreeSet<(Timestamp, ConnId)>,
    outputs: VecDeque<Output>,
    /// Outputs decided after a line the host has not yet recorded (E4), each with the
    /// newest such line: they wait for it, in order.
    unrecorded: VecDeque<(u64, Output)>,
    /// The bytes of the frames in `unrecorded`, each counted once however many receive it.
    unrecorded_bytes: usize,
    now: Timestamp,
    datetime: (i64, [u8; 19]),
    shutting_down: bool,
    /// Chat lines applied (S3), for the host's metrics.
    said: u64,
}

impl Server {
    /// A server with no connections, configured by `config`, at time `now`.
    pub fn new(config: ServerConfig, now: Timestamp) -> Self {
        Self {
            history: History::new(config.history.clone()),
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            closing: 0,
            node: "local".into(),
            roster: Roster::default(),
            room: Room::default(),
            log: Log::local(),
            pace: Pace::default(),
            changes_left: CHANGES_PER_CALL,
            deadlines: BTreeSet::new(),
            outputs: VecDeque::new(),
            unrecorded: VecDeque::new(),
            unrecorded_bytes: 0,
            now,
            datetime: (i64::MIN, [0; 19]),
            shutting_down: false,
            said: 0,
        }
    }

    // ----- getters -------------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// This node's members, in join order: in a single-process room, the whole room. A
    /// member leaves it as soon as its connection closes, before its leave is applied.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Chat lines broadcast in the room since it started (S3), of every node in shared-log
    /// mode: for a host's metrics.
    pub fn messages_said(&self) -> u64 {
        self.said
    }

    /// Connections open (guests and members).
    pub fn connection_count(&self) -> usize {
        self.live
    }

    /// Connections closed (by the machine or the peer) whose sockets the host has not yet
    /// released; they count against `max_connections` (S13).
    pub fn closing_count(&self) -> usize {
        self.closing
    }

    /// Bytes decided for `conn` and not yet reported drained, whether handed out already or
    /// [withheld](Self::withheld_bytes); `None` if `conn` is closed. This is what S8 bounds.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        self.connection(conn).map(|c| c.queued)
    }

    /// Bytes decided for `conn` that the machine has not handed out yet: behind its replay
    /// (E3), or behind a line the host has not yet recorded (E4). The host holds the rest of
    /// [`queued_bytes`](Self::queued_bytes). It walks what is withheld: for tests and
    /// fuzzers.
    pub fn withheld_bytes(&self, conn: ConnId) -> Option<usize> {
        let c = self.connection(conn)?;
        let behind_replay = c.replay.as_ref().map_or(0, |r| r.pending_bytes);
        let unrecorded: usize = self
            .unrecorded
            .iter()
            .map(|(_, output)| match output {
                Output::Send { conn: to, frame } if *to == conn => frame.len(),
                Output::Broadcast { to, frame } if to.contains(&conn) => frame.len(),
                _ => 0,
            })
            .sum();
        Some(behind_replay + unrecorded)
    }

    /// Bytes the decoder of `conn` holds for an unfinished request.
    pub fn buffered_bytes(&self, conn: ConnId) -> Option<usize> {
        self.connection(conn).map(|c| c.decoder.buffered())
    }

    /// Bytes of `conn`'s input set aside, not yet decoded, because the room is paced (S8.1).
    pub fn deferred_bytes(&self, conn: ConnId) -> Option<usize> {
        self.connection(conn).map(|c| c.deferred.len())
    }

    /// Whether the room is paced: it takes no new requests until its members catch up (S8.1).
    pub fn is_paced(&self) -> bool {
        self.pace.is_paced() || self.recording_backlog()
    }

    /// The room's last chat lines and their epoch (E1).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Whether outputs wait for a line the host has not yet recorded (E4): a host that shuts
    /// down waits for them (or for the record timeout) before it exits.
    pub fn is_withholding(&self) -> bool {
        !self.unrecorded.is_empty()
    }

    /// Whether `conn`'s replay (E3) is still being fed.
    pub fn is_replaying(&self, conn: ConnId) -> bool {
        self.connection(conn).is_some_and(|c| c.replay.is_some())
    }

    /// Whether `conn` is open.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.connection(conn).is_some()
    }

    /// Checks the machine's internal invariants; `Err` says which one is broken. It walks
    /// every connection, so call it from tests and fuzzers, not from a production loop.
    ///
    /// At any time, even between two calls of `poll_output`: the open and closing counts
    /// match the table; a connection is in the room exactly when its phase is member, and names
    /// there are unique by their S2.2 key; requests are held only behind entries in flight;
    /// every deadline in the timer index belongs to an open connection and every
    /// connection's deadline is indexed; no decoder holds more than the head and body
    /// limits; the roster agrees with the room (see [`log`]).
    pub fn check_invariants(&self) -> Result<(), String> {
        let open: Vec<(ConnId, &Connection)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match &slot.state {
                SlotState::Open(c) => Some((ConnId::new(i as u32, slot.generation), c)),
                _ => None,
            })
            .collect();
        if open.len() != self.live {
            return Err(format!(
                "{} connections open, {} counted",
                open.len(),
                self.live
            ));
        }
        let closing = self
            .slots
            .iter()
            .filter(|slot| matches!(slot.state, SlotState::Closing))
            .count();
        if closing != self.closing {
            return Err(format!(
                "{closing} connections closing, {} counted",
                self.closing
            ));
        }
        let mut names = crate::names::NameIndex::default();
        for (conn, name) in self.room.members() {
            if !matches!(self.phase(conn), Some(Phase::Member { .. })) {
                return Err(format!(
                    "member {name} ({conn:?}) has no open member connection"
                ));
            }
            if !names.insert(name, ()) {
                return Err(format!("member {name} collides with another"));
            }
        }
        let limit = self.config.frame.max_head_bytes + self.config.frame.max_body_bytes;
        let mut indexed = 0;
        for (conn, c) in &open {
            let member = matches!(c.phase, Phase::Member { .. });
            if member && self.room.name_of(*conn).is_none() {
                return Err(format!(
                    "{conn:?} is marked a member but is not in the room"
                ));
            }
            if !c.held.is_empty() && !c.phase.in_flight() {
                return Err(format!("{conn:?} holds requests with nothing in flight"));
            }
            if let Some(deadline) = c.deadline {
                indexed += 1;
                if !self.deadlines.contains(&(deadline, *conn)) {
                    return Err(format!("{conn:?}'s deadline is not indexed"));
                }
            }
            if c.decoder.buffered() > limit {
                return Err(format!("{conn:?} buffers {} bytes", c.decoder.buffered()));
            }
        }
        if indexed != self.deadlines.len() {
            return Err(format!(
                "{} deadlines indexed for {indexed} connections",
                self.deadlines.len()
            ));
        }
        let members: Vec<(ConnId, usize)> = open
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Member { .. }))
            .map(|(conn, c)| (*conn, c.queued))
            .collect();
        self.pace.check(&members, self.marks())?;
        for (conn, c) in &open {
            let replaying = self.room.replaying().contains(conn);
            if replaying != c.replay.is_some() {
                return Err(format!("{conn:?}'s replay and the room disagree"));
            }
            if let Some(r) = &c.replay {
                let pending: usize = r.pending.iter().map(|f| f.len()).sum();
                if pending != r.pending_bytes || pending > c.queued {
                    return Err(format!("{conn:?} holds {pending} bytes behind its replay"));
                }
            }
            if c.listed != self.pace.is_waiting(*conn) || (!c.deferred.is_empty() && !c.listed) {
                return Err(format!(
                    "{conn:?} has deferred input and is not listed once"
                ));
            }
        }
        self.check_log()
    }

    // ----- inputs --------------------------------------------------------------------------

    /// A connection was accepted. Returns its id; the greeting (or, past the connection
    /// limit or during shutdown, a `503` and a close) is in the outputs. Connections still
    /// closing count against the limit (S13).
    pub fn handle_open(&mut self, now: Timestamp) -> ConnId {
        self.begin(now);
        let conn = self.allocate();
        if self.shutting_down || self.live + self.closing > self.config.max_connections {
            let body = if self.shutting_down {
                SHUTDOWN_NOTICE
            } else {
                "Server is full, try again later.\n"
            };
            let frame = self.response(Status::SERVICE_UNAVAILABLE, body.as_bytes());
            self.emit(Output::Send { conn, frame });
            self.outputs
                .push_back(Output::Event(Event::OverCapacity { conn }));
            self.forget(conn, CloseMode::AfterFlush);
        } else {
            let frame = self.response(Status::ACCEPT, GREETING.as_bytes());
            self.send(conn, frame);
            self.refresh_deadline(conn);
        }
        self.settle();
        conn
    }

    /// `bytes` arrived on `conn`. Bytes for a closed connection are ignored. While the room is
    /// paced (S8.1), or earlier input of `conn` is still set aside, they are set aside after
    /// it, to be taken up in order once the room resumes.
    pub fn handle_received(&mut self, now: Timestamp, conn: ConnId, bytes: &[u8]) {
        self.begin(now);
        let paced = self.paced();
        match self.connection(conn) {
            None => {}
            Some(c) if paced || !c.deferred.is_empty() => {
                self.defer(conn, bytes);
                self.take_deferred(conn, Pacing::Obeyed);
            }
            Some(_) => {
                let used = self.decode(conn, bytes, Pacing::Obeyed);
                self.defer(conn, &bytes[used..]);
            }
        }
        self.settle();
    }

    /// Decodes `input` and carries out its requests, in order, until it is used up, the
    /// connection closes, or (if `pacing` is obeyed) the room is paced; returns how many
    /// bytes were used.
    fn decode(&mut self, conn: ConnId, input: &[u8], pacing: Pacing) -> usize {
        let Some(connection) = self.connection_mut(conn) else {
            return input.len();
        };
        // The decoder is lent out while its requests are carried out: a request borrows
        // from it, and carrying it out needs the whole machine.
        let mut decoder = std::mem::replace(
            &mut connection.decoder,
            RequestDecoder::new(Default::default()),
        );
        let mut rest = input;
        let mut active = false;
        loop {
            let (used, progress) = decoder.decode(rest);
            rest = &rest[used..];
            match progress {
                Progress::NeedMore => break,
                Progress::Message(request) => {
                    active = true;
                    if let Some(c) = self.connection_mut(conn) {
                        c.request_started = None;
                    }
                    self.dispatch(conn, &request, false);
                    // Applied before the next request is read, so that it sees this one's
                    // effect (a pipelined `GET` after `ADD` lists the new member).
                    self.run_log();
                }
                Progress::Error(error) => {
                    self.refuse_and_close(conn, &error);
                    break;
                }
            }
            if !self.is_open(conn) || (pacing == Pacing::Obeyed && self.paced()) {
                break;
            }
        }
        let mid_message = decoder.is_mid_message();
        let now = self.now;
        if let Some(c) = self.connection_mut(conn) {
            c.decoder = decoder;
            if mid_message {
                c.request_started.get_or_insert(now);
            }
            if active || mid_message {
                c.last_activity = now;
            }
            self.refresh_deadline(conn);
        }
        input.len() - rest.len()
    }

    /// Sets `bytes` aside after `conn`'s deferred input (S8.1), and lists the connection
    /// for [`settle`](Self::settle) if it is not listed.
    fn defer(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.connection_mut(conn) else {
            return;
        };
        c.deferred.extend_from_slice(bytes);
        if !c.deferred.is_empty() && !std::mem::replace(&mut c.listed, true) {
            self.pace.defer(conn);
        }
    }

    /// Takes up `conn`'s deferred input, unless `pacing` is obeyed and the room is paced;
    /// what is left when it is paced again stays set aside.
    fn take_deferred(&mut self, conn: ConnId, pacing: Pacing) {
        if pacing == Pacing::Obeyed && self.paced() {
            // Left as it is, listed again if `settle` took it off the list.
            self.defer(conn, &[]);
            return;
        }
        let Some(c) = self.connection_mut(conn) else {
            return;
        };
        let input = std::mem::take(&mut c.deferred);
        let used = self.decode(conn, &input, pacing);
        self.defer(conn, &input[used..]);
    }

    /// Whether the room is paced, after bringing the decision up to date (see [`pace`]).
    fn paced(&mut self) -> bool {
        self.pace.update(self.room.len(), self.now);
        self.pace.is_paced() || self.recording_backlog()
    }

    /// The host has durably recorded every line up to `seq` ([`Output::Record`], E4): what
    /// waited for them goes out.
    pub fn handle_recorded(&mut self, now: Timestamp, seq: u64) {
        self.begin(now);
        self.history.recorded_up_to(seq);
        self.release_recorded();
        self.settle();
    }

    /// The host could not record a line (E4): history is off from now on, and lines go out
    /// unrecorded. `reason` is logged.
    pub fn handle_record_failed(&mut self, now: Timestamp, reason: String) {
        self.begin(now);
        if self.history.is_recorded() {
            self.history_off(reason);
        }
        self.settle();
    }

    /// Restores the lines the host read back from its record (E4), oldest first, and `last`,
    /// the last sequence number it ever gave. Call once, before the first input.
    pub fn restore_history(&mut self, last: u64, lines: impl IntoIterator<Item = history::Line>) {
        self.history.restore(last, lines);
    }

    /// The host wrote `count` bytes of what was queued for `conn` to its socket.
    pub fn handle_drained(&mut self, now: Timestamp, conn: ConnId, count: usize) {
        self.begin(now);
        let marks = self.marks();
        if let Some(c) = self.connection_mut(conn)
            && count > 0
        {
            c.queued = c.queued.saturating_sub(count);
            c.last_drain = Some(now);
            let queued = c.queued;
            self.pace.drained(conn, count, queued, marks, now);
            self.feed_replay(conn);
        }
        self.settle();
    }

    /// `conn` ended without the machine asking (S6). A member leaves; its name is free. The
    /// id stays taken until [`handle_released`](Self::handle_released). After an orderly
    /// close ([`Disconnect::Eof`]), requests of `conn` set aside while the room was paced are
    /// carried out first.
    pub fn handle_closed(&mut self, now: Timestamp, conn: ConnId, how: Disconnect) {
        self.begin(now);
        let cause = match how {
            Disconnect::Eof => LeaveCause::PeerClosed,
            Disconnect::Error => LeaveCause::ConnectionError,
        };
        // A peer that closed in order may have sent its last requests first: those set
        // aside while the room was paced are carried out now (at most what the host had read,
        // S8.1). A reset loses them, as it loses whatever the kernel had not yet delivered.
        if how == Disconnect::Eof {
            self.take_deferred(conn, Pacing::Ignored);
        }
        if self.is_open(conn) {
            self.close(conn, None, cause);
        }
        self.settle();
    }

    /// The host has let go of `conn`'s socket: its last bytes were taken, the peer closed
    /// or the linger time ran out. Call it once for every id, after the machine's
    /// [`Output::Close`] or the host's [`handle_closed`](Self::handle_closed); the id is free
    /// again and no longer counts against `max_connections` (S13). Ignored for an id that is
    /// open or already released.
    pub fn handle_released(&mut self, conn: ConnId) {
        let Some(slot) = self.slots.get_mut(conn.index()) else {
            return;
        };
        if slot.generation == conn.generation() && matches!(slot.state, SlotState::Closing) {
            slot.state = SlotState::Free;
            slot.generation = slot.generation.wrapping_add(1);
            self.free_slots.push(conn.index() as u32);
            self.closing -= 1;
        }
    }

    /// The clock reached `now`: cut connections whose deadline passed (S9), at most
    /// [`EXPIRIES_PER_CALL`] of them, and apply the next slice of the in-process log (see
    /// [`log`]). If more is due, [`poll_timeout`](Self::poll_timeout) still returns a
    /// deadline at or before `now`, and the host calls again after handling whatever input
    /// is waiting.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.begin(now);
        if self.history.record_deadline().is_some_and(|due| due <= now) {
            let secs = history::RECORD_TIMEOUT.as_secs();
            self.history_off(format!("a line was not recorded within {secs} s"));
        }
        for _ in 0..EXPIRIES_PER_CALL {
            let Some(&(deadline, conn)) = self.deadlines.first() else {
                break;
            };
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(c) = self.connection_mut(conn) else {
                continue;
            };
            c.deadline = None;
            if c.decoder.is_mid_message() {
                let secs = self.config.request_timeout.as_secs_f64();
                let reason = format!("request not completed within {secs} s");
                self.refuse(conn, Status::REQUEST_TIMEOUT, reason);
                self.close(
                    conn,
                    Some(CloseMode::AfterFlush),
                    LeaveCause::RequestTimeout,
                );
            } else {
                self.close(conn, Some(CloseMode::AfterFlush), LeaveCause::IdleTimeout);
            }
        }
        self.settle();
    }

    /// Start shutting down (S11): every connection gets `503` with the shutdown notice and
    /// is closed after it; no leave notices; new connections are refused.
    pub fn handle_shutdown(&mut self, now: Timestamp) {
        self.begin(now);
        self.shutting_down = true;
        let frame = self.response(Status::SERVICE_UNAVAILABLE, SHUTDOWN_NOTICE.as_bytes());
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if matches!(slot.state, SlotState::Open(_)) {
                let conn = ConnId::new(index as u32, slot.generation);
                self.end_replay(conn);
                self.emit(Output::Send {
                    conn,
                    frame: frame.clone(),
                });
                self.forget(conn, CloseMode::AfterFlush);
            }
        }
        self.room.clear();
        // No leave notices (S11). A shared log's host releases this node's claims in one
        // step; entries this node already gave it stay with it.
        self.roster.clear();
        if let Log::Local { queue } = &mut self.log {
            queue.clear();
        }
        self.settle();
    }

    // ----- outputs -------------------------------------------------------------------------

    /// The next thing to do, in order; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, if anything is due: the
    /// earliest deadline (a connection's, or when a paced room may resume), or the current
    /// time while the in-process log has entries waiting or deferred input may be taken up.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let deadline = [
            self.deadlines.first().map(|&(deadline, _)| deadline),
            self.pace.next_expiry(),
            self.history.record_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let due_now = self.log.is_waiting() || (!self.is_paced() && self.pace.has_waiting());
        match due_now {
            true => Some(deadline.map_or(self.now, |deadline| deadline.min(self.now))),
            false => deadline,
        }
    }

    /// Every `handle_*` call starts here: the clock, a fresh budget of changes to apply, and
    /// the members that stopped holding a paced room by now (S8.1).
    fn begin(&mut self, now: Timestamp) {
        self.now = now;
        self.changes_left = CHANGES_PER_CALL;
        self.pace.expire(now);
    }

    /// Every `handle_*` call ends here: the next slice of the in-process log, then of the
    /// input set aside while the room was paced, then the host is told if the room has
    /// paused or resumed (S8.1).
    fn settle(&mut self) {
        self.run_log();
        let mut taken = 0;
        while taken < RESUMES_PER_CALL && !self.paced() {
            let Some(conn) = self.pace.next_waiting() else {
                break;
            };
            // Closed since it was listed: nothing to take up.
            let Some(c) = self.connection_mut(conn) else {
                continue;
            };
            c.listed = false;
            self.take_deferred(conn, Pacing::Obeyed);
            taken += 1;
        }
        self.paced();
        if let Some(pause) = self.pace.tell_host(self.recording_backlog()) {
            let output = match pause {
                true => Output::PauseReading,
                false => Output::ResumeReading,
            };
            self.outputs.push_back(output);
        }
    }

    // ----- effects -------------------------------------------------------------------------

    /// Hands `output` (a send, a broadcast or a close) to the host, or, while a line it
    /// follows waits to be recorded (E4), keeps it behind that line.
    fn emit(&mut self, output: Output) {
        match self.history.waiting_for() {
            Some(line) => {
                self.unrecorded_bytes += frame_len(&output);
                self.unrecorded.push_back((line, output));
            }
            None => self.outputs.push_back(output),
        }
    }

    /// Whether so much waits for the host's recorder (E4) that the room takes no new requests
    /// until it catches up: each member's queue grows by what is held for it and cannot drain
    /// meanwhile, so past the soft mark a slow disk would soon make every member a slow reader
    /// (S8). The host is asked to stop reading as for S8.1.
    fn recording_backlog(&self) -> bool {
        self.unrecorded_bytes >= self.marks().soft
    }

    /// Releases the outputs that waited for lines the host has recorded now.
    fn release_recorded(&mut self) {
        let waiting = self.history.waiting_for();
        while let Some((line, _)) = self.unrecorded.front() {
            if waiting.is_some_and(|_| *line > self.history.recorded()) {
                break;
            }
            if let Some((_, output)) = self.unrecorded.pop_front() {
                self.unrecorded_bytes -= frame_len(&output);
                self.outputs.push_back(output);
            }
        }
    }

    /// Turns history off for good (E4): lines go out unrecorded, and what waited goes now.
    fn history_off(&mut self, reason: String) {
        if self.history.is_recorded() {
            self.outputs.push_back(Output::StopRecording);
        }
        self.history = History::new(history::HistoryConfig::off());
        self.release_recorded();
        let event = Event::HistoryOff { reason };
        self.outputs.push_back(Output::Event(event));
    }

    /// Queues `frame` for `conn` (behind its replay, if one is fed), or cuts `conn` if its
    /// queue would pass the limit (S8).
    fn send(&mut self, conn: ConnId, frame: Frame) {
        if !self.account(conn, frame.len()) {
            return;
        }
        match self.connection_mut(conn).and_then(|c| c.replay.as_mut()) {
            Some(replaying) => {
                replaying.pending_bytes += frame.len();
                replaying.pending.push_back(frame);
            }
            None => self.emit(Output::Send { conn, frame }),
        }
    }

    /// Queues one `frame` for each of `to`, and for every member whose replay is being fed
    /// (behind it, E3), cutting those whose queue would pass the limit. `to` is a list of
    /// the [`Room`]'s, which leaves those members out.
    fn broadcast(&mut self, to: Arc<[ConnId]>, frame: Frame) {
        if !self.room.replaying().is_empty() {
            for conn in self.room.replaying().to_vec() {
                self.send(conn, frame.clone());
            }
        }
        self.broadcast_only(to, frame);
    }

    /// Queues one `frame` for each of `to` only, cutting those whose queue would pass the
    /// limit.
    fn broadcast_only(&mut self, to: Arc<[ConnId]>, frame: Frame) {
        if to.is_empty() {
            return;
        }
        let mut any_cut = false;
        for &conn in to.iter() {
            any_cut |= !self.account(conn, frame.len());
        }
        // Those this frame cut are closed now: leave them out.
        let to = match any_cut {
            false => to,
            true => to
                .iter()
                .copied()
                .filter(|&conn| self.is_open(conn))
                .collect(),
        };
        self.emit(Output::Broadcast { to, frame });
    }

    /// The pacing marks for this room's connection limit (S8.1).
    fn marks(&self) -> Marks {
        Marks::for_limit(self.config.max_output_bytes)
    }

    /// Adds `len` to `conn`'s queue. Returns false, having closed `conn`, if that would pass
    /// the limit; a frame larger than the limit still goes to an empty queue.
    fn account(&mut self, conn: ConnId, len: usize) -> bool {
        let limit = self.config.max_output_bytes;
        let (marks, now) = (self.marks(), self.now);
        let Some(c) = self.connection_mut(conn) else {
            return false;
        };
        if c.queued > 0 && c.queued.saturating_add(len) > limit {
            self.close(conn, Some(CloseMode::Now), LeaveCause::SlowReader);
            return false;
        }
        c.queued += len;
        if c.queued >= marks.soft && matches!(c.phase, Phase::Member { .. }) {
            let (queued, last_drain) = (c.queued, c.last_drain);
            self.pace.grew(conn, queued, marks, last_drain, now);
        }
        true
    }

    fn refuse(&mut self, conn: ConnId, status: Status, reason: String) {
        let frame = self.response(status, format!("{reason}\n").as_bytes());
        self.send(conn, frame);
        let event = Event::Refused {
            conn,
            status,
            reason,
        };
        self.outputs.push_back(Output::Event(event));
    }

    fn refuse_and_close(&mut self, conn: ConnId, error: &FrameError) {
        self.refuse(conn, Status::BAD_REQUEST, error.to_string());
        self.close(conn, Some(CloseMode::AfterFlush), LeaveCause::BadRequest);
    }

    /// Forgets `conn` (emitting a close if `mode` is given; `None` when the peer is already
    /// gone). Its phase ends with it: a member leaves (see [`log`]).
    fn close(&mut self, conn: ConnId, mode: Option<CloseMode>, cause: LeaveCause) {
        if mode == Some(CloseMode::AfterFlush) {
            // Its last reply (a goodbye, a 400, a 408) may wait behind a replay: it goes.
            self.end_replay(conn);
        }
        let Some(c) = self.connection_mut(conn) else {
            return;
        };
        match std::mem::replace(&mut c.phase, Phase::Guest) {
            Phase::Member { .. } => self.leave(conn, cause),
            Phase::Guest | Phase::Joining { .. } => {
                self.outputs
                    .push_back(Output::Event(Event::GuestClosed { conn, cause }));
            }
        }
        match mode {
            Some(mode) => self.forget(conn, mode),
            None => self.retire(conn),
        }
    }

    fn forget(&mut self, conn: ConnId, mode: CloseMode) {
        self.retire(conn);
        self.emit(Output::Close { conn, mode });
    }

    /// Moves an open `conn` to closing: its state is dropped, its id kept until the host
    /// releases it.
    fn retire(&mut self, conn: ConnId) {
        let Some(slot) = self.slots.get_mut(conn.index()) else {
            return;
        };
        if slot.generation != conn.generation() || !matches!(slot.state, SlotState::Open(_)) {
            return;
        }
        if let SlotState::Open(c) = std::mem::replace(&mut slot.state, SlotState::Closing) {
            if let Some(deadline) = c.deadline {
                self.deadlines.remove(&(deadline, conn));
            }
            self.pace.forget(conn);
            self.live -= 1;
            self.closing += 1;
        }
    }

    fn refresh_deadline(&mut self, conn: ConnId) {
        let (idle, request) = (self.config.idle_timeout, self.config.request_timeout);
        let Some(c) = self.connection_mut(conn) else {
            return;
        };
        let next = match c.request_started {
            Some(started) => Some(started.saturating_add(request)),
            None if !matches!(c.phase, Phase::Member { .. }) => {
                Some(c.last_activity.saturating_add(idle))
            }
            None => None,
        };
        let previous = std::mem::replace(&mut c.deadline, next);
        if previous != next {
            if let Some(previous) = previous {
                self.deadlines.remove(&(previous, conn));
            }
            if let Some(next) = next {
                self.deadlines.insert((next, conn));
            }
        }
    }

    fn response(&mut self, status: Status, body: &[u8]) -> Frame {
        self.response_at(status, body, self.now, None)
    }

    /// A response dated `at` (a replayed line keeps the time it was said), with a
    /// `Message_Id` if `id` is given (E2).
    fn response_at(
        &mut self,
        status: Status,
        body: &[u8],
        at: Timestamp,
        id: Option<&str>,
    ) -> Frame {
        let second = at.local().and_utc().timestamp();
        if self.datetime.0 != second {
            self.datetime = (second, datetime_text(at.local()));
        }
        let fields = ResponseFields {
            datetime: &self.datetime.1,
            developer: &self.config.developer_header,
            server: &self.config.server_header,
        };
        let mut out = Vec::new();
        write_response_with_id(&mut out, status, &fields, id, body);
        Frame::new(out)
    }

    // ----- replay (E3) ---------------------------------------------------------------------

    /// Starts feeding `replay` to the member `conn`, which has just been welcomed: until the
    /// marker, it is in no list of recipients and what it is due waits behind the replay.
    fn start_replay(&mut self, conn: ConnId, replay: Replay) {
        let Some(c) = self.connection_mut(conn) else {
            return;
        };
        c.replay = Some(Replaying {
            replay,
            pending: VecDeque::new(),
            pending_bytes: 0,
        });
        self.room.set_replaying(conn, true);
        self.feed_replay(conn);
    }

    /// Ends `conn`'s replay where it stands, for a connection that is closing: the lines not
    /// yet sent are dropped, what waited behind them goes out.
    fn end_replay(&mut self, conn: ConnId) {
        let Some(replaying) = self.connection_mut(conn).and_then(|c| c.replay.take()) else {
            return;
        };
        self.room.set_replaying(conn, false);
        for frame in replaying.pending {
            self.emit(Output::Send { conn, frame });
        }
    }

    /// Sends `conn` the next lines of its replay while what it has not yet read of them stays
    /// under half the soft mark (S8.1), so a long replay never makes the joiner a slow reader
    /// and is fed as it drains; after the last, the marker and whatever waited behind it.
    fn feed_replay(&mut self, conn: ConnId) {
        let limit = self.config.max_output_bytes;
        let budget = (self.marks().soft / 2).max(1);
        loop {
            let Some(c) = self.connection_mut(conn) else {
                return;
            };
            let Some(replaying) = c.replay.as_mut() else {
                return;
            };
            if c.queued.saturating_sub(replaying.pending_bytes) >= budget {
                return;
            }
            let epoch = replaying.replay.epoch.clone();
            let (queued, pending) = (c.queued, replaying.pending_bytes);
            let next = replaying.replay.lines.pop_front();
            let frame = match next {
                Some(line) => {
                    let mut body = Vec::new();
                    crate::wire::body::write_chat(&mut body, &line.name, &line.text);
                    let id = history::id(&epoch, line.seq);
                    let frame = self.response_at(Status::OK, &body, line.at, Some(&id));
                    // What the room said meanwhile fills the joiner's queue (S8): rather than
                    // cut it for its own replay, the replay stops here and says so.
                    let room = frame.len() + MARKER_ROOM;
                    let full = queued > 0 && queued + room > limit && pending > 0;
                    if !full {
                        if let Some(r) = self.connection_mut(conn).and_then(|c| c.replay.as_mut()) {
                            r.replay.sent += 1;
                        }
                        Some(frame)
                    } else {
                        if let Some(r) = self.connection_mut(conn).and_then(|c| c.replay.as_mut()) {
                            r.replay.lines.clear();
                            r.replay.missed = true;
                        }
                        None
                    }
                }
                None => None,
            };
            let Some(frame) = frame else {
                let Some(c) = self.connection_mut(conn) else {
                    return;
                };
                let replaying = c.replay.take();
                self.room.set_replaying(conn, false);
                let Some(replaying) = replaying else { return };
                let marker = history::marker(replaying.replay.sent, replaying.replay.missed);
                let frame = self.response(Status::OK, marker.as_bytes());
                if self.account(conn, frame.len()) {
                    self.emit(Output::Send { conn, frame });
                    for frame in replaying.pending {
                        self.emit(Output::Send { conn, frame });
                    }
                }
                return;
            };
            if !self.account(conn, frame.len()) {
                return;
            }
            self.emit(Output::Send { conn, frame });
        }
    }

    // ----- the connection table ------------------------------------------------------------

    fn allocate(&mut self) -> ConnId {
        let connection = Connection {
            decoder: RequestDecoder::new(self.config.frame),
            phase: Phase::Guest,
            held: Held::default(),
            queued: 0,
            last_drain: None,
            deferred: Vec::new(),
            listed: false,
            last_activity: self.now,
            request_started: None,
            deadline: None,
            bucket: flood::Bucket::new(self.now),
            replay: None,
        };
        let index = match self.free_slots.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.state = SlotState::Open(connection);
        self.live += 1;
        ConnId::new(index, slot.generation)
    }

    fn connection(&self, conn: ConnId) -> Option<&Connection> {
        match self.slots.get(conn.index())? {
            Slot {
                generation,
                state: SlotState::Open(c),
            } if *generation == conn.generation() => Some(c),
            _ => None,
        }
    }

    fn phase(&self, conn: ConnId) -> Option<&Phase> {
        self.connection(conn).map(|c| &c.phase)
    }

    fn phase_mut(&mut self, conn: ConnId) -> Option<&mut Phase> {
        self.connection_mut(conn).map(|c| &mut c.phase)
    }

    /// Every open connection, in table order.
    fn open_conns(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| matches!(slot.state, SlotState::Open(_)))
            .map(|(i, slot)| ConnId::new(i as u32, slot.generation))
            .collect()
    }

    fn connection_mut(&mut self, conn: ConnId) -> Option<&mut Connection> {
        match self.slots.get_mut(conn.index())? {
            Slot {
                generation,
                state: SlotState::Open(c),
            } if *generation == conn.generation() => Some(c),
            _ => None,
        }
    }
}

/// Room kept for a replay's marker when a replay ends early (E3): its frame is well under
/// this, so ending a replay never makes the joiner a slow reader by itself.
const MARKER_ROOM: usize = 512;

/// The bytes of a send's or a broadcast's frame; 0 for anything else.
fn frame_len(output: &Output) -> usize {
    match output {
        Output::Send { frame, .. } | Output::Broadcast { frame, .. } => frame.len(),
        _ => 0,
    }
}

/// The refusals the room gives because of its own state, each worded in one place.
mod refusal {
    use crate::ids::UserName;
    use crate::wire::Status;

    /// S2.2: `name` collides with the member named `holder`; the reason names it.
    pub(crate) fn name_taken(name: &UserName, holder: &UserName) -> (Status, String) {
        let reason = if name.as_str() == holder.as_str() {
            format!("the user name {name} is taken")
        } else {
            format!(
                "the user name {name} is taken: it is too close to {holder}, who is in the room"
            )
        };
        (Status::USER_NAME_EXIST, reason)
    }

    /// The log cannot take an entry now: `what` did not happen, `why`.
    pub(crate) fn unavailable(what: &str, why: &str) -> (Status, String) {
        (Status::SERVICE_UNAVAILABLE, format!("{what}: {why}"))
    }
}
