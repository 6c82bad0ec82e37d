//! Shared-log mode: several room machines ("nodes") sharing one fake in-memory log that
//! claims names and appends atomically, the way the Redis scripts do. Everything is
//! scripted and deterministic: appends reach the log when the test says, and the log's
//! entries reach each node when the test says, so interleavings can be chosen.

mod support;

use std::collections::HashMap;

use chathttp_core::server::{
    AppendRefusal, LogEntry, LogKind, MAX_ENTRIES_IN_FLIGHT, MAX_SAYS_IN_FLIGHT, MemberRef, Output,
    SLOW,
};
use chathttp_core::{ConnId, Disconnect, Server, ServerConfig, Timestamp, UserName};
use insta::assert_snapshot;
use support::{add, post, render_frame, request};

/// One node and what each of its connections received.
struct Node {
    id: &'static str,
    server: Server,
    read: usize,
}

/// The fake log: a vector of entries plus the name claims, changed together.
struct World {
    nodes: Vec<Node>,
    log: Vec<LogEntry>,
    claims: HashMap<String, MemberRef>,
    owner: HashMap<MemberRef, String>,
    transcript: String,
    received: HashMap<(usize, ConnId), Vec<String>>,
    now_ms: u64,
}

impl World {
    fn new(ids: &[&'static str]) -> Self {
        Self::with_config(ids, ServerConfig::default())
    }

    fn with_config(ids: &[&'static str], config: ServerConfig) -> Self {
        let now = Timestamp::from_millis(0);
        let mut world = World {
            nodes: ids
                .iter()
                .map(|id| Node {
                    id,
                    server: Server::new_shared(config.clone(), now, id),
                    read: 0,
                })
                .collect(),
            log: Vec::new(),
            claims: HashMap::new(),
            owner: HashMap::new(),
            transcript: String::new(),
            received: HashMap::new(),
            now_ms: 0,
        };
        for node in &mut world.nodes {
            node.server.handle_log_reset(now, Vec::new(), false);
        }
        world
    }

    fn now(&mut self) -> Timestamp {
        self.now_ms += 1;
        Timestamp::from_millis(self.now_ms)
    }

    fn open(&mut self, node: usize) -> ConnId {
        let now = self.now();
        let conn = self.nodes[node].server.handle_open(now);
        self.outputs(node);
        conn
    }

    /// A new connection on `node` that sends `ADD name` (its join is appended, not applied).
    fn join(&mut self, node: usize, name: &str) -> ConnId {
        let conn = self.open(node);
        self.send(node, conn, &add(name));
        conn
    }

    /// Bytes from a client; outputs are taken, appends stay queued in the node.
    fn send(&mut self, node: usize, conn: ConnId, bytes: &[u8]) {
        let now = self.now();
        self.nodes[node].server.handle_received(now, conn, bytes);
        self.outputs(node);
    }

    fn hang_up(&mut self, node: usize, conn: ConnId) {
        let now = self.now();
        self.nodes[node]
            .server
            .handle_closed(now, conn, Disconnect::Eof);
        self.nodes[node].server.handle_released(conn);
        self.outputs(node);
    }

    /// The node's appends reach the log, one atomic step each (claim + append).
    fn append(&mut self, node: usize) {
        while let Some(entry) = self.nodes[node].server.poll_append() {
            let refusal = self.claim(&entry);
            self.line(format!(
                "{}: append {} {:?} -> {}",
                self.nodes[node].id,
                member(&entry.author),
                entry.kind,
                match &refusal {
                    None => format!("#{}", self.log.len()),
                    Some(refusal) => format!("refused {refusal:?}"),
                }
            ));
            if let Some(refusal) = refusal {
                let now = self.now();
                self.nodes[node]
                    .server
                    .handle_append_refused(now, entry, refusal);
                self.outputs(node);
            }
        }
    }

    /// What the Redis scripts do: a join claims its name key or is refused; a message needs
    /// a claim; a leave of a member without a claim appends nothing.
    fn claim(&mut self, entry: &LogEntry) -> Option<AppendRefusal> {
        match &entry.kind {
            LogKind::Join(name) | LogKind::Rejoin(name) => {
                match self.claims.get(name.key()) {
                    Some(holder) if *holder != entry.author => {
                        return Some(AppendRefusal::NameTaken);
                    }
                    Some(_) if matches!(entry.kind, LogKind::Rejoin(_)) => return None,
                    _ => {}
                }
                self.claims.insert(name.key().into(), entry.author.clone());
                self.owner.insert(entry.author.clone(), name.key().into());
            }
            LogKind::Say(_) => {
                if !self.owner.contains_key(&entry.author) {
                    return Some(AppendRefusal::NotMember);
                }
            }
            LogKind::Leave => {
                let key = self.owner.remove(&entry.author)?;
                self.claims.remove(&key);
            }
            _ => unreachable!("no other kinds yet"),
        }
        self.log.push(entry.clone());
        None
    }

    /// The reaper: every member of a dead node leaves, once.
    fn reap(&mut self, node: &str) {
        let mut dead: Vec<MemberRef> = self
            .owner
            .keys()
            .filter(|m| &*m.node == node)
            .cloned()
            .collect();
        dead.sort();
        for author in dead {
            let entry = LogEntry {
                author,
                kind: LogKind::Leave,
                line: None,
            };
            self.line(format!("reaper: append {} Leave", member(&entry.author)));
            self.claim(&entry);
        }
    }

    /// The node reads the log up to its end.
    fn deliver(&mut self, node: usize) {
        while self.nodes[node].read < self.log.len() {
            let entry = self.log[self.nodes[node].read].clone();
            self.nodes[node].read += 1;
            let now = self.now();
            self.nodes[node].server.handle_log_entry(now, entry);
            self.outputs(node);
        }
    }

    /// Everything settles: every node appends and reads until nothing moves.
    /// The log is lost (Redis restarted empty): every node resets from an empty snapshot and
    /// claims its members again.
    fn lose_the_log(&mut self) {
        self.log.clear();
        self.claims.clear();
        self.owner.clear();
        for node in 0..self.nodes.len() {
            self.nodes[node].read = 0;
            let now = self.now();
            self.nodes[node]
                .server
                .handle_log_reset(now, Vec::new(), true);
            self.outputs(node);
        }
    }

    fn settle(&mut self) {
        loop {
            let before: usize = self.nodes.iter().map(|n| n.read).sum();
            for node in 0..self.nodes.len() {
                self.append(node);
            }
            for node in 0..self.nodes.len() {
                self.deliver(node);
            }
            if self.nodes.iter().map(|n| n.read).sum::<usize>() == before {
                return;
            }
        }
    }

    fn outputs(&mut self, node: usize) {
        while let Some(output) = self.nodes[node].server.poll_output() {
            let id = self.nodes[node].id;
            match output {
                Output::Send { conn, frame } => {
                    let text = render_frame(&frame);
                    self.line(format!("{id}:{conn:?} << {text}"));
                    self.received.entry((node, conn)).or_default().push(text);
                }
                Output::Broadcast { to, frame } => {
                    let text = render_frame(&frame);
                    let names: Vec<String> = to.iter().map(|c| format!("{c:?}")).collect();
                    self.line(format!("{id}:{} << {text}", names.join(",")));
                    for conn in to.iter() {
                        self.received
                            .entry((node, *conn))
                            .or_default()
                            .push(text.clone());
                    }
                }
                Output::Close { conn, mode } => {
                    self.line(format!("{id}:{conn:?} closed {mode:?}"));
                    self.nodes[node].server.handle_released(conn);
                }
                // In the transcript, should a script ever make the members fall behind.
                Output::PauseReading => self.line(format!("{id}: pause reading")),
                Output::ResumeReading => self.line(format!("{id}: resume reading")),
                Output::Record(_) | Output::StopRecording => {
                    panic!("a shared room keeps no history to record (E5)")
                }
                Output::Event(_) => {}
            }
        }
        if let Err(broken) = self.nodes[node].server.check_invariants() {
            panic!(
                "{}: invariant broken: {broken}\n{}",
                self.nodes[node].id, self.transcript
            );
        }
    }

    fn line(&mut self, text: String) {
        self.transcript.push_str(&text);
        self.transcript.push('\n');
    }

    fn chat(&self, node: usize, conn: ConnId) -> Vec<String> {
        self.received
            .get(&(node, conn))
            .map(|all| {
                all.iter()
                    .filter(|line| line.starts_with("200 OK \"[ "))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn last(&self, node: usize, conn: ConnId) -> String {
        self.received[&(node, conn)]
            .last()
            .expect("something was received")
            .clone()
    }

    fn roster(&self, node: usize) -> Vec<String> {
        let roster = self.nodes[node].server.roster().expect("shared mode");
        roster
            .members()
            .map(|(_, name)| name.as_str().to_owned())
            .collect()
    }
}

fn member(m: &MemberRef) -> String {
    format!("{}/{:?}", m.node, m.member)
}

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

#[test]
fn s7_two_nodes_one_order_exactly_once() {
    let mut w = World::new(&["a", "b"]);
    let alice = w.open(A);
    let bob = w.open(B);
    w.send(A, alice, &add("alice"));
    w.send(B, bob, &add("bob"));
    w.settle();
    // Both talk before either node has read the other's lines: the log decides the order.
    for i in 0..3 {
        w.send(A, alice, &post(&format!("a{i}")));
        w.send(B, bob, &post(&format!("b{i}")));
        w.append(if i % 2 == 0 { B } else { A });
    }
    w.settle();
    let on_a = w.chat(A, alice);
    let on_b = w.chat(B, bob);
    assert_eq!(on_a.len(), 6, "{}", w.transcript);
    assert_eq!(on_a, on_b, "both nodes deliver the log's order");
    assert_snapshot!(w.transcript);
}

#[test]
fn s2_2_a_name_taken_on_one_node_is_refused_on_another_ignoring_case() {
    let mut w = World::new(&["a", "b"]);
    let alice = w.open(A);
    let other = w.open(B);
    w.send(A, alice, &add("Émile"));
    // Node b has not read the log yet: its roster cannot know; the log's claim refuses.
    w.send(B, other, &add("émile"));
    w.settle();
    assert!(w.last(A, alice).contains("Welcome, Émile!"));
    assert!(w.last(B, other).starts_with("401 User Name Exist"));
    // Once b has read the join, it refuses at once, without asking the log.
    w.send(B, other, &add("ÉMILE"));
    assert!(w.last(B, other).starts_with("401 User Name Exist"));
    assert!(w.nodes[B].server.poll_append().is_none());
}

#[test]
fn s4_get_lists_every_node_in_join_order() {
    let mut w = World::new(&["a", "b", "c"]);
    let names = ["carol", "alice", "bob", "dave"];
    let nodes = [C, A, B, A];
    let mut conns = Vec::new();
    for (name, node) in names.iter().zip(nodes) {
        let conn = w.join(node, name);
        w.settle();
        conns.push(conn);
    }
    for node in [A, B, C] {
        assert_eq!(w.roster(node), names, "node {node}");
    }
    let guest = w.open(B);
    w.send(B, guest, &request("GET", None, ""));
    assert_eq!(
        w.last(B, guest),
        "200 OK \"Online users:\\ncarol\\nalice\\nbob\\ndave\\n\""
    );
}

#[test]
fn s6_a_hang_up_is_one_leave_everywhere_and_frees_the_name() {
    let mut w = World::new(&["a", "b"]);
    let alice = w.join(A, "alice");
    let bob = w.join(B, "bob");
    w.settle();
    w.hang_up(B, bob);
    // Until the leave is applied, bob is still in for everyone, the same everywhere.
    assert_eq!(w.roster(A), ["alice", "bob"]);
    assert_eq!(w.roster(B), ["alice", "bob"]);
    w.settle();
    assert_eq!(w.roster(A), ["alice"]);
    let leaves = w.received[&(A, alice)]
        .iter()
        .filter(|l| l.contains("bob has just left"))
        .count();
    assert_eq!(leaves, 1);
    // The name is free on both nodes.
    let again = w.join(A, "BOB");
    w.settle();
    assert!(w.last(A, again).contains("Welcome, BOB!"));
}

#[test]
fn s5_delete_then_rejoin_at_once_on_the_same_node() {
    let mut w = World::new(&["a"]);
    let alice = w.join(A, "alice");
    w.settle();
    w.send(A, alice, &request("DELETE", None, ""));
    assert!(w.last(A, alice).contains("Goodbye, alice!"));
    // The leave is appended but not applied yet; the same name is not refused locally.
    let again = w.join(A, "alice");
    w.settle();
    assert!(
        w.last(A, again).contains("Welcome, alice!"),
        "{}",
        w.transcript
    );
    assert_eq!(w.roster(A), ["alice"]);
}

#[test]
fn s7_replies_keep_request_order_behind_entries_in_flight() {
    let mut w = World::new(&["a"]);
    let alice = w.open(A);
    // ADD, POST, GET pipelined: the POST waits for the join, the GET for the POST's echo.
    let mut bytes = add("alice");
    bytes.extend(post("hi"));
    bytes.extend(post("again"));
    bytes.extend(request("GET", None, ""));
    w.send(A, alice, &bytes);
    w.settle();
    let got = &w.received[&(A, alice)];
    let bodies: Vec<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(
        bodies[1..],
        [
            "200 OK \"Welcome, alice!\\n\"",
            "200 OK \"[ alice ] : hi\\n\"",
            "200 OK \"[ alice ] : again\\n\"",
            "200 OK \"Online users:\\nalice\\n\"",
        ]
    );
}

#[test]
fn a_reaped_node_s_members_leave_once_and_are_told() {
    let mut w = World::new(&["a", "b"]);
    let alice = w.join(A, "alice");
    let bob = w.join(B, "bob");
    let bea = w.join(B, "bea");
    w.settle();
    // b stops heartbeating; a's reaper removes its members in one atomic step.
    w.reap("b");
    w.deliver(A);
    assert_eq!(w.roster(A), ["alice"]);
    let on_a: Vec<&String> = w.received[&(A, alice)]
        .iter()
        .filter(|l| l.contains("has just left"))
        .collect();
    assert_eq!(on_a.len(), 2, "one leave notice per reaped member");
    // b comes back and reads the log: its members are told and disconnected.
    w.send(B, bob, &post("am I still here?"));
    w.settle();
    assert!(
        w.received[&(B, bob)].iter().any(|l| l.starts_with("503")),
        "{}",
        w.transcript
    );
    assert!(!w.nodes[B].server.is_open(bob));
    assert!(!w.nodes[B].server.is_open(bea));
    assert_eq!(w.roster(B), ["alice"]);
}

#[test]
fn a_reset_log_tells_members_and_claims_them_again() {
    let mut w = World::new(&["a", "b"]);
    let alice = w.join(A, "alice");
    let bob = w.join(B, "bob");
    w.settle();
    w.lose_the_log();
    w.settle();
    for (node, conn) in [(A, alice), (B, bob)] {
        assert!(
            w.received[&(node, conn)]
                .iter()
                .any(|l| l.contains("missed part of the chat")),
            "members are told"
        );
        // No join or leave notices for the rebuild: the notice said it.
        assert!(!w.last(node, conn).contains("has just"));
    }
    assert_eq!(w.roster(A).len(), 2);
    assert_eq!(w.roster(A), w.roster(B));
    w.send(B, bob, &post("back"));
    w.settle();
    assert_eq!(w.chat(A, alice), ["200 OK \"[ bob ] : back\\n\""]);
}

#[test]
fn while_the_log_is_down_joins_and_messages_get_503_members_stay() {
    let mut w = World::new(&["a"]);
    let alice = w.join(A, "alice");
    w.settle();
    let now = w.now();
    w.nodes[A]
        .server
        .handle_log_down(now, "Redis is unreachable".into());
    w.send(A, alice, &post("hello?"));
    assert!(w.last(A, alice).starts_with("503 Service Unavailable"));
    let guest = w.join(A, "bob");
    assert!(w.last(A, guest).contains("Redis is unreachable"));
    assert!(w.nodes[A].server.is_open(alice));
    // Back, with nothing missed.
    let now = w.now();
    let members = vec![(
        MemberRef {
            node: "a".into(),
            member: alice.as_u64(),
        },
        UserName::parse("alice").expect("valid"),
    )];
    w.nodes[A].server.handle_log_reset(now, members, false);
    w.send(A, alice, &post("hello"));
    w.settle();
    assert_eq!(w.last(A, alice), "200 OK \"[ alice ] : hello\\n\"");
}

#[test]
fn a_joiner_that_hangs_up_before_its_join_is_applied_joins_then_leaves() {
    let mut w = World::new(&["a", "b"]);
    let bob = w.join(B, "bob");
    w.settle();
    let alice = w.join(A, "alice");
    w.append(A);
    w.hang_up(A, alice);
    w.settle();
    let seen: Vec<&String> = w.received[&(B, bob)]
        .iter()
        .filter(|l| l.contains("alice"))
        .collect();
    assert_eq!(seen.len(), 2, "a join and a leave: {seen:?}");
    assert_eq!(w.roster(A), ["bob"]);
    assert_eq!(w.roster(B), ["bob"]);
}

/// Random scripts over three nodes: joins (with names that clash, in other cases), messages,
/// GETs, DELETEs, hang-ups, reaping, and appends and reads at random moments. Invariants are checked
/// after every output; at the end every node has the same roster, and every member received
/// each message at most once, in log order.
#[test]
fn random_scripts_keep_one_order_and_one_roster_on_every_node() {
    let seeds: u64 = std::env::var("CLUSTER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let (mut chat_lines, mut leaves, mut refused) = (0u64, 0u64, 0u64);
    for seed in 1..=seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut w = World::new(&["a", "b", "c"]);
        let names = ["ann", "Ann", "bo", "BO", "cy", "dee", "eve", "fay"];
        let mut conns: Vec<(usize, ConnId)> = (0..6).map(|i| (i % 3, w.open(i % 3))).collect();
        let mut said = 0;
        for _ in 0..400 {
            let node = rng.usize(..3);
            match rng.usize(..20) {
                0 | 1 => conns.push((node, w.open(node))),
                2..=4 if !conns.is_empty() => {
                    let (n, c) = conns[rng.usize(..conns.len())];
                    let name = names[rng.usize(..names.len())];
                    w.send(n, c, &add(name));
                }
                5..=9 if !conns.is_empty() => {
                    let (n, c) = conns[rng.usize(..conns.len())];
                    said += 1;
                    w.send(n, c, &post(&format!("t{said}")));
                }
                10 if !conns.is_empty() => {
                    let (n, c) = conns[rng.usize(..conns.len())];
                    let method = ["GET", "DELETE"][rng.usize(..2)];
                    w.send(n, c, &request(method, None, ""));
                }
                11 if !conns.is_empty() => {
                    let (n, c) = conns.swap_remove(rng.usize(..conns.len()));
                    w.hang_up(n, c);
                }
                12..=14 => w.append(node),
                15 | 16 => w.deliver(node),
                // Now and then the others take a node for dead and reap its members.
                17 if rng.usize(..4) == 0 => {
                    let id = w.nodes[node].id;
                    w.reap(id);
                }
                _ => {
                    // Deliver only part of the log: nodes lag behind each other.
                    let lag = rng.usize(..3);
                    if w.nodes[node].read + lag < w.log.len() {
                        let entry = w.log[w.nodes[node].read].clone();
                        w.nodes[node].read += 1;
                        let now = w.now();
                        w.nodes[node].server.handle_log_entry(now, entry);
                        w.outputs(node);
                    }
                }
            }
        }
        w.settle();
        assert_eq!(w.roster(A), w.roster(B), "seed {seed}");
        assert_eq!(w.roster(A), w.roster(C), "seed {seed}");
        // Where each message stands in the log.
        let position: HashMap<String, usize> = w
            .log
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.kind {
                LogKind::Say(text) => Some((text.clone(), i)),
                _ => None,
            })
            .collect();
        for (&(node, conn), lines) in &w.received {
            let mut last = None;
            for line in lines.iter().filter(|l| l.starts_with("200 OK \"[ ")) {
                let text = line
                    .rsplit(" : ")
                    .next()
                    .and_then(|t| t.strip_suffix("\\n\""))
                    .expect("a chat line");
                let at = position[text];
                chat_lines += 1;
                assert!(
                    last < Some(at),
                    "seed {seed}: node {node} {conn:?} got {text} out of log order or twice"
                );
                last = Some(at);
            }
            leaves += lines.iter().filter(|l| l.contains("has just left")).count() as u64;
            refused += lines.iter().filter(|l| l.starts_with("401")).count() as u64;
        }
    }
    // The scripts do reach the interesting cases.
    assert!(chat_lines > 20 * seeds, "{chat_lines} chat lines");
    assert!(
        leaves > seeds && refused > seeds,
        "{leaves} leaves, {refused} 401s"
    );
    eprintln!("{seeds} seeds: {chat_lines} chat lines, {leaves} leave notices, {refused} 401s");
}

#[test]
fn s2_2_look_alikes_claimed_on_two_nodes_at_once_leave_one_member_and_no_stale_claim() {
    let mut w = World::new(&["a", "b"]);
    let alice = w.open(A);
    let mimic = w.open(B);
    // The log claims names by comparison form, so it takes both claims; the roster, which
    // also compares confusable keys, admits the first join applied and refuses the other.
    w.send(A, alice, &add("alice"));
    w.send(B, mimic, &add("\u{430}lice"));
    w.settle();
    assert!(w.last(A, alice).contains("Welcome, alice!"));
    let refusal = w.last(B, mimic);
    assert!(refusal.starts_with("401 User Name Exist"), "{refusal}");
    assert!(refusal.contains("too close to alice"), "{refusal}");
    for node in [A, B] {
        let names: Vec<_> = w.nodes[node]
            .server
            .roster()
            .map(|r| r.members().map(|(_, n)| n.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["alice"], "node {node}");
    }
    // The refused join's claim was given back: nobody holds the look-alike's key.
    let key = UserName::parse("\u{430}lice")
        .expect("valid")
        .key()
        .to_owned();
    assert!(!w.claims.contains_key(&key), "a stale claim on {key:?}");
}

#[test]
fn s7_s12_a_429_keeps_its_place_behind_the_replies_in_flight() {
    let mut w = World::new(&["a"]);
    let ann = w.join(A, "ann");
    w.settle();
    // The join took one of 20 tokens; 19 messages take the rest and stream into the log.
    for i in 0..19 {
        w.send(A, ann, &post(&format!("p{i}")));
    }
    // Behind messages in flight a GET is held; it is charged when carried out.
    w.send(A, ann, &request("GET", None, ""));
    let early = w.received[&(A, ann)]
        .iter()
        .filter(|r| r.starts_with("429"))
        .count();
    assert_eq!(early, 0, "no 429 ahead of the replies it follows");
    w.settle();
    let got = &w.received[&(A, ann)];
    let tail: Vec<_> = got[got.len() - 20..].iter().map(|r| r.as_str()).collect();
    assert!(
        tail[..19].iter().all(|r| r.contains("[ ann ] : p")),
        "{tail:#?}"
    );
    assert!(tail[19].starts_with("429 Too Many Requests"), "{tail:#?}");
}

#[test]
fn s2_2_a_member_whose_name_a_look_alike_took_during_a_reset_is_told_and_let_go() {
    let mut w = World::new(&["a", "b"]);
    let alice = w.join(A, "alice");
    let bob = w.join(B, "bob");
    w.settle();
    // Both nodes reset from an empty snapshot and claim their members again.
    w.lose_the_log();
    // Meanwhile a look-alike joins on b, and its join reaches the log before alice's rejoin
    // (the log claims names by comparison form, so it takes both claims).
    let mimic = w.join(B, "aIice");
    w.append(B);
    w.settle();
    let told = w.received[&(A, alice)]
        .iter()
        .any(|l| l.starts_with("503") && l.contains("too close"));
    assert!(told, "alice is told why: {:#?}", w.received[&(A, alice)]);
    assert!(!w.nodes[A].server.is_open(alice), "and let go");
    assert_eq!(w.roster(A), w.roster(B));
    assert_eq!(w.roster(A), ["bob", "aIice"]);
    assert!(w.last(B, mimic).contains("Welcome, aIice!"));
    assert!(w.nodes[B].server.is_open(bob));
}

/// A room that takes messages as fast as they come: flood control (S12) off.
fn unthrottled(ids: &[&'static str]) -> World {
    let config = ServerConfig {
        flood: chathttp_core::limits::FloodLimits::OFF,
        ..ServerConfig::default()
    };
    World::with_config(ids, config)
}

#[test]
fn k1_a_member_has_at_most_32_messages_in_flight_and_the_rest_follow_in_order() {
    let mut w = unthrottled(&["a"]);
    let alice = w.join(A, "alice");
    w.settle();
    let before = w.log.len();
    let burst: Vec<u8> = (0..40).flat_map(|i| post(&format!("m{i}"))).collect();
    w.send(A, alice, &burst);
    w.append(A);
    assert_eq!(
        w.log.len() - before,
        MAX_SAYS_IN_FLIGHT,
        "the rest wait, held"
    );
    w.settle();
    let lines: Vec<String> = w.received[&(A, alice)]
        .iter()
        .filter(|body| body.contains("] : m"))
        .cloned()
        .collect();
    let expected: Vec<String> = (0..40)
        .map(|i| format!("200 OK \"[ alice ] : m{i}\\n\""))
        .collect();
    assert_eq!(lines, expected, "every message once, in order");
}

#[test]
fn k1_past_1024_entries_in_flight_joins_and_messages_get_503_and_connections_stay() {
    let mut w = unthrottled(&["a"]);
    let members: Vec<ConnId> = (0..=MAX_ENTRIES_IN_FLIGHT / MAX_SAYS_IN_FLIGHT)
        .map(|i| w.join(A, &format!("m{i}")))
        .collect();
    w.settle();
    let (talkers, late) = members.split_at(MAX_ENTRIES_IN_FLIGHT / MAX_SAYS_IN_FLIGHT);
    let burst: Vec<u8> = (0..MAX_SAYS_IN_FLIGHT)
        .flat_map(|i| post(&format!("{i}")))
        .collect();
    for &conn in talkers {
        w.send(A, conn, &burst);
    }
    // The log is slow: nothing of this has come back yet.
    w.send(A, late[0], &post("me too"));
    let refused = w.last(A, late[0]);
    assert!(refused.starts_with("503 Service Unavailable"), "{refused}");
    assert!(refused.contains(SLOW), "{refused}");
    let joiner = w.join(A, "newcomer");
    assert!(w.last(A, joiner).contains(SLOW));
    assert!(w.nodes[A].server.is_open(late[0]) && w.nodes[A].server.is_open(joiner));
    // Once the log has caught up, both go through.
    w.settle();
    w.send(A, late[0], &post("me too"));
    w.settle();
    assert_eq!(w.last(A, late[0]), "200 OK \"[ m32 ] : me too\\n\"");
}

/// A leave the log turns down (its member was reaped already) comes back as nothing; it must
/// not count against the node's bound for ever (K1).
#[test]
fn k1_leaves_that_come_back_as_nothing_do_not_use_up_the_bound() {
    let now = Timestamp::from_millis(0);
    let mut server = Server::new_shared(ServerConfig::default(), now, "a");
    server.handle_log_reset(now, Vec::new(), false);
    for i in 0..=MAX_ENTRIES_IN_FLIGHT {
        let conn = server.handle_open(now);
        server.handle_received(now, conn, &add(&format!("m{i}")));
        let join = server.poll_append().expect("the join is appended");
        server.handle_log_entry(now, join);
        server.handle_closed(now, conn, Disconnect::Eof);
        let leave = server.poll_append().expect("the leave is appended");
        assert_eq!(leave.kind, LogKind::Leave);
        // The host drops it: the log said the member was gone already.
        while server.poll_output().is_some() {}
    }
    let conn = server.handle_open(now);
    server.handle_received(now, conn, &add("late"));
    let mut replies = Vec::new();
    while let Some(output) = server.poll_output() {
        if let Output::Send { frame, .. } = output {
            replies.push(render_frame(&frame));
        }
    }
    assert!(
        replies.iter().all(|r| !r.contains(SLOW)),
        "a join refused as slow: {replies:?}"
    );
    assert!(server.poll_append().is_some(), "the join goes to the log");
}
