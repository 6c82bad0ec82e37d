//! The reader thread: reads the log in order and hands every entry to the driver.
//!
//! `XREAD BLOCK` from the last entry read; a gap or a reset (see [`crate::position`]) makes
//! it take a snapshot of the claimed members, from which the driver rebuilds its view.

use std::thread;

use chathttp_core::UserName;
use chathttp_core::server::MemberRef;
use redis::{RedisResult, Value};

use crate::connection::describe;
use crate::entry::{Names, Snapshot, entry_id, parse_entry, parse_snapshot, stream_entries};
use crate::position::Position;
use crate::scripts::scripts;
use crate::{LogEvent, Session};

/// How long one `XREAD` blocks; also how soon the reader notices it should check Redis.
const BLOCK_MS: u64 = 1000;
/// Entries read per `XREAD`. An entry carries at most one message of `--max-body-bytes`
/// (64 KiB by default), so one reply stays within a few MiB whatever the room sends (K1).
const BATCH: usize = 64;

pub(crate) struct Reader {
    pub(crate) session: Session,
    pub(crate) position: Position,
    pub(crate) names: Names,
}

impl Reader {
    pub(crate) fn run(&mut self, mut down: bool) {
        loop {
            if down {
                thread::sleep(self.session.link.backoff.delay());
                match self.reconnect() {
                    Ok(event) => {
                        (self.session.deliver)(event);
                        down = false;
                    }
                    Err(_) => continue,
                }
            }
            if let Err(error) = self.read() {
                tracing::warn!(%error, "reading the shared log failed");
                (self.session.deliver)(LogEvent::Down(describe(&error)));
                self.session.link.failed();
                down = true;
            }
        }
    }

    /// After an outage: go on from where we stopped if nothing was lost, or rebuild.
    fn reconnect(&mut self) -> RedisResult<LogEvent> {
        let snapshot = self.snapshot()?;
        let (log, last_id) = (&self.session.keys.log, &self.position.id);
        let next: Value = self.session.link.run(|c| {
            redis::cmd("XRANGE")
                .arg(log)
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
                .map(|read| read.n),
            _ => None,
        };
        if self.position.continues(&snapshot.epoch, snapshot.n, next_n) {
            return Ok(LogEvent::Up);
        }
        self.reset()
    }

    /// Takes a snapshot and moves the read position to it; returns the members.
    pub(crate) fn resync(&mut self, missed: bool) -> RedisResult<Vec<(MemberRef, UserName)>> {
        let snapshot = self.snapshot()?;
        if missed {
            tracing::warn!(
                from = self.position.n,
                to = snapshot.n,
                "resynchronising with the shared log"
            );
        }
        self.position.reset_to(&snapshot);
        Ok(snapshot.members)
    }

    /// Entries were lost to this node: the event that rebuilds the driver's view.
    fn reset(&mut self) -> RedisResult<LogEvent> {
        let members = self.resync(true)?;
        Ok(LogEvent::Reset {
            members,
            missed: true,
        })
    }

    fn snapshot(&mut self) -> RedisResult<Snapshot> {
        let keys = &self.session.keys;
        let candidate = format!("{}@{}", self.session.node, std::process::id());
        let script = &scripts().snapshot.script;
        let value: Value = self.session.link.run(|c| {
            script
                .key(&keys.epoch)
                .key(&keys.seq)
                .key(&keys.log)
                .key(&keys.presence)
                .arg(&candidate)
                .invoke(c)
        })?;
        parse_snapshot(value, &mut self.names).ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "bad snapshot"))
        })
    }

    /// One `XREAD BLOCK`: hands each entry over, or resynchronises on a gap.
    fn read(&mut self) -> RedisResult<()> {
        let (log, last_id) = (&self.session.keys.log, &self.position.id);
        let value: Value = self.session.link.run(|c| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(log)
                .arg(last_id)
                .query(c)
        })?;
        let entries = stream_entries(value);
        if entries.is_empty() {
            return self.check_epoch();
        }
        for raw in &entries {
            let Some(read) = parse_entry(raw, &mut self.names) else {
                // Not written by a node (no counter): skip it, and read past it next time,
                // or every read would return it again at once (K3).
                if let Some(id) = entry_id(raw) {
                    tracing::warn!(id, "skipping a malformed entry of the shared log");
                    self.position.skip(id);
                }
                continue;
            };
            if !self.position.is_next(read.n) {
                // Trimmed before we read it, or a new log: rebuild from a snapshot.
                let reset = self.reset()?;
                (self.session.deliver)(reset);
                return Ok(());
            }
            self.position.advance(read.id, read.n);
            if let Some(entry) = read.entry {
                (self.session.deliver)(LogEvent::Entry(entry));
            }
        }
        Ok(())
    }

    /// A quiet second: make sure the log is still the one we read (Redis may have been
    /// restarted empty between two reads without this connection noticing).
    fn check_epoch(&mut self) -> RedisResult<()> {
        let key = &self.session.keys.epoch;
        let epoch: Option<String> = self
            .session
            .link
            .run(|c| redis::cmd("GET").arg(key).query(c))?;
        if epoch.as_deref() != Some(self.position.epoch.as_str()) {
            let reset = self.reset()?;
            (self.session.deliver)(reset);
        }
        Ok(())
    }
}
