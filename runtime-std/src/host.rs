//! What the three server binaries share that is not I/O.
//!
//! * [`start`]: the command line of PROTOCOL.md section X, parsed into a [`Settings`], and
//!   logging to standard error (`RUST_LOG`, default `info`).
//! * [`listen`]: binding, the one-line error and exit code 1, and the `listening on ADDR`
//!   line on standard output.
//! * [`on_shutdown_signal`]: SIGINT and SIGTERM (S11), delivered by a plain thread to a
//!   callback, so a blocking and an async driver receive them the same way.
//! * [`tune_socket`]: `TCP_NODELAY`, TCP keepalive (S9) and a bound on what the kernel holds
//!   unsent (S8) on every accepted connection.
//! * [`Driver`]: owns the [`Server`] room machine and the only clock, turns each [`Input`] into
//!   the matching `handle_*` call, and carries out the outputs through each connection's
//!   [`Outbox`], writing its frames without waiting (see [`crate::buffers`]). It never
//!   blocks: the runtime's own loop waits for the next input or for
//!   [`Driver::next_wakeup`].
//!
//! An adapter is then four parts and nothing else: an accept loop, a reader and a writer per
//! connection, and a loop that feeds the [`Driver`].

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::process;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chathttp_core::{
    CloseMode, ConnId, Disconnect, Event, FrameLimits, Output, Server, ServerConfig, Timestamp,
};
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::buffers::{self, Frames, Outgoing};
use crate::cluster::{self, ClusterSettings, Deliver, Link, LogEvent};

/// The allocator the async server binaries install (`#[global_allocator]`). With glibc's,
/// the short-lived buffers of a burst of joins (member lists, notices, batches) leave pages
/// that the connections' long-lived state keeps half used: 6.8 KB of RSS per idle member at
/// 10,000 members, against 4.7 KB with mimalloc, whose size classes keep them apart (see
/// docs/BENCHMARKS.md). `chat-server-std` keeps glibc's: mimalloc gives every thread a heap
/// of its own, and with a thread per connection 1,000 stalled clients took 270 MB instead of
/// 58 MB.
///
/// mimalloc 2 (the crate's `v2` feature), not 3: version 3 returns freed pages to the system
/// a second after the fact and only when its heap is next used, so an idle room kept its
/// joins' garbage (smol, 10,000 idle members: 4.8-5.6 KB of RSS each with v3, 3.0-3.1 KB
/// with v2, whose delay is 10 ms).
pub use mimalloc::MiMalloc;

/// Asks mimalloc to return to the system the memory it holds free. mimalloc 2 returns freed
/// pages 10 ms after the fact (free segments 100 ms), but only when its heap is next used: a
/// room that falls idle after a burst of joins keeps the burst's garbage for as long as it
/// stays idle. With 10,000 idle members that was 3.9 to 8.4 KB of RSS per member from one
/// run to the next, depending on what the server happened to do last; after this call it is
/// 2.3 KB, the live state (docs/BENCHMARKS.md, "Memory and joins"). The collection is
/// forced: a gentle one left 2.9 to 5.2 KB. The async drivers call this when they fall quiet
/// (see [`Driver::tidy_when_quiet`]), so its cost (a walk over the heap) is never paid under
/// load.
#[allow(unsafe_code)] // The project's one unsafe block: a call into the allocator.
pub fn return_freed_memory() {
    let started = Instant::now();
    // SAFETY: `mi_collect` has no preconditions; any thread may call it at any time,
    // whichever allocator the process uses.
    unsafe { libmimalloc_sys::mi_collect(true) }
    tracing::debug!(took = ?started.elapsed(), "returned freed memory to the system");
}

/// How long a driver that has been busy must have no input before it calls its tidying
/// function (see [`Driver::tidy_when_quiet`]). Past mimalloc's delays (100 ms for free
/// segments), and long enough that a room where someone speaks a few times a second is
/// never interrupted.
pub const QUIET_BEFORE_TIDY: Duration = Duration::from_millis(500);

/// How long an accept loop waits after a failed `accept` (EMFILE and friends) before trying
/// again, so that running out of descriptors neither spins nor stops the server.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a connection that has sent its last bytes and shut down its sending side waits
/// for the peer to close, while the reader discards what still arrives (W8). Closing with
/// unread input would make the kernel send a reset, which can destroy the final `400` in
/// flight.
pub const LINGER: Duration = Duration::from_secs(2);

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
    // mimalloc asks for transparent huge pages on its whole arena. Each 2 MiB page is then
    // zeroed in one go the first time the heap reaches it, in the middle of a round: 10 ms
    // and more on this VM, while 1,000 connections' buffers grew at once. And the resident
    // size of an idle room grew by 2 MiB steps. Small pages cost neither.
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(%error, "cannot turn transparent huge pages off");
    }
    settings
}

/// Binds `addr` and prints `listening on ADDR` (with the real port) to standard output. If
/// the address cannot be bound, prints one line to standard error and exits 1.
pub fn listen(addr: SocketAddr) -> TcpListener {
    let listener = match bind(addr) {
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

/// How many connections the kernel may hold established for us before `accept`. std's
/// `TcpListener::bind` asks for 128: a thousand clients connecting at once overflowed it, and
/// the dropped ones came back a second later with the SYN's retransmission, a second wave.
const LISTEN_BACKLOG: i32 = 1024;

/// `TcpListener::bind` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as std sets it).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
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

/// Tunes an accepted connection:
///
/// * `TCP_NODELAY`: responses are small and should leave at once;
/// * TCP keepalive (S9): members are never cut for silence, so vanished peers must be found by
///   the kernel;
/// * `TCP_NOTSENT_LOWAT` of `max_output_bytes`: the kernel takes at most that much more for a
///   peer that does not read, as the server itself does (S8). Left to itself, Linux grows a
///   socket's send buffer to 4 MiB: each of 1,000 peers that never read then pinned about
///   2.8 MB of kernel memory and cost one `send` per broadcast until it was full, and a slow
///   reader's backlog sat where S8 cannot count it. Bytes in flight to a peer that reads are
///   not limited (they are sent, not unsent), so a fast reader keeps the whole window.
pub fn tune_socket(stream: &impl AsFd, max_output_bytes: usize) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15));
    let unsent = u32::try_from(max_output_bytes).unwrap_or(u32::MAX);
    let result = socket
        .set_tcp_nodelay(true)
        .and_then(|()| socket.set_tcp_keepalive(&keepalive))
        .and_then(|()| socket.set_tcp_notsent_lowat(unsent));
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

/// One connection as the [`Driver`] holds it: the socket, and the queue it shares with the
/// connection's writer (which also holds the writer's waker).
pub trait Outbox: AsFd {
    /// The frames waiting for this connection.
    fn queue(&self) -> &Mutex<Outgoing>;
    /// Starts the connection's writer (see [`crate::buffers`]), which sends
    /// [`Input::WriterFinished`] when it ends. Must not block.
    fn start_writer(&self) -> io::Result<()>;
    /// Lets go of the driver's handle on the socket. Dropping the last handle closes the
    /// socket, a few system calls that an async runtime can leave to one of its tasks rather
    /// than make the driver's round wait for (a hundred peers closing at once).
    fn release(self)
    where
        Self: Sized,
    {
        drop(self);
    }
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
/// for each input that has arrived and [`handle_timeout`](Self::handle_timeout) when
/// [`next_wakeup`](Self::next_wakeup) has passed, then [`flush`](Self::flush) before waiting
/// again; stop when [`is_finished`](Self::is_finished).
#[derive(Debug)]
pub struct Driver<O> {
    server: Server,
    clock: Clock,
    /// The time of the input being handled, for the machine's bookkeeping of writes.
    now: Timestamp,
    outboxes: Outboxes<O>,
    /// Connections with frames queued this round, written by [`flush`](Self::flush).
    unflushed: Vec<ConnId>,
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
    /// Called once the driver has had no input for [`QUIET_BEFORE_TIDY`].
    tidy: Option<fn()>,
    /// The time of the last input since `tidy` was last called; `None` once it has been.
    untidy_since: Option<Timestamp>,
}

impl<O: Outbox> Driver<O> {
    /// A driver for a room configured by `config`.
    pub fn new(config: ServerConfig) -> Self {
        let clock = Clock {
            origin: Instant::now(),
        };
        let now = clock.now();
        let flush_at_bytes = (config.max_output_bytes / 4).clamp(1, 64 * 1024);
        Self {
            server: Server::new(config, now),
            clock,
            now,
            outboxes: Outboxes::default(),
            unflushed: Vec::new(),
            flush_at_bytes,
            writers: 0,
            closing: VecDeque::new(),
            lingering: Lingering::default(),
            exit_by: None,
            log: None,
            tidy: None,
            untidy_since: None,
        }
    }

    /// Calls `tidy` whenever the driver falls quiet: [`QUIET_BEFORE_TIDY`] after an input,
    /// if no other has come since. The async servers pass [`return_freed_memory`].
    pub fn tidy_when_quiet(&mut self, tidy: fn()) {
        self.tidy = Some(tidy);
    }

    /// When the tidying function is next due. Worked out here rather than on every input,
    /// which only records its time.
    fn tidy_due(&self) -> Option<Timestamp> {
        self.untidy_since
            .map(|since| since.saturating_add(QUIET_BEFORE_TIDY))
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
    /// accepted stream, `open` starts the connection's reader and returns its outbox; if it fails, the connection is dropped as if the peer had gone.
    pub fn handle<S>(&mut self, input: Input<S>, open: impl FnOnce(ConnId, S) -> io::Result<O>) {
        self.now = self.clock.now();
        let now = self.now;
        if self.tidy.is_some() {
            self.untidy_since = Some(now);
        }
        match input {
            Input::Accepted(stream) => {
                let conn = self.server.handle_open(now);
                match open(conn, stream) {
                    Ok(outbox) => {
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
                if let Some(slot) = self.outboxes.remove(conn) {
                    self.close(slot, CloseMode::AfterFlush);
                }
                // Or the connection was lingering, and the peer has closed as it should.
                self.lingering.release(conn);
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
        self.shut_down_if_requested();
        self.carry_out();
    }

    /// The clock passed [`next_wakeup`](Self::next_wakeup): let the machine cut what timed out.
    pub fn handle_timeout(&mut self) {
        self.now = self.clock.now();
        self.lingering.expire(self.now);
        self.server.handle_timeout(self.now);
        self.shut_down_if_requested();
        self.carry_out();
        if let (Some(tidy), Some(due)) = (self.tidy, self.tidy_due()) {
            if self.now >= due {
                self.untidy_since = None;
                tidy();
            }
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
            self.close(slot, mode);
        }
    }

    fn shut_down_if_requested(&mut self) {
        if self.exit_by.is_none() && SHUTDOWN_REQUESTED.load(Ordering::Relaxed) {
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
        let done = self.writers == 0
            && self.unflushed.is_empty()
            && self.closing.is_empty()
            && self.lingering.is_empty()
            && retired;
        self.exit_by
            .is_some_and(|exit_by| done || self.clock.now() >= exit_by)
    }

    fn carry_out(&mut self) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Send { conn, frame } => self.queue(conn, frame.into_bytes()),
                Output::Broadcast { to, frame } => {
                    let bytes = frame.into_bytes();
                    for &conn in to.iter() {
                        self.queue(conn, bytes.clone());
                    }
                }
                Output::Close { conn, mode } => {
                    if let Some(slot) = self.outboxes.remove(conn) {
                        self.closing.push_back((slot, mode));
                    }
                }
                Output::Event(event) => log_event(&event),
            }
        }
        if let Some(log) = &self.log {
            log.take_appends(&mut self.server);
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

    /// Carries out a close the machine asked for, on a connection already off the table.
    ///
    /// Most closes need no writer: a connection cut at once is shut down here, and one closed
    /// after a last frame (a `400`, a `408`) has it taken by the kernel at once, so the driver
    /// half-closes it and lets it linger. A thousand such closes (a wave of request
    /// timeouts) then start no task or thread. Only a connection whose writer already
    /// runs, or whose last frames the kernel does not take, is left to its writer.
    fn close(&mut self, mut slot: Slot<O>, mode: CloseMode) {
        if mode == CloseMode::Now {
            abort_socket(&slot.outbox);
        }
        let mut queue = buffers::lock(slot.outbox.queue());
        if !queue.with_writer() {
            match mode {
                CloseMode::Now => {
                    drop(queue);
                    slot.outbox.release();
                    return;
                }
                CloseMode::AfterFlush => {
                    // The machine has forgotten `conn`: what is written needs no report.
                    slot.batch.send_now(&slot.outbox);
                    if slot.batch.is_empty() {
                        drop(queue);
                        let deadline = self.now.saturating_add(LINGER);
                        self.lingering.start(slot.conn, slot.outbox, deadline);
                        return;
                    }
                }
            }
        }
        queue.append(&mut slot.batch);
        if queue.close(mode) {
            drop(queue);
            self.writers += start_writer(&slot.outbox);
        }
    }
}

/// Connections the driver has closed after their last frames: each has its sending side shut
/// down and waits, its reader discarding input, until the peer closes too (its reader's
/// [`Input::Closed`]) or [`LINGER`] passes, when it is shut down for good. Until then the
/// driver keeps a handle on the socket, so that the descriptor is closed with nothing unread
/// in it and the peer gets a clean end of stream, not a reset.
#[derive(Debug)]
struct Lingering<O> {
    outboxes: HashMap<ConnId, O>,
    /// When each one's time is up, earliest first (every connection lingers as long).
    /// Connections whose peers closed early stay here until then, matching nothing.
    deadlines: VecDeque<(Timestamp, ConnId)>,
}

impl<O> Default for Lingering<O> {
    fn default() -> Self {
        Self {
            outboxes: HashMap::new(),
            deadlines: VecDeque::new(),
        }
    }
}

impl<O: Outbox> Lingering<O> {
    /// Half-closes `outbox`'s socket and lets it linger until `deadline`.
    fn start(&mut self, conn: ConnId, outbox: O, deadline: Timestamp) {
        let _ = socket2::SockRef::from(&outbox).shutdown(std::net::Shutdown::Write);
        self.outboxes.insert(conn, outbox);
        self.deadlines.push_back((deadline, conn));
    }

    /// The peer closed: the reader has read everything, so the socket can close cleanly.
    fn release(&mut self, conn: ConnId) {
        if let Some(outbox) = self.outboxes.remove(&conn) {
            outbox.release();
        }
    }

    /// Shuts down for good up to [`CLOSES_PER_ROUND`] connections whose time is up; that
    /// ends each one's reader, which drops the last handle.
    fn expire(&mut self, now: Timestamp) {
        for _ in 0..CLOSES_PER_ROUND {
            let Some(&(deadline, conn)) = self.deadlines.front() else {
                break;
            };
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(outbox) = self.outboxes.remove(&conn) {
                let _ = socket2::SockRef::from(&outbox).shutdown(std::net::Shutdown::Both);
                outbox.release();
            }
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.front().map(|&(deadline, _)| deadline)
    }

    fn is_empty(&self) -> bool {
        self.outboxes.is_empty()
    }
}

/// An open connection as the driver keeps it: its outbox, and the frames queued for it this
/// round, which only the driver touches (no lock per frame).
#[derive(Debug)]
struct Slot<O> {
    conn: ConnId,
    outbox: O,
    batch: Frames,
    /// On the driver's list of connections to write at the end of the round.
    listed: bool,
}

impl<O: Outbox> Slot<O> {
    /// Writes the batch now, or gives it to the writer if the writer owns the socket or the
    /// kernel does not take it all. Returns the bytes written, and how many writers were
    /// started (zero or one).
    fn write(&mut self) -> (usize, usize) {
        let mut queue = buffers::lock(self.outbox.queue());
        let written = if queue.with_writer() {
            0
        } else {
            self.batch.send_now(&self.outbox)
        };
        if self.batch.is_empty() {
            return (written, 0);
        }
        queue.append(&mut self.batch);
        if queue.hand_to_writer() {
            drop(queue);
            return (written, start_writer(&self.outbox));
        }
        (written, 0)
    }
}

/// The connections the driver holds, at their [`ConnId::index`]: a broadcast looks up every
/// member, and a hash map's probing was a third of the driver's time at 5,000 members.
#[derive(Debug)]
struct Outboxes<O> {
    slots: Vec<Option<Slot<O>>>,
}

impl<O> Default for Outboxes<O> {
    fn default() -> Self {
        Self { slots: Vec::new() }
    }
}

impl<O> Outboxes<O> {
    fn insert(&mut self, conn: ConnId, outbox: O) {
        let index = conn.index();
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(Slot {
            conn,
            outbox,
            batch: Frames::default(),
            listed: false,
        });
    }

    fn get_mut(&mut self, conn: ConnId) -> Option<&mut Slot<O>> {
        match self.slots.get_mut(conn.index()) {
            Some(Some(slot)) if slot.conn == conn => Some(slot),
            _ => None,
        }
    }

    fn remove(&mut self, conn: ConnId) -> Option<Slot<O>> {
        let slot = self.slots.get_mut(conn.index())?;
        match slot {
            Some(entry) if entry.conn == conn => slot.take(),
            _ => None,
        }
    }
}

/// Starts `outbox`'s writer; returns 1 if it runs. If it cannot be started (no threads left),
/// the connection is cut: its reader then ends and the machine forgets it.
fn start_writer(outbox: &impl Outbox) -> usize {
    match outbox.start_writer() {
        Ok(()) => 1,
        Err(error) => {
            tracing::error!(%error, "cannot start a writer; cutting the connection");
            abort_socket(outbox);
            0
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection for a driver under test: the server's side of a loopback socket.
    #[derive(Debug)]
    struct Loopback {
        stream: std::net::TcpStream,
        queue: Mutex<Outgoing>,
    }

    impl AsFd for Loopback {
        fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
            self.stream.as_fd()
        }
    }

    impl Outbox for Loopback {
        fn queue(&self) -> &Mutex<Outgoing> {
            &self.queue
        }
        fn start_writer(&self) -> io::Result<()> {
            Err(io::Error::other("the test expects no writer"))
        }
    }

    /// For a flush with no input arriving meanwhile.
    fn no_arrivals() -> Option<Input<std::net::TcpStream>> {
        None
    }

    /// Opens `count` connections on a fresh driver; returns their ids and the clients' ends.
    fn driver_with_clients(
        count: usize,
        config: ServerConfig,
    ) -> (Driver<Loopback>, Vec<ConnId>, Vec<std::net::TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut driver = Driver::new(config);
        let mut conns = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..count {
            let addr = listener.local_addr().expect("addr");
            let client = std::net::TcpStream::connect(addr).expect("connect");
            client.set_nonblocking(true).expect("non-blocking");
            let (stream, _) = listener.accept().expect("accept");
            driver.handle(Input::Accepted(stream), |id, stream| {
                conns.push(id);
                let queue = Mutex::default();
                Ok(Loopback { stream, queue })
            });
            clients.push(client);
        }
        (driver, conns, clients)
    }

    /// Opens `wave` connections on a fresh driver, each sending `bytes` in one round.
    fn driver_with_wave(
        wave: usize,
        bytes: &'static [u8],
        config: ServerConfig,
    ) -> (Driver<Loopback>, Vec<std::net::TcpStream>) {
        let (mut driver, conns, clients) = driver_with_clients(wave, config);
        for conn in conns {
            received(&mut driver, conn, bytes.to_vec());
        }
        (driver, clients)
    }

    fn received(driver: &mut Driver<Loopback>, conn: ConnId, bytes: Vec<u8>) {
        let input = Input::Received(conn, Bytes::from(bytes));
        driver.handle::<std::net::TcpStream>(input, |_, _| unreachable!());
    }

    fn post(from: &str, text: &str) -> Vec<u8> {
        let length = text.len();
        format!("POST / HTTP/1.1\nUser_Agent: {from}\nContent-Length: {length}\n\n{text}").into()
    }

    /// What each client has received so far, as text.
    fn read_all(clients: &mut [std::net::TcpStream]) -> Vec<String> {
        use std::io::Read;
        let mut texts = Vec::new();
        for client in clients {
            let mut bytes = Vec::new();
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = client.read(&mut buffer) {
                bytes.extend_from_slice(&buffer[..n]);
            }
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        texts
    }

    /// A room of `count` joined members named m0, m1…, with their join notices read.
    fn room_of(count: usize) -> (Driver<Loopback>, Vec<ConnId>, Vec<std::net::TcpStream>) {
        let (mut driver, conns, mut clients) = driver_with_clients(count, ServerConfig::default());
        for (i, &conn) in conns.iter().enumerate() {
            let add = format!("ADD / HTTP/1.1\nUser_Agent: m{i}\n\n");
            received(&mut driver, conn, add.into());
            driver.flush(no_arrivals, |_, _| unreachable!());
        }
        read_all(&mut clients);
        (driver, conns, clients)
    }

    /// Runs rounds as a runtime does while [`Driver::next_wakeup`] says zero and no input
    /// waits (the deadline, then flush); returns how many clients saw their end of stream
    /// in each round, and what each received.
    fn rounds_until_idle(
        driver: &mut Driver<Loopback>,
        clients: &mut [std::net::TcpStream],
    ) -> (Vec<usize>, Vec<String>) {
        use std::io::Read;
        let mut received = vec![Vec::new(); clients.len()];
        let mut ended = vec![false; clients.len()];
        let mut closed_per_round = Vec::new();
        loop {
            let mut closed = 0;
            for (i, client) in clients.iter_mut().enumerate() {
                if ended[i] {
                    continue;
                }
                let mut buffer = [0; 512];
                while let Ok(n) = client.read(&mut buffer) {
                    if n == 0 {
                        ended[i] = true;
                        closed += 1;
                        break;
                    }
                    received[i].extend_from_slice(&buffer[..n]);
                }
            }
            closed_per_round.push(closed);
            assert!(closed_per_round.len() <= clients.len() + 2, "progress");
            if driver.next_wakeup() != Some(Duration::ZERO) {
                break;
            }
            driver.handle_timeout();
            driver.flush(no_arrivals, |_, _| unreachable!());
        }
        let texts = received
            .iter()
            .map(|r| String::from_utf8_lossy(r).into())
            .collect();
        (closed_per_round, texts)
    }

    #[test]
    fn a_driver_tidies_once_it_has_been_quiet_and_again_after_new_input() {
        use std::sync::atomic::AtomicUsize;
        static TIDIED: AtomicUsize = AtomicUsize::new(0);
        fn tidy() {
            TIDIED.fetch_add(1, Ordering::Relaxed);
        }
        let (mut driver, conns, _clients) = room_of(2);
        driver.tidy_when_quiet(tidy);
        received(&mut driver, conns[0], post("m0", "hello"));
        let wakeup = driver.next_wakeup().expect("the driver asks to be woken");
        assert!(
            wakeup <= QUIET_BEFORE_TIDY,
            "woken for the tidy: {wakeup:?}"
        );
        driver.handle_timeout();
        assert_eq!(
            TIDIED.load(Ordering::Relaxed),
            0,
            "not while the room is busy"
        );

        std::thread::sleep(QUIET_BEFORE_TIDY);
        driver.handle_timeout();
        assert_eq!(TIDIED.load(Ordering::Relaxed), 1, "tidied once quiet");
        driver.handle_timeout();
        assert_eq!(TIDIED.load(Ordering::Relaxed), 1, "and only once");

        received(&mut driver, conns[1], post("m1", "again"));
        std::thread::sleep(QUIET_BEFORE_TIDY);
        driver.flush(no_arrivals, |_, _| unreachable!());
        assert_eq!(
            TIDIED.load(Ordering::Relaxed),
            2,
            "the next quiet spell tidies too"
        );
    }

    #[test]
    fn a_message_that_arrives_during_a_fan_out_goes_out_in_the_same_flush() {
        let (mut driver, conns, mut clients) = room_of(8);
        received(&mut driver, conns[0], post("m0", "first"));
        let mut second = Some(Input::<std::net::TcpStream>::Received(
            conns[1],
            post("m1", "second").into(),
        ));
        let mut asked = 0;
        let arrived = || {
            asked += 1;
            // The second message arrives once the first has gone to three members.
            if asked == 3 { second.take() } else { None }
        };
        driver.flush(arrived, |_, _| unreachable!());
        assert!(second.is_none(), "the flush took the message that arrived");
        for (i, text) in read_all(&mut clients).iter().enumerate() {
            let first = text
                .find("first")
                .expect("every member has the first message");
            let second = text
                .find("second")
                .expect("and the second, without another round");
            assert!(first < second, "member {i} got them in order: {text}");
        }
    }

    #[test]
    fn a_flush_under_endless_input_returns_and_the_rest_is_written_next() {
        let (mut driver, conns, mut clients) = room_of(2);
        let get = b"GET / HTTP/1.1\n\n";
        let mut taken = 0;
        let endless = || {
            taken += 1;
            Some(Input::<std::net::TcpStream>::Received(
                conns[0],
                Bytes::from_static(get),
            ))
        };
        received(&mut driver, conns[1], get.to_vec());
        driver.flush(endless, |_, _| unreachable!());
        assert_eq!(
            taken, INPUTS_PER_FLUSH,
            "the flush returned under endless input"
        );
        let answered = |text: &String| text.matches("HTTP/1.1 200").count();
        let first = read_all(&mut clients);
        assert_eq!(answered(&first[1]), 1, "the round's own write was done");
        assert_eq!(
            driver.next_wakeup(),
            Some(Duration::ZERO),
            "answers wait to be written"
        );
        driver.handle_timeout();
        driver.flush(no_arrivals, |_, _| unreachable!());
        let second = read_all(&mut clients);
        let total = answered(&first[0]) + answered(&second[0]);
        assert_eq!(total, INPUTS_PER_FLUSH, "every request taken is answered");
        assert_ne!(driver.next_wakeup(), Some(Duration::ZERO), "nothing waits");
    }

    #[test]
    fn a_wave_of_bad_requests_is_closed_a_slice_per_round() {
        let wave = 3 * CLOSES_PER_ROUND + 4;
        let (mut driver, mut clients) =
            driver_with_wave(wave, b"GET\t/ HTTP/1.1\n\n", ServerConfig::default());
        driver.flush(no_arrivals, |_, _| unreachable!());
        let (closed, texts) = rounds_until_idle(&mut driver, &mut clients);
        assert_eq!(closed, [32, 32, 32, 4], "{closed:?}");
        for text in texts {
            assert!(text.contains("HTTP/1.1 400 Bad Request"), "{text}");
        }
    }

    #[test]
    fn a_wave_of_timeouts_is_closed_a_slice_per_round() {
        let config = ServerConfig {
            request_timeout: Duration::from_millis(20),
            ..ServerConfig::default()
        };
        let wave = 3 * CLOSES_PER_ROUND + 4;
        let (mut driver, mut clients) = driver_with_wave(wave, b"GET / HTTP/1.1\nUser_Ag", config);
        driver.flush(no_arrivals, |_, _| unreachable!());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            driver.next_wakeup(),
            Some(Duration::ZERO),
            "the timeouts are due"
        );
        let (closed, texts) = rounds_until_idle(&mut driver, &mut clients);
        assert_eq!(closed.iter().sum::<usize>(), wave, "{closed:?}");
        assert!(closed.iter().all(|&n| n <= CLOSES_PER_ROUND), "{closed:?}");
        for text in texts {
            assert!(text.contains("HTTP/1.1 408 Request Timeout"), "{text}");
        }
    }

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
    fn outboxes_ignore_a_closed_connection_whose_slot_was_reused() {
        let now = Timestamp::new(Duration::ZERO, chrono::NaiveDateTime::default());
        let mut server = Server::new(ServerConfig::default(), now);
        let mut outboxes = Outboxes::default();
        let old = server.handle_open(now);
        outboxes.insert(old, "old");
        server.handle_closed(now, old, Disconnect::Eof);
        assert_eq!(outboxes.remove(old).map(|slot| slot.outbox), Some("old"));
        let new = server.handle_open(now);
        assert_eq!(new.index(), old.index(), "the slot is reused");
        outboxes.insert(new, "new");
        let late = outboxes.get_mut(old).map(|slot| slot.outbox);
        assert_eq!(late, None, "a late event for the old id finds nothing");
        assert!(outboxes.remove(old).is_none());
        assert_eq!(outboxes.get_mut(new).map(|slot| slot.outbox), Some("new"));
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
}
