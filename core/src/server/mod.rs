//! The server room machine.
//!
//! # Theory of operation
//!
//! A [`Server`] owns every connection's framing state and the [`Room`]. The host reports
//! what happens on its sockets and clock through the `handle_*` methods, then drains
//! [`poll_output`](Server::poll_output) until it returns `None`, then asks
//! [`poll_timeout`](Server::poll_timeout) when to call
//! [`handle_timeout`](Server::handle_timeout) next. The machine never blocks, never reads a
//! clock and never touches a socket.
//!
//! For each complete request, [`Server::command`] decides, in one table, what it means in
//! the connection's phase (guest or member). Changes to the room are validated against the
//! applied state, sequenced as [`Entry`] values and applied (see [`room`]); replies and
//! broadcasts are emitted as they are applied, so every member sees one order (S7).
//!
//! Backpressure is arithmetic (S8): each connection's *queued* count grows by every frame
//! the machine emits for it and shrinks by what the host reports written with
//! [`handle_drained`](Server::handle_drained). A frame that would take a non-empty queue past
//! `max_output_bytes` closes the connection instead.
//!
//! A peer's mistakes never surface as `Err`: they become `4xx` frames, closes and
//! [`Event`]s.

pub mod cluster;
pub mod room;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::error::{FrameError, NameError};
use crate::ids::{ConnId, UserName};
use crate::limits::ServerConfig;
use crate::time::{Timestamp, datetime_text};
use crate::wire::encode::{ResponseFields, write_response};
use crate::wire::{
    Frame, Method, Progress, Request, RequestDecoder, Status, UserAgent, VERSION, body,
};

pub use cluster::{AppendRefusal, LogEntry, LogKind, MemberRef, Roster};
pub use room::{Entry, LeaveCause, Room};

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
}

/// How a connection ended, as the host saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The peer closed its side (read returned 0).
    Eof,
    /// Reading or writing failed (reset, timeout of keepalive, ...).
    Error,
}

/// What a request asks for, once checked against the connection's phase.
#[derive(Debug)]
enum Command<'a> {
    Join(UserName),
    Say(&'a str),
    List,
    Leave,
    Refuse(Status, String),
}

#[derive(Debug)]
struct Connection {
    decoder: RequestDecoder,
    is_member: bool,
    /// Bytes emitted for this connection and not yet reported drained.
    queued: usize,
    last_activity: Timestamp,
    request_started: Option<Timestamp>,
    deadline: Option<Timestamp>,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    connection: Option<Connection>,
}

/// The most connections one [`Server::handle_timeout`] call cuts. A thousand slowloris
/// connections time out within one tick of the clock; in slices of this size, each call's
/// work (a `408` encoded, a close, an event per connection) stays bounded, and the host
/// handles the members' requests that arrive meanwhile between slices instead of after all
/// of them, whether or not it paces its own system calls (the project's runtimes also
/// queue closes, for the waves that one input causes: S8 cuts, a flood of `400`s). Each
/// cut is still at or after its deadline; the last of a thousand is a few milliseconds
/// later than it would otherwise be.
pub const EXPIRIES_PER_CALL: usize = 32;

/// The server room machine. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    live: usize,
    room: Room,
    deadlines: BTreeSet<(Timestamp, ConnId)>,
    outputs: VecDeque<Output>,
    /// Members whose connections closed; their leaves are applied by `poll_output`, in order,
    /// once the outputs queued before them are taken.
    pending_leaves: VecDeque<(ConnId, LeaveCause)>,
    now: Timestamp,
    datetime: (i64, [u8; 19]),
    shutting_down: bool,
    /// Shared-log mode (see [`cluster`]); `None` for the single-process room.
    shared: Option<Box<cluster::Shared>>,
}

impl Server {
    /// A server with no connections, configured by `config`, at time `now`.
    pub fn new(config: ServerConfig, now: Timestamp) -> Self {
        Self {
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            room: Room::default(),
            deadlines: BTreeSet::new(),
            outputs: VecDeque::new(),
            pending_leaves: VecDeque::new(),
            now,
            datetime: (i64::MIN, [0; 19]),
            shutting_down: false,
            shared: None,
        }
    }

    // ----- getters -------------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The room's applied state.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Connections open (guests and members).
    pub fn connection_count(&self) -> usize {
        self.live
    }

    /// Bytes emitted for `conn` and not yet reported drained; `None` if `conn` is closed.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        self.connection(conn).map(|c| c.queued)
    }

    /// Bytes the decoder of `conn` holds for an unfinished request.
    pub fn buffered_bytes(&self, conn: ConnId) -> Option<usize> {
        self.connection(conn).map(|c| c.decoder.buffered())
    }

    /// Whether `conn` is open.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.connection(conn).is_some()
    }

    /// Checks the machine's internal invariants; `Err` says which one is broken. It walks
    /// every connection, so call it from tests and fuzzers, not from a production loop.
    ///
    /// At any time, even between two calls of `poll_output`: the connection count matches
    /// the table; every member's connection is open and marked a member, unless its leave
    /// is pending, and the reverse; names are unique by their S2.2 key; every deadline in
    /// the timer index belongs to an open connection and every connection's deadline is
    /// indexed; no decoder holds more than the head and body limits.
    pub fn check_invariants(&self) -> Result<(), String> {
        let open: Vec<(ConnId, &Connection)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| {
                Some((
                    ConnId::new(i as u32, slot.generation),
                    slot.connection.as_ref()?,
                ))
            })
            .collect();
        if open.len() != self.live {
            return Err(format!(
                "{} connections open, {} counted",
                open.len(),
                self.live
            ));
        }
        let mut keys = std::collections::HashSet::new();
        for (conn, name) in self.room.members() {
            let leaving = self.pending_leaves.iter().any(|&(c, _)| c == conn);
            if !leaving && !self.connection(conn).is_some_and(|c| c.is_member) {
                return Err(format!(
                    "member {name} ({conn:?}) has no open member connection"
                ));
            }
            if !keys.insert(name.key()) {
                return Err(format!("two members share the name key {:?}", name.key()));
            }
        }
        let limit = self.config.frame.max_head_bytes + self.config.frame.max_body_bytes;
        let mut indexed = 0;
        for (conn, c) in &open {
            if c.is_member && self.room.name_of(*conn).is_none() {
                return Err(format!(
                    "{conn:?} is marked a member but is not in the room"
                ));
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
        self.check_shared()
    }

    // ----- inputs --------------------------------------------------------------------------

    /// A connection was accepted. Returns its id; the greeting (or, past the connection
    /// limit or during shutdown, a `503` and a close) is in the outputs.
    pub fn handle_open(&mut self, now: Timestamp) -> ConnId {
        self.now = now;
        let conn = self.allocate();
        if self.shutting_down || self.live > self.config.max_connections {
            let body = if self.shutting_down {
                SHUTDOWN_NOTICE
            } else {
                "Server is full, try again later.\n"
            };
            let frame = self.response(Status::SERVICE_UNAVAILABLE, body.as_bytes());
            self.outputs.push_back(Output::Send { conn, frame });
            self.outputs
                .push_back(Output::Event(Event::OverCapacity { conn }));
            self.forget(conn, CloseMode::AfterFlush);
            return conn;
        }
        let frame = self.response(Status::ACCEPT, GREETING.as_bytes());
        self.send(conn, frame);
        self.refresh_deadline(conn);
        conn
    }

    /// `bytes` arrived on `conn`. Bytes for a closed connection are ignored.
    pub fn handle_received(&mut self, now: Timestamp, conn: ConnId, bytes: &[u8]) {
        self.now = now;
        let Some(connection) = self.connection_mut(conn) else {
            return;
        };
        // The decoder is lent out while its requests are carried out: a request borrows
        // from it, and carrying it out needs the whole machine.
        let mut decoder = std::mem::replace(
            &mut connection.decoder,
            RequestDecoder::new(Default::default()),
        );
        let mut input = bytes;
        let mut active = false;
        loop {
            let (used, progress) = decoder.decode(input);
            input = &input[used..];
            match progress {
                Progress::NeedMore => break,
                Progress::Message(request) => {
                    active = true;
                    if let Some(c) = self.connection_mut(conn) {
                        c.request_started = None;
                    }
                    self.dispatch(conn, &request);
                }
                Progress::Error(error) => {
                    self.refuse_and_close(conn, &error);
                    break;
                }
            }
            if !self.is_open(conn) {
                break;
            }
        }
        let mid_message = decoder.is_mid_message();
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
    }

    /// The host wrote `count` bytes of what was queued for `conn` to its socket.
    pub fn handle_drained(&mut self, now: Timestamp, conn: ConnId, count: usize) {
        self.now = now;
        if let Some(c) = self.connection_mut(conn) {
            c.queued = c.queued.saturating_sub(count);
        }
    }

    /// `conn` ended without the machine asking (S6). A member leaves; its name is free.
    pub fn handle_closed(&mut self, now: Timestamp, conn: ConnId, how: Disconnect) {
        self.now = now;
        let cause = match how {
            Disconnect::Eof => LeaveCause::PeerClosed,
            Disconnect::Error => LeaveCause::ConnectionError,
        };
        if self.is_open(conn) {
            self.close(conn, None, cause);
        }
    }

    /// The clock reached `now`: cut connections whose deadline passed (S9), at most
    /// [`EXPIRIES_PER_CALL`] of them. If more are due, [`poll_timeout`](Self::poll_timeout)
    /// still returns a deadline at or before `now`, and the host calls again after handling
    /// whatever input is waiting.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
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
    }

    /// Start shutting down (S11): every connection gets `503` with the shutdown notice and
    /// is closed after it; no leave notices; new connections are refused.
    pub fn handle_shutdown(&mut self, now: Timestamp) {
        self.now = now;
        self.shutting_down = true;
        let frame = self.response(Status::SERVICE_UNAVAILABLE, SHUTDOWN_NOTICE.as_bytes());
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if slot.connection.is_some() {
                let conn = ConnId::new(index as u32, slot.generation);
                self.outputs.push_back(Output::Send {
                    conn,
                    frame: frame.clone(),
                });
                self.forget(conn, CloseMode::AfterFlush);
            }
        }
        self.room.clear();
        self.pending_leaves.clear();
        if let Some(shared) = &mut self.shared {
            // The host releases this node's claims in the log as one step (see `cluster`).
            shared.pending.clear();
            shared.roster.clear();
        }
    }

    // ----- outputs -------------------------------------------------------------------------

    /// The next thing to do, in order; `None` when there is nothing left.
    ///
    /// The leaves of members whose connections closed are applied here, one at a time, once
    /// the outputs before them are taken: when thousands of members vanish together, each
    /// leave notice goes out (and its recipient list is freed by the host) before the next
    /// is built, so memory stays bounded by one notice's worth rather than thousands.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            let (conn, cause) = self.pending_leaves.pop_front()?;
            let seq = self.room.sequence();
            self.apply(seq, Entry::Leave { conn, cause });
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, if any deadline is set.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    // ----- transitions ---------------------------------------------------------------------

    /// Every rule for "a request arrived in phase X", in one place.
    fn command<'r>(&self, conn: ConnId, request: &Request<'r>) -> Command<'r> {
        use Command::Refuse;
        if request.version != VERSION {
            let version = String::from_utf8_lossy(request.version);
            return Refuse(
                Status::BAD_REQUEST,
                format!("unsupported version {version:?}; expected HTTP/1.1"),
            );
        }
        let Some(method) = request.method() else {
            let token = String::from_utf8_lossy(request.method_token);
            return Refuse(
                Status::METHOD_NOT_ALLOWED,
                format!("unknown method {token:?}; use ADD, POST, GET or DELETE"),
            );
        };
        if request.user_agent == UserAgent::Conflicting {
            return Refuse(
                Status::BAD_REQUEST,
                "two User_Agent headers that disagree".into(),
            );
        }
        let member = self.room.name_of(conn);
        match (method, member) {
            (Method::Get, _) => Command::List,
            (Method::Add, Some(name)) => {
                Refuse(Status::FORBIDDEN, format!("already joined as {name}"))
            }
            (Method::Add, None) => match join_name(request.user_agent) {
                Err(error) => Refuse(Status::BAD_REQUEST, error.to_string()),
                Ok(name) if self.room.is_taken(&name) => Refuse(
                    Status::USER_NAME_EXIST,
                    format!("the user name {name} is taken"),
                ),
                Ok(name) => Command::Join(name),
            },
            (Method::Post | Method::Delete, None) => Refuse(
                Status::FORBIDDEN,
                format!("{} needs a member: join with ADD first", method.as_str()),
            ),
            (Method::Post, Some(_)) => match say_text(request.body) {
                Ok(text) => Command::Say(text),
                Err(reason) => Refuse(Status::BAD_REQUEST, reason.into()),
            },
            (Method::Delete, Some(_)) => Command::Leave,
        }
    }

    fn carry_out(&mut self, conn: ConnId, request: &Request<'_>) {
        let command = self.command(conn, request);
        if self.shared.is_some() {
            return self.carry_out_shared(conn, command);
        }
        match command {
            Command::Join(name) => self.sequence(Entry::Join { conn, name }),
            Command::Say(text) => self.sequence(Entry::Say { conn, text }),
            Command::Leave => self.sequence(Entry::Leave {
                conn,
                cause: LeaveCause::Delete,
            }),
            Command::List => {
                let body = member_list(self.room.members().map(|(_, name)| name));
                let frame = self.response(Status::OK, &body);
                self.send(conn, frame);
            }
            Command::Refuse(status, reason) => self.refuse(conn, status, reason),
        }
    }

    /// Sequences `entry` and, in this single-process room, applies it at once. This is the
    /// seam where a shared log goes (see [`room`]).
    fn sequence(&mut self, entry: Entry<'_>) {
        let seq = self.room.sequence();
        self.apply(seq, entry);
    }

    /// Applies one sequenced entry: the only place membership changes and chat is delivered.
    fn apply(&mut self, seq: u64, entry: Entry<'_>) {
        match entry {
            Entry::Join { conn, name } => {
                if !self.is_open(conn) || self.room.is_taken(&name) {
                    return;
                }
                let others = self.room.recipients();
                self.room.insert(seq, conn, name.clone());
                if let Some(c) = self.connection_mut(conn) {
                    c.is_member = true;
                }
                self.refresh_deadline(conn);
                let welcome = self.response(Status::OK, format!("Welcome, {name}!\n").as_bytes());
                self.send(conn, welcome);
                let mut notice = Vec::new();
                body::write_joined(&mut notice, name.as_str());
                let notice = self.response(Status::OK, &notice);
                self.broadcast(others, notice);
                self.outputs
                    .push_back(Output::Event(Event::Joined { conn, name }));
            }
            Entry::Say { conn, text } => {
                let Some(name) = self.room.name_of(conn) else {
                    return;
                };
                let mut body = Vec::new();
                body::write_chat(&mut body, name.as_str(), text);
                let frame = self.response(Status::OK, &body);
                let everyone = self.room.recipients();
                self.broadcast(everyone, frame);
            }
            Entry::Leave { conn, cause } => {
                let Some(name) = self.room.remove(conn) else {
                    return;
                };
                if cause == LeaveCause::Delete {
                    let goodbye =
                        self.response(Status::OK, format!("Goodbye, {name}!\n").as_bytes());
                    self.send(conn, goodbye);
                    self.close(conn, Some(CloseMode::AfterFlush), cause);
                }
                let mut notice = Vec::new();
                body::write_left(&mut notice, name.as_str());
                let notice = self.response(Status::OK, &notice);
                let others = self.room.recipients();
                self.broadcast(others, notice);
                self.outputs
                    .push_back(Output::Event(Event::Left { conn, name, cause }));
            }
        }
    }

    // ----- effects -------------------------------------------------------------------------

    /// Queues `frame` for `conn`, or cuts `conn` if its queue would pass the limit (S8).
    fn send(&mut self, conn: ConnId, frame: Frame) {
        if self.account(conn, frame.len()) {
            self.outputs.push_back(Output::Send { conn, frame });
        }
    }

    /// Queues one `frame` for each of `to`, cutting those whose queue would pass the limit.
    fn broadcast(&mut self, to: Arc<[ConnId]>, frame: Frame) {
        if to.is_empty() {
            return;
        }
        let mut any_cut = false;
        for &conn in to.iter() {
            any_cut |= !self.account(conn, frame.len());
        }
        // Those cut (and any closed before, whose leave is pending) are closed now.
        let to = match any_cut {
            false => to,
            true => to
                .iter()
                .copied()
                .filter(|&conn| self.is_open(conn))
                .collect(),
        };
        self.outputs.push_back(Output::Broadcast { to, frame });
    }

    /// Adds `len` to `conn`'s queue. Returns false, having closed `conn`, if that would pass
    /// the limit; a frame larger than the limit still goes to an empty queue.
    fn account(&mut self, conn: ConnId, len: usize) -> bool {
        let limit = self.config.max_output_bytes;
        let Some(c) = self.connection_mut(conn) else {
            return false;
        };
        if c.queued > 0 && c.queued.saturating_add(len) > limit {
            self.close(conn, Some(CloseMode::Now), LeaveCause::SlowReader);
            return false;
        }
        c.queued += len;
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
    /// gone). A member's leave is applied next.
    fn close(&mut self, conn: ConnId, mode: Option<CloseMode>, cause: LeaveCause) {
        let Some(c) = self.connection(conn) else {
            return;
        };
        let is_member = c.is_member;
        if let Some(shared) = &mut self.shared {
            shared.pending.remove(&conn);
        }
        if is_member && self.shared.is_some() {
            self.leave_shared(conn, cause);
        } else if is_member {
            if cause != LeaveCause::Delete {
                self.pending_leaves.push_back((conn, cause));
            }
        } else {
            self.outputs
                .push_back(Output::Event(Event::GuestClosed { conn, cause }));
        }
        match mode {
            Some(mode) => self.forget(conn, mode),
            None => self.release(conn),
        }
    }

    fn forget(&mut self, conn: ConnId, mode: CloseMode) {
        self.release(conn);
        self.outputs.push_back(Output::Close { conn, mode });
    }

    fn release(&mut self, conn: ConnId) {
        let Some(slot) = self.slots.get_mut(conn.index()) else {
            return;
        };
        if slot.generation != conn.generation() {
            return;
        }
        if let Some(c) = slot.connection.take() {
            if let Some(deadline) = c.deadline {
                self.deadlines.remove(&(deadline, conn));
            }
            slot.generation = slot.generation.wrapping_add(1);
            self.free_slots.push(conn.index() as u32);
            self.live -= 1;
        }
    }

    fn refresh_deadline(&mut self, conn: ConnId) {
        let (idle, request) = (self.config.idle_timeout, self.config.request_timeout);
        let Some(c) = self.connection_mut(conn) else {
            return;
        };
        let next = match c.request_started {
            Some(started) => Some(started.saturating_add(request)),
            None if !c.is_member => Some(c.last_activity.saturating_add(idle)),
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
        let second = self.now.local().and_utc().timestamp();
        if self.datetime.0 != second {
            self.datetime = (second, datetime_text(self.now.local()));
        }
        let fields = ResponseFields {
            datetime: &self.datetime.1,
            developer: &self.config.developer_header,
            server: &self.config.server_header,
        };
        let mut out = Vec::new();
        write_response(&mut out, status, &fields, body);
        Frame::new(out)
    }

    // ----- the connection table ------------------------------------------------------------

    fn allocate(&mut self) -> ConnId {
        let connection = Connection {
            decoder: RequestDecoder::new(self.config.frame),
            is_member: false,
            queued: 0,
            last_activity: self.now,
            request_started: None,
            deadline: None,
        };
        let index = match self.free_slots.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.connection = Some(connection);
        self.live += 1;
        ConnId::new(index, slot.generation)
    }

    fn connection(&self, conn: ConnId) -> Option<&Connection> {
        let slot = self.slots.get(conn.index())?;
        (slot.generation == conn.generation())
            .then_some(slot.connection.as_ref())
            .flatten()
    }

    fn connection_mut(&mut self, conn: ConnId) -> Option<&mut Connection> {
        let slot = self.slots.get_mut(conn.index())?;
        (slot.generation == conn.generation())
            .then_some(slot.connection.as_mut())
            .flatten()
    }
}

/// S2: the name is the trimmed `User_Agent` value, valid per S2.1.
fn join_name(user_agent: UserAgent<'_>) -> Result<UserName, NameError> {
    match user_agent {
        UserAgent::Value(raw) => {
            UserName::parse(std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?)
        }
        UserAgent::Missing | UserAgent::Conflicting => Err(NameError::Missing),
    }
}

/// S3: UTF-8, one trailing `\n` or `\r\n` dropped, not empty after that.
fn say_text(body: &[u8]) -> Result<&str, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "message is not valid UTF-8")?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if text.is_empty() {
        return Err("empty message");
    }
    Ok(text)
}

/// The body of `GET`'s answer (S4): the members' names, one a line, in join order.
fn member_list<'n>(names: impl Iterator<Item = &'n UserName>) -> Vec<u8> {
    let mut out = Vec::new();
    body::write_members(&mut out, names.map(UserName::as_str));
    out
}
