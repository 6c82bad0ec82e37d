//! chat-bench: a fan-out load generator for ChatHTTP servers.
//!
//! Opens `--members` connections that each join the room, waits until every join notice
//! has arrived, then lets `--senders` of them send `--messages` messages each, as fast as
//! the sockets take them or `--rate` per second per sender. Every message carries
//! `B<sender> <seq> <send-time-ns>`, so each member measures latency, losses, duplicates,
//! per-sender order and agreement with one reference member's order (PROTOCOL.md S7).
//! `--idle N` instead opens N joined members and reports the server's memory per member.
//!
//! `--tls` (or `--ca PATH`) speaks TLS to the server, so its cost can be measured.
//!
//! One thread and edge-triggered epoll drive every connection, so the generator uses at
//! most one core and reports its own CPU share beside the server's: a reader can tell
//! whether the generator, not the server, was the limit. A human summary goes to stderr
//! (with a progress line about once a second on long runs), one JSON line to stdout.

mod engine;
mod report;
mod stats;

use std::net::{SocketAddr, ToSocketAddrs};

use chathttp_loadgen::sys::{self, CpuSample};
use clap::Parser;

use crate::engine::Bench;

/// A fan-out load generator for ChatHTTP/1.1 servers.
#[derive(Parser, Debug)]
#[command(name = "chat-bench", version, about, long_about = None)]
struct Cli {
    /// Server address, HOST:PORT. Repeat it to spread the members over several servers
    /// of one shared room (--redis), round robin: member i connects to address i mod N.
    #[arg(long, required = true)]
    addr: Vec<String>,
    /// Members that join the room (senders included).
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// How many of the members send.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 2000)]
    messages: u64,
    /// Messages per second per sender; 0 sends open loop, as fast as the socket takes them.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Message text size in bytes (at least what `B<sender> <seq> <time> ` needs).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Idle scenario: open this many joined members, send nothing, and report the
    /// server's memory per member (needs --server-pid). Overrides --members and --senders.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Connections connecting and joining at once.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    join_concurrency: u64,
    /// The server's process id: report its CPU time and memory (from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// After the joins, wait until all join notices arrived or nothing arrived for this long.
    #[arg(long, default_value_t = 3000)]
    settle_ms: u64,
    /// After the last send, stop waiting once nothing arrived for this long.
    #[arg(long, default_value_t = 5000)]
    drain_ms: u64,
    /// Open loop: messages written per write().
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Send only User_Agent and Content_Length (default: the original client's ten headers).
    #[arg(long)]
    min_headers: bool,
    /// Member names are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "b")]
    name_prefix: String,
    /// Idle scenario: how long to keep the members connected before reading the memory.
    #[arg(long, default_value_t = 2000)]
    idle_hold_ms: u64,
    /// Hard limit on the whole run, in seconds.
    #[arg(long, default_value_t = 900.0)]
    max_s: f64,
    /// Paced senders: at most one timer wake-up per this many microseconds.
    #[arg(long, default_value_t = 50)]
    tick_us: u64,
    /// Keep polling without sleeping for this many microseconds after the last event
    /// (0: always sleep in epoll). See `Options::spin_us`.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Speak TLS, trusting the system's certificate authorities (the server's name is
    /// checked against the address's IP).
    #[arg(long)]
    tls: bool,
    /// Speak TLS, trusting the certificates in this PEM file instead (a self-signed
    /// server's); implies --tls.
    #[arg(long, value_name = "PATH")]
    ca: Option<std::path::PathBuf>,
    /// Join through the browser gateway's WebSocket: --addr is the server's --http address,
    /// each request one text message (B1).
    #[arg(long)]
    ws: bool,
    /// Free text copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
    /// No progress lines on stderr.
    #[arg(long)]
    no_progress: bool,
}

/// The validated run configuration.
#[derive(Debug)]
pub struct Options {
    pub addrs: Vec<SocketAddr>,
    pub addr_text: String,
    pub members: usize,
    pub senders: usize,
    pub messages: u64,
    pub rate: f64,
    pub payload: usize,
    pub idle: usize,
    pub join_concurrency: usize,
    pub server_pid: Option<u32>,
    pub settle_ms: u64,
    pub drain_ms: u64,
    pub batch: usize,
    pub min_headers: bool,
    pub name_prefix: String,
    pub idle_hold_ms: u64,
    pub max_s: f64,
    pub tick_us: u64,
    /// On loopback, waking a sleeping generator thread is part of what the server's `send`
    /// costs (in a virtual machine, an inter-processor interrupt per delivery). Polling on
    /// for a while after each event keeps the generator awake through a round of
    /// deliveries, so the server pays no more than a client on another machine costs it.
    pub spin_us: u64,
    /// With `--ca`: how members connect over TLS.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// With `--ws`: members join through `/ws`.
    pub ws: bool,
    pub label: String,
    pub no_progress: bool,
}

/// Exits with status 2 and a one-line message.
pub fn die(msg: &str) -> ! {
    eprintln!("chat-bench: {msg}");
    std::process::exit(2)
}

impl Options {
    fn from_cli(cli: Cli) -> Result<Self, String> {
        let addrs = cli
            .addr
            .iter()
            .map(|text| {
                text.to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("cannot resolve --addr {text}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (members, senders) = if cli.idle > 0 {
            (cli.idle, 0)
        } else {
            (cli.members, cli.senders)
        };
        if senders > members {
            return Err("--senders must not exceed --members".into());
        }
        if !(cli.rate >= 0.0 && cli.rate.is_finite()) {
            return Err("--rate must be a number >= 0".into());
        }
        if !(cli.max_s > 0.0 && cli.max_s.is_finite()) {
            return Err("--max-s must be a number > 0".into());
        }
        if senders as u64 * cli.messages > u64::from(u32::MAX - 1) {
            return Err("--senders x --messages must stay below 2^32".into());
        }
        Ok(Self {
            addrs,
            addr_text: cli.addr.join(","),
            members,
            senders,
            messages: cli.messages,
            rate: cli.rate,
            payload: cli.payload,
            idle: cli.idle,
            join_concurrency: cli.join_concurrency as usize,
            server_pid: cli.server_pid,
            settle_ms: cli.settle_ms,
            drain_ms: cli.drain_ms,
            batch: cli.batch as usize,
            min_headers: cli.min_headers,
            name_prefix: cli.name_prefix,
            idle_hold_ms: cli.idle_hold_ms,
            max_s: cli.max_s,
            tick_us: cli.tick_us,
            spin_us: cli.spin_us,
            tls: match (cli.tls, cli.ca.as_deref()) {
                (false, None) => None,
                // The same trust as chat-client's `--tls` and `--ca`.
                (_, ca) => Some(chathttp_client::link::tls_config(ca)?),
            },
            ws: cli.ws,
            label: cli.label,
            no_progress: cli.no_progress,
        })
    }
}

fn main() {
    let o = Options::from_cli(Cli::parse()).unwrap_or_else(|e| die(&e));
    let nofile = sys::raise_nofile();
    if let Some(limit) = nofile.filter(|&l| l < o.members as u64 + 16) {
        eprintln!(
            "chat-bench: warning: open-file limit {limit} is below --members; raise `ulimit -n`"
        );
    }
    let pid = o.server_pid;
    let rss_before = pid.and_then(|p| sys::proc_status(p, "VmRSS"));
    let cpu_start = CpuSample::take(pid);
    let mut b = Bench::new(o).unwrap_or_else(|e| die(&format!("cannot set up epoll: {e}")));

    b.connect_all();
    let cpu_joined = CpuSample::take(pid);
    b.settle();
    let t_settled = sys::now_ns();
    let join = report::Join {
        connect_join_ms: (cpu_joined.t_ns - b.t_start) as f64 / 1e6,
        settle_ms: (t_settled - cpu_joined.t_ns) as f64 / 1e6,
        server_cpu_s: cpu_start.server_delta(&cpu_joined),
        generator_cpu_s: cpu_joined.generator_s - cpu_start.generator_s,
        rss_before_kb: rss_before,
    };

    if b.o.idle > 0 {
        b.hold(b.o.idle_hold_ms);
        report::idle(&b, &join);
        return;
    }

    // Every joined member receives every message of every joined sender, its own included.
    let receivers = b.receivers() as u64;
    let joined_senders = (0..b.o.senders).filter(|&i| b.joined(i)).count() as u64;
    let expected = joined_senders * b.o.messages * receivers;
    let cpu0 = CpuSample::take(pid);
    let reads0 = (b.c.reads, b.c.polls, b.c.frames);
    let send_end = b.send_and_drain(expected);
    let cpu1 = CpuSample::take(pid);
    report::fanout(
        &b,
        &join,
        &report::Window {
            expected,
            receivers,
            cpu0,
            cpu1,
            send_end,
            reads0,
        },
    );
}
