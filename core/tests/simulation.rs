//! A seeded simulation of many clients against the room machine, with faults.
//!
//! The harness plays the host: it hands the machine bytes in random chunks, delivers the
//! frames it emits to per-client inboxes that clients read at their own pace (some barely
//! at all), reports what was read as drained, hangs clients up, sends garbage, and moves a
//! virtual clock so timeouts fire. After every step it checks the room against a small
//! reference model:
//!
//! * names are unique ignoring case, and the room's members (in join order) are exactly the
//!   model's: no ghost members, no one missing;
//! * every broadcast goes to exactly the members present (and open) when it is applied;
//! * every client has received, decoded from its byte stream, exactly the broadcasts of its
//!   membership, in the order they were applied: none lost, none doubled, one order for all;
//! * memory per connection stays within the limits;
//! * flooders (thirty messages at once) get no more chat lines through at one instant than
//!   the bucket's burst (S12), and are kicked after repeated `429`s.
//!
//! A second regime overloads the room (S8.1): senders send faster than any member drains,
//! every member keeps reading at its own pace, a few stop reading or read far slower than
//! the rest, one reads as fast but with no room in its peer's kernel (so it alone falls
//! far behind at the server), and the host stops reading while the machine says the room
//! is paced. Nobody who keeps draining is cut; those who stop are, and so is the one far slower than the
//! rest; the room is never silent for longer than the hold limit and the drain window; and
//! the exactly-once checks above hold throughout.
//!
//! `SIM_SEED=<n>` replays one seed; `SIM_STEPS=<n>` sets the steps per seed;
//! `SIM_SEEDS=<n>` the number of seeds. A failure prints the seed and the step.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chathttp_core::limits::FloodLimits;
use chathttp_core::server::history::{Epoch, HistoryConfig};
use chathttp_core::server::pace::{DRAIN_WINDOW, HOLD_LIMIT};
use chathttp_core::server::{CloseMode, Disconnect, Event, LeaveCause, Output, Server};
use chathttp_core::wire::{Frame, ResponseDecoder};
use chathttp_core::{ConnId, FrameLimits, ServerConfig, Timestamp, UserName};

/// The seeded generator that picks every action: a seed replays a run exactly.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.0.u64(..100) < percent
    }
}

const NAMES: &[&str] = &[
    "alice", "Alice", "bob", "BOB", "émile", "Émile", "小明", "zoé", "Zoé", "x", "y", "z",
];

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Guest,
    Member,
    /// The server closed it; the client reads what was flushed to it, then it is gone.
    Closing,
    Gone,
}

struct Client {
    conn: ConnId,
    phase: Phase,
    slow: bool,
    /// Bytes written by the client and not yet handed to the server.
    outbox: Vec<u8>,
    /// Frames the host queued for the client; `read_offset` into the first.
    inbox: VecDeque<Frame>,
    read_offset: usize,
    decoder: ResponseDecoder,
    /// The name of the ADD in flight, if any.
    joining: Option<String>,
    received: Vec<String>,
    expected: Vec<String>,
    /// Cut without a flush: what it received may stop short of what was sent.
    cut_now: bool,
    posts: u64,
    /// The name it was welcomed under.
    name: Option<String>,
    /// Why it left the room, once it has.
    left: Option<LeaveCause>,
}

struct World {
    rng: Rng,
    server: Server,
    now_ms: u64,
    clients: Vec<Client>,
    /// Clients not yet gone: the only ones a step or a check needs to visit.
    live: Vec<usize>,
    by_conn: HashMap<ConnId, usize>,
    /// The reference model: members in join order, and their names' keys.
    members: BTreeMap<u64, usize>,
    join_order: u64,
    config: ServerConfig,
    largest_frame: usize,
    broadcasts: u64,
    /// How often each kind of event happened, to show the faults were exercised.
    tally: BTreeMap<String, u64>,
    /// Chat lines each client got through at the current instant (S12): never more than
    /// the bucket's burst, however fast it floods.
    lines_now: (u64, HashMap<usize, u32>),
    /// Since when the machine has asked the host to stop reading (S8.1).
    paused: Option<u64>,
    /// When the last broadcast went out, and the longest time between two.
    last_broadcast_ms: u64,
    longest_silence_ms: u64,
}

impl World {
    fn new(seed: u64) -> Self {
        Self::with_config(seed, Self::config())
    }

    /// Small limits, so that every fault is reached within a few thousand steps.
    fn config() -> ServerConfig {
        ServerConfig {
            frame: FrameLimits {
                max_head_bytes: 512,
                max_header_lines: 8,
                max_body_bytes: 256,
            },
            max_connections: 40,
            max_output_bytes: 4096,
            idle_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(5),
            // Flooders are kicked soon enough to be seen doing it.
            flood: FloodLimits {
                kick: 5,
                ..FloodLimits::default()
            },
            ..ServerConfig::default()
        }
    }

    fn with_config(seed: u64, config: ServerConfig) -> Self {
        Self {
            rng: Rng::new(seed),
            server: Server::new(config.clone(), Timestamp::from_millis(0)),
            now_ms: 0,
            clients: Vec::new(),
            live: Vec::new(),
            by_conn: HashMap::new(),
            members: BTreeMap::new(),
            join_order: 0,
            config,
            largest_frame: 0,
            broadcasts: 0,
            tally: BTreeMap::new(),
            lines_now: (0, HashMap::new()),
            paused: None,
            last_broadcast_ms: 0,
            longest_silence_ms: 0,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now_ms)
    }

    fn step(&mut self) {
        let live: Vec<usize> = (0..self.clients.len())
            .filter(|&i| self.clients[i].phase != Phase::Gone)
            .collect();
        let roll = self.rng.below(100);
        if live.is_empty() || roll < 4 {
            self.open();
        } else {
            let i = live[self.rng.below(live.len())];
            match roll {
                4..=30 => self.write_request(i),
                31..=60 => self.transmit(i),
                61..=88 => self.read(i),
                89..=90 => self.hang_up(i),
                91 => self.send_garbage(i),
                _ => self.tick(),
            }
        }
        self.pump();
        self.check();
    }

    fn open(&mut self) {
        let conn = self.server.handle_open(self.now());
        let slow = self.rng.chance(15);
        self.by_conn.insert(conn, self.clients.len());
        self.live.push(self.clients.len());
        self.clients.push(Client {
            conn,
            phase: Phase::Guest,
            slow,
            outbox: Vec::new(),
            inbox: VecDeque::new(),
            read_offset: 0,
            decoder: ResponseDecoder::new(FrameLimits::for_responses()),
            joining: None,
            received: Vec::new(),
            expected: Vec::new(),
            cut_now: false,
            posts: 0,
            name: None,
            left: None,
        });
    }

    /// The client composes a request that makes sense in its phase (mostly).
    fn write_request(&mut self, i: usize) {
        let name = format!(
            "{}{}",
            NAMES[self.rng.below(NAMES.len())],
            ["", "", "1", "2"][self.rng.below(4)]
        );
        let name = name.as_str();
        let roll = self.rng.below(100);
        let c = &mut self.clients[i];
        if c.phase != Phase::Guest && c.phase != Phase::Member {
            return;
        }
        let bytes = match (c.phase, roll) {
            (Phase::Guest, 0..=69) if c.joining.is_none() => {
                c.joining = Some(name.to_owned());
                support::add(name)
            }
            (Phase::Member, 0..=77) => {
                c.posts += 1;
                support::post(&format!("m{i}-{}", c.posts))
            }
            // A flooder: thirty messages at once, far past the bucket (S12).
            (Phase::Member, 78..=79) => {
                let mut burst = Vec::new();
                for _ in 0..30 {
                    c.posts += 1;
                    burst.extend(support::post(&format!("m{i}-{}", c.posts)));
                }
                burst
            }
            (Phase::Member, 80..=83) => support::request("DELETE", None, ""),
            (_, 84..=89) => support::request("POST", None, "\n"),
            _ => support::request("GET", None, ""),
        };
        c.outbox.extend(bytes);
    }

    /// Hands the client's whole outbox to the server.
    fn transmit_all(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if c.outbox.is_empty() || c.phase == Phase::Closing || c.phase == Phase::Gone {
            return;
        }
        let chunk = std::mem::take(&mut c.outbox);
        let (conn, now) = (c.conn, self.now());
        self.server.handle_received(now, conn, &chunk);
    }

    /// Hands part of the client's outbox to the server, split anywhere.
    fn transmit(&mut self, i: usize) {
        // A paused host starts no new reads, but one already started still hands its
        // bytes in (S8.1).
        if self.paused.is_some() && !self.rng.chance(10) {
            return;
        }
        let c = &mut self.clients[i];
        if c.outbox.is_empty() || c.phase == Phase::Closing {
            return;
        }
        // Usually everything, sometimes a cut anywhere: partial frames without starving.
        let len = if self.rng.chance(60) {
            c.outbox.len()
        } else {
            1 + self.rng.below(c.outbox.len())
        };
        let chunk: Vec<u8> = c.outbox.drain(..len).collect();
        let (conn, now) = (c.conn, self.now());
        self.server.handle_received(now, conn, &chunk);
    }

    /// The client reads some of what the host queued for it, and the host reports it drained.
    fn read(&mut self, i: usize) {
        let budget = if self.clients[i].slow {
            self.rng.below(64)
        } else {
            1 + self.rng.below(4096)
        };
        self.read_upto(i, budget);
    }

    /// Bytes the host has queued for client `i` that it has not read.
    fn unread(&self, i: usize) -> usize {
        let c = &self.clients[i];
        let queued: usize = c.inbox.iter().map(|frame| frame.len()).sum();
        queued - c.read_offset
    }

    /// The client reads up to `budget` bytes of what the host queued for it, and the host
    /// reports them drained.
    fn read_upto(&mut self, i: usize, budget: usize) {
        let c = &mut self.clients[i];
        let read = read_from(&mut c.inbox, &mut c.read_offset, budget);
        let Client {
            decoder,
            expected,
            received,
            ..
        } = c;
        decoder.decode_each(&read, |decoded| {
            let response = decoded
                .unwrap_or_else(|e| panic!("client {i} could not decode the server's bytes: {e}"));
            let body = String::from_utf8_lossy(response.body);
            if is_broadcast(&body) {
                // Each broadcast must be the next one the model sent it: none lost, none
                // doubled, in the order applied.
                let next = expected.get(received.len());
                assert_eq!(
                    next.map(String::as_str),
                    Some(&*body),
                    "client {i}: broadcasts lost, doubled or reordered"
                );
                received.push(body.into_owned());
            }
        });
        if c.phase == Phase::Closing && c.inbox.is_empty() {
            c.phase = Phase::Gone;
            // The peer took the last bytes: the host lets go of the socket (S13).
            self.server.handle_released(c.conn);
        }
        let c = &self.clients[i];
        let (conn, count) = (c.conn, read.len());
        let now = Timestamp::from_millis(self.now_ms);
        if count > 0 && c.phase != Phase::Gone && c.phase != Phase::Closing {
            self.server.handle_drained(now, conn, count);
        }
    }

    fn hang_up(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if c.phase == Phase::Closing {
            return;
        }
        c.phase = Phase::Gone;
        c.cut_now = true;
        let (conn, now) = (c.conn, self.now());
        self.server.handle_closed(now, conn, Disconnect::Error);
        self.server.handle_released(conn);
    }

    fn send_garbage(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if c.phase == Phase::Closing {
            return;
        }
        c.outbox.extend_from_slice(b"BREW coffee\tHTTP/1.1\n\n");
    }

    fn tick(&mut self) {
        self.now_ms += self.rng.below(800) as u64;
        while let Some(deadline) = self.server.poll_timeout() {
            if deadline > self.now() {
                break;
            }
            self.server.handle_timeout(self.now());
            self.pump();
        }
    }

    /// Carries out the machine's outputs as a host would, checking each against the model,
    /// and calls back while something is due now (a slice of timeouts or of log entries).
    fn pump(&mut self) {
        loop {
            self.pump_outputs();
            match self.server.poll_timeout() {
                Some(due) if due <= self.now() => self.server.handle_timeout(self.now()),
                _ => return,
            }
        }
    }

    fn pump_outputs(&mut self) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Send { conn, frame } => self.deliver_one(conn, frame),
                Output::Broadcast { to, frame } => {
                    self.broadcasts += 1;
                    let silence = self.now_ms - self.last_broadcast_ms;
                    self.longest_silence_ms = self.longest_silence_ms.max(silence);
                    self.last_broadcast_ms = self.now_ms;
                    self.largest_frame = self.largest_frame.max(frame.len());
                    let body = body_of(&frame);
                    let mut expected: Vec<usize> = self.open_members();
                    if let Some(joiner) = body.strip_suffix(" has just entered the chat room...\n")
                    {
                        expected.retain(|&m| self.member_name(m) != joiner);
                    }
                    if let Some(leaver) = body.strip_suffix(" has just left the chat room...\n") {
                        let gone = self
                            .members
                            .iter()
                            .find(|&(_, &m)| self.member_name(m) == leaver)
                            .map(|(&k, _)| k);
                        match gone {
                            Some(k) => {
                                let m = self.members.remove(&k).expect("found above");
                                expected.retain(|&x| x != m);
                            }
                            None => panic!("leave notice for {leaver}, who is not a member"),
                        }
                    }
                    let mut got: Vec<usize> = to
                        .iter()
                        .filter_map(|c| self.by_conn.get(c).copied())
                        .collect();
                    got.sort_unstable();
                    expected.sort_unstable();
                    assert_eq!(
                        got,
                        expected,
                        "broadcast {body:?} went to the wrong connections; model {:?}, room {:?}",
                        self.members
                            .values()
                            .map(|&m| (m, self.member_name(m), self.clients[m].phase))
                            .collect::<Vec<_>>(),
                        self.server
                            .room()
                            .members()
                            .map(|(c, n)| (self.by_conn[&c], n.as_str().to_owned()))
                            .collect::<Vec<_>>()
                    );
                    self.count_chat_line(&body);
                    for &m in &got {
                        self.clients[m].expected.push(body.clone());
                        self.clients[m].inbox.push_back(frame.clone());
                    }
                }
                Output::Close { conn, mode } => {
                    let i = self.by_conn[&conn];
                    let c = &mut self.clients[i];
                    match mode {
                        CloseMode::AfterFlush => c.phase = Phase::Closing,
                        CloseMode::Now => {
                            c.phase = Phase::Gone;
                            c.cut_now = true;
                            c.inbox.clear();
                        }
                    }
                    if c.phase == Phase::Closing && c.inbox.is_empty() {
                        c.phase = Phase::Gone;
                    }
                    if c.phase == Phase::Gone {
                        self.server.handle_released(conn);
                    }
                }
                Output::Record(_) | Output::StopRecording => {
                    panic!("this regime keeps no history to record")
                }
                Output::PauseReading => {
                    assert!(self.paused.is_none(), "paused twice");
                    self.paused = Some(self.now_ms);
                    *self.tally.entry("paused".into()).or_default() += 1;
                }
                Output::ResumeReading => {
                    assert!(self.paused.take().is_some(), "resumed while reading");
                }
                Output::Event(Event::Left { conn, cause, .. }) => {
                    // The leave notice removed it from the model, unless nobody was left to
                    // notify.
                    *self.tally.entry(format!("left:{cause:?}")).or_default() += 1;
                    let i = self.by_conn[&conn];
                    self.clients[i].left = Some(cause);
                    if let Some(k) = self.members.iter().find(|&(_, &m)| m == i).map(|(&k, _)| k) {
                        self.members.remove(&k);
                        let others = self.open_members();
                        assert!(
                            others.is_empty(),
                            "client {i} left ({cause:?}) with no notice to {others:?}"
                        );
                    }
                }
                Output::Event(event) => {
                    let kind = match event {
                        Event::Left { cause, .. } => format!("left:{cause:?}"),
                        Event::GuestClosed { cause, .. } => format!("guest closed:{cause:?}"),
                        Event::Refused { status, .. } => format!("refused:{}", status.code()),
                        other => format!("{other:?}")
                            .split([' ', '{'])
                            .next()
                            .unwrap_or("")
                            .to_owned(),
                    };
                    *self.tally.entry(kind).or_default() += 1;
                }
            }
        }
    }

    /// S12: a speaker's chat lines at one instant never pass the bucket's burst, so a
    /// flooder cannot take the room for more than that before the others' turn.
    fn count_chat_line(&mut self, body: &str) {
        if self.config.flood.interval.is_none() {
            return;
        }
        let Some(speaker) = body
            .split_once(" ] : m")
            .and_then(|(_, rest)| rest.split_once('-'))
            .and_then(|(i, _)| i.parse::<usize>().ok())
        else {
            return;
        };
        if self.lines_now.0 != self.now_ms {
            self.lines_now = (self.now_ms, HashMap::new());
        }
        let lines = self.lines_now.1.entry(speaker).or_default();
        *lines += 1;
        let burst = self.config.flood.burst;
        assert!(
            *lines <= burst,
            "client {speaker} got {lines} chat lines through at {} ms; the burst is {burst}",
            self.now_ms
        );
    }

    fn deliver_one(&mut self, conn: ConnId, frame: Frame) {
        let i = self.by_conn[&conn];
        let body = body_of(&frame);
        let code = frame
            .get(9..12)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        if let Some(name) = body
            .strip_prefix("Welcome, ")
            .and_then(|b| b.strip_suffix("!\n"))
        {
            let asked = self.clients[i].joining.take();
            assert_eq!(
                asked.as_deref(),
                Some(name),
                "welcomed under a name it did not ask for"
            );
            let key = UserName::parse(name).expect("valid").key().to_owned();
            let clash = self.members.values().find(|&&m| self.key_of(m) == key);
            assert!(
                clash.is_none(),
                "{name} admitted while {:?} holds the name",
                clash
            );
            self.join_order += 1;
            self.members.insert(self.join_order, i);
            self.clients[i].phase = Phase::Member;
            self.clients[i].name = Some(name.to_owned());
        } else if code == "401" {
            let asked = self.clients[i].joining.take().expect("401 answers an ADD");
            let key = UserName::parse(&asked).expect("valid").key().to_owned();
            assert!(
                self.members.values().any(|&m| self.key_of(m) == key),
                "{asked} refused as taken, but it is free"
            );
        } else if is_broadcast(&body) {
            // A broadcast with one recipient left comes as a broadcast too; a single send of
            // a broadcast body would bypass the model.
            panic!("broadcast body sent as a single frame: {body:?}");
        }
        self.clients[i].inbox.push_back(frame);
    }

    fn open_members(&self) -> Vec<usize> {
        // Open as the outputs carried out so far say; the machine itself may be further on.
        self.members
            .values()
            .copied()
            .filter(|&m| matches!(self.clients[m].phase, Phase::Guest | Phase::Member))
            .collect()
    }

    fn member_name(&self, i: usize) -> String {
        self.clients[i].name.clone().unwrap_or_default()
    }

    fn key_of(&self, i: usize) -> String {
        UserName::parse(&self.member_name(i))
            .map(|n| n.key().to_owned())
            .unwrap_or_default()
    }

    fn check(&self) {
        if let Err(broken) = self.server.check_invariants() {
            panic!("the machine's own invariants: {broken}");
        }
        let room: Vec<(ConnId, String)> = self
            .server
            .room()
            .members()
            .map(|(c, n)| (c, n.as_str().to_owned()))
            .collect();
        let model: Vec<(ConnId, String)> = self
            .members
            .values()
            .map(|&m| (self.clients[m].conn, self.member_name(m)))
            .collect();
        assert_eq!(room, model, "the room's members differ from the model's");
        let sockets = self
            .clients
            .iter()
            .filter(|c| c.phase != Phase::Gone)
            .count();
        assert_eq!(
            self.server.connection_count() + self.server.closing_count(),
            sockets,
            "the machine counts a connection against the limit exactly while its socket exists"
        );
        let mut keys = std::collections::HashSet::new();
        for (conn, name) in &room {
            assert!(
                keys.insert(UserName::parse(name).expect("valid").key().to_owned()),
                "two members named {name}"
            );
            assert!(self.server.is_open(*conn), "ghost member {name}");
        }
        let limits = self.config.frame;
        for c in self.live.iter().map(|&i| &self.clients[i]) {
            if let Some(buffered) = self.server.buffered_bytes(c.conn) {
                assert!(buffered <= limits.max_head_bytes + limits.max_body_bytes);
            }
            if let Some(queued) = self.server.queued_bytes(c.conn) {
                // The machine's count is exactly what the host holds unread for the client.
                let unread: usize = c.inbox.iter().map(|f| f.len()).sum::<usize>() - c.read_offset;
                assert_eq!(
                    queued, unread,
                    "queued bytes drifted from what the client has not read"
                );
                assert!(queued <= self.config.max_output_bytes.max(self.largest_frame));
            }
        }
    }

    /// Everyone reads everything left; every client not cut short has all it should.
    fn finish(&mut self) {
        for i in 0..self.clients.len() {
            self.clients[i].slow = false;
            while !self.clients[i].inbox.is_empty() {
                self.read(i);
                self.pump();
            }
            let c = &self.clients[i];
            if !c.cut_now {
                assert_eq!(
                    c.received, c.expected,
                    "client {i} did not receive all its broadcasts"
                );
            }
        }
        self.check();
    }
}

/// Up to `budget` bytes of the frames in `inbox`, from `offset` into the first: what a
/// client reads of what the host queued for it.
fn read_from(inbox: &mut VecDeque<Frame>, offset: &mut usize, budget: usize) -> Vec<u8> {
    let mut read = Vec::new();
    while read.len() < budget {
        let Some(front) = inbox.front() else { break };
        let take = (front.len() - *offset).min(budget - read.len());
        read.extend_from_slice(&front[*offset..*offset + take]);
        *offset += take;
        if *offset == front.len() {
            inbox.pop_front();
            *offset = 0;
        }
    }
    read
}

fn body_of(frame: &[u8]) -> String {
    let at = frame
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 2)
        .unwrap_or(frame.len());
    String::from_utf8_lossy(&frame[at..]).into_owned()
}

fn is_broadcast(body: &str) -> bool {
    body.starts_with("[ ")
        || body.ends_with(" has just entered the chat room...\n")
        || body.ends_with(" has just left the chat room...\n")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn simulated_clients_with_faults_keep_every_invariant() {
    let steps = env_u64("SIM_STEPS").unwrap_or(20_000);
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("SIM_SEEDS").unwrap_or(8)).collect(),
    };
    let started = std::time::Instant::now();
    let mut broadcasts = 0;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for seed in seeds.iter().copied() {
        let result = std::panic::catch_unwind(|| {
            let mut world = World::new(seed);
            for _ in 0..steps {
                world.step();
            }
            world.finish();
            (world.broadcasts, world.tally)
        });
        match result {
            Ok((count, tally)) => {
                broadcasts += count;
                for (kind, n) in tally {
                    *totals.entry(kind).or_default() += n;
                }
            }
            Err(panic) => {
                eprintln!("simulation failed: replay with SIM_SEED={seed} SIM_STEPS={steps}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "simulation: {} seeds x {steps} steps, {broadcasts} broadcasts checked, in {:?}\n{totals:?}",
        seeds.len(),
        started.elapsed()
    );
    for kind in [
        "left:SlowReader",
        "left:ConnectionError",
        "left:Delete",
        "refused:401",
        "guest closed:BadRequest",
    ] {
        assert!(
            totals.contains_key(kind),
            "the simulation never exercised {kind}"
        );
    }
}

/// How a member of the overloaded room reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// Drains every millisecond, less than the senders send, with room in its peer's kernel
    /// for [`KERNEL_ROOM`] bytes more than it has read.
    Steady,
    /// Reads like `Steady`, but its kernel takes nothing ahead of its reads: it falls further
    /// behind at the server than the others, though no slower.
    Tight,
    /// Like `Steady`, then stops reading for good.
    Stops,
    /// Drains a few bytes a millisecond: far slower than everyone else.
    Crawls,
}

/// What the overloaded room's host reads from a sender at once.
const READ_SIZE: usize = 1024;

/// How far ahead of a `Steady` member's reads its peer's kernel takes bytes.
const KERNEL_ROOM: usize = 8192;

/// The overloaded regime (S8.1): one run of `ms` virtual milliseconds.
fn overloaded_run(seed: u64, ms: u64) -> World {
    let config = ServerConfig {
        max_output_bytes: 8192,
        max_connections: 64,
        // Pacing on its own: senders send as fast as the host lets them.
        flood: FloodLimits::OFF,
        ..World::config()
    };
    let mut world = World::with_config(seed, config);
    let mut readers = [Reader::Steady; 12];
    readers[10] = Reader::Stops;
    readers[11] = Reader::Stops;
    readers[9] = Reader::Crawls;
    readers[8] = Reader::Tight;
    // What each member's kernel holds that the member has not read yet.
    let mut in_kernel = [0_usize; 12];
    let senders = [0, 1, 2, 3, 4];
    for (i, _) in readers.iter().enumerate() {
        world.open();
        world.clients[i].joining = Some(format!("m{i}"));
        world.clients[i]
            .outbox
            .extend(support::add(&format!("m{i}")));
        world.transmit_all(i);
        world.pump();
        world.read_upto(i, usize::MAX);
        world.pump();
    }
    assert_eq!(world.server.room().len(), readers.len(), "everyone joined");
    let stop_at = ms / 4;
    // Senders with a read started by the host, which a pause does not stop.
    let mut in_flight = std::collections::HashSet::new();
    for _ in 0..ms {
        world.now_ms += 1;
        for &i in &senders {
            if world.clients[i].phase != Phase::Member {
                continue;
            }
            let c = &mut world.clients[i];
            c.posts += 1;
            let text = format!("m{i}-{}", c.posts);
            c.outbox.extend(support::post(&text));
            // The host reads at most one buffer a millisecond; a paused host starts no new
            // reads, but the one it had started still hands its bytes in.
            let read = match world.paused {
                None => Some(READ_SIZE),
                Some(_) => in_flight.remove(&i).then_some(READ_SIZE),
            };
            if let Some(size) = read {
                let c = &mut world.clients[i];
                let chunk: Vec<u8> = c.outbox.drain(..c.outbox.len().min(size)).collect();
                let (conn, now) = (c.conn, world.now());
                world.server.handle_received(now, conn, &chunk);
                if world.paused.is_none() {
                    in_flight.insert(i);
                }
            }
        }
        for (i, reader) in readers.iter().enumerate() {
            let budget = match reader {
                Reader::Steady | Reader::Tight => 150 + world.rng.below(450),
                Reader::Stops if world.now_ms < stop_at => 150 + world.rng.below(450),
                Reader::Stops => 0,
                Reader::Crawls => 4,
            };
            let room = match reader {
                Reader::Steady => KERNEL_ROOM - in_kernel[i],
                _ => 0,
            };
            if budget + room > 0 && world.clients[i].phase != Phase::Gone {
                // The host writes what the kernel takes: what the member reads now, and room
                // ahead of it. The member reads from the kernel first.
                let before = world.unread(i);
                world.read_upto(i, budget + room);
                let moved = before - world.unread(i);
                in_kernel[i] = (in_kernel[i] + moved).saturating_sub(budget);
            }
        }
        world.pump();
        world.check();
    }
    // The senders stop; everyone still connected reads everything, while the machine takes
    // up what it set aside.
    loop {
        let mut read = false;
        for (i, reader) in readers.iter().enumerate() {
            if matches!(reader, Reader::Steady | Reader::Tight)
                && !world.clients[i].inbox.is_empty()
            {
                world.read_upto(i, usize::MAX);
                read = true;
            }
        }
        world.pump();
        if !read {
            break;
        }
    }
    for (i, reader) in readers.iter().enumerate() {
        let left = world.clients[i].left;
        match reader {
            Reader::Steady | Reader::Tight => {
                assert_eq!(
                    left, None,
                    "member {i} ({reader:?}) kept draining and was cut"
                );
            }
            Reader::Stops | Reader::Crawls => assert_eq!(
                left,
                Some(LeaveCause::SlowReader),
                "member {i} ({reader:?}) was not cut as a slow reader"
            ),
        }
    }
    world.finish();
    world
}

#[test]
fn an_overloaded_room_paces_its_senders_and_cuts_only_who_stops_reading() {
    let ms = env_u64("SIM_STEPS").map_or(8_000, |steps| steps / 2);
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("SIM_SEEDS").unwrap_or(4)).collect(),
    };
    for seed in seeds {
        let result = std::panic::catch_unwind(|| overloaded_run(seed, ms));
        let world = match result {
            Ok(world) => world,
            Err(panic) => {
                eprintln!("overloaded simulation failed: replay with SIM_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        };
        let pauses = world.tally.get("paused").copied().unwrap_or(0);
        eprintln!(
            "overloaded: seed {seed}, {ms} ms, {} broadcasts, {pauses} pauses, longest silence {} ms",
            world.broadcasts, world.longest_silence_ms
        );
        assert!(pauses > 0, "the room was never paced");
        // Senders always have something to say: the room is never silent for longer than
        // members may hold it.
        let bound = (HOLD_LIMIT + DRAIN_WINDOW).as_millis() as u64;
        assert!(
            world.longest_silence_ms <= bound,
            "the room was silent for {} ms, past the hold limit",
            world.longest_silence_ms
        );
    }
}

// ----- history and resume (E1–E3) ---------------------------------------------------------
//
// People who join with `History`, read at their own pace, drop (a reset or an orderly
// close, losing whatever the host had queued for them) and come back with
// `History: after LAST_ID`, among plain members who never ask. The model is the ids
// themselves: one in-memory room numbers its lines 1, 2, 3..., and every history-aware
// member receives every line, so across join, replay, drop and resume each person must read
// consecutive sequence numbers, one body per id, with a gap only where the marker says some
// were missed. Until its marker, a joiner receives chat lines only (E3).

/// Where a person's current connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `ADD` sent; the welcome not read yet.
    Joining,
    /// Welcomed; reading the replay up to the marker.
    Replaying,
    Live,
}

struct Person {
    name: String,
    conn: Option<ConnId>,
    stage: Stage,
    inbox: VecDeque<Frame>,
    read_offset: usize,
    decoder: ResponseDecoder,
    /// The last line read, over every connection.
    last_seq: Option<u64>,
    /// This connection's first chat line is still to come, and whether it may follow a gap
    /// (a first join by count); resolved against the marker.
    first_line: Option<bool>,
    /// A gap was seen before the marker.
    gap: bool,
    replayed: usize,
    lines_read: u64,
}

struct HistoryWorld {
    rng: Rng,
    server: Server,
    now_ms: u64,
    people: Vec<Person>,
    /// Plain members' connections, and what they were sent (never an id).
    plain: Vec<ConnId>,
    /// Who holds each connection: a person, or a plain member.
    owner: HashMap<ConnId, Option<usize>>,
    /// Every id's body, as first seen.
    bodies: HashMap<u64, String>,
    posts: u64,
    tally: BTreeMap<&'static str, u64>,
    /// With recording (E4): lines handed out to record, not yet reported recorded.
    to_record: VecDeque<u64>,
}

const EPOCH: &str = "sim";

impl HistoryWorld {
    fn new(seed: u64, kept: usize, recorded: bool) -> Self {
        let history = HistoryConfig::in_memory(kept, Epoch::new(EPOCH).expect("a valid epoch"));
        let config = ServerConfig {
            max_output_bytes: 64 * 1024,
            flood: FloodLimits {
                interval: None,
                ..FloodLimits::default()
            },
            history: HistoryConfig {
                recorded,
                ..history
            },
            ..ServerConfig::default()
        };
        let mut world = Self {
            rng: Rng::new(seed),
            server: Server::new(config, Timestamp::from_millis(0)),
            now_ms: 0,
            people: Vec::new(),
            plain: Vec::new(),
            owner: HashMap::new(),
            bodies: HashMap::new(),
            posts: 0,
            tally: BTreeMap::new(),
            to_record: VecDeque::new(),
        };
        for p in 0..6 {
            world.people.push(Person {
                name: format!("p{p}"),
                conn: None,
                stage: Stage::Live,
                inbox: VecDeque::new(),
                read_offset: 0,
                decoder: ResponseDecoder::new(FrameLimits::for_responses()),
                last_seq: None,
                first_line: None,
                gap: false,
                replayed: 0,
                lines_read: 0,
            });
        }
        for q in 0..3 {
            let conn = world.server.handle_open(world.now());
            world.owner.insert(conn, None);
            world.plain.push(conn);
            world
                .server
                .handle_received(world.now(), conn, &support::add(&format!("q{q}")));
        }
        world.pump();
        world
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now_ms)
    }

    fn step(&mut self) {
        let p = self.rng.below(self.people.len());
        match self.rng.below(100) {
            0..=7 => self.connect(p),
            8..=37 => self.post(p),
            38..=77 => self.read(p),
            78..=81 => self.drop_connection(p),
            // The recorder commits what has queued, or part of it.
            82..=89 if !self.to_record.is_empty() => {
                let upto = self.rng.below(self.to_record.len());
                let seq = self
                    .to_record
                    .drain(..=upto)
                    .next_back()
                    .expect("one at least");
                let now = self.now();
                self.server.handle_recorded(now, seq);
                *self.tally.entry("commits").or_default() += 1;
            }
            _ => {
                self.now_ms += self.rng.below(50) as u64;
                let now = self.now();
                self.server.handle_timeout(now);
            }
        }
        self.pump();
        if let Err(broken) = self.server.check_invariants() {
            panic!("the machine's own invariants: {broken}");
        }
        for person in &self.people {
            let Some(conn) = person.conn else { continue };
            let unread = person.inbox.iter().map(|f| f.len()).sum::<usize>() - person.read_offset;
            let queued = self.server.queued_bytes(conn).expect("open");
            let withheld = self.server.withheld_bytes(conn).expect("open");
            assert_eq!(
                queued,
                unread + withheld,
                "{}: queued bytes drifted",
                person.name
            );
        }
    }

    fn connect(&mut self, p: usize) {
        if self.people[p].conn.is_some() {
            return;
        }
        let ask = match self.people[p].last_seq {
            Some(last) => format!("after {EPOCH}.{last}"),
            None => ["0", "5", "1000"][self.rng.below(3)].to_owned(),
        };
        let conn = self.server.handle_open(self.now());
        self.owner.insert(conn, Some(p));
        let person = &mut self.people[p];
        person.conn = Some(conn);
        person.stage = Stage::Joining;
        person.first_line = Some(person.last_seq.is_none());
        person.gap = false;
        person.replayed = 0;
        let add = support::add_with_history(&person.name, &ask);
        let now = self.now();
        // The greeting is read like anything else.
        self.server.handle_received(now, conn, &add);
        *self.tally.entry("joins").or_default() += 1;
    }

    fn post(&mut self, p: usize) {
        self.posts += 1;
        let text = format!("n{}", self.posts);
        // Plain members speak too: their lines reach people with ids.
        let conn = match self.rng.chance(30) {
            true => Some(self.plain[self.rng.below(self.plain.len())]),
            false => self.people[p]
                .conn
                .filter(|_| self.people[p].stage != Stage::Joining),
        };
        if let Some(conn) = conn {
            let now = self.now();
            self.server
                .handle_received(now, conn, &support::post(&text));
        }
    }

    /// The person reads part of what was queued for it; the host reports it drained.
    fn read(&mut self, p: usize) {
        let budget = 1 + self.rng.below(8 * 1024);
        let person = &mut self.people[p];
        let Some(conn) = person.conn else { return };
        let read = read_from(&mut person.inbox, &mut person.read_offset, budget);
        let mut responses = Vec::new();
        person.decoder.decode_each(&read, |decoded| {
            let response = decoded.expect("the server's bytes decode");
            let id = response
                .message_id
                .map(|id| String::from_utf8_lossy(id).into_owned());
            responses.push((id, String::from_utf8_lossy(response.body).into_owned()));
        });
        for (id, body) in responses {
            self.take(p, id, &body);
        }
        if !read.is_empty() {
            let now = self.now();
            self.server.handle_drained(now, conn, read.len());
        }
    }

    /// One response read by person `p`, checked against the model.
    fn take(&mut self, p: usize, id: Option<String>, body: &str) {
        let history = self.server.history();
        let recorded = history.is_recorded().then(|| history.recorded());
        let person = &mut self.people[p];
        let name = &person.name;
        if body == format!("Welcome, {name}!\n") {
            assert_eq!(person.stage, Stage::Joining, "{name}: a second welcome");
            person.stage = Stage::Replaying;
            return;
        }
        if let Some(marker) = body.strip_prefix("History: ") {
            assert_eq!(
                person.stage,
                Stage::Replaying,
                "{name}: a marker out of place"
            );
            let missed = marker.ends_with(", some were missed\n");
            let count: usize = marker
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("the marker counts the lines");
            assert_eq!(
                count, person.replayed,
                "{name}: the marker miscounts the replay"
            );
            assert!(
                missed || !person.gap,
                "{name}: lines were skipped and the marker says none were"
            );
            // A replay the room outran ends early, saying so: the gap comes after the marker.
            if missed && !person.gap {
                person.first_line = Some(true);
            }
            person.stage = Stage::Live;
            *self
                .tally
                .entry(if missed { "markers:missed" } else { "markers" })
                .or_default() += 1;
            return;
        }
        if !body.starts_with("[ ") {
            // The greeting comes before the welcome; join and leave notices, and others'
            // news, come after the marker (E3).
            assert_ne!(
                person.stage,
                Stage::Replaying,
                "{name}: {body:?} before the marker"
            );
            return;
        }
        assert_ne!(
            person.stage,
            Stage::Joining,
            "{name}: a chat line before the welcome"
        );
        let id = id.unwrap_or_else(|| panic!("{name}: a chat line without an id, {body:?}"));
        let seq: u64 = id
            .strip_prefix(&format!("{EPOCH}."))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: not an id of this room: {id}"));
        let consecutive = person.last_seq.is_none_or(|last| seq == last + 1);
        match person.first_line.take() {
            // A first join by count may start anywhere; a resume may skip lines only if the
            // marker then says so.
            Some(true) => {}
            Some(false) if person.stage == Stage::Replaying => person.gap = !consecutive,
            _ => assert!(
                consecutive,
                "{name}: read {seq} after {:?}: a line lost or doubled",
                person.last_seq
            ),
        }
        if person.stage == Stage::Replaying {
            person.replayed += 1;
        }
        // E4: no line reaches anyone before the host has recorded it.
        if let Some(recorded) = recorded {
            assert!(
                seq <= recorded,
                "{name}: read line {seq}, recorded only up to {recorded}"
            );
        }
        person.last_seq = Some(seq);
        person.lines_read += 1;
        let first = self.bodies.entry(seq).or_insert_with(|| body.to_owned());
        assert_eq!(first, body, "id {seq} names two lines");
    }

    /// The person's connection ends: a reset or an orderly close, and whatever the host had
    /// queued for it is lost.
    fn drop_connection(&mut self, p: usize) {
        let Some(conn) = self.people[p].conn.take() else {
            return;
        };
        let how = match self.rng.chance(50) {
            true => Disconnect::Error,
            false => Disconnect::Eof,
        };
        let person = &mut self.people[p];
        person.inbox.clear();
        person.read_offset = 0;
        person.decoder = ResponseDecoder::new(FrameLimits::for_responses());
        let now = self.now();
        self.server.handle_closed(now, conn, how);
        self.server.handle_released(conn);
        *self.tally.entry("drops").or_default() += 1;
    }

    fn pump(&mut self) {
        loop {
            while let Some(output) = self.server.poll_output() {
                match output {
                    Output::Send { conn, frame } => self.deliver(conn, &frame),
                    Output::Broadcast { to, frame } => {
                        for &conn in to.iter() {
                            self.deliver(conn, &frame);
                        }
                    }
                    Output::Close { conn, .. } => {
                        let owner = self.owner.get(&conn).copied().flatten();
                        // Only a person's own drop ends its connection: reading steadily, a
                        // joiner is never cut for its own replay (E3, S8).
                        let owner = owner.filter(|&p| self.people[p].conn == Some(conn));
                        assert!(owner.is_none(), "a person who reads was cut");
                        self.server.handle_released(conn);
                    }
                    Output::Record(line) => self.to_record.push_back(line.seq),
                    // This host's records are counters: nothing to clear.
                    Output::StopRecording => self.to_record.clear(),
                    Output::PauseReading | Output::ResumeReading | Output::Event(_) => {}
                }
            }
            match self.server.poll_timeout() {
                Some(due) if due <= self.now() => self.server.handle_timeout(self.now()),
                _ => return,
            }
        }
    }

    fn deliver(&mut self, conn: ConnId, frame: &Frame) {
        match self.owner.get(&conn) {
            Some(Some(p)) if self.people[*p].conn == Some(conn) => {
                self.people[*p].inbox.push_back(frame.clone());
            }
            Some(None) => {
                // Plain members read everything at once: never an id (E2).
                let text = String::from_utf8_lossy(frame);
                assert!(
                    !text.contains("\nMessage_Id: "),
                    "a plain member got an id: {text}"
                );
                self.server.handle_drained(self.now(), conn, frame.len());
            }
            _ => {}
        }
    }
}

fn history_run(seed: u64, steps: u64, kept: usize, recorded: bool) -> BTreeMap<&'static str, u64> {
    let mut world = HistoryWorld::new(seed, kept, recorded);
    for _ in 0..steps {
        world.step();
    }
    let lines: u64 = world.people.iter().map(|p| p.lines_read).sum();
    world.tally.insert("lines read", lines);
    world
        .tally
        .insert("lines said", world.server.history().last_seq());
    world.tally
}

#[test]
fn history_aware_people_who_drop_and_resume_read_every_line_once() {
    let steps = env_u64("SIM_STEPS").unwrap_or(20_000);
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("SIM_SEEDS").unwrap_or(4)).collect(),
    };
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    // A history longer than the run (nothing is ever missed), a short one (resumes after a
    // long absence must say so), and one the host records before delivery (E4), committing
    // at random moments.
    for (kept, recorded) in [(100_000, false), (20, false), (50, true)] {
        for &seed in &seeds {
            let result = std::panic::catch_unwind(|| history_run(seed, steps, kept, recorded));
            match result {
                Ok(tally) => {
                    for (kind, n) in tally {
                        *totals.entry(kind).or_default() += n;
                    }
                }
                Err(panic) => {
                    eprintln!(
                        "history simulation failed: replay with SIM_SEED={seed} (kept {kept})"
                    );
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
    eprintln!("history simulation: {totals:?}");
    assert!(
        totals.get("markers:missed").is_some_and(|&n| n > 0),
        "no resume ever missed lines"
    );
    assert!(
        totals.get("drops").is_some_and(|&n| n > 100),
        "people rarely dropped"
    );
}
