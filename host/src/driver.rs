//! The [`Driver`]: owns the [`Server`] room machine, turns each [`Input`] into the matching
//! `handle_*` call, and carries out the outputs through each connection's [`Outbox`],
//! writing its frames without waiting (see [`crate::buffers`]). It never blocks and never
//! reads a clock but its [`Clock`]: the runtime's own loop waits for the next input or for
//! [`Driver::next_wakeup`].

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chathttp_cluster::{self as cluster, ClusterSettings, Deliver, Link, LogEvent};
use chathttp_core::{CloseMode, ConnId, Disconnect, Output, Server, ServerConfig, Timestamp};

use crate::buffers;
use crate::clock::{Clock, SystemClock};
use crate::closing::{self, Lingering};
use crate::fanout::{Joined, Run};
use crate::gate::ReadGate;
use crate::gateway::Upgrade;
use crate::history::{HistoryDb, Recorded, Recorder};
use crate::layer::Layer;
use crate::log::log_event;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outboxes, Slot};
use crate::signals;
use crate::tls::{SEALED_BACKLOG, Session, Tls};
use crate::websocket::WebSocket;

/// How long a driver that has been busy must have no input before it calls its tidying
/// function (see [`Driver::tidy_when_quiet`]). Past mimalloc's delays (100 ms for free
/// segments), and long enough that a room where someone speaks a few times a second is
/// never interrupted.
pub const QUIET_BEFORE_TIDY: Duration = Duration::from_millis(500);

/// How long shutdown (S11) waits for writers to flush before the process exits anyway.
/// Below the 5 s the protocol allows, with room for a slow machine.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// The most closes the driver carries out per round. A wave of them (a thousand slow
/// readers cut by one broadcast, a thousand `408`s) costs a few system calls each; the
/// rest wait for the next round, so the members' messages that arrive meanwhile are not
/// held behind all of them. The room machine has already forgotten these connections.
pub const CLOSES_PER_ROUND: usize = 32;

/// The most inputs one [`Driver::flush`] takes between its writes. Under a steady stream
/// of messages a flush could otherwise go on for ever; after this many it returns, so that
/// the deadlines and closes it starts and ends with keep their turn, and the runtime's loop
/// calls it again at once for the connections still to write.
pub const INPUTS_PER_FLUSH: usize = 64;

/// How many inputs may wait for the driver. When it is full, readers stop reading, which is
/// the backpressure a flood of requests deserves.
pub const INPUT_CAPACITY: usize = 1024;

/// Something that happened, for the [`Driver`]. `S` is the runtime's stream type.
#[derive(Debug)]
pub enum Input<S> {
    /// The accept loop accepted a connection.
    Accepted(S),
    /// The gateway (`--http`) upgraded a request to `/ws`: a browser member's WebSocket
    /// (B1), to be read and written like an accepted connection.
    Upgraded(S, Upgrade),
    /// A reader received bytes.
    Received(ConnId, Bytes),
    /// A writer wrote this many bytes of its queue.
    Drained(ConnId, usize),
    /// A reader saw the end of its stream.
    Closed(ConnId, Disconnect),
    /// A writer ended; shutdown waits for all of them.
    WriterFinished,
    /// SIGINT or SIGTERM arrived (see [`on_shutdown_signal`](crate::on_shutdown_signal)).
    Shutdown,
    /// The shared log (`--redis`) has news: an entry, a refusal, an outage.
    Log(LogEvent),
    /// The history file's recorder (`--history-db`) committed lines, or failed.
    Recorded(Recorded),
}

/// Owns the room machine and every connection's [`Outbox`]. Call [`handle`](Self::handle)
/// for each input that has arrived and [`handle_timeout`](Self::handle_timeout) when
/// [`next_wakeup`](Self::next_wakeup) has passed, then [`flush`](Self::flush) before waiting
/// again; stop when [`is_finished`](Self::is_finished).
#[derive(Debug)]
pub struct Driver<O, C = SystemClock> {
    server: Server,
    clock: C,
    /// The time of the input being handled, for the machine's bookkeeping of writes.
    now: Timestamp,
    outboxes: Outboxes<O>,
    /// Connections with frames queued this round, written by [`flush`](Self::flush).
    unflushed: Vec<ConnId>,
    /// Broadcasts to the same members, joined before they are queued (see [`crate::fanout`]).
    run: Run,
    /// A queue this long is written at once instead of at the end of the round, so that a
    /// burst within one round never looks like a slow reader to the machine (S8).
    flush_at_bytes: usize,
    /// Writers started and not yet finished, including those of closed connections. A writer
    /// runs while its connection has a backlog or closes (see [`crate::buffers`]).
    writers: usize,
    /// Connections the machine has closed, with the close it asked for, waiting their turn
    /// (see [`CLOSES_PER_ROUND`]). Their outboxes are off the table, so nothing more is
    /// written to them until then.
    closing: VecDeque<(Slot<O>, CloseMode)>,
    /// Closed connections waiting for their peers to close (see [`Lingering`]).
    lingering: Lingering<O>,
    /// Set by shutdown: when to exit even if some writers have not finished.
    exit_by: Option<Timestamp>,
    /// The shared log, with `--redis`.
    log: Option<Link>,
    /// The history file's writer, with `--history-db` (E4).
    recorder: Option<Recorder>,
    /// Told to abandon the file (history turned off) and not yet done: shutdown waits, so
    /// that the file's epoch is cleared before the process exits.
    abandoning: bool,
    /// With `--tls-cert`: every connection speaks TLS (see [`crate::tls`]).
    tls: Option<Arc<Tls>>,
    /// TLS connections by the time their handshake must be done (S9's request timeout),
    /// earliest first. Those done or gone by then stay here until then, matching nothing.
    handshakes: VecDeque<(Timestamp, ConnId)>,
    /// Closed while the room machine paces the room (S8.1); every reader asks it.
    gate: Arc<ReadGate>,
    /// With `--http`: the counters `/metrics` serves.
    metrics: Option<Arc<Metrics>>,
    /// Called once the driver has had no input for [`QUIET_BEFORE_TIDY`].
    tidy: Option<fn()>,
    /// The time of the last input since `tidy` was last called; `None` once it has been.
    untidy_since: Option<Timestamp>,
}

impl<O: Outbox> Driver<O> {
    /// A driver for a room configured by `config`, on the system's clocks.
    pub fn new(config: ServerConfig) -> Self {
        Self::with_clock(config, SystemClock::default())
    }
}

impl<O: Outbox, C: Clock> Driver<O, C> {
    /// A driver for a room configured by `config` that reads the time from `clock`.
    pub fn with_clock(config: ServerConfig, clock: C) -> Self {
        let now = clock.now();
        let flush_at_bytes = (config.max_output_bytes / 4).clamp(1, 64 * 1024);
        Self {
            server: Server::new(config, now),
            clock,
            now,
            outboxes: Outboxes::default(),
            unflushed: Vec::new(),
            run: Run::default(),
            flush_at_bytes,
            writers: 0,
            closing: VecDeque::new(),
            lingering: Lingering::default(),
            exit_by: None,
            log: None,
            recorder: None,
            abandoning: false,
            tls: None,
            handshakes: VecDeque::new(),
            gate: Arc::default(),
            metrics: None,
            tidy: None,
            untidy_since: None,
        }
    }

    /// Calls `tidy` whenever the driver falls quiet: [`QUIET_BEFORE_TIDY`] after an input,
    /// if no other has come since. The async servers pass `return_freed_memory`.
    pub fn tidy_when_quiet(&mut self, tidy: fn()) {
        self.tidy = Some(tidy);
    }

    /// When the tidying function is next due. Worked out here rather than on every input,
    /// which only records its time.
    fn tidy_due(&self) -> Option<Timestamp> {
        self.untidy_since
            .map(|since| since.saturating_add(QUIET_BEFORE_TIDY))
    }

    /// The counters `/metrics` serves (B1), kept from now on.
    pub fn metrics(&mut self) -> Arc<Metrics> {
        Arc::clone(self.metrics.get_or_insert_default())
    }

    /// The gate every connection's reader must ask before each read (see [`crate::gate`]).
    pub fn read_gate(&self) -> Arc<ReadGate> {
        Arc::clone(&self.gate)
    }

    /// Speaks TLS on every connection accepted from now on (T1): call it once, before the
    /// first input.
    pub fn use_tls(&mut self, tls: Arc<Tls>) {
        self.tls = Some(tls);
    }

    /// Shares the room through Redis (see [`chathttp_cluster`]): call it once, before the first
    /// input. `deliver` hands the log threads' news to this driver as [`Input::Log`].
    fn share(&mut self, settings: &ClusterSettings, deliver: Deliver) {
        let now = self.clock.now();
        let config = self.server.config().clone();
        self.server = Server::new_shared(config, now, &settings.node_id);
        let (link, first) = cluster::start(settings, deliver);
        tracing::info!(node = settings.node_id, "sharing the room through Redis");
        link.feed(&mut self.server, now, first);
        self.log = Some(link);
    }

    /// Starts what runs beside the room, each on threads of its own: the shared log with
    /// `cluster` (`--redis`), the history file's recorder with `history` (`--history-db`).
    /// `send` hands their news to this driver as an [`Input`]. Call it once, before the first
    /// input.
    pub fn attach<S: 'static>(
        &mut self,
        cluster: Option<&ClusterSettings>,
        history: Option<HistoryDb>,
        send: impl Fn(Input<S>) + Send + Sync + 'static,
    ) {
        let send = Arc::new(send);
        if let Some(cluster) = cluster {
            let send = Arc::clone(&send);
            self.share(cluster, Arc::new(move |event| send(Input::Log(event))));
        }
        if let Some(db) = history {
            self.record_history(db, Arc::new(move |event| send(Input::Recorded(event))));
        }
    }

    /// Keeps the room's history in `db` (`--history-db`, E4): restores the lines it holds and
    /// records every new one before anyone receives it. Call it once, before the first input,
    /// on a driver made with `db.config` as the room's history. `deliver` hands the
    /// recorder's reports to this driver as [`Input::Recorded`].
    fn record_history(&mut self, mut db: HistoryDb, deliver: Arc<dyn Fn(Recorded) + Send + Sync>) {
        let lines = std::mem::take(&mut db.lines);
        tracing::info!(
            lines = lines.len(),
            last = db.last,
            epoch = db.config.epoch.as_str(),
            "history restored from its file"
        );
        self.server.restore_history(db.last, lines);
        self.recorder = Some(Recorder::start(db, deliver));
    }

    /// Feeds one input to the room machine and carries out what it asks for. For an
    /// accepted stream, `open` starts the connection's reader and returns its outbox; if it
    /// fails, the connection is dropped as if the peer had gone.
    pub fn handle<S>(&mut self, input: Input<S>, open: impl FnOnce(ConnId, S) -> io::Result<O>) {
        self.now = self.clock.now();
        let now = self.now;
        if self.tidy.is_some() {
            self.untidy_since = Some(now);
        }
        match input {
            Input::Accepted(stream) => {
                let layer = self.tls.as_ref().map(|tls| tls.accept().map(Layer::tls));
                let handshake = layer.is_some();
                if let Some(conn) = self.open(stream, layer.transpose(), open)
                    && handshake
                {
                    let timeout = self.server.config().request_timeout;
                    self.handshakes
                        .push_back((now.saturating_add(timeout), conn));
                }
            }
            Input::Upgraded(stream, upgrade) => {
                let frame = &self.server.config().frame;
                let read = !upgrade.read.is_empty();
                let ws = WebSocket::new(frame, upgrade.read);
                let layer = Layer::websocket(ws, upgrade.tls.map(|tls| Session::resume(*tls)));
                // Frames the client sent with its request wait in the WebSocket.
                if let Some(conn) = self.open(stream, Ok(Some(layer)), open)
                    && read
                {
                    self.receive(conn, &[]);
                }
            }
            Input::Received(conn, bytes) => {
                if let Some(metrics) = &self.metrics {
                    metrics.received(bytes.len());
                }
                self.receive(conn, &bytes);
            }
            Input::Drained(conn, count) => match self.outboxes.get_mut(conn) {
                // With TLS the machine heard of these bytes when they were sealed; the frames
                // that could not be sealed then can be now.
                Some(slot) if slot.layer.is_some() => {
                    if slot.has_unsealed() && !std::mem::replace(&mut slot.listed, true) {
                        self.unflushed.push(conn);
                    }
                }
                _ => self.server.handle_drained(now, conn, count),
            },
            Input::Closed(conn, how) => {
                self.peer_closed(conn, how);
                // Or the connection was lingering, and the peer has closed as it should.
                self.lingering.release(conn);
            }
            Input::WriterFinished => self.writers -= 1,
            Input::Recorded(Recorded::UpTo(seq)) => self.server.handle_recorded(now, seq),
            Input::Recorded(Recorded::Abandoned) => self.abandoning = false,
            Input::Recorded(Recorded::Failed(reason)) => {
                // The recorder has cleared the epoch and stopped; the machine's HistoryOff
                // event is the log line.
                self.recorder = None;
                self.server.handle_record_failed(now, reason);
            }
            Input::Log(event) => {
                if let Some(log) = &self.log {
                    log.feed(&mut self.server, now, event);
                }
            }
            // The request itself is the flag, checked below for every input.
            Input::Shutdown => {}
        }
        self.shut_down_if_requested();
        self.carry_out();
        self.report_released();
    }

    /// Opens a room connection for `stream` with `layer` and starts its reader (`open`);
    /// returns its id, or `None` if it could not be started (then it is gone, as if the peer
    /// had closed it at once).
    fn open<S>(
        &mut self,
        stream: S,
        layer: Result<Option<Layer>, rustls::Error>,
        open: impl FnOnce(ConnId, S) -> io::Result<O>,
    ) -> Option<ConnId> {
        let now = self.now;
        let conn = self.server.handle_open(now);
        match layer
            .map_err(io::Error::other)
            .and_then(|layer| open(conn, stream).map(|outbox| (outbox, layer)))
        {
            Ok((outbox, layer)) => {
                self.outboxes.insert(conn, outbox, layer);
                Some(conn)
            }
            Err(error) => {
                tracing::error!(%conn, %error, "cannot start a connection");
                self.server.handle_closed(now, conn, Disconnect::Error);
                self.server.handle_released(conn);
                None
            }
        }
    }

    /// Bytes read from `conn`: for the machine, decrypted first with TLS. A TLS connection
    /// whose peer does not speak TLS, or fails its handshake, is closed with an alert (T1).
    fn receive(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now;
        let Some(slot) = self.outboxes.get_mut(conn) else {
            // A TLS connection closed before its handshake is done still needs the rest of
            // it, to send its last frames (T1): in the queue of closes, or lingering.
            let waiting = self.closing.iter_mut().find(|(slot, _)| slot.conn == conn);
            match waiting.and_then(|(slot, _)| slot.layer.as_mut()) {
                Some((session, records)) => {
                    // A failure is carried out by the close: only the alert goes out.
                    let _ = session.receive(bytes, true);
                    session.take_records(records);
                }
                None => self.lingering.receive(conn, bytes),
            }
            return;
        };
        let Some((layer, records)) = &mut slot.layer else {
            self.server.handle_received(now, conn, bytes);
            return;
        };
        // Pongs are the layer's answers, not the machine's frames, so S8 does not count
        // them: while the peer leaves a sealed backlog unread (the layer's, this round's
        // and the writer's), none are added (RFC 6455 lets an endpoint skip pongs), so a
        // peer that pings and never reads gets nothing queued for it.
        let unread = layer.pending() + records.len() + buffers::lock(slot.outbox.queue()).backlog();
        match layer.receive(bytes, unread > SEALED_BACKLOG) {
            Ok(plaintext) => {
                if layer.wants_write() && !std::mem::replace(&mut slot.listed, true) {
                    self.unflushed.push(conn);
                }
                let peer_closed = layer.peer_closed();
                if !plaintext.is_empty() {
                    self.server.handle_received(now, conn, &plaintext);
                }
                // A WebSocket closed in order: as if the peer had closed the stream.
                if peer_closed {
                    self.peer_closed(conn, Disconnect::Eof);
                }
            }
            Err(error) => {
                tracing::info!(%conn, %error, "closing the connection");
                self.server.handle_closed(now, conn, Disconnect::Error);
                if let Some(mut slot) = self.outboxes.remove(conn) {
                    // Only the alert goes out.
                    slot.batch = Default::default();
                    self.closing.push_back((slot, CloseMode::AfterFlush));
                }
            }
        }
    }

    /// The peer of `conn` closed (its stream, or its WebSocket).
    fn peer_closed(&mut self, conn: ConnId, how: Disconnect) {
        tracing::debug!(%conn, ?how, "peer closed");
        self.server.handle_closed(self.now, conn, how);
        // The machine has forgotten `conn` without asking for a close; deliver what it had
        // already queued (a half-closed peer may still read), then close.
        if let Some(slot) = self.outboxes.remove(conn) {
            self.writers +=
                closing::close(slot, CloseMode::AfterFlush, self.now, &mut self.lingering);
        }
    }

    /// Closes TLS connections whose handshake is not done by their deadline (S9, T1), a
    /// slice at a time.
    fn expire_handshakes(&mut self) {
        for _ in 0..CLOSES_PER_ROUND {
            let Some(&(deadline, conn)) = self.handshakes.front() else {
                break;
            };
            if deadline > self.now {
                break;
            }
            self.handshakes.pop_front();
            let handshaking = self.outboxes.get_mut(conn).is_some_and(|slot| {
                slot.layer
                    .as_ref()
                    .is_some_and(|(layer, _)| layer.is_handshaking())
            });
            if handshaking {
                tracing::info!(%conn, "TLS handshake not done within the request timeout; closing");
                self.server.handle_closed(self.now, conn, Disconnect::Error);
                if let Some(slot) = self.outboxes.remove(conn) {
                    self.closing.push_back((slot, CloseMode::Now));
                }
            }
        }
    }

    /// The clock passed [`next_wakeup`](Self::next_wakeup): let the machine cut what timed out.
    pub fn handle_timeout(&mut self) {
        self.now = self.clock.now();
        self.lingering.expire(self.now);
        self.expire_handshakes();
        self.server.handle_timeout(self.now);
        self.shut_down_if_requested();
        self.carry_out();
        self.report_released();
        if let (Some(tidy), Some(due)) = (self.tidy, self.tidy_due())
            && self.now >= due
        {
            self.untidy_since = None;
            tidy();
        }
    }

    /// Writes what this round queued, one system call per connection, without waiting (see
    /// [`crate::buffers`]), then up to [`CLOSES_PER_ROUND`] closes; first carries out
    /// deadlines that have passed. Call it after the inputs that have arrived, before waiting
    /// for more: the fewer rounds, the more frames each call carries.
    ///
    /// Between writes it takes the inputs that have `arrived` meanwhile (`open` starts an
    /// accepted connection, as in [`handle`](Self::handle)). A message that arrives while
    /// the one before it is still being written to a hundred members then goes out with it
    /// to every member not yet written to, in the same system call, instead of waiting for
    /// the whole fan-out to end: when messages come faster than a fan-out takes, rounds
    /// merge instead of queueing. After [`INPUTS_PER_FLUSH`] inputs the flush returns, and
    /// the connections it has not written yet wait for the next one (see
    /// [`next_wakeup`](Self::next_wakeup)).
    pub fn flush<S>(
        &mut self,
        mut arrived: impl FnMut() -> Option<Input<S>>,
        mut open: impl FnMut(ConnId, S) -> io::Result<O>,
    ) {
        // Inputs that never stop coming must not hold deadlines off (S9, lingering closes):
        // the runtimes' loops only wait for the clock when no input is waiting.
        if self.next_wakeup().is_some_and(|delay| delay.is_zero()) {
            self.handle_timeout();
        }
        let mut taken = 0;
        let mut next = 0;
        // The inputs taken list more connections at the end, some already written this
        // round.
        while let Some(&conn) = self.unflushed.get(next) {
            next += 1;
            if let Some(slot) = self.outboxes.get_mut(conn) {
                slot.listed = false;
                let (written, started) = slot.write();
                self.writers += started;
                self.server.handle_drained(self.now, conn, written);
                // A drain can let the machine go on: the next slice of a replay, input set
                // aside while the room was paced. Nothing else may come to carry it out.
                self.carry_out();
            }
            while taken < INPUTS_PER_FLUSH {
                let Some(input) = arrived() else { break };
                taken += 1;
                self.handle(input, &mut open);
            }
            if taken == INPUTS_PER_FLUSH {
                break;
            }
        }
        self.unflushed.drain(..next);
        for _ in 0..CLOSES_PER_ROUND {
            let Some((slot, mode)) = self.closing.pop_front() else {
                break;
            };
            self.writers += closing::close(slot, mode, self.now, &mut self.lingering);
        }
        self.report_released();
        // Once a round, not once an input: a scrape sees the room as of the last round.
        if let Some(metrics) = &self.metrics {
            metrics.publish(&self.server);
        }
    }

    /// Tells the machine which closed connections' sockets are gone, so that their places
    /// under the connection limit are free again (S13).
    fn report_released(&mut self) {
        for conn in self.lingering.released.drain(..) {
            self.server.handle_released(conn);
        }
    }

    fn shut_down_if_requested(&mut self) {
        if self.exit_by.is_none() && signals::shutdown_requested() {
            self.server.handle_shutdown(self.now);
            self.exit_by = Some(self.now.saturating_add(SHUTDOWN_GRACE));
            if let Some(log) = &self.log {
                log.retire();
            }
        }
    }

    /// How long the runtime may wait for the next input before calling
    /// [`handle_timeout`](Self::handle_timeout); `None` means no deadline is set. Zero while
    /// writes, closes or expiries wait for their turn.
    pub fn next_wakeup(&self) -> Option<Duration> {
        if !self.unflushed.is_empty() || !self.closing.is_empty() {
            return Some(Duration::ZERO);
        }
        let deadline = [
            self.server.poll_timeout(),
            self.exit_by,
            self.lingering.next_deadline(),
            self.handshakes.front().map(|&(deadline, _)| deadline),
            self.tidy_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        deadline.map(|deadline| self.clock.now().duration_until(deadline))
    }

    /// After shutdown: every writer has finished and every peer has closed, or the grace
    /// period is over.
    pub fn is_finished(&self) -> bool {
        let retired = self.log.as_ref().is_none_or(Link::is_retired);
        // Frames held behind a line not yet recorded (E4) are not written yet: the S11
        // notices among them wait for the commit, or for the machine's record timeout.
        let done = self.writers == 0
            && !self.server.is_withholding()
            && !self.abandoning
            && self.unflushed.is_empty()
            && self.closing.is_empty()
            && self.lingering.is_empty()
            && retired;
        self.exit_by
            .is_some_and(|exit_by| done || self.clock.now() >= exit_by)
    }

    fn carry_out(&mut self) {
        // Queueing the last run may write, and a drain may let the machine go on: until
        // neither has anything left.
        self.carry_out_outputs();
        while self.end_run() {
            self.carry_out_outputs();
        }
        if let Some(log) = &self.log {
            log.take_appends(&mut self.server);
        }
    }

    fn carry_out_outputs(&mut self) {
        while let Some(output) = self.server.poll_output() {
            // Anything but a broadcast comes after the broadcasts before it, for everyone.
            if !matches!(output, Output::Broadcast { .. }) {
                self.end_run();
            }
            match output {
                Output::Send { conn, frame } => {
                    let bytes = frame.into_bytes();
                    if let Some(metrics) = &self.metrics {
                        metrics.queued(1, bytes.len());
                    }
                    self.queue(conn, bytes);
                }
                Output::Broadcast { to, frame } => {
                    let bytes = frame.into_bytes();
                    if let Some(metrics) = &self.metrics {
                        metrics.queued(to.len(), bytes.len());
                    }
                    if let Some(joined) = self.run.push(to, bytes) {
                        self.queue_run(joined);
                    }
                }
                Output::Close { conn, mode } => match self.outboxes.remove(conn) {
                    Some(slot) => self.closing.push_back((slot, mode)),
                    // Never started (see `handle`): there is no socket to wait for.
                    None => self.lingering.released.push(conn),
                },
                Output::PauseReading => {
                    tracing::debug!("members are behind: pausing reading (S8.1)");
                    self.gate.close();
                }
                Output::ResumeReading => {
                    tracing::debug!("members caught up: reading again");
                    self.gate.open();
                }
                // Without a recorder (it failed) the machine turns history off itself, at its
                // record timeout, if it has not heard of the failure yet.
                Output::Record(line) => {
                    if let Some(recorder) = &self.recorder {
                        recorder.record(line);
                    }
                }
                // After a failed commit the recorder has cleared the epoch itself and is gone.
                Output::StopRecording => {
                    if let Some(recorder) = self.recorder.take() {
                        recorder.abandon();
                        self.abandoning = true;
                    }
                }
                Output::Event(event) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.event(&event);
                    }
                    log_event(&event);
                }
            }
        }
    }

    /// Queues the broadcasts joined so far; returns whether there were any.
    fn end_run(&mut self) -> bool {
        let Some(joined) = self.run.take() else {
            return false;
        };
        self.queue_run(joined);
        true
    }

    /// Queues a run of broadcasts for each of its recipients: the joined frames as one entry,
    /// or one by one for a connection whose layer frames each (a WebSocket's messages).
    fn queue_run(&mut self, joined: Joined) {
        for &conn in joined.to.iter() {
            match self.outboxes.get_mut(conn) {
                Some(slot)
                    if slot
                        .layer
                        .as_ref()
                        .is_some_and(|(layer, _)| layer.frames_each()) =>
                {
                    for frame in joined.frames() {
                        self.queue(conn, frame);
                    }
                }
                Some(_) => self.queue(conn, joined.bytes.clone()),
                None => {}
            }
        }
    }

    /// Queues `bytes` for `conn`, to be written by [`flush`](Self::flush), or at once if the
    /// connection's batch has grown long.
    fn queue(&mut self, conn: ConnId, bytes: Bytes) {
        let Some(slot) = self.outboxes.get_mut(conn) else {
            return;
        };
        slot.batch.push(bytes);
        if slot.batch.len() >= self.flush_at_bytes {
            let (written, started) = slot.write();
            self.writers += started;
            self.server.handle_drained(self.now, conn, written);
        } else if !std::mem::replace(&mut slot.listed, true) {
            self.unflushed.push(conn);
        }
    }
}

#[cfg(test)]
mod tests;
