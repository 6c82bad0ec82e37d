//! `chat-hostile`: resource-exhaustion scenarios against a real server binary.
//!
//! Every scenario starts a fresh server as a child process on a loopback port, joins
//! `--members` chatting members (`m0`…, see [`chat`]) and then turns hostile clients loose:
//!
//! * `emfile`: the server runs under `prlimit --nofile=N:N`; extra connections exhaust its
//!   descriptors. Its CPU (`/proc/PID/stat`) is measured while `accept` fails; members must
//!   still chat, the process must not exit, and once the extra connections are closed a new
//!   connection must be greeted again.
//! * `stalled`: `--clients` clients join with a 4 KiB receive buffer and never read while the
//!   members chat. Each must be cut (S8; counted from the leave notices `m0` receives), the
//!   server's peak RSS must stay under the stated bound, and the members' p99 latency within
//!   2x of a baseline run (same server flags, fresh server, no hostile clients).
//! * `slowloris`: `--clients` connections each send one byte of a request head every second,
//!   never finishing it. Each must get `408` and be closed near `--request-timeout` (S9);
//!   members as above.
//! * `badflood`: a round a second of 100 connections that each send one unframeable request
//!   at the same moment. Each must get `400` with a one-line reason and an orderly close, not a reset
//!   (W8); members as above.
//! * `closing`: 100 connections a second, evenly spread, that make the server close them after
//!   a reply (one bad request) and then neither read nor close; half first pipeline GETs whose
//!   replies their 4 KiB receive window cannot take, so the close waits behind unsent bytes.
//!   The server's descriptors must never hold more than what the linger allows (S13: the
//!   connections of the last linger + 1 s), must be back at their baseline within linger +
//!   1 s of the last round, and its RSS back near its baseline; members as above.
//!
//! Loops are bounded in count and time. The exit code is 0 when every scenario passed.

mod chat;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use chathttp_core::Method;
use chathttp_loadgen::peer::{Ended, Peer};
use chathttp_loadgen::server::ServerProcess;
use chathttp_loadgen::sys;
use clap::{Parser, ValueEnum};

use chat::{Chat, ChatConfig, TalkResult, ms};

/// Resource-exhaustion scenarios against a ChatHTTP server binary.
#[derive(Debug, Parser)]
struct Args {
    /// The server binary (started with `--bind 127.0.0.1:0` and the scenario's flags)
    #[arg(long)]
    server: PathBuf,
    /// Scenarios to run, in order
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "emfile,stalled,slowloris,badflood,flood,closing"
    )]
    scenarios: Vec<Scenario>,
    /// Chatting members
    #[arg(long, default_value = "10")]
    members: usize,
    /// Posts per second per member
    #[arg(long, default_value = "10")]
    rate: f64,
    /// Body bytes per post
    #[arg(long, default_value = "200")]
    body: usize,
    /// Hostile clients in `stalled` and `slowloris`
    #[arg(long, default_value = "1000")]
    clients: usize,
    /// Seconds the members chat in each measured phase
    #[arg(long, default_value = "10")]
    seconds: u64,
    /// `--max-output-bytes` of the server in `stalled` (S8). Small, so that the stalled
    /// clients are cut within seconds; their leave notices then reach each member as one
    /// burst far above this limit, which a healthy member must survive (see
    /// docs/RELIABILITY.md, finding 1).
    #[arg(long, default_value = "65536")]
    max_output_bytes: u64,
    /// `--request-timeout` of the server in `slowloris` (S9), seconds
    #[arg(long, default_value = "2")]
    request_timeout: f64,
    /// GETs each small-window client of `closing` pipelines before its bad request: enough
    /// that their replies do not fit its 4 KiB window
    #[arg(long, default_value = "40")]
    closing_gets: usize,
    /// Open-file limit of the server in `emfile`
    #[arg(long, default_value = "64")]
    nofile: u64,
    /// Where the servers' standard error goes
    #[arg(long, default_value = "target/hostile-server.log")]
    server_log: PathBuf,
    /// Set by a scenario that runs with flood control on: the members' rate stays under it.
    #[arg(skip)]
    rate_cap: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Emfile,
    Stalled,
    Slowloris,
    Badflood,
    Flood,
    Closing,
}

/// The outcome of one scenario: figures to print, and failed checks.
#[derive(Debug, Default)]
struct Outcome {
    figures: Vec<String>,
    failures: Vec<String>,
}

impl Outcome {
    fn figure(&mut self, text: String) {
        println!("  {text}");
        self.figures.push(text);
    }

    fn check(&mut self, ok: bool, what: String) {
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            self.failures.push(what);
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let nofile = sys::raise_nofile().unwrap_or(u64::MAX);
    println!(
        "chat-hostile: {} ({} members, {} posts/s each, {} B bodies; load side nofile {nofile})",
        args.server.display(),
        args.members,
        args.rate,
        args.body
    );
    let mut failed = Vec::new();
    for scenario in &args.scenarios {
        println!("== {scenario:?}");
        let outcome = match scenario {
            Scenario::Emfile => emfile(&args),
            Scenario::Stalled => stalled(&args),
            Scenario::Slowloris => slowloris(&args),
            Scenario::Badflood => badflood(&args),
            Scenario::Flood => flood(&args),
            Scenario::Closing => closing(&args),
        };
        let outcome = outcome.unwrap_or_else(|e| Outcome {
            figures: Vec::new(),
            failures: vec![format!("could not run: {e}")],
        });
        if outcome.failures.is_empty() {
            println!("PASS {scenario:?}");
        } else {
            for failure in &outcome.failures {
                println!("FAIL {scenario:?}: {failure}");
            }
            failed.push(*scenario);
        }
    }
    if failed.is_empty() {
        println!("chat-hostile: all scenarios passed");
        ExitCode::SUCCESS
    } else {
        println!("chat-hostile: failed: {failed:?}");
        ExitCode::FAILURE
    }
}

impl Args {
    fn chat(&self) -> ChatConfig {
        ChatConfig {
            members: self.members,
            rate: self.rate_cap.map_or(self.rate, |cap| self.rate.min(cap)),
            body_len: self.body,
        }
    }

    fn start(&self, flags: &[String], nofile: Option<u64>) -> Result<ServerProcess, String> {
        ServerProcess::start(&self.server, flags, nofile, &self.server_log)
            .map_err(|e| format!("cannot start the server: {e}"))
    }

    /// A fresh server with `flags`, the members chatting for `--seconds`, nothing hostile.
    fn baseline(&self, flags: &[String]) -> Result<TalkResult, String> {
        let server = self.start(flags, None)?;
        let mut chat = Chat::join(server.addr, self.chat())?;
        let result = chat.talk(Duration::from_secs(self.seconds));
        let errors = chat.errors();
        chat.close();
        let _ = server.stop();
        if errors.is_empty() {
            Ok(result)
        } else {
            Err(format!("baseline run had errors: {errors:?}"))
        }
    }

    /// The frame of the `stalled`, `slowloris` and `badflood` scenarios: a baseline run, then
    /// `attack` against a fresh server with `flags` and the members joined (it returns the
    /// members' talk under attack), then a second baseline, and the members judged.
    fn under_attack(
        &self,
        flags: &[String],
        attack: impl FnOnce(&mut ServerProcess, &mut Chat, &mut Outcome) -> Result<TalkResult, String>,
    ) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        let base = self.baseline(flags)?;
        let mut server = self.start(flags, None)?;
        let mut chat = Chat::join(server.addr, self.chat())?;
        let run = attack(&mut server, &mut chat, &mut outcome)?;
        let errors = chat.errors();
        chat.close();
        let _ = server.stop();
        let after = self.baseline(flags)?;
        judge_members(&mut outcome, [&base, &after], &run, &errors);
        Ok(outcome)
    }
}

/// The checks every scenario makes on its members: nothing lost, doubled or reordered, the
/// member streams intact, and p99 within 2x of the baseline's.
///
/// The machine is shared, so the baseline is run twice, before and after the attack, on fresh
/// servers; the attack's p99 is compared with the mean of the two baselines' p99.
fn judge_members(
    outcome: &mut Outcome,
    bases: [&TalkResult; 2],
    run: &TalkResult,
    errors: &[String],
) {
    for (when, base) in ["before", "after"].iter().zip(bases) {
        outcome.figure(format!("members baseline ({when}): {}", base.summary()));
    }
    let base_p99 = (bases[0].p99() + bases[1].p99()) / 2;
    outcome.figure(format!("members under attack: {}", run.summary()));
    let ratio = run.p99().as_secs_f64() / base_p99.as_secs_f64().max(1e-6);
    outcome.figure(format!(
        "p99 ratio (attack / mean of the baselines, {} ms): {ratio:.2}",
        ms(base_p99)
    ));
    outcome.check(ratio <= 2.0, format!("members' p99 within 2x ({ratio:.2})"));
    outcome.check(
        run.lost() == 0 && run.sent > 0,
        format!(
            "every post reached every member ({} of {} deliveries)",
            run.received, run.expected
        ),
    );
    outcome.check(
        errors.is_empty(),
        format!(
            "member streams intact, in order, no doubles ({} problems{})",
            errors.len(),
            errors
                .first()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        ),
    );
}

fn cpu_percent(server: &ServerProcess, window: Duration) -> Option<f64> {
    let before = server.cpu_s()?;
    thread::sleep(window);
    let after = server.cpu_s()?;
    Some((after - before) / window.as_secs_f64() * 100.0)
}

fn count_in_log(path: &PathBuf, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|log| log.matches(needle).count())
        .unwrap_or(0)
}

/// EMFILE on accept: exhaust the server's descriptors, watch it, free them, connect again.
fn emfile(args: &Args) -> Result<Outcome, String> {
    let mut outcome = Outcome::default();
    let mut server = args.start(&[], Some(args.nofile))?;
    let mut chat = Chat::join(server.addr, args.chat())?;
    let warmup = chat.talk(Duration::from_secs(2));
    outcome.figure(format!(
        "server nofile {}; {} open descriptors with {} members in; warm-up p99 {} ms",
        args.nofile,
        server.open_fds().unwrap_or(0),
        args.members,
        ms(warmup.p99())
    ));

    // Open extra connections until the kernel's backlog is full too (connects time out) or
    // a bound is reached; each either gets its greeting (the server accepted it) or waits in
    // the backlog because the server can no longer accept.
    let failed_accepts_before = count_in_log(&args.server_log, "accept failed");
    let mut extras = Vec::new();
    let mut connect_failures = 0;
    while extras.len() < 2_000 && connect_failures < 3 {
        match connect_quick(server.addr) {
            Ok(peer) => extras.push(peer),
            Err(_) => connect_failures += 1,
        }
    }
    thread::sleep(Duration::from_millis(500));
    let mut greeted = 0;
    for peer in &mut extras {
        let _ = peer.stream.set_nonblocking(true);
        if matches!(peer.next_reply(Instant::now() + Duration::from_secs(1)), Ok(Some(r)) if r.code == 202)
        {
            greeted += 1;
        }
    }
    let fds = server.open_fds().unwrap_or(0);
    outcome.figure(format!(
        "extra connections: {} established, {greeted} greeted (accepted), {} waiting in the backlog; \
         server holds {fds} descriptors (limit {})",
        extras.len(),
        extras.len() - greeted,
        args.nofile
    ));
    outcome.check(
        greeted < extras.len(),
        "descriptors exhausted (some connections not accepted)".into(),
    );

    let idle_cpu = cpu_percent(&server, Duration::from_secs(5)).unwrap_or(f64::NAN);
    outcome.figure(format!(
        "server CPU over 5 s with accept failing, members quiet: {idle_cpu:.1} %"
    ));
    outcome.check(
        idle_cpu < 10.0,
        format!("no spinning ({idle_cpu:.1} % < 10 %)"),
    );
    let during = chat.talk(Duration::from_secs(3));
    let failed_accepts = count_in_log(&args.server_log, "accept failed") - failed_accepts_before;
    outcome.figure(format!(
        "members chat during exhaustion: {} posts, {} of {} deliveries, p99 {} ms; \
         'accept failed' warnings logged: {failed_accepts}",
        during.sent,
        during.received,
        during.expected,
        ms(during.p99())
    ));
    outcome.check(
        during.lost() == 0 && during.sent > 0,
        "members keep chatting while accept fails".into(),
    );
    outcome.check(server.exited().is_none(), "the server did not exit".into());

    drop(extras);
    let freed = Instant::now();
    let again = match Peer::connect(server.addr, None) {
        Ok(mut peer) => {
            let joined = peer.join("h-probe", Duration::from_secs(10));
            joined.map(|()| freed.elapsed())
        }
        Err(e) => Err(e.to_string()),
    };
    match &again {
        Ok(after) => outcome.figure(format!(
            "after closing the extras, a new connection was greeted and joined in {} ms",
            ms(*after)
        )),
        Err(e) => outcome.figure(format!("after closing the extras, a new connection: {e}")),
    }
    outcome.check(
        again.is_ok(),
        "accepts again once descriptors are free".into(),
    );
    let after = chat.talk(Duration::from_secs(2));
    outcome.check(
        after.lost() == 0 && after.sent > 0,
        "members chat after recovery".into(),
    );
    let errors = chat.errors();
    outcome.check(
        errors.is_empty(),
        format!("member streams intact ({errors:?})"),
    );
    chat.close();
    let _ = server.stop();
    Ok(outcome)
}

fn connect_quick(addr: SocketAddr) -> std::io::Result<Peer> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.connect_timeout(&addr.into(), Duration::from_millis(500))?;
    Ok(Peer::from_stream(socket.into()))
}

/// 1,000 members that never read while the members chat (S8).
fn stalled(args: &Args) -> Result<Outcome, String> {
    let flags = vec![
        "--max-output-bytes".to_owned(),
        args.max_output_bytes.to_string(),
    ];
    args.under_attack(&flags, |server, chat, outcome| {
        let rss_before = server.rss_kib().unwrap_or(0);
        // Per connection: its share of --max-output-bytes, plus 64 KiB for the reader's buffer,
        // the decoder, task or thread stacks touched, socket bookkeeping.
        let bound_kib = rss_before + args.clients as u64 * (args.max_output_bytes / 1024 + 64);
        outcome.figure(format!(
            "server RSS with {} members in: {rss_before} KiB; stated bound: that + {} clients x \
         ({} KiB max output + 64 KiB overhead) = {bound_kib} KiB",
            args.members,
            args.clients,
            args.max_output_bytes / 1024
        ));

        // The stalled clients join in the background while the members talk, 200 a second:
        // all at once, the burst of join notices alone would test the members' own allowance
        // rather than the stalled clients'.
        let addr = server.addr;
        let clients = args.clients;
        let stallers = thread::spawn(move || {
            let mut stalled = Vec::new();
            let mut errors = 0;
            for k in 0..clients {
                thread::sleep(Duration::from_millis(5));
                match Peer::connect(addr, Some(4096)) {
                    Ok(mut peer) => {
                        // ADD without reading the greeting or anything after it.
                        if peer.send(Method::Add, &format!("h{k}"), b"").is_ok() {
                            stalled.push(peer);
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (stalled, errors)
        });
        let run = chat.talk(Duration::from_secs(args.seconds));
        let (stalled, connect_errors) = stallers
            .join()
            .map_err(|_| "the stalling thread panicked".to_owned())?;
        // The members keep posting, lightly, until every stalled client has been cut (30 s at most).
        let deadline = Instant::now() + Duration::from_secs(30);
        while chat.hostile_leaves() < stalled.len() as u64 && Instant::now() < deadline {
            chat.talk(Duration::from_millis(500));
        }
        let peak = server.peak_rss_kib().unwrap_or(0);
        outcome.figure(format!(
            "{} stalled clients joined ({} join notices, {connect_errors} could not connect); \
         cut per S8 (leave notices): {}",
            stalled.len(),
            chat.hostile_joins(),
            chat.hostile_leaves()
        ));
        outcome.figure(format!(
            "server peak RSS {peak} KiB (bound {bound_kib} KiB); RSS after the cuts {} KiB",
            server.rss_kib().unwrap_or(0)
        ));
        outcome.check(
            stalled.len() == args.clients && chat.hostile_leaves() == args.clients as u64,
            "every stalled client was cut".into(),
        );
        outcome.check(peak <= bound_kib, "peak RSS within the bound".into());
        match Chat::users(server.addr) {
            Ok(users) => outcome.check(
                users.iter().all(|u| u.starts_with('m')) && users.len() == args.members,
                format!(
                    "GET lists only the {} members ({} names)",
                    args.members,
                    users.len()
                ),
            ),
            Err(e) => outcome.check(false, format!("GET after the cuts: {e}")),
        }
        outcome.check(server.exited().is_none(), "the server did not exit".into());
        drop(stalled);
        Ok(run)
    })
}

/// 1,000 connections that send a request head one byte a second and never finish it (S9).
fn slowloris(args: &Args) -> Result<Outcome, String> {
    let flags = vec![
        "--request-timeout".to_owned(),
        args.request_timeout.to_string(),
    ];
    args.under_attack(&flags, |server, chat, outcome| {
    let addr = server.addr;
    let clients = args.clients;
    let attack = thread::spawn(move || slowloris_attack(addr, clients));
    let run = chat.talk(Duration::from_secs(args.seconds));
    let report = attack
        .join()
        .map_err(|_| "the slowloris thread panicked".to_owned())?;
    outcome.figure(format!(
        "{} slowloris connections ({} could not connect): {} got 408, {} closed by the server \
         ({} with a reset), {} still open at the end; 408 after the first byte: min {} ms, max {} ms",
        report.connected,
        report.connect_errors,
        report.got_408,
        report.closed,
        report.reset,
        report.connected - report.closed,
        ms(report.min_cut),
        ms(report.max_cut),
    ));
    let timeout = Duration::from_secs_f64(args.request_timeout);
    outcome.check(
        report.connected == clients && report.got_408 == clients && report.closed == clients,
        "every slowloris connection got 408 and was closed".into(),
    );
    outcome.check(
        report.min_cut >= timeout.mul_f64(0.9)
            && report.max_cut <= timeout + Duration::from_secs(3),
        format!("cut near the request timeout ({} s)", args.request_timeout),
    );
        Ok(run)
    })
}

#[derive(Debug, Default)]
struct SlowlorisReport {
    connected: usize,
    connect_errors: usize,
    got_408: usize,
    closed: usize,
    reset: usize,
    min_cut: Duration,
    max_cut: Duration,
}

fn slowloris_attack(addr: SocketAddr, clients: usize) -> SlowlorisReport {
    // A head that never ends: the start line, then header lines forever.
    const HEAD: &[u8] = b"GET / HTTP/1.1\nUser_Agent: slowloris\nX_Slow: aaaaaaaaaaaaaaaaaaaa\n";
    let mut report = SlowlorisReport {
        min_cut: Duration::MAX,
        ..SlowlorisReport::default()
    };
    struct Slow {
        peer: Peer,
        sent: usize,
        next_send: Instant,
        first_byte: Option<Instant>,
        open: bool,
    }
    let mut conns = Vec::new();
    for _ in 0..clients {
        match Peer::connect(addr, None) {
            Ok(peer) if peer.stream.set_nonblocking(true).is_ok() => conns.push(Slow {
                peer,
                sent: 0,
                next_send: Instant::now(),
                first_byte: None,
                open: true,
            }),
            _ => report.connect_errors += 1,
        }
    }
    report.connected = conns.len();
    // Each connection sends a byte a second; their schedules are spread over the first
    // second, as an attacker's connections would be, rather than all ticking together.
    let start = Instant::now();
    let count = conns.len().max(1) as f64;
    for (k, conn) in conns.iter_mut().enumerate() {
        conn.next_send = start + Duration::from_secs_f64(k as f64 / count);
    }
    let end = start + Duration::from_secs(30);
    let mut next_read = start;
    while Instant::now() < end && conns.iter().any(|c| c.open) {
        let now = Instant::now();
        for conn in conns.iter_mut().filter(|c| c.open && c.next_send <= now) {
            // The head never ends: past the fixed lines, one header value grows forever.
            let byte = HEAD.get(conn.sent).copied().unwrap_or(b'a');
            if conn.peer.stream.write(&[byte]).is_ok() {
                conn.sent += 1;
                conn.first_byte.get_or_insert(now);
            }
            conn.next_send += Duration::from_secs(1);
        }
        // Look for 408s and closes every 100 ms (the cut times are that precise).
        if now < next_read {
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        next_read = now + Duration::from_millis(100);
        for conn in conns.iter_mut().filter(|c| c.open) {
            loop {
                match conn
                    .peer
                    .next_reply(Instant::now() + Duration::from_secs(1))
                {
                    Ok(Some(reply)) if reply.code == 408 => {
                        report.got_408 += 1;
                        if let Some(first) = conn.first_byte {
                            let cut = first.elapsed();
                            report.min_cut = report.min_cut.min(cut);
                            report.max_cut = report.max_cut.max(cut);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(ended) => {
                        conn.open = false;
                        report.closed += 1;
                        if ended != Ended::Eof {
                            report.reset += 1;
                        }
                        break;
                    }
                }
            }
        }
    }
    if report.min_cut == Duration::MAX {
        report.min_cut = Duration::ZERO;
    }
    report
}

/// Unframeable requests of the W8 table, one per connection.
/// S12: 100 members post as fast as their sockets take, at the server's default flood
/// control (5 requests/s, 20 at once, a kick at the 50th 429 in a minute). A kicked flooder
/// joins again and goes on. The members chat under the default rate, so only the flooders
/// meet 429s; the room carries no more of a flooder's messages than its bucket lets through.
fn flood(args: &Args) -> Result<Outcome, String> {
    const FLOODERS: usize = 100;
    let flags = [
        "--message-rate",
        "5",
        "--message-burst",
        "20",
        "--flood-kick",
        "50",
    ]
    .map(String::from);
    let members = Args {
        rate_cap: Some(4.0),
        server: args.server.clone(),
        scenarios: Vec::new(),
        server_log: args.server_log.clone(),
        ..*args
    };
    members.under_attack(&flags, |server, chat, outcome| {
        let addr = server.addr;
        let seconds = members.seconds;
        let flood = thread::spawn(move || flood_attack(addr, FLOODERS, seconds));
        let run = chat.talk(Duration::from_secs(members.seconds));
        let report = flood
            .join()
            .map_err(|_| "the flood thread panicked".to_owned())?;
        outcome.figure(format!(
            "{FLOODERS} flooders: {} posts sent, {} carried, {} refused with 429, {} kicks \
             (each rejoined), {} other replies",
            report.sent, report.carried, report.too_many, report.kicks, report.other
        ));
        outcome.check(
            report.too_many > 0 && report.kicks > 0,
            "flooders met 429s and were kicked".into(),
        );
        outcome.check(
            report.over_bucket.is_empty(),
            format!(
                "no flooder got more through than its bucket ({} over{})",
                report.over_bucket.len(),
                report
                    .over_bucket
                    .first()
                    .map(|o| format!(", first: {o}"))
                    .unwrap_or_default()
            ),
        );
        Ok(run)
    })
}

#[derive(Debug, Default)]
struct FloodReport {
    sent: usize,
    carried: usize,
    too_many: usize,
    kicks: usize,
    other: usize,
    /// Connection lives that got more chat lines through than `burst + rate × life` allows.
    over_bucket: Vec<String>,
}

/// Each flooder pipelines 20 posts, reads what came back, and does it again until `seconds`
/// pass; one that is kicked joins again under the same name.
fn flood_attack(addr: SocketAddr, flooders: usize, seconds: u64) -> FloodReport {
    let mut report = FloodReport::default();
    let end = Instant::now() + Duration::from_secs(seconds);
    let join = |i: usize| -> Option<(Peer, Instant, usize)> {
        let mut peer = Peer::connect(addr, None).ok()?;
        peer.join(&format!("flood{i}"), Duration::from_secs(5))
            .ok()?;
        Some((peer, Instant::now(), 0))
    };
    let mut peers: Vec<Option<(Peer, Instant, usize)>> = (0..flooders).map(join).collect();
    let batch: Vec<u8> = (0..20)
        .flat_map(|k| {
            chathttp_loadgen::wire::request_bytes(Method::Post, "", format!("x{k}").as_bytes())
        })
        .collect();
    while Instant::now() < end {
        for (i, slot) in peers.iter_mut().enumerate() {
            let Some((peer, born, carried)) = slot else {
                *slot = join(i);
                continue;
            };
            if peer.stream.write_all(&batch).is_err() {
                report.kicks += 1;
                *slot = join(i);
                continue;
            }
            report.sent += 20;
            let own = format!("[ flood{i} ] : x");
            let deadline = Instant::now() + Duration::from_millis(1);
            let ended = loop {
                match peer.next_reply(deadline) {
                    Ok(Some(reply)) if reply.code == 200 && reply.body.starts_with(&own) => {
                        *carried += 1;
                        report.carried += 1;
                    }
                    Ok(Some(reply)) if reply.code == 429 => report.too_many += 1,
                    Ok(Some(reply)) if reply.code == 200 => {}
                    Ok(Some(_)) => report.other += 1,
                    Ok(None) => break false,
                    Err(_) => break true,
                }
            };
            // The server's bucket: 20 at once, then 5 a second (one more of slack).
            let allowed = 20.0 + 5.0 * born.elapsed().as_secs_f64() + 1.0;
            if *carried as f64 > allowed {
                report
                    .over_bucket
                    .push(format!("flood{i}: {carried} carried, {allowed:.0} allowed"));
            }
            if ended {
                report.kicks += 1;
                *slot = join(i);
            }
        }
    }
    report
}

fn bad_requests() -> Vec<Vec<u8>> {
    let mut oversized = b"GET / HTTP/1.1\nX_Big: ".to_vec();
    oversized.resize(9_000, b'a');
    oversized.extend_from_slice(b"\n\n");
    let mut many_lines = b"GET / HTTP/1.1\n".to_vec();
    for i in 0..65 {
        many_lines.extend_from_slice(format!("X_{i}: y\n").as_bytes());
    }
    many_lines.push(b'\n');
    vec![
        b"GET  / HTTP/1.1\n\n".to_vec(),
        b"GET /\n\n".to_vec(),
        b"GET\t/ HTTP/1.1\n\n".to_vec(),
        b"GET\0/ HTTP/1.1\n\n".to_vec(),
        b"GET / HTTP/1.1 extra\n\n".to_vec(),
        b"GET / HTTP/1.1\nNoColonHere\n\n".to_vec(),
        b"GET / HTTP/1.1\nUser_Agent : x\n\n".to_vec(),
        b"GET / HTTP/1.1\nUser_Agent: x\n folded\n\n".to_vec(),
        b"POST / HTTP/1.1\nContent_Length: 12a\n\n".to_vec(),
        b"POST / HTTP/1.1\nContent_Length: 5\nContent_Length: 6\n\nhello".to_vec(),
        b"POST / HTTP/1.1\nContent_Length: 99999999\n\n".to_vec(),
        oversized,
        many_lines,
    ]
}

/// A round a second of 100 connections sending one bad request each at the same moment (W8).
fn badflood(args: &Args) -> Result<Outcome, String> {
    const CONNECTIONS: usize = 100;
    args.under_attack(&[], |server, chat, outcome| {
        let addr = server.addr;
        let seconds = args.seconds;
        let flood = thread::spawn(move || {
            let requests = bad_requests();
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut totals = [0usize; 5]; // sent, 400 with one line, clean close, reset, other
            let mut rounds = 0;
            // One round a second: 100 connections at once, each with one bad request.
            let mut next_round = Instant::now();
            while Instant::now() < end && rounds < 60 {
                if let Some(wait) = next_round.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                next_round += Duration::from_secs(1);
                rounds += 1;
                let mut peers: Vec<Peer> = (0..CONNECTIONS)
                    .filter_map(|_| Peer::connect(addr, None).ok())
                    .collect();
                for (i, peer) in peers.iter_mut().enumerate() {
                    if peer.stream.write_all(&requests[i % requests.len()]).is_ok() {
                        totals[0] += 1;
                    }
                }
                for peer in &mut peers {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let mut answered = false;
                    let ended = loop {
                        match peer.next_reply(deadline) {
                            Ok(Some(reply)) if reply.code == 202 => {}
                            Ok(Some(reply))
                                if reply.code == 400
                                    && reply.body.ends_with('\n')
                                    && reply.body.matches('\n').count() == 1 =>
                            {
                                answered = true;
                            }
                            Ok(Some(_)) | Ok(None) => break None,
                            Err(ended) => break Some(ended),
                        }
                    };
                    match (answered, ended) {
                        (true, Some(Ended::Eof)) => {
                            totals[1] += 1;
                            totals[2] += 1;
                        }
                        (true, Some(_)) => {
                            totals[1] += 1;
                            totals[3] += 1;
                        }
                        (false, Some(Ended::Reset)) => totals[3] += 1,
                        _ => totals[4] += 1,
                    }
                }
            }
            (rounds, totals)
        });
        let run = chat.talk(Duration::from_secs(args.seconds));
        let (rounds, [sent, answered, clean, reset, other]) = flood
            .join()
            .map_err(|_| "the flood thread panicked".to_owned())?;
        outcome.figure(format!(
            "{rounds} rounds of {CONNECTIONS} connections: {sent} bad requests sent, {answered} \
         answered 400 with a one-line reason, {clean} closed cleanly (FIN), {reset} reset, \
         {other} other"
        ));
        outcome.check(
            sent > 0 && answered == sent && clean == sent,
            "every bad request answered 400 and closed without a reset".into(),
        );
        Ok(run)
    })
}

/// Closes that are never read (S13): rounds of connections that each get a reply and a close
/// and then neither read nor close, while the server's descriptors and memory are watched.
fn closing(args: &Args) -> Result<Outcome, String> {
    const CONNECTIONS: usize = 100;
    const LINGER: Duration = Duration::from_secs(2);
    args.under_attack(&[], |server, chat, outcome| {
        let addr = server.addr;
        let (seconds, gets) = (args.seconds, args.closing_gets);
        thread::sleep(Duration::from_millis(500));
        let (fds_before, rss_before) = (
            server.open_fds().unwrap_or(0),
            server.rss_kib().unwrap_or(0),
        );
        let attack = thread::spawn(move || {
            let gets = b"GET / HTTP/1.1\n\n".repeat(gets);
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut held: Vec<Peer> = Vec::new();
            let mut next_round = Instant::now();
            // One connection every 10 ms: the load is the closes that wait, not a burst of
            // connects (the badflood scenario has those).
            let mut i = 0;
            while Instant::now() < end && held.len() < 60 * CONNECTIONS {
                if let Some(wait) = next_round.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                next_round += Duration::from_secs(1) / CONNECTIONS as u32;
                i += 1;
                let small = i % 2 == 0;
                let Ok(mut peer) = Peer::connect(addr, small.then_some(4096)) else {
                    continue;
                };
                if small {
                    let _ = peer.stream.write_all(&gets);
                }
                if peer.stream.write_all(b"GET\t/ HTTP/1.1\n\n").is_ok() {
                    held.push(peer);
                }
            }
            (held, Instant::now())
        });
        // Watch the descriptors while the members chat and the rounds go on.
        let watch = {
            let pid_fds = format!("/proc/{}/fd", server.pid);
            thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(seconds + 1);
                let mut peak = 0;
                while Instant::now() < end {
                    let fds = std::fs::read_dir(&pid_fds).map_or(0, |d| d.count());
                    peak = peak.max(fds);
                    thread::sleep(Duration::from_millis(20));
                }
                peak
            })
        };
        let run = chat.talk(Duration::from_secs(args.seconds));
        let (mut held, last_round) = attack
            .join()
            .map_err(|_| "the attack thread panicked".to_owned())?;
        let peak_fds = watch
            .join()
            .map_err(|_| "the watch thread panicked".to_owned())?;
        let back = loop {
            if server.open_fds().unwrap_or(usize::MAX) <= fds_before {
                break Some(last_round.elapsed());
            }
            if last_round.elapsed() > LINGER + Duration::from_secs(5) {
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        thread::sleep(Duration::from_secs(1));
        let rss_after = server.rss_kib().unwrap_or(0);
        let peak_rss = server.peak_rss_kib().unwrap_or(0);
        // What each held connection saw once it finally reads: its 400 or not, then how the
        // stream ended (a reset, as nobody closed it within the linger).
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for peer in &mut held {
            let _ = peer.stream.set_nonblocking(false);
            let deadline = Instant::now() + Duration::from_millis(200);
            let mut answered = false;
            let ended = loop {
                match peer.next_reply(deadline) {
                    Ok(Some(reply)) if reply.code == 400 => answered = true,
                    Ok(Some(_)) => {}
                    Ok(None) => break "nothing more".to_owned(),
                    Err(ended) => break format!("{ended:?}").to_lowercase(),
                }
            };
            let what = match answered {
                true => format!("their 400, then {ended}"),
                false => format!("no 400, {ended}"),
            };
            *seen.entry(what).or_default() += 1;
        }
        let seen: Vec<String> = seen.iter().map(|(what, n)| format!("{n} {what}")).collect();
        // The connections of one linger, plus a round's and a second's slack.
        let allowed = fds_before + CONNECTIONS * (LINGER.as_secs() as usize + 2);
        outcome.figure(format!(
            "{} connections closed after a reply and never read ({} with {} pipelined GETs \
             behind a 4 KiB window); read at the end: {}",
            held.len(),
            held.len() / 2,
            args.closing_gets,
            seen.join(", "),
        ));
        outcome.figure(format!(
            "server descriptors: {fds_before} before, peak {peak_fds} (allowed {allowed}), back \
             to {fds_before} {} after the last round",
            back.map_or("never".into(), |b| format!("{} ms", b.as_millis()))
        ));
        outcome.figure(format!(
            "server RSS: {rss_before} KiB before, peak {peak_rss} KiB, {rss_after} KiB a second \
             after the descriptors were back"
        ));
        outcome.check(
            peak_fds <= allowed,
            format!("descriptors bounded by the linger ({peak_fds} <= {allowed})"),
        );
        outcome.check(
            back.is_some_and(|b| b <= LINGER + Duration::from_secs(1)),
            "descriptors back at the baseline within linger + 1 s of the last round".into(),
        );
        drop(held);
        Ok(run)
    })
}
