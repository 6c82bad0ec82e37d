//! What the three server binaries share that is not I/O.
//!
//! * [`start`]: the command line of PROTOCOL.md section X, parsed into a [`Settings`], and
//!   logging to standard error (`RUST_LOG`, default `info`).
//! * [`listen`]: binding, the one-line error and exit code 1, and the `listening on ADDR`
//!   line on standard output.
//! * [`on_shutdown_signal`]: SIGINT and SIGTERM (S11), delivered by a plain thread to a
//!   callback, so a blocking and an async driver receive them the same way.
//! * [`tune_socket`]: `TCP_NODELAY` and TCP keepalive on every accepted connection (S9).
//! * [`Driver`]: owns the [`Server`] room machine and the only clock, turns each [`Input`] into
//!   the matching `handle_*` call, and carries out the outputs through each connection's
//!   [`Outbox`]. It never blocks: the runtime's own loop waits for the next input or for
//!   [`Driver::next_wakeup`].
//! * [`Outgoing`]: a writer's queue of frames, handed to one vectored write per wake-up.
//!
//! An adapter is then four parts and nothing else: an accept loop, a reader and a writer per
//! connection, and a loop that feeds the [`Driver`].

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use chathttp_core::{
    CloseMode, ConnId, Disconnect, Event, FrameLimits, Output, Server, ServerConfig, Timestamp,
};
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::cluster::{self, ClusterSettings, Deliver, Link, LogEvent};

/// How long an accept loop waits after a failed `accept` (EMFILE and friends) before trying
/// again, so that running out of descriptors neither spins nor stops the server.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a writer that has sent its last bytes and shut down its sending side waits for
/// the peer to close, while the reader discards what still arrives (W8). Closing with unread
/// input would make the kernel send a reset, which can destroy the final `400` in flight.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long shutdown (S11) waits for writers to flush before the process exits anyway.
/// Below the 5 s the protocol allows, with room for a slow machine.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// The size of each reader's reusable buffer. Requests are small; a large body simply takes
/// several reads, and 10,000 idle connections hold 40 MB of buffers rather than 640 MB.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How many queued frames one vectored write hands to the kernel at most (below `IOV_MAX`).
pub const MAX_WRITE_SLICES: usize = 64;

/// How many inputs may wait for the driver. When it is full, readers stop reading, which is
/// the backpressure a flood of requests deserves.
pub const INPUT_CAPACITY: usize = 1024;

/// What a server binary is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The room machine's configuration.
    pub config: ServerConfig,
    /// `--redis`: the room is shared with other servers through Redis (docs/CLUSTER.md).
    pub cluster: Option<ClusterSettings>,
}

/// A ChatHTTP/1.1 chat server (one room). Logs go to standard error; set RUST_LOG to filter
/// them (default: info).
#[derive(Debug, Parser)]
#[command(version)]
struct Flags {
    /// Address and port to listen on: an IPv4 address, an IPv6 address in brackets, or
    /// `localhost`, with a port; port 0 picks a free port
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9994", value_parser = parse_bind)]
    bind: SocketAddr,
    /// Connections served at once; one more gets 503 Service Unavailable (S10)
    #[arg(long, value_name = "N", default_value = "10000")]
    max_connections: NonZeroUsize,
    /// Largest request head in bytes: start line, headers and the empty line (W5)
    #[arg(long, value_name = "N", default_value = "8192")]
    max_header_bytes: NonZeroUsize,
    /// Largest request body in bytes (W5)
    #[arg(long, value_name = "N", default_value = "65536")]
    max_body_bytes: NonZeroUsize,
    /// Unsent output per connection before it is cut as a slow reader (S8)
    #[arg(long, value_name = "N", default_value = "1048576")]
    max_output_bytes: NonZeroUsize,
    /// Seconds a connection that has not joined may stay silent (S9); fractions allowed
    #[arg(long, value_name = "SECS", default_value = "600", value_parser = parse_seconds)]
    idle_timeout: Duration,
    /// Seconds a started request may take to complete before 408 (S9); fractions allowed
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    request_timeout: Duration,
    /// Share the room with every server started with the same Redis and --room: a Redis
    /// URL such as redis://127.0.0.1:6379 (docs/CLUSTER.md). Without it the room is this
    /// process's alone
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// With --redis: the room's name; its Redis keys start with chathttp:{ROOM}:
    #[arg(long, value_name = "ROOM", default_value = "main", value_parser = parse_node_id)]
    room: String,
    /// With --redis: this server's id among the room's servers [default: HOST-PID-TIME]
    #[arg(long, value_name = "ID", value_parser = parse_node_id)]
    node_id: Option<String>,
    /// With --redis: seconds after which a server that stopped refreshing its liveness key
    /// is taken for dead: its members leave and their names are free; fractions allowed
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    node_ttl: Duration,
    /// With --redis: about how many entries the shared log keeps (XADD MAXLEN ~)
    #[arg(long, value_name = "N", default_value = "100000")]
    log_max_len: NonZeroUsize,
}

/// A node id or room name: 1 to 64 printable ASCII characters, no spaces and no braces
/// (the room's keys use `{ROOM}` as their Redis hash tag).
fn parse_node_id(text: &str) -> Result<String, String> {
    let fits = |c: char| c.is_ascii_graphic() && c != '{' && c != '}';
    if text.is_empty() || text.len() > 64 || !text.chars().all(fits) {
        return Err("expected 1 to 64 printable ASCII characters, no spaces or braces".to_owned());
    }
    Ok(text.to_owned())
}

/// `localhost:PORT` or an IP socket address (`1.2.3.4:5`, `[::1]:5`). No name lookup:
/// `localhost` is the IPv4 loopback, so the `listening on` line is predictable.
fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port.parse().map_err(|_| format!("bad port {port:?}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse()
        .map_err(|_| "expected IP:PORT, [IPv6]:PORT or localhost:PORT".to_owned())
}

/// Positive, finite seconds, fractions allowed.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| "expected seconds, such as 30 or 0.5")?;
    // NaN fails this test too.
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than zero".to_owned());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "too large".to_owned())
}

impl Flags {
    fn into_settings(self) -> Settings {
        let config = ServerConfig {
            frame: FrameLimits {
                max_head_bytes: self.max_header_bytes.get(),
                max_body_bytes: self.max_body_bytes.get(),
                ..FrameLimits::default()
            },
            max_connections: self.max_connections.get(),
            max_output_bytes: self.max_output_bytes.get(),
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            ..ServerConfig::default()
        };
        let cluster = self.redis.map(|redis| ClusterSettings {
            redis,
            node_id: self.node_id.unwrap_or_else(crate::cluster::default_node_id),
            node_ttl: self.node_ttl,
            max_len: self.log_max_len.get(),
            room: self.room,
        });
        Settings {
            bind: self.bind,
            config,
            cluster,
        }
    }
}

/// Parses the command line of `program` and starts logging. `--help` and `--version` print
/// and exit 0; a bad flag prints one line to standard error and exits 2.
pub fn start(program: &'static str) -> Settings {
    let matches = Flags::command().name(program).try_get_matches();
    let flags = matches.and_then(|m| Flags::from_arg_matches(&m));
    let settings = match flags {
        Ok(flags) => flags.into_settings(),
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            let text = error.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_env_filter(filter)
        .init();
    settings
}

/// Binds `addr` and prints `listening on ADDR` (with the real port) to standard output. If
/// the address cannot be bound, prints one line to standard error and exits 1.
pub fn listen(addr: SocketAddr) -> TcpListener {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {addr}: {error}");
            process::exit(1);
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    println!("listening on {local}");
    // The test suite and scripts wait for this line; a pipe would otherwise hold it.
    let _ = io::Write::flush(&mut io::stdout());
    listener
}

/// Set by the signal thread, read by the [`Driver`]. Signals are process-wide, and so is this.
static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);

/// On SIGINT or SIGTERM, requests shutdown and calls `wake` (from a dedicated thread), which
/// should hand the driver an [`Input::Shutdown`] without waiting.
///
/// The request is a flag that the driver checks on every input, so it gets through even when
/// the driver's input channel is full and `wake` cannot deliver anything; `wake` only ends
/// the driver's wait when it is idle. The handlers are installed before this returns, so call
/// it before [`listen`]: a signal that arrives once the `listening on` line is out then always
/// means a clean shutdown.
pub fn on_shutdown_signal(wake: impl Fn() + Send + 'static) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot install signal handlers: {error}");
            process::exit(1);
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                tracing::info!(signal, "shutting down");
                SHUTDOWN_REQUESTED.store(true, Ordering::Relaxed);
                wake();
            }
        })
        .expect("one thread can be spawned at start-up");
}

/// Turns on `TCP_NODELAY` (responses are small and should leave at once) and TCP keepalive
/// (S9: members are never cut for silence, so vanished peers must be found by the kernel).
pub fn tune_socket(stream: &impl AsFd) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15));
    let result = socket
        .set_tcp_nodelay(true)
        .and_then(|()| socket.set_tcp_keepalive(&keepalive));
    if let Err(error) = result {
        tracing::debug!(%error, "cannot tune an accepted socket");
    }
}

/// Cuts a connection at once (`CloseMode::Now`): wakes a writer stuck on a peer that does
/// not read and the reader, and makes the final close a reset. A reset also frees what the
/// kernel still holds for the peer; a graceful close would keep up to a socket buffer of
/// unread bytes alive for minutes in an orphaned socket, per slow reader.
pub fn abort_socket(stream: &impl AsFd) {
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// Logs a failed `accept`. The caller then waits [`ACCEPT_BACKOFF`] and tries again.
pub fn accept_failed(error: &io::Error) {
    tracing::warn!(%error, "accept failed; retrying in {ACCEPT_BACKOFF:?}");
}

/// What a writer is told by the driver.
#[derive(Debug)]
pub enum WriterCommand {
    /// Write these bytes after everything queued before them.
    Write(Bytes),
    /// Close the connection, as the room machine said.
    Close(CloseMode),
}

/// One connection's way to its writer, as the [`Driver`] sees it. Neither method may block.
pub trait Outbox {
    /// Hands a command to the writer's queue.
    fn push(&self, command: WriterCommand);
    /// Cuts the connection at once (see [`abort_socket`]), so that a writer stuck on a peer
    /// that does not read, and the reader, both wake up and end.
    fn abort(&self);
}

/// Something that happened, for the [`Driver`]. `S` is the runtime's stream type.
#[derive(Debug)]
pub enum Input<S> {
    /// The accept loop accepted a connection.
    Accepted(S),
    /// A reader received bytes.
    Received(ConnId, Bytes),
    /// A writer wrote this many bytes of its queue.
    Drained(ConnId, usize),
    /// A reader saw the end of its stream.
    Closed(ConnId, Disconnect),
    /// A writer ended; shutdown waits for all of them.
    WriterFinished,
    /// SIGINT or SIGTERM arrived (see [`on_shutdown_signal`]).
    Shutdown,
    /// The shared log (`--redis`) has news: an entry, a refusal, an outage.
    Log(LogEvent),
}

/// The one clock: both readings of a [`Timestamp`], taken together.
#[derive(Debug)]
struct Clock {
    origin: Instant,
}

impl Clock {
    fn now(&self) -> Timestamp {
        Timestamp::new(self.origin.elapsed(), chrono::Local::now().naive_local())
    }
}

/// Owns the room machine and every connection's [`Outbox`]. Call [`handle`](Self::handle)
/// for each input and [`handle_timeout`](Self::handle_timeout) when
/// [`next_wakeup`](Self::next_wakeup) has passed; stop when
/// [`is_finished`](Self::is_finished).
#[derive(Debug)]
pub struct Driver<O> {
    server: Server,
    clock: Clock,
    outboxes: HashMap<ConnId, O>,
    /// Writers started and not yet finished, including those of closed connections.
    writers: usize,
    /// Set by shutdown: when to exit even if some writers have not finished.
    exit_by: Option<Timestamp>,
    /// The shared log, with `--redis`.
    log: Option<Link>,
}

impl<O: Outbox> Driver<O> {
    /// A driver for a room configured by `config`.
    pub fn new(config: ServerConfig) -> Self {
        let clock = Clock {
            origin: Instant::now(),
        };
        Self {
            server: Server::new(config, clock.now()),
            clock,
            outboxes: HashMap::new(),
            writers: 0,
            exit_by: None,
            log: None,
        }
    }

    /// Shares the room through Redis (see [`cluster`]): call it once, before the first
    /// input. `deliver` hands the log threads' news to this driver as [`Input::Log`].
    pub fn share(&mut self, settings: &ClusterSettings, deliver: Deliver) {
        let now = self.clock.now();
        let config = self.server.config().clone();
        self.server = Server::new_shared(config, now, &settings.node_id);
        let (link, first) = cluster::start(settings, deliver);
        tracing::info!(node = settings.node_id, "sharing the room through Redis");
        link.feed(&mut self.server, now, first);
        self.log = Some(link);
    }

    /// Feeds one input to the room machine and carries out what it asks for. For an
    /// accepted stream, `open` starts the connection's reader and writer and returns its
    /// outbox; if it fails, the connection is dropped as if the peer had gone.
    pub fn handle<S>(&mut self, input: Input<S>, open: impl FnOnce(ConnId, S) -> io::Result<O>) {
        let now = self.clock.now();
        match input {
            Input::Accepted(stream) => {
                let conn = self.server.handle_open(now);
                match open(conn, stream) {
                    Ok(outbox) => {
                        self.writers += 1;
                        self.outboxes.insert(conn, outbox);
                    }
                    Err(error) => {
                        tracing::error!(%conn, %error, "cannot start a connection");
                        self.server.handle_closed(now, conn, Disconnect::Error);
                    }
                }
            }
            Input::Received(conn, bytes) => self.server.handle_received(now, conn, &bytes),
            Input::Drained(conn, count) => self.server.handle_drained(now, conn, count),
            Input::Closed(conn, how) => {
                tracing::debug!(%conn, ?how, "peer closed");
                self.server.handle_closed(now, conn, how);
                // The machine has forgotten `conn` without asking for a close; deliver what
                // it had already queued (a half-closed peer may still read), then close.
                if let Some(outbox) = self.outboxes.remove(&conn) {
                    outbox.push(WriterCommand::Close(CloseMode::AfterFlush));
                }
            }
            Input::WriterFinished => self.writers -= 1,
            Input::Log(event) => {
                if let Some(log) = &self.log {
                    log.feed(&mut self.server, now, event);
                }
            }
            // The request itself is the flag, checked below for every input.
            Input::Shutdown => {}
        }
        self.shut_down_if_requested(now);
        self.carry_out();
    }

    /// The clock passed [`next_wakeup`](Self::next_wakeup): let the machine cut what timed out.
    pub fn handle_timeout(&mut self) {
        let now = self.clock.now();
        self.server.handle_timeout(now);
        self.shut_down_if_requested(now);
        self.carry_out();
    }

    fn shut_down_if_requested(&mut self, now: Timestamp) {
        if self.exit_by.is_none() && SHUTDOWN_REQUESTED.load(Ordering::Relaxed) {
            self.server.handle_shutdown(now);
            self.exit_by = Some(now.saturating_add(SHUTDOWN_GRACE));
            if let Some(log) = &self.log {
                log.retire();
            }
        }
    }

    /// How long the runtime may wait for the next input before calling
    /// [`handle_timeout`](Self::handle_timeout); `None` means no deadline is set.
    pub fn next_wakeup(&self) -> Option<Duration> {
        let deadline = match (self.server.poll_timeout(), self.exit_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        deadline.map(|deadline| self.clock.now().duration_until(deadline))
    }

    /// After shutdown: every writer has finished, or the grace period is over.
    pub fn is_finished(&self) -> bool {
        let retired = self.log.as_ref().is_none_or(Link::is_retired);
        self.exit_by
            .is_some_and(|exit_by| (self.writers == 0 && retired) || self.clock.now() >= exit_by)
    }

    fn carry_out(&mut self) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Send { conn, frame } => {
                    if let Some(outbox) = self.outboxes.get(&conn) {
                        outbox.push(WriterCommand::Write(frame.into_bytes()));
                    }
                }
                Output::Broadcast { to, frame } => {
                    let bytes = frame.into_bytes();
                    for conn in to.iter() {
                        if let Some(outbox) = self.outboxes.get(conn) {
                            outbox.push(WriterCommand::Write(bytes.clone()));
                        }
                    }
                }
                Output::Close { conn, mode } => {
                    if let Some(outbox) = self.outboxes.remove(&conn) {
                        if mode == CloseMode::Now {
                            outbox.abort();
                        }
                        outbox.push(WriterCommand::Close(mode));
                    }
                }
                Output::Event(event) => log_event(&event),
            }
        }
        if let Some(log) = &self.log {
            log.take_appends(&mut self.server);
        }
    }
}

/// One log line per join, leave (with its cause) and refused request.
fn log_event(event: &Event) {
    match event {
        Event::Joined { conn, name } => tracing::info!(%conn, %name, "joined"),
        Event::Left { conn, name, cause } => tracing::info!(%conn, %name, ?cause, "left"),
        Event::Refused {
            conn,
            status,
            reason,
        } => tracing::info!(%conn, status = status.code(), reason, "bad request"),
        Event::GuestClosed { conn, cause } => tracing::debug!(%conn, ?cause, "guest closed"),
        Event::OverCapacity { conn } => tracing::warn!(%conn, "over capacity: refused"),
        other => tracing::debug!(?other, "event"),
    }
}

/// How many entries an empty writer queue keeps room for.
const IDLE_QUEUE_CAPACITY: usize = 16;

/// What a writer does next, given its queue and whether it was told to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do: wait for the next command.
    Wait,
    /// Write the queued frames (one vectored write), then look again.
    Write,
    /// Everything is written and the connection is closing after flush: shut down the
    /// sending side, linger (see [`LINGER`]), close.
    Finish,
    /// Close now, dropping what is queued.
    Stop,
}

/// A writer's queue: the frames the driver handed it, not yet written.
///
/// Its size needs no limit of its own: the room machine counts every byte it hands out
/// against each connection and cuts a connection whose unsent bytes would pass
/// `max_output_bytes` (S8), so a queue never holds more than that (plus one frame).
#[derive(Debug, Default)]
pub struct Outgoing {
    frames: VecDeque<Bytes>,
    closing: Option<CloseMode>,
}

impl Outgoing {
    /// Takes one command from the driver.
    pub fn apply(&mut self, command: WriterCommand) {
        match command {
            WriterCommand::Write(bytes) => self.frames.push_back(bytes),
            WriterCommand::Close(mode) => {
                if mode == CloseMode::Now {
                    self.frames.clear();
                }
                self.closing.get_or_insert(mode);
            }
        }
    }

    /// What to do next.
    pub fn step(&self) -> Step {
        match (self.closing, self.frames.is_empty()) {
            (Some(CloseMode::Now), _) => Step::Stop,
            (_, false) => Step::Write,
            (Some(CloseMode::AfterFlush), true) => Step::Finish,
            (None, true) => Step::Wait,
        }
    }

    /// Points `slices` at the front frames, for one vectored write; returns how many.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for (slot, frame) in slices.iter_mut().zip(&self.frames) {
            *slot = IoSlice::new(frame);
            count += 1;
        }
        count
    }

    /// Drops the first `written` bytes, which the socket took.
    pub fn consume(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.frames.front_mut() else {
                return;
            };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.frames.pop_front();
        }
        // A burst (a thousand joins at once) can grow the queue to thousands of entries;
        // an idle writer should not keep that room for the rest of its life.
        if self.frames.is_empty() && self.frames.capacity() > IDLE_QUEUE_CAPACITY {
            self.frames.shrink_to(IDLE_QUEUE_CAPACITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        let argv = std::iter::once("chat-server").chain(args.iter().copied());
        Flags::try_parse_from(argv).map(Flags::into_settings)
    }

    #[test]
    fn x_defaults_match_the_protocol() {
        let settings = parse(&[]).expect("no flags is valid");
        assert_eq!(settings.bind, "127.0.0.1:9994".parse().expect("addr"));
        let defaults = ServerConfig::default();
        assert_eq!(settings.config, defaults);
    }

    #[test]
    fn x_accepts_fractions_localhost_and_v6() {
        let settings = parse(&["--idle-timeout", "0.5", "--bind", "localhost:0"]).expect("ok");
        assert_eq!(settings.config.idle_timeout, Duration::from_millis(500));
        assert_eq!(settings.bind, "127.0.0.1:0".parse().expect("addr"));
        let settings = parse(&["--bind", "[::1]:7"]).expect("ok");
        assert_eq!(settings.bind, "[::1]:7".parse().expect("addr"));
    }

    #[test]
    fn x_rejects_zero_and_nonsense() {
        for args in [
            &["--max-connections", "0"][..],
            &["--request-timeout", "0"],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "NaN"],
            &["--max-body-bytes", "lots"],
            &["--bind", "example.com:80"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    #[test]
    fn cluster_flags_only_with_redis() {
        assert_eq!(parse(&[]).expect("ok").cluster, None);
        let settings = parse(&["--redis", "redis://127.0.0.1:6380", "--node-ttl", "0.5"]);
        let cluster = settings
            .expect("ok")
            .cluster
            .expect("--redis shares the room");
        assert_eq!(cluster.node_ttl, Duration::from_millis(500));
        assert_eq!((cluster.room.as_str(), cluster.max_len), ("main", 100_000));
        assert!(!cluster.node_id.is_empty());
        assert!(parse(&["--redis", "redis://x", "--node-id", "a b"]).is_err());
        assert!(parse(&["--redis", "redis://x", "--node-ttl", "0"]).is_err());
        assert!(parse(&["--redis", "redis://x", "--room", "a}b"]).is_err());
    }

    #[test]
    fn outgoing_consumes_partial_writes_across_frames() {
        let mut out = Outgoing::default();
        out.apply(WriterCommand::Write(Bytes::from_static(b"abc")));
        out.apply(WriterCommand::Write(Bytes::from_static(b"de")));
        out.consume(4);
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
        let count = out.io_slices(&mut slices);
        assert_eq!(&*slices[0], b"e");
        assert_eq!(count, 1);
        out.consume(1);
        assert_eq!(out.step(), Step::Wait);
        out.apply(WriterCommand::Close(CloseMode::AfterFlush));
        assert_eq!(out.step(), Step::Finish);
    }
}
