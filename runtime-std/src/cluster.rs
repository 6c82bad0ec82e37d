//! One room across several servers, through Redis (`--redis URL`; docs/CLUSTER.md).
//!
//! The room machine runs in shared-log mode ([`Server::new_shared`]): it hands out the
//! entries to append and applies the entries it is given. This module is the shared log,
//! on two threads of its own, so that one implementation serves every runtime:
//!
//! * **commands**: appends each entry with one Lua script (claim the name and `XADD`, as
//!   Centrifugo's Redis engine does), refreshes this node's liveness key (`SET .. PX`), and
//!   reaps nodes whose liveness key expired: one script appends a leave for each of their
//!   members and drops their claims, atomically, so every member leaves exactly once however
//!   many nodes reap at the same time.
//! * **reader**: `XREAD BLOCK` from the last entry it saw, in stream order, and hands the
//!   entries to the driver. Every entry carries a room-wide counter `n`, so a gap (entries
//!   trimmed before this node read them) or a reset (Redis lost its data) shows as a jump;
//!   the reader then takes a snapshot of the claimed members and the driver rebuilds its
//!   view, telling local members ([`Server::handle_log_reset`]).
//!
//! The redis crate's synchronous API is enough: each thread owns one connection and
//! reconnects with a capped backoff when it breaks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chathttp_core::server::{AppendRefusal, LogEntry, LogKind, MemberRef};
use chathttp_core::{Server, Timestamp, UserName};
use redis::{Connection, RedisResult, Script, Value};

/// How a server joins a shared room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis URL (`redis://127.0.0.1:6379/0`).
    pub redis: String,
    /// This node's id: unique among the room's nodes, no whitespace.
    pub node_id: String,
    /// A node whose liveness key is older than this is taken for dead and its members leave.
    pub node_ttl: Duration,
    /// About how many entries the stream keeps (`XADD MAXLEN ~`).
    pub max_len: usize,
    /// The room's name: its keys start with `chathttp:{ROOM}:`.
    pub room: String,
}

/// A default node id: host name, process id and the start time, so that a restarted
/// process never reuses the id of its previous life (whose members may still be reaped).
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "node".to_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{host}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// What the log threads tell the driver.
#[derive(Debug)]
pub enum LogEvent {
    /// The next entry of the log, in order.
    Entry(LogEntry),
    /// An entry of this node could not be appended.
    Refused(LogEntry, AppendRefusal),
    /// Redis cannot be reached (why).
    Down(String),
    /// Redis is back and nothing was missed.
    Up,
    /// The view must be rebuilt from this snapshot; `missed` if entries were lost to us.
    Reset {
        /// Every claimed member, in join order.
        members: Vec<(MemberRef, UserName)>,
        /// Whether entries were lost to this node.
        missed: bool,
    },
    /// Shutdown released this node's claims (or gave up).
    Retired,
}

/// Hands the driver's events to the driver; may block (the driver's queue is bounded).
pub type Deliver = Arc<dyn Fn(LogEvent) + Send + Sync>;

/// The driver's end of the log: where appends go.
#[derive(Debug)]
pub struct Link {
    jobs: Sender<Job>,
    retired: Arc<AtomicBool>,
}

#[derive(Debug)]
enum Job {
    Append(LogEntry),
    Retire,
}

impl Link {
    /// Takes every entry the room machine wants appended.
    pub fn take_appends(&self, server: &mut Server) {
        while let Some(entry) = server.poll_append() {
            let _ = self.jobs.send(Job::Append(entry));
        }
    }

    /// Feeds one event to the room machine.
    pub fn feed(&self, server: &mut Server, now: Timestamp, event: LogEvent) {
        match event {
            LogEvent::Entry(entry) => server.handle_log_entry(now, entry),
            LogEvent::Refused(entry, refusal) => {
                server.handle_append_refused(now, entry, refusal);
            }
            LogEvent::Down(reason) => {
                tracing::warn!(reason, "shared log down: refusing joins and messages");
                server.handle_log_down(now, reason);
            }
            LogEvent::Up => {
                tracing::info!("shared log back; nothing missed");
                server.handle_log_up(now);
            }
            LogEvent::Reset { members, missed } => {
                if missed {
                    tracing::warn!(members = members.len(), "shared log gap: view rebuilt");
                } else {
                    tracing::info!(members = members.len(), "shared log read");
                }
                server.handle_log_reset(now, members, missed);
            }
            LogEvent::Retired => {}
        }
    }

    /// Shutdown: releases this node's claims in one step (its members leave for everyone).
    pub fn retire(&self) {
        let _ = self.jobs.send(Job::Retire);
    }

    /// Whether [`retire`](Self::retire) is done.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }
}

/// Connects to Redis, reads the room as it is, and starts the two threads. The returned
/// snapshot must be applied before any other input, so that the first joins are checked
/// against the room; if Redis cannot be reached it is a [`LogEvent::Down`] and the reader
/// keeps trying.
pub fn start(settings: &ClusterSettings, deliver: Deliver) -> (Link, LogEvent) {
    let keys = Keys::new(&settings.room);
    let client = match redis::Client::open(settings.redis.as_str()) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: bad --redis URL: {error}");
            std::process::exit(2);
        }
    };
    let node: Arc<str> = settings.node_id.as_str().into();
    let mut reader = Reader {
        link: Redis::new(client.clone(), Duration::from_secs(3)),
        keys: keys.clone(),
        node: node.clone(),
        epoch: String::new(),
        last_id: "0-0".into(),
        last_n: 0,
        names: HashMap::new(),
        deliver: deliver.clone(),
    };
    let first = match reader.resync(false) {
        Ok(members) => LogEvent::Reset {
            members,
            missed: false,
        },
        Err(error) => LogEvent::Down(describe(&error)),
    };
    let (jobs, queue) = mpsc::channel();
    let retired = Arc::new(AtomicBool::new(false));
    let mut commands = Commands {
        link: Redis::new(client, Duration::from_secs(2)),
        keys,
        node,
        ttl: settings.node_ttl,
        max_len: settings.max_len,
        retry: VecDeque::new(),
        deliver,
        retired: retired.clone(),
    };
    // The first heartbeat before the first join: a node that claims names is alive.
    let _ = commands.heartbeat();
    let _ = thread::Builder::new()
        .name("redis-commands".into())
        .spawn(move || commands.run(&queue));
    let down = matches!(first, LogEvent::Down(_));
    let _ = thread::Builder::new()
        .name("redis-reader".into())
        .spawn(move || reader.run(down));
    (Link { jobs, retired }, first)
}

/// The room's keys. The `{ROOM}` hash tag keeps them in one slot.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    log: String,
    epoch: String,
}

impl Keys {
    fn new(room: &str) -> Self {
        let prefix = format!("chathttp:{{{room}}}");
        Self {
            log: format!("{prefix}:log"),
            epoch: format!("{prefix}:epoch"),
            prefix,
        }
    }
}

/// One connection that reconnects on demand, no more often than a capped backoff allows.
struct Redis {
    client: redis::Client,
    connection: Option<Connection>,
    timeout: Duration,
    next_try: Instant,
    backoff: Duration,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Redis {
    fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            connection: None,
            timeout,
            next_try: Instant::now(),
            backoff: BACKOFF_FIRST,
        }
    }

    fn get(&mut self) -> RedisResult<&mut Connection> {
        if self.connection.is_none() {
            if Instant::now() < self.next_try {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "Redis unreachable; retrying",
                )));
            }
            match self.connect() {
                Ok(connection) => {
                    self.connection = Some(connection);
                    self.backoff = BACKOFF_FIRST;
                }
                Err(error) => {
                    self.failed();
                    return Err(error);
                }
            }
        }
        Ok(self.connection.as_mut().expect("connected just above"))
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(Duration::from_millis(500))?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Drops the connection after an error and waits a little longer before the next try.
    fn failed(&mut self) {
        self.connection = None;
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Runs `f` on the connection; an I/O-level error drops it.
    fn run<T>(&mut self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        let connection = self.get()?;
        let result = f(connection);
        if let Err(error) = &result {
            if error.is_io_error()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.is_connection_refusal()
            {
                self.failed();
            }
        }
        result
    }
}

fn describe(error: &redis::RedisError) -> String {
    format!("the shared room's Redis is unavailable ({error})")
}

// ----- scripts ----------------------------------------------------------------------------

/// Claims the name and appends the join, or refuses (0) if another member holds the name.
/// A rejoin of a member that still holds its claim appends nothing.
const JOIN: &str = r#"
local P, node, member, key, name, kind, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local who = node .. '\n' .. member
local holder = redis.call('HGET', P .. ':names', key)
if holder and holder ~= who then return 0 end
if holder == who then return 1 end
local n = redis.call('INCR', P .. ':seq')
redis.call('HSET', P .. ':names', key, who)
redis.call('HSET', P .. ':presence', who, n .. '\n' .. key .. '\n' .. name)
redis.call('SADD', P .. ':nodes', node)
redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
  'n', n, 'node', node, 'member', member, 'kind', kind, 'name', name)
return 1
"#;

/// Appends a message of a member that holds a claim, or refuses (0).
const SAY: &str = r#"
local P, node, member, text, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HEXISTS', P .. ':presence', node .. '\n' .. member) == 0 then return 0 end
local n = redis.call('INCR', P .. ':seq')
redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
  'n', n, 'node', node, 'member', member, 'kind', 'say', 'text', text)
return 1
"#;

/// Drops a member's claim and appends its leave; nothing if it holds none (already reaped).
const LEAVE: &str = r#"
local P, node, member, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local who = node .. '\n' .. member
local p = redis.call('HGET', P .. ':presence', who)
if not p then return 0 end
local _, key, name = string.match(p, '^([^\n]*)\n([^\n]*)\n(.*)$')
redis.call('HDEL', P .. ':presence', who)
if redis.call('HGET', P .. ':names', key) == who then redis.call('HDEL', P .. ':names', key) end
local n = redis.call('INCR', P .. ':seq')
redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
  'n', n, 'node', node, 'member', member, 'kind', 'leave', 'name', name)
return 1
"#;

/// For every node whose liveness key is gone (and `retiring`, if given), appends a leave
/// for each of its members in join order and drops its claims. Atomic: exactly once.
const REAP: &str = r#"
local P, maxlen, retiring = ARGV[1], ARGV[2], ARGV[3]
local reaped = 0
for _, node in ipairs(redis.call('SMEMBERS', P .. ':nodes')) do
  if node == retiring or redis.call('EXISTS', P .. ':node:' .. node) == 0 then
    local all = redis.call('HGETALL', P .. ':presence')
    local mine = {}
    for i = 1, #all, 2 do
      local nd, member = string.match(all[i], '^(.*)\n([^\n]*)$')
      if nd == node then
        local order, key, name = string.match(all[i + 1], '^([^\n]*)\n([^\n]*)\n(.*)$')
        table.insert(mine, {tonumber(order), member, key, name, all[i]})
      end
    end
    table.sort(mine, function(a, b) return a[1] < b[1] end)
    for _, m in ipairs(mine) do
      redis.call('HDEL', P .. ':presence', m[5])
      if redis.call('HGET', P .. ':names', m[3]) == m[5] then redis.call('HDEL', P .. ':names', m[3]) end
      local n = redis.call('INCR', P .. ':seq')
      redis.call('XADD', P .. ':log', 'MAXLEN', '~', maxlen, '*',
        'n', n, 'node', node, 'member', m[2], 'kind', 'leave', 'name', m[4])
      reaped = reaped + 1
    end
    redis.call('SREM', P .. ':nodes', node)
    if node == retiring then redis.call('DEL', P .. ':node:' .. node) end
  end
end
return reaped
"#;

/// The room as it is, atomically: epoch, counter, last stream id, claimed members.
const SNAPSHOT: &str = r#"
local P, candidate = ARGV[1], ARGV[2]
redis.call('SET', P .. ':epoch', candidate, 'NX')
local epoch = redis.call('GET', P .. ':epoch')
local n = tonumber(redis.call('GET', P .. ':seq') or '0')
local last = redis.call('XREVRANGE', P .. ':log', '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {epoch, n, id, redis.call('HGETALL', P .. ':presence')}
"#;

/// The liveness key, refreshed.
const HEARTBEAT: &str = r#"
redis.call('SET', ARGV[1] .. ':node:' .. ARGV[2], '1', 'PX', ARGV[3])
redis.call('SADD', ARGV[1] .. ':nodes', ARGV[2])
return 1
"#;

fn scripts() -> &'static [Script; 6] {
    static SCRIPTS: OnceLock<[Script; 6]> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        [
            Script::new(JOIN),
            Script::new(SAY),
            Script::new(LEAVE),
            Script::new(REAP),
            Script::new(SNAPSHOT),
            Script::new(HEARTBEAT),
        ]
    })
}

// ----- the command thread -----------------------------------------------------------------

/// Most appends sent in one pipeline.
const MAX_PIPELINE: usize = 256;

/// The entry's script as a plain `EVAL`, for pipelines: unlike `EVALSHA`, it cannot fail
/// with `NOSCRIPT` halfway through a pipeline (Redis caches the compiled script anyway).
fn eval(prefix: &str, max_len: usize, entry: &LogEntry) -> redis::Cmd {
    let (node, member) = (&*entry.author.node, entry.author.member);
    let mut cmd = redis::cmd("EVAL");
    match &entry.kind {
        LogKind::Join(name) | LogKind::Rejoin(name) => {
            let kind = match entry.kind {
                LogKind::Join(_) => "join",
                _ => "rejoin",
            };
            cmd.arg(JOIN).arg(0).arg(prefix).arg(node).arg(member);
            cmd.arg(name.key())
                .arg(name.as_str())
                .arg(kind)
                .arg(max_len);
        }
        LogKind::Say(text) => {
            cmd.arg(SAY).arg(0).arg(prefix).arg(node).arg(member);
            cmd.arg(text.as_str()).arg(max_len);
        }
        LogKind::Leave => {
            cmd.arg(LEAVE)
                .arg(0)
                .arg(prefix)
                .arg(node)
                .arg(member)
                .arg(max_len);
        }
        _ => {
            cmd.arg("return 0").arg(0);
        }
    }
    cmd
}

/// How often entries waiting for Redis (leaves, rejoins) are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

struct Commands {
    link: Redis,
    keys: Keys,
    node: Arc<str>,
    ttl: Duration,
    max_len: usize,
    /// Leaves and rejoins that could not be appended yet: retried until Redis answers.
    retry: VecDeque<LogEntry>,
    deliver: Deliver,
    retired: Arc<AtomicBool>,
}

impl Commands {
    fn run(&mut self, queue: &Receiver<Job>) {
        let beat = self.ttl / 3;
        let reap = self.ttl / 2;
        let mut next_beat = Instant::now() + beat;
        let mut next_reap = Instant::now() + reap;
        loop {
            let now = Instant::now();
            if now >= next_beat {
                next_beat = now + beat;
                if self.heartbeat().is_ok() {
                    self.retry_waiting();
                }
            }
            if now >= next_reap {
                next_reap = now + reap;
                let _ = self.reap("");
            }
            if !self.retry.is_empty() {
                self.retry_waiting();
            }
            let mut wait = next_beat
                .min(next_reap)
                .saturating_duration_since(Instant::now());
            if !self.retry.is_empty() {
                wait = wait.min(RETRY_EVERY);
            }
            match queue.recv_timeout(wait) {
                Ok(Job::Append(entry)) => {
                    // Everything already waiting goes in one pipeline: one round trip.
                    let mut batch = vec![entry];
                    let mut retire = false;
                    while batch.len() < MAX_PIPELINE {
                        match queue.try_recv() {
                            Ok(Job::Append(entry)) => batch.push(entry),
                            Ok(Job::Retire) => {
                                retire = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.append_all(batch);
                    if retire {
                        self.retire();
                    }
                }
                Ok(Job::Retire) => self.retire(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Shutdown: releases this node's claims (its members leave for everyone) and says so.
    fn retire(&mut self) {
        self.retry_waiting();
        let node = self.node.clone();
        match self.reap(&node) {
            Ok(count) => tracing::info!(count, "released this node's members"),
            Err(error) => tracing::warn!(%error, "could not release members"),
        }
        self.retired.store(true, Ordering::Relaxed);
        (self.deliver)(LogEvent::Retired);
    }

    fn heartbeat(&mut self) -> RedisResult<()> {
        let (prefix, node) = (&self.keys.prefix, &*self.node);
        let ttl = self.ttl.as_millis().max(1) as u64;
        self.link
            .run(|c| scripts()[5].arg(prefix).arg(node).arg(ttl).invoke::<i64>(c))?;
        Ok(())
    }

    fn reap(&mut self, retiring: &str) -> RedisResult<i64> {
        let (prefix, max_len) = (&self.keys.prefix, self.max_len);
        let count = self.link.run(|c| {
            scripts()[3]
                .arg(prefix)
                .arg(max_len)
                .arg(retiring)
                .invoke::<i64>(c)
        })?;
        if count > 0 && retiring.is_empty() {
            tracing::info!(count, "reaped members of dead nodes");
        }
        Ok(count)
    }

    fn retry_waiting(&mut self) {
        while let Some(entry) = self.retry.pop_front() {
            match self.invoke(&entry) {
                Err(_) => return self.retry.push_front(entry),
                Ok(true) => {}
                // A leave of a member already reaped appends nothing: nothing to say.
                Ok(false) if matches!(entry.kind, LogKind::Leave) => {}
                Ok(false) => (self.deliver)(LogEvent::Refused(entry, AppendRefusal::NameTaken)),
            }
        }
    }

    /// Appends `batch` in order, as one pipeline of `EVAL`s when it can.
    fn append_all(&mut self, batch: Vec<LogEntry>) {
        self.retry_waiting();
        if batch.len() == 1 || !self.retry.is_empty() {
            return batch.into_iter().for_each(|entry| self.append(entry));
        }
        let (prefix, max_len) = (self.keys.prefix.as_str(), self.max_len);
        let results = self.link.run(|c| {
            let mut pipe = redis::pipe();
            for entry in &batch {
                pipe.add_command(eval(prefix, max_len, entry));
            }
            pipe.query::<Vec<i64>>(c)
        });
        match results {
            Ok(codes) if codes.len() == batch.len() => {
                for (entry, code) in batch.into_iter().zip(codes) {
                    self.settle(entry, Ok(code == 1));
                }
            }
            // Some may have been appended before the connection broke: messages and joins
            // are refused (the speaker is told; a join that did get in is applied and then
            // left, see the core), leaves and rejoins are retried (they are idempotent).
            other => {
                let reason = match other {
                    Err(error) => describe(&error),
                    Ok(_) => "Redis answered a pipeline with the wrong count".to_owned(),
                };
                tracing::debug!(reason, count = batch.len(), "pipeline failed");
                for entry in batch {
                    self.settle(entry, Err(reason.clone()));
                }
            }
        }
    }

    fn append(&mut self, entry: LogEntry) {
        // Leaves and rejoins keep their order behind those waiting.
        let retried = matches!(entry.kind, LogKind::Leave | LogKind::Rejoin(_));
        self.retry_waiting();
        if retried && !self.retry.is_empty() {
            return self.retry.push_back(entry);
        }
        let result = self.invoke(&entry).map_err(|error| describe(&error));
        self.settle(entry, result);
    }

    /// What follows an append's result: nothing, a refusal for the driver, or a retry.
    fn settle(&mut self, entry: LogEntry, result: Result<bool, String>) {
        let retried = matches!(entry.kind, LogKind::Leave | LogKind::Rejoin(_));
        match result {
            Ok(true) => {}
            Ok(false) => {
                let refusal = match entry.kind {
                    LogKind::Join(_) | LogKind::Rejoin(_) => AppendRefusal::NameTaken,
                    _ => AppendRefusal::NotMember,
                };
                (self.deliver)(LogEvent::Refused(entry, refusal));
            }
            Err(_) if retried => self.retry.push_back(entry),
            Err(reason) => {
                let refusal = AppendRefusal::Unavailable(reason);
                (self.deliver)(LogEvent::Refused(entry, refusal));
            }
        }
    }

    /// Runs the entry's script: `Ok(false)` if the script refused it.
    fn invoke(&mut self, entry: &LogEntry) -> RedisResult<bool> {
        let (prefix, max_len) = (&self.keys.prefix, self.max_len);
        let (node, member) = (&*entry.author.node, entry.author.member);
        let done: RedisResult<i64> = self.link.run(|c| match &entry.kind {
            LogKind::Join(name) | LogKind::Rejoin(name) => {
                let kind = match entry.kind {
                    LogKind::Join(_) => "join",
                    _ => "rejoin",
                };
                scripts()[0]
                    .arg(prefix)
                    .arg(node)
                    .arg(member)
                    .arg(name.key())
                    .arg(name.as_str())
                    .arg(kind)
                    .arg(max_len)
                    .invoke(c)
            }
            LogKind::Say(text) => scripts()[1]
                .arg(prefix)
                .arg(node)
                .arg(member)
                .arg(text.as_str())
                .arg(max_len)
                .invoke(c),
            LogKind::Leave => scripts()[2]
                .arg(prefix)
                .arg(node)
                .arg(member)
                .arg(max_len)
                .invoke(c),
            _ => Ok(0),
        });
        let done = done.inspect_err(|error| tracing::debug!(%error, ?entry, "append failed"))?;
        Ok(done == 1)
    }
}

// ----- the reader thread ------------------------------------------------------------------

/// How long one `XREAD` blocks; also how soon the reader notices it should check Redis.
const BLOCK_MS: u64 = 1000;
/// Entries read per `XREAD`.
const BATCH: usize = 1000;

struct Reader {
    link: Redis,
    keys: Keys,
    node: Arc<str>,
    /// The log's epoch: a value set once per life of the Redis data.
    epoch: String,
    last_id: String,
    last_n: u64,
    /// Node ids seen, shared, so entries do not allocate one each.
    names: HashMap<String, Arc<str>>,
    deliver: Deliver,
}

impl Reader {
    fn run(&mut self, mut down: bool) {
        loop {
            if down {
                thread::sleep(self.link.backoff.min(BACKOFF_MAX));
                match self.reconnect() {
                    Ok(event) => {
                        (self.deliver)(event);
                        down = false;
                    }
                    Err(_) => continue,
                }
            }
            match self.read() {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(%error, "reading the shared log failed");
                    (self.deliver)(LogEvent::Down(describe(&error)));
                    self.link.failed();
                    down = true;
                }
            }
        }
    }

    /// After an outage: go on from where we stopped if nothing was lost, or rebuild.
    fn reconnect(&mut self) -> RedisResult<LogEvent> {
        let (epoch, n, _, _) = self.snapshot()?;
        let log = self.keys.log.clone();
        let last_id = self.last_id.clone();
        let next: Value = self.link.run(|c| {
            redis::cmd("XRANGE")
                .arg(&log)
                .arg(format!("({last_id}"))
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        let next_n = match next {
            Value::Array(entries) => entries
                .first()
                .and_then(|e| parse_entry(e, &mut self.names))
                .map(|(_, n, _)| n),
            _ => None,
        };
        let continuous = epoch == self.epoch
            && n >= self.last_n
            && match next_n {
                Some(next) => next == self.last_n + 1,
                None => n == self.last_n,
            };
        if continuous {
            return Ok(LogEvent::Up);
        }
        let members = self.resync(true)?;
        Ok(LogEvent::Reset {
            members,
            missed: true,
        })
    }

    /// Takes a snapshot and moves the read position to it; returns the members.
    fn resync(&mut self, missed: bool) -> RedisResult<Vec<(MemberRef, UserName)>> {
        let (epoch, n, id, members) = self.snapshot()?;
        if missed {
            tracing::warn!(
                from = self.last_n,
                to = n,
                "resynchronising with the shared log"
            );
        }
        self.epoch = epoch;
        self.last_n = n;
        self.last_id = id;
        Ok(members)
    }

    #[allow(clippy::type_complexity)]
    fn snapshot(&mut self) -> RedisResult<(String, u64, String, Vec<(MemberRef, UserName)>)> {
        let prefix = self.keys.prefix.clone();
        let candidate = format!("{}@{}", self.node, std::process::id());
        let value: Value = self
            .link
            .run(|c| scripts()[4].arg(&prefix).arg(&candidate).invoke(c))?;
        let bad = || redis::RedisError::from((redis::ErrorKind::TypeError, "bad snapshot"));
        let Value::Array(parts) = value else {
            return Err(bad());
        };
        let [epoch, n, id, presence] = <[Value; 4]>::try_from(parts).map_err(|_| bad())?;
        let (Some(epoch), Value::Int(n), Some(id)) = (text(&epoch), n, text(&id)) else {
            return Err(bad());
        };
        let mut members = Vec::new();
        if let Value::Array(fields) = presence {
            for pair in fields.chunks(2) {
                let (Some(who), Some(claim)) = (text(&pair[0]), pair.get(1).and_then(text)) else {
                    continue;
                };
                let Some((node, member)) = who.rsplit_once('\n') else {
                    continue;
                };
                let mut claim = claim.splitn(3, '\n');
                let (Some(order), Some(_key), Some(name)) =
                    (claim.next(), claim.next(), claim.next())
                else {
                    continue;
                };
                let (Ok(order), Ok(member), Ok(name)) =
                    (order.parse::<u64>(), member.parse(), UserName::parse(name))
                else {
                    continue;
                };
                let node = intern(&mut self.names, node);
                members.push((order, MemberRef { node, member }, name));
            }
        }
        members.sort_by_key(|(order, _, _)| *order);
        let members = members.into_iter().map(|(_, m, name)| (m, name)).collect();
        Ok((epoch, n.max(0) as u64, id, members))
    }

    /// One `XREAD BLOCK`: hands each entry over, or resynchronises on a gap.
    fn read(&mut self) -> RedisResult<()> {
        let log = self.keys.log.clone();
        let last_id = self.last_id.clone();
        let value: Value = self.link.run(|c| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&log)
                .arg(&last_id)
                .query(c)
        })?;
        let entries = match value {
            Value::Array(streams) => streams
                .into_iter()
                .filter_map(|stream| match stream {
                    Value::Array(mut pair) if pair.len() == 2 => match pair.pop() {
                        Some(Value::Array(entries)) => Some(entries),
                        _ => None,
                    },
                    _ => None,
                })
                .flatten()
                .collect(),
            Value::Map(streams) => streams
                .into_iter()
                .filter_map(|(_, entries)| match entries {
                    Value::Array(entries) => Some(entries),
                    _ => None,
                })
                .flatten()
                .collect(),
            _ => Vec::new(),
        };
        if entries.is_empty() {
            return self.check_epoch();
        }
        for raw in &entries {
            let Some((id, n, entry)) = parse_entry(raw, &mut self.names) else {
                continue;
            };
            if n != self.last_n + 1 {
                // Trimmed before we read it, or a new log: rebuild from a snapshot.
                let members = self.resync(true)?;
                (self.deliver)(LogEvent::Reset {
                    members,
                    missed: true,
                });
                return Ok(());
            }
            self.last_n = n;
            self.last_id = id;
            if let Some(entry) = entry {
                (self.deliver)(LogEvent::Entry(entry));
            }
        }
        Ok(())
    }

    /// A quiet second: make sure the log is still the one we read (Redis may have been
    /// restarted empty between two reads without this connection noticing).
    fn check_epoch(&mut self) -> RedisResult<()> {
        let key = self.keys.epoch.clone();
        let epoch: Option<String> = self.link.run(|c| redis::cmd("GET").arg(&key).query(c))?;
        if epoch.as_deref() != Some(self.epoch.as_str()) {
            let members = self.resync(true)?;
            (self.deliver)(LogEvent::Reset {
                members,
                missed: true,
            });
        }
        Ok(())
    }
}

fn intern(names: &mut HashMap<String, Arc<str>>, node: &str) -> Arc<str> {
    if let Some(node) = names.get(node) {
        return node.clone();
    }
    let shared: Arc<str> = node.into();
    names.insert(node.to_owned(), shared.clone());
    shared
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `[id, [field, value, ...]]` → id, counter, and the entry (`None` if it cannot be read).
fn parse_entry(
    raw: &Value,
    names: &mut HashMap<String, Arc<str>>,
) -> Option<(String, u64, Option<LogEntry>)> {
    let Value::Array(pair) = raw else {
        return None;
    };
    let id = text(pair.first()?)?;
    let mut fields: HashMap<&[u8], &[u8]> = HashMap::new();
    let list = match pair.get(1)? {
        Value::Array(list) => list,
        _ => return None,
    };
    for kv in list.chunks(2) {
        if let [Value::BulkString(k), Value::BulkString(v)] = kv {
            fields.insert(k, v);
        }
    }
    let get = |name: &str| {
        fields
            .get(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let n: u64 = get("n")?.parse().ok()?;
    let entry = (|| {
        let node = intern(names, get("node")?);
        let member = get("member")?.parse().ok()?;
        let kind = match get("kind")? {
            "join" => LogKind::Join(UserName::parse(get("name")?).ok()?),
            "rejoin" => LogKind::Rejoin(UserName::parse(get("name")?).ok()?),
            "say" => LogKind::Say(get("text")?.to_owned()),
            "leave" => LogKind::Leave,
            _ => return None,
        };
        Some(LogEntry {
            author: MemberRef { node, member },
            kind,
        })
    })();
    Some((id, n, entry))
}
