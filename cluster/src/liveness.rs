//! The liveness thread: refreshes this node's key and reaps dead nodes, on a connection of
//! its own, so that appends waiting on a slow Redis (pipelines of up to 256 scripts, each
//! with its own timeout) never delay the heartbeat past the TTL and get a healthy node's
//! members reaped.

use std::thread;
use std::time::{Duration, Instant};

use redis::RedisResult;

use crate::connection::Redis;
use crate::keys::Keys;
use crate::scripts::scripts;

pub(crate) struct Liveness {
    pub(crate) link: Redis,
    pub(crate) keys: Keys,
    pub(crate) node: String,
    pub(crate) ttl: Duration,
    pub(crate) max_len: usize,
}

impl Liveness {
    /// How long one heartbeat or reap may wait for Redis: a third of the TTL, so that a
    /// heartbeat that times out still leaves time for the next one.
    pub(crate) fn timeout(ttl: Duration) -> Duration {
        (ttl / 3).max(Duration::from_millis(100))
    }

    /// Heartbeats every third of the TTL, reaps dead nodes every half, for ever.
    pub(crate) fn run(&mut self) {
        let (beat, reap) = (self.ttl / 3, self.ttl / 2);
        let mut next_reap = Instant::now() + reap;
        loop {
            let started = Instant::now();
            let _ = heartbeat(&mut self.link, &self.keys, &self.node, self.ttl);
            if Instant::now() >= next_reap {
                next_reap = Instant::now() + reap;
                if let Ok(count @ 1..) = reap_dead(&mut self.link, &self.keys, self.max_len, "") {
                    tracing::info!(count, "reaped members of dead nodes");
                }
            }
            thread::sleep(beat.saturating_sub(started.elapsed()));
        }
    }
}

/// Pushes `node`'s expiry in the room's `alive` set `ttl` ahead.
pub(crate) fn heartbeat(
    link: &mut Redis,
    keys: &Keys,
    node: &str,
    ttl: Duration,
) -> RedisResult<()> {
    let ttl = u64::try_from(ttl.as_millis().max(1)).unwrap_or(u64::MAX);
    let script = &scripts().heartbeat.script;
    link.run(|c| script.key(&keys.alive).arg(node).arg(ttl).invoke::<i64>(c))?;
    Ok(())
}

/// Appends a leave for every member of a dead node (and of `retiring`, if not empty) and
/// drops their claims; returns how many left.
pub(crate) fn reap_dead(
    link: &mut Redis,
    keys: &Keys,
    max_len: usize,
    retiring: &str,
) -> RedisResult<i64> {
    let script = &scripts().reap.script;
    link.run(|c| {
        script
            .key(&keys.alive)
            .key(&keys.presence)
            .key(&keys.names)
            .key(&keys.seq)
            .key(&keys.log)
            .arg(max_len)
            .arg(retiring)
            .invoke::<i64>(c)
    })
}
