//! `chat-soak`: a churning room against a real server for a configurable time, then a check
//! that nothing was lost, doubled or reordered (S6–S8).
//!
//! It starts the server binary itself (`--bind 127.0.0.1:0`), so it can read its RSS.
//!
//! With `--nodes N` (N > 1) it starts a `redis-server` (append-only file on, so a restart
//! keeps the room) and N servers sharing one room through it (`--redis`, docs/CLUSTER.md);
//! the observer stays on the first, churners are spread over all of them. `--faults` then
//! kills the last node with SIGKILL at a third of the run and starts a new one in its place,
//! and restarts Redis (SIGTERM, then the same port and data) at two thirds. A member of the
//! killed node is checked like one the server cut; a join or message refused with `503`
//! while Redis is away is not an error, and a refused message is not expected anywhere.
//!
//! # The room
//!
//! * An **observer** (`u0`) joins first, reads promptly, stays to the end and asks `GET` every
//!   few seconds. Its stream is the reference order: every broadcast the server sequenced
//!   after it joined, in the server's one order (S7).
//! * **Churners** (`u1`, `u2`, …, every incarnation a fresh name) keep about `--members` in the
//!   room: each joins, posts unique lines (`uN#K`) at random intervals for a random lifetime,
//!   then either leaves with `DELETE` and reads to the end of its stream, or **vanishes**
//!   (closes both directions without `DELETE`, unread input and all). A share of them are
//!   **slow readers**: a small receive buffer, 512-byte reads and a pause after each (20 ms
//!   for half of them, 150 ms for the others, which then fall behind a busy room and may be
//!   cut by the server under a small `--max-output-bytes`, S8).
//!
//! # The check
//!
//! Broadcasts are parsed into events (join N, leave N, chat N#K). For a churner X, the
//! observer's stream holds X's join notice at index `j` and its leave notice at `l`; X was a
//! member exactly in between, so X must have received `observer[j+1 .. l]`, in that order:
//! all of it if X left with `DELETE` (its `Goodbye` is sequenced where the others see its
//! leave notice), a prefix of it if X vanished or the server cut it (S8: a cut connection's
//! queue is dropped). Any extra, missing, doubled or reordered event is a failure, and so is
//! an event seen twice by the observer. The observer's `GET` replies must list exactly the
//! members its own stream says are present, in join order; the last one, after every
//! churner has gone, must list only the observer. RSS is read at the start, every
//! `--rss-every` seconds, and after everyone has left.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use chathttp_core::Method;
use chathttp_loadgen::peer::{Ended, Peer, Reply};
use chathttp_loadgen::server::ServerProcess;
use chathttp_loadgen::sys;
use chathttp_loadgen::wire::body;
use clap::Parser;

/// Runs a churning room against a ChatHTTP server and checks delivery at the end.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// The server binary to start (it gets `--bind 127.0.0.1:0` and `--server-arg`s)
    #[arg(long)]
    server: PathBuf,
    /// An extra argument for the server (repeatable)
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// How long the room churns, in seconds
    #[arg(long, default_value = "60")]
    seconds: u64,
    /// Churners kept in the room at once
    #[arg(long, default_value = "24")]
    members: usize,
    /// Mean pause between two posts of one churner, in milliseconds
    #[arg(long, default_value = "400")]
    post_every_ms: u64,
    /// Longest lifetime of a churner, in seconds (lifetimes are uniform in 1..=this)
    #[arg(long, default_value = "30")]
    max_life: u64,
    /// How often the server's RSS is logged, in seconds
    #[arg(long, default_value = "60")]
    rss_every: u64,
    /// Where the server's standard error goes
    #[arg(long, default_value = "target/soak-server.log")]
    server_log: PathBuf,
    /// How far the server's RSS after everyone has left may be above its RSS at the start
    /// before the run fails, in KiB
    #[arg(long, default_value = "16384")]
    rss_slack_kib: u64,
    /// Seed of the churn (lifetimes, pauses, who vanishes)
    #[arg(long, default_value = "1")]
    seed: u64,
    /// Servers sharing the room through a `redis-server` this tool starts (1: no Redis)
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u32).range(1..=8))]
    nodes: u32,
    /// With --nodes: kill a node and restart it, and restart Redis, during the run
    #[arg(long)]
    faults: bool,
}

/// A broadcast, reduced to what the check compares. Names are `u{id}`; chat texts `u{id}#{k}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Event {
    Join(u32),
    Leave(u32),
    Chat(u32, u32),
}

/// What one response body is.
#[derive(Debug)]
enum Body {
    Event(Event),
    Users(Vec<u32>),
    Other,
}

fn parse_id(name: &[u8]) -> Option<u32> {
    std::str::from_utf8(name.strip_prefix(b"u")?)
        .ok()?
        .parse()
        .ok()
}

fn classify(reply: &Reply) -> Body {
    if reply.code != 200 {
        return Body::Other;
    }
    let event = match body::parse(reply.body.as_bytes()) {
        body::Body::Members(list) => {
            let ids: Option<Vec<u32>> = list.names().map(parse_id).collect();
            return ids.map_or(Body::Other, Body::Users);
        }
        body::Body::Joined { name } => parse_id(name).map(Event::Join),
        body::Body::Left { name } => parse_id(name).map(Event::Leave),
        body::Body::Chat { name, text } => parse_chat(name, text),
        body::Body::Other(_) => None,
    };
    event.map_or(Body::Other, Body::Event)
}

/// A churner's chat line: the text is `u{id}#{k}`, posted by the speaker `u{id}` itself.
fn parse_chat(name: &[u8], text: &[u8]) -> Option<Event> {
    let id = parse_id(name)?;
    let (text_name, k) = std::str::from_utf8(text).ok()?.split_once('#')?;
    (parse_id(text_name.as_bytes())? == id).then_some(())?;
    Some(Event::Chat(id, k.parse().ok()?))
}

/// How a churner's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// It sent `DELETE`, got `Goodbye`, and read to the end of the stream.
    Left,
    /// It closed without `DELETE`.
    Vanished,
    /// The server ended the stream first (S8 slow reader, or a fault).
    Cut(Ended),
    /// It never became a member.
    NeverJoined,
}

/// What a churner hands to the check.
#[derive(Debug)]
struct Record {
    id: u32,
    slow: bool,
    exit: Exit,
    events: Vec<Event>,
    posted: u32,
    /// Its messages refused with `503` (the shared log away): expected nowhere.
    refused: Vec<u32>,
    errors: Vec<String>,
}

/// One churner's plan.
#[derive(Debug, Clone)]
struct Plan {
    id: u32,
    life: Duration,
    vanish: bool,
    slow: bool,
    /// For slow readers: the pause after each read.
    slow_pause: Duration,
    post_every_ms: u64,
    /// Its own seeded generator, so a seed replays every churner's pauses too.
    rng: fastrand::Rng,
}

/// Where churners connect: every node's address, the one of a restarted node replaced.
type Addrs = Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>;

fn churner(addrs: Addrs, mut plan: Plan) -> Record {
    let name = format!("u{}", plan.id);
    let mut record = Record {
        id: plan.id,
        slow: plan.slow,
        exit: Exit::NeverJoined,
        events: Vec::new(),
        posted: 0,
        refused: Vec::new(),
        errors: Vec::new(),
    };
    let recv_buffer = plan.slow.then_some(4096);
    // Its own node first; a node that is down (killed, not yet back) is skipped.
    let nodes = addrs.lock().map(|a| a.clone()).unwrap_or_default();
    let first = plan.id as usize % nodes.len().max(1);
    let connected = (0..nodes.len())
        .map(|i| nodes[(first + i) % nodes.len()])
        .find_map(|addr| Peer::connect(addr, recv_buffer).ok());
    let Some(mut peer) = connected else {
        record
            .errors
            .push(format!("{name}: no node would take a connection"));
        return record;
    };
    if let Err(e) = peer.join(&name, Duration::from_secs(20)) {
        // Refused while the shared log is away: it never joined, which is no fault.
        if !(nodes.len() > 1 && e.contains("got 503")) {
            record.errors.push(format!("{name}: join: {e}"));
        }
        return record;
    }
    // Its messages not yet answered, oldest first: replies come in request order (S7).
    let mut unanswered = std::collections::VecDeque::new();
    // Slow readers take 512 bytes at a time and pause after each read.
    let (chunk, pause) = if plan.slow {
        (512, plan.slow_pause)
    } else {
        (usize::MAX, Duration::ZERO)
    };
    let end_at = Instant::now() + plan.life;
    let mut next_post = Instant::now() + pause_for(&mut plan);
    loop {
        let now = Instant::now();
        if now >= end_at {
            break;
        }
        if now >= next_post {
            let text = format!("{name}#{}", record.posted);
            if peer.send(Method::Post, &name, text.as_bytes()).is_err() {
                // The server cut us (S8 resets a slow reader's connection): what we
                // received so far is still checked as a prefix.
                record.exit = Exit::Cut(Ended::Reset);
                return record;
            }
            unanswered.push_back(record.posted);
            record.posted += 1;
            next_post = now + pause_for(&mut plan);
        }
        let wait_until = next_post.min(end_at);
        match peer.next_reply_reading(wait_until, chunk) {
            Ok(Some(reply)) => {
                answer(&mut record, &mut unanswered, &reply);
                if plan.slow {
                    thread::sleep(pause);
                }
            }
            Ok(None) => {}
            Err(ended) => {
                record.exit = Exit::Cut(ended);
                return record;
            }
        }
    }
    if plan.vanish {
        record.exit = Exit::Vanished;
        peer.vanish();
        return record;
    }
    if peer.send(Method::Delete, &name, b"").is_err() {
        record.exit = Exit::Cut(Ended::Reset);
        return record;
    }
    // Read to the end: everything sequenced before our leave, then Goodbye, then EOF.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut goodbye = false;
    loop {
        match peer.next_reply_reading(deadline, chunk) {
            Ok(Some(reply)) if reply.body == format!("Goodbye, {name}!\n") => goodbye = true,
            Ok(Some(reply)) if goodbye => {
                record
                    .errors
                    .push(format!("{name}: {:?} after Goodbye", reply.body));
            }
            Ok(Some(reply)) => answer(&mut record, &mut unanswered, &reply),
            Ok(None) => {
                record.errors.push(format!("{name}: no EOF after DELETE"));
                break;
            }
            Err(Ended::Eof) if goodbye => {
                record.exit = Exit::Left;
                break;
            }
            Err(ended) => {
                record.exit = Exit::Cut(ended);
                break;
            }
        }
    }
    record
}

fn pause_for(plan: &mut Plan) -> Duration {
    Duration::from_millis(plan.post_every_ms / 2 + plan.rng.u64(..=plan.post_every_ms))
}

/// A reply to a churner: the answer to its oldest unanswered message (its own chat line, or
/// a `503` refusal, which is no fault), or a broadcast.
fn answer(record: &mut Record, unanswered: &mut std::collections::VecDeque<u32>, reply: &Reply) {
    if reply.code == 503
        && reply.body.starts_with("message not delivered")
        && let Some(k) = unanswered.pop_front()
    {
        record.refused.push(k);
        return;
    }
    if matches!(classify(reply), Body::Event(Event::Chat(id, _)) if id == record.id) {
        unanswered.pop_front();
    }
    take(record, reply);
}

fn take(record: &mut Record, reply: &Reply) {
    match classify(reply) {
        Body::Event(event) => record.events.push(event),
        Body::Users(_) | Body::Other => record.errors.push(format!(
            "u{}: unexpected {} {:?}",
            record.id, reply.code, reply.body
        )),
    }
}

/// The observer's side: its stream, and what its `GET`s found.
#[derive(Debug, Default)]
struct Observed {
    events: Vec<Event>,
    gets: u32,
    errors: Vec<String>,
    final_users: Option<Vec<u32>>,
}

/// Reads everything, asks `GET` every 5 s, checks each list against the stream; after
/// `stop`, waits until every churner's leave notice has arrived, then a last `GET`.
fn observe(mut peer: Peer, stop: Arc<AtomicBool>, spawned: Arc<AtomicU32>) -> Observed {
    let mut seen = Observed::default();
    // Members in join order per the stream (the observer is u0, present throughout).
    let mut present: Vec<u32> = vec![0];
    let mut get_pending = 0u32;
    let mut next_get = Instant::now() + Duration::from_secs(5);
    let mut final_get_sent = false;
    let mut drain_deadline = None;
    let mut left = 0u32;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::SeqCst) && !final_get_sent {
            let deadline = *drain_deadline.get_or_insert(now + Duration::from_secs(90));
            // Everyone who joined must have left; spawned counts incarnations started.
            let joined = seen
                .events
                .iter()
                .filter(|e| matches!(e, Event::Join(_)))
                .count() as u32;
            let all_left = left == joined && spawned.load(Ordering::SeqCst) > 0;
            if (all_left && get_pending == 0) || now >= deadline {
                if !all_left {
                    seen.errors
                        .push(format!("ghosts: {} joined, {left} left", joined));
                }
                if peer.send(Method::Get, "u0", b"").is_err() {
                    seen.errors.push("observer: final GET failed".into());
                    return seen;
                }
                final_get_sent = true;
                get_pending += 1;
            }
        } else if !final_get_sent && now >= next_get {
            if peer.send(Method::Get, "u0", b"").is_err() {
                seen.errors.push("observer: GET failed".into());
                return seen;
            }
            get_pending += 1;
            next_get = now + Duration::from_secs(5);
        }
        match peer.next_reply(now + Duration::from_millis(100)) {
            Ok(Some(reply)) => match classify(&reply) {
                Body::Event(event) => {
                    match event {
                        Event::Join(id) => present.push(id),
                        Event::Leave(id) => {
                            left += 1;
                            present.retain(|p| *p != id);
                        }
                        Event::Chat(..) => {}
                    }
                    seen.events.push(event);
                }
                Body::Users(users) => {
                    get_pending -= 1;
                    seen.gets += 1;
                    if users != present {
                        seen.errors.push(format!(
                            "GET #{} listed {users:?}, the stream says {present:?}",
                            seen.gets
                        ));
                    }
                    if final_get_sent && get_pending == 0 {
                        seen.final_users = Some(users);
                        let _ = peer.send(Method::Delete, "u0", b"");
                        return seen;
                    }
                }
                Body::Other => seen.errors.push(format!(
                    "observer: unexpected {} {:?}",
                    reply.code, reply.body
                )),
            },
            Ok(None) => {}
            Err(ended) => {
                seen.errors
                    .push(format!("observer: stream ended ({ended:?})"));
                return seen;
            }
        }
    }
}

/// Compares every churner's stream with the observer's order. Returns failures.
///
/// With `shared` (a room across nodes), a member that leaves with `DELETE` gets its
/// `Goodbye` at once, while entries sequenced before its leave may still be on their way to
/// its node (docs/CLUSTER.md, "What differs from one process"): its stream is then checked as
/// a prefix too, and its messages must still all have been broadcast.
fn check(observed: &Observed, records: &[Record], shared: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let mut position: HashMap<Event, usize> = HashMap::new();
    for (at, event) in observed.events.iter().enumerate() {
        if position.insert(*event, at).is_some() {
            failures.push(format!("observer saw {event:?} twice"));
        }
    }
    for record in records {
        if record.exit == Exit::NeverJoined {
            continue;
        }
        let name = format!("u{}", record.id);
        let (Some(&join), Some(&leave)) = (
            position.get(&Event::Join(record.id)),
            position.get(&Event::Leave(record.id)),
        ) else {
            failures.push(format!(
                "{name}: join or leave notice missing from the observer"
            ));
            continue;
        };
        let expected = &observed.events[join + 1..leave];
        let got = &record.events;
        let left = record.exit == Exit::Left;
        let complete = left && !shared;
        let matches = if complete {
            got.as_slice() == expected
        } else {
            got.len() <= expected.len() && got.as_slice() == &expected[..got.len()]
        };
        if !matches {
            let first_diff = got
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(expected.len()));
            failures.push(format!(
                "{name} ({:?}): got {} events, expected {}{}; first difference at {first_diff}: \
                 got {:?}, expected {:?}",
                record.exit,
                got.len(),
                if complete { "" } else { "at most " },
                expected.len(),
                got.get(first_diff),
                expected.get(first_diff),
            ));
        }
        if left {
            for k in (0..record.posted).filter(|k| !record.refused.contains(k)) {
                if !position.contains_key(&Event::Chat(record.id, k)) {
                    failures.push(format!("{name}#{k} was posted and never broadcast"));
                }
            }
        }
    }
    failures
}

/// The `redis-server` of a `--nodes` run: append-only, so a restart keeps the room.
struct RedisProcess {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl RedisProcess {
    fn start(port: u16, dir: PathBuf) -> Result<Self, String> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("redis-server did not listen".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, port, dir })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGTERM (Redis writes its append-only file and exits), then the same port and data.
    fn restart(&mut self) -> Result<(), String> {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
        thread::sleep(Duration::from_secs(1));
        *self = Self::start(self.port, self.dir.clone())?;
        Ok(())
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts node `id` of the room on `redis` (or the lone server without it).
fn start_node(
    args: &Args,
    redis: Option<&RedisProcess>,
    id: &str,
) -> Result<ServerProcess, String> {
    let mut flags = args.server_args.clone();
    if let Some(redis) = redis {
        flags.extend(["--redis".into(), redis.url(), "--node-id".into(), id.into()]);
        flags.extend(["--node-ttl".into(), "3".into()]);
    }
    ServerProcess::start(&args.server, &flags, None, &args.server_log).map_err(|e| e.to_string())
}

/// `--faults`: a third of the way, the last node is killed (SIGKILL) and a new one started in
/// its place; two thirds of the way, Redis is restarted. Returns what it started, to keep.
fn faults(
    args: &Args,
    mut last: ServerProcess,
    mut redis: RedisProcess,
    addrs: Addrs,
) -> Result<(ServerProcess, RedisProcess), String> {
    let third = Duration::from_secs(args.seconds) / 3;
    thread::sleep(third);
    let killed = last.pid;
    drop(last);
    println!(
        "fault: killed node n{} (pid {killed}) with SIGKILL",
        args.nodes - 1
    );
    thread::sleep(Duration::from_secs(2));
    last = start_node(args, Some(&redis), &format!("n{}-again", args.nodes - 1))?;
    if let Ok(mut addrs) = addrs.lock() {
        *addrs.last_mut().expect("nodes") = last.addr;
    }
    println!("fault: started n{}-again on {}", args.nodes - 1, last.addr);
    thread::sleep(third);
    redis.restart()?;
    println!("fault: restarted Redis on port {}", redis.port);
    Ok((last, redis))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let nofile = sys::raise_nofile().unwrap_or(u64::MAX);
    let redis = if args.nodes > 1 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(16379);
        let dir = std::env::temp_dir().join(format!("chat-soak-redis-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        match RedisProcess::start(port, dir) {
            Ok(redis) => Some(redis),
            Err(e) => {
                eprintln!("chat-soak: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        match start_node(&args, redis.as_ref(), &format!("n{i}")) {
            Ok(node) => nodes.push(node),
            Err(e) => {
                eprintln!("chat-soak: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let addrs: Addrs = Arc::new(std::sync::Mutex::new(
        nodes.iter().map(|n| n.addr).collect(),
    ));
    let mut others = nodes.split_off(1);
    let server = nodes.pop().expect("one node at least");
    // What runs to the end of the run: the other nodes and Redis, or the thread that has them.
    let (faulting, _redis) = match (args.faults, redis, others.pop()) {
        (true, Some(redis), Some(last)) => {
            let (args, addrs) = (args.clone(), addrs.clone());
            let faulting = thread::spawn(move || faults(&args, last, redis, addrs));
            (Some(faulting), None)
        }
        (_, redis, last) => {
            others.extend(last);
            (None, redis)
        }
    };
    let addr = server.addr;
    thread::sleep(Duration::from_millis(500));
    let rss_start = server.rss_kib().unwrap_or(0);
    println!(
        "chat-soak: {} on {addr} (pid {}), {} s, {} churners, seed {}, nofile {nofile}",
        args.server.display(),
        server.pid,
        args.seconds,
        args.members,
        args.seed
    );
    println!("rss start: {rss_start} KiB");

    let mut observer = match Peer::connect(addr, None) {
        Ok(peer) => peer,
        Err(e) => {
            eprintln!("chat-soak: observer cannot connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = observer.join("u0", Duration::from_secs(10)) {
        eprintln!("chat-soak: observer cannot join: {e}");
        return ExitCode::FAILURE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let spawned = Arc::new(AtomicU32::new(0));
    let observer = {
        let (stop, spawned) = (stop.clone(), spawned.clone());
        thread::spawn(move || observe(observer, stop, spawned))
    };

    // Keep `members` churners alive; each ends on its own schedule and a new one replaces it.
    let (done_tx, done_rx) = mpsc::channel::<Record>();
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let mut records = Vec::new();
    let mut running = 0usize;
    let started = Instant::now();
    let end = started + Duration::from_secs(args.seconds);
    let mut next_rss = started + Duration::from_secs(args.rss_every);
    let mut next_id = 1u32;
    while Instant::now() < end {
        while running < args.members {
            let plan = Plan {
                id: next_id,
                life: Duration::from_millis(1000 + rng.u64(..args.max_life.max(1) * 1000)),
                vanish: rng.u8(..3) == 0,
                slow: rng.u8(..5) == 0,
                // Half the slow readers keep up (barely), half fall behind and may be cut (S8).
                slow_pause: Duration::from_millis(if rng.bool() { 20 } else { 150 }),
                post_every_ms: args.post_every_ms,
                rng: rng.fork(),
            };
            next_id += 1;
            running += 1;
            spawned.fetch_add(1, Ordering::SeqCst);
            let (done, addrs) = (done_tx.clone(), addrs.clone());
            thread::spawn(move || {
                let _ = done.send(churner(addrs, plan));
            });
            // Stagger joins a little.
            thread::sleep(Duration::from_millis(rng.u64(..50)));
        }
        if let Ok(record) = done_rx.recv_timeout(Duration::from_millis(200)) {
            running -= 1;
            records.push(record);
        }
        if Instant::now() >= next_rss {
            println!(
                "rss at {:>5} s: {} KiB ({} churner incarnations so far)",
                started.elapsed().as_secs(),
                server.rss_kib().unwrap_or(0),
                next_id - 1
            );
            next_rss += Duration::from_secs(args.rss_every);
        }
    }
    drop(done_tx);
    // Let the last churners finish their lives (bounded by --max-life plus the leave).
    for record in done_rx.iter() {
        records.push(record);
    }
    stop.store(true, Ordering::SeqCst);
    let observed = match observer.join() {
        Ok(observed) => observed,
        Err(_) => {
            eprintln!("chat-soak: the observer thread panicked");
            return ExitCode::FAILURE;
        }
    };
    // The observer's DELETE is on its way; the writer lingers at most 2 s (W8).
    thread::sleep(Duration::from_secs(4));
    let rss_end = server.rss_kib().unwrap_or(0);
    let rss_peak = server.peak_rss_kib().unwrap_or(0);
    let fds_end = server.open_fds().unwrap_or(0);

    let mut failures = check(&observed, &records, args.nodes > 1);
    // The faults' thread hands back what it started; they run until here.
    let _restarted = match faulting.map(|f| f.join()) {
        Some(Ok(Ok(kept))) => Some(kept),
        Some(Ok(Err(e))) => {
            failures.push(format!("faults: {e}"));
            None
        }
        Some(Err(_)) => {
            failures.push("faults: the thread panicked".into());
            None
        }
        None => None,
    };
    drop(others);
    failures.extend(observed.errors.iter().cloned());
    for record in &records {
        failures.extend(record.errors.iter().cloned());
    }
    match &observed.final_users {
        Some(users) if users == &[0] => {}
        Some(users) => failures.push(format!("final GET listed {users:?}, expected only u0")),
        None => failures.push("no final GET reply".into()),
    }
    let count = |exit: fn(&Exit) -> bool| records.iter().filter(|r| exit(&r.exit)).count();
    let left = count(|e| *e == Exit::Left);
    let vanished = count(|e| *e == Exit::Vanished);
    let cut = count(|e| matches!(e, Exit::Cut(_)));
    let never = count(|e| *e == Exit::NeverJoined);
    let chats = observed
        .events
        .iter()
        .filter(|e| matches!(e, Event::Chat(..)))
        .count();
    let delivered: usize = records.iter().map(|r| r.events.len()).sum();
    let slow = records.iter().filter(|r| r.slow).count();
    println!(
        "churners: {} incarnations ({slow} slow readers): {left} left with DELETE, {vanished} vanished, \
         {cut} cut by the server, {never} never joined",
        records.len()
    );
    println!(
        "observer: {} events ({chats} chat lines), {} GETs checked; churners received {delivered} events in all",
        observed.events.len(),
        observed.gets
    );
    println!(
        "rss: start {rss_start} KiB, peak {rss_peak} KiB, end {rss_end} KiB (end - start {} KiB); \
         open fds at end {fds_end}",
        rss_end as i64 - rss_start as i64
    );
    if rss_end > rss_start + args.rss_slack_kib {
        failures.push(format!(
            "RSS after everyone left is {rss_end} KiB, more than {} KiB above the start",
            args.rss_slack_kib
        ));
    }
    let stopped = server.stop();
    println!("server stop (SIGTERM): {stopped:?}");
    if failures.is_empty() {
        println!("PASS: every message to every member present exactly once, one order, no ghosts");
        ExitCode::SUCCESS
    } else {
        for failure in failures.iter().take(50) {
            println!("FAIL: {failure}");
        }
        println!("FAIL: {} failures", failures.len());
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32, exit: Exit, events: Vec<Event>) -> Record {
        Record {
            id,
            slow: false,
            exit,
            events,
            posted: 0,
            refused: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// u1 joins, u2 joins, u2 says #0, u1 says #0, u2 leaves, u1 leaves.
    fn observed() -> Observed {
        use Event::*;
        Observed {
            events: vec![Join(1), Join(2), Chat(2, 0), Chat(1, 0), Leave(2), Leave(1)],
            ..Observed::default()
        }
    }

    #[test]
    fn exact_streams_pass() {
        use Event::*;
        let records = [
            record(
                1,
                Exit::Left,
                vec![Join(2), Chat(2, 0), Chat(1, 0), Leave(2)],
            ),
            record(2, Exit::Left, vec![Chat(2, 0), Chat(1, 0)]),
        ];
        assert_eq!(check(&observed(), &records, false), Vec::<String>::new());
    }

    #[test]
    fn a_vanished_member_may_miss_the_tail_only() {
        use Event::*;
        let prefix = [record(2, Exit::Vanished, vec![Chat(2, 0)])];
        assert!(check(&observed(), &prefix, false).is_empty());
        let gap = [record(2, Exit::Vanished, vec![Chat(1, 0)])];
        assert_eq!(check(&observed(), &gap, false).len(), 1);
    }

    #[test]
    fn loss_doubling_and_reordering_fail() {
        use Event::*;
        let lost = [record(2, Exit::Left, vec![Chat(2, 0)])];
        let doubled = [record(
            2,
            Exit::Left,
            vec![Chat(2, 0), Chat(2, 0), Chat(1, 0)],
        )];
        let reordered = [record(2, Exit::Left, vec![Chat(1, 0), Chat(2, 0)])];
        for records in [&lost, &doubled, &reordered] {
            assert_eq!(check(&observed(), records, false).len(), 1, "{records:?}");
        }
    }

    #[test]
    fn in_a_shared_room_a_member_that_left_may_miss_the_tail_but_not_its_own_lines() {
        use Event::*;
        let tail_missed = [record(2, Exit::Left, vec![Chat(2, 0)])];
        assert!(check(&observed(), &tail_missed, true).is_empty());
        assert_eq!(check(&observed(), &tail_missed, false).len(), 1);
        let mut unsent = record(1, Exit::Left, vec![Join(2)]);
        unsent.posted = 2;
        assert_eq!(
            check(&observed(), &[unsent], true).len(),
            1,
            "u1#1 never broadcast"
        );
        let mut refused = record(1, Exit::Left, vec![Join(2)]);
        (refused.posted, refused.refused) = (2, vec![1]);
        assert!(
            check(&observed(), &[refused], true).is_empty(),
            "a refused line is expected nowhere"
        );
    }

    #[test]
    fn the_observer_must_not_see_an_event_twice() {
        let mut twice = observed();
        twice.events.push(Event::Chat(1, 0));
        assert!(!check(&twice, &[], false).is_empty());
    }

    #[test]
    fn bodies_are_classified() {
        let reply = |body: &str| Reply {
            code: 200,
            body: body.into(),
        };
        assert!(matches!(
            classify(&reply("[ u3 ] : u3#12\n")),
            Body::Event(Event::Chat(3, 12))
        ));
        // A line whose text claims another speaker is not one of ours.
        assert!(matches!(classify(&reply("[ u3 ] : u4#12\n")), Body::Other));
        assert!(matches!(
            classify(&reply("u7 has just left the chat room...\n")),
            Body::Event(Event::Leave(7))
        ));
        assert!(matches!(
            classify(&reply("Online users:\nu0\nu5\n")),
            Body::Users(users) if users == [0, 5]
        ));
    }
}
