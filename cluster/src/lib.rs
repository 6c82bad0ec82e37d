//! One room across several servers, through Redis (`--redis URL`; docs/CLUSTER.md).
//!
//! The room machine runs in shared-log mode ([`Server::new_shared`]): it hands out the
//! entries to append and applies the entries it is given. This crate is the shared log, on
//! three threads of its own, so that one implementation serves every runtime:
//!
//! * **commands** (`commands.rs`): appends each entry with one Lua script (claim the name and
//!   `XADD`, as Centrifugo's Redis engine does).
//! * **liveness** (`liveness.rs`): pushes this node's expiry in the room's `alive` set a TTL
//!   ahead, and reaps nodes whose expiry has passed: one script appends a leave for each of their members
//!   and drops their claims, atomically, so every member leaves exactly once however many
//!   nodes reap at the same time. Its own connection keeps it from waiting behind appends.
//! * **reader** (`reader.rs`): `XREAD BLOCK` from the last entry it saw, in stream order, and
//!   hands the entries to the driver. A gap or a reset (`position.rs`) makes it take a
//!   snapshot of the claimed members, and the driver rebuilds its view, telling local
//!   members ([`Server::handle_log_reset`]).
//!
//! The driver talks to both through a [`Link`] and receives their news as [`LogEvent`]s.
//! The redis crate's synchronous API is enough: each thread owns one connection
//! (`connection.rs`) and reconnects with a capped backoff when it breaks.

mod commands;
mod connection;
mod entry;
mod keys;
mod liveness;
mod position;
mod reader;
mod scripts;
mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::Duration;

use chathttp_core::server::history::{Epoch, Line};
use chathttp_core::server::{AppendRefusal, LogEntry, MemberRef};
use chathttp_core::{Server, Timestamp, UserName};

pub use settings::{ClusterSettings, PASSWORD_VARIABLE, default_node_id};

use commands::Commands;
use connection::{Redis, describe};
use liveness::Liveness;
use reader::Reader;

/// How long one command of the reader, and of the command thread, may wait for Redis.
const READER_TIMEOUT: Duration = Duration::from_secs(3);
const COMMANDS_TIMEOUT: Duration = Duration::from_secs(2);

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
        /// The chat lines kept for replay, as the stream has them (E5); `None` with
        /// `--history 0`.
        history: Option<SharedHistory>,
    },
    /// Shutdown released this node's claims (or gave up).
    Retired,
}

/// The room's history as the stream has it at a snapshot (E5): the same on every node.
#[derive(Debug)]
pub struct SharedHistory {
    /// The epoch of the log's life, as an id's first half.
    pub epoch: Epoch,
    /// The number of the last chat line the log gave up to the snapshot.
    pub last: u64,
    /// The last `--history` chat lines up to the snapshot, oldest first.
    pub lines: Vec<Line>,
}

/// Hands the driver's events to the driver; may block (the driver's queue is bounded).
pub type Deliver = Arc<dyn Fn(LogEvent) + Send + Sync>;

/// What each log thread holds: a connection of its own, the room's keys, this node's id, and
/// the way to the driver.
struct Session {
    link: Redis,
    keys: keys::Keys,
    node: Arc<str>,
    deliver: Deliver,
}

/// The driver's end of the log: where appends go.
#[derive(Debug)]
pub struct Link {
    jobs: Sender<Job>,
    retired: Arc<AtomicBool>,
}

/// What the driver asks of the command thread.
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
            LogEvent::Reset {
                members,
                missed,
                history,
            } => {
                if missed {
                    tracing::warn!(members = members.len(), "shared log gap: view rebuilt");
                } else {
                    tracing::info!(members = members.len(), "shared log read");
                }
                if let Some(history) = history {
                    server.reset_history(history.epoch, history.last, history.lines);
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

/// The client for `settings`: its URL (`redis://`, or `rediss://` for TLS, verified against
/// the system's roots or `SSL_CERT_FILE`), with the password from the environment if set.
fn client(settings: &ClusterSettings) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    let mut info = settings.redis.as_str().into_connection_info()?;
    if let Some(password) = &settings.password {
        let redis = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(redis);
    }
    redis::Client::open(info)
}

/// Connects to Redis, reads the room as it is, and starts the two threads. The returned
/// snapshot must be applied before any other input, so that the first joins are checked
/// against the room; if Redis cannot be reached it is a [`LogEvent::Down`] and the reader
/// keeps trying.
pub fn start(settings: &ClusterSettings, deliver: Deliver) -> (Link, LogEvent) {
    let keys = keys::Keys::new(&settings.room);
    let client = match client(settings) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: bad --redis URL: {error}");
            std::process::exit(2);
        }
    };
    let node: Arc<str> = settings.node_id.as_str().into();
    let mut reader = Reader {
        session: Session {
            link: Redis::new(client.clone(), READER_TIMEOUT),
            keys: keys.clone(),
            node: node.clone(),
            deliver: deliver.clone(),
        },
        position: position::Position::default(),
        names: entry::Names::default(),
        history: settings.history,
    };
    let first = match reader.resync(false) {
        Ok((members, history)) => LogEvent::Reset {
            members,
            missed: false,
            history,
        },
        Err(error) => LogEvent::Down(describe(&error)),
    };
    let (jobs, queue) = mpsc::channel();
    let retired = Arc::new(AtomicBool::new(false));
    let mut liveness = Liveness {
        link: Redis::new(client.clone(), Liveness::timeout(settings.node_ttl)),
        keys: keys.clone(),
        node: settings.node_id.clone(),
        ttl: settings.node_ttl,
        max_len: settings.max_len,
    };
    // The first heartbeat before the first join: a node that claims names is alive.
    let _ = liveness::heartbeat(
        &mut liveness.link,
        &keys,
        &settings.node_id,
        settings.node_ttl,
    );
    let _ = thread::Builder::new()
        .name("redis-liveness".into())
        .spawn(move || liveness.run());
    let appending = scripts::Appending {
        keys: keys.clone(),
        max_len: settings.max_len,
        ttl: settings.node_ttl,
    };
    let mut commands = Commands {
        session: Session {
            link: Redis::new(client, COMMANDS_TIMEOUT),
            keys,
            node,
            deliver,
        },
        appending,
        retry: Default::default(),
        next_ticket: 0,
        retired: retired.clone(),
    };
    let _ = thread::Builder::new()
        .name("redis-commands".into())
        .spawn(move || commands.run(&queue));
    let down = matches!(first, LogEvent::Down(_));
    let _ = thread::Builder::new()
        .name("redis-reader".into())
        .spawn(move || reader.run(down));
    (Link { jobs, retired }, first)
}
