//! The reader thread: reads the log in order and hands every entry to the driver.
//!
//! `XREAD BLOCK` from the last entry read; a gap or a reset (see [`crate::position`]) makes
//! it take a snapshot of the claimed members, from which the driver rebuilds its view.

use std::thread;

use chathttp_core::UserName;
use chathttp_core::server::MemberRef;
use redis::{RedisResult, Value};

use crate::connection::describe;
use crate::entry::{
    Names, Snapshot, entry_id, history_epoch, parse_entry, parse_line, parse_snapshot,
    stream_entries,
};
use crate::position::Position;
use crate::scripts::scripts;
use crate::{LogEvent, Session, SharedHistory};

/// How long one `XREAD` blocks; also how soon the reader notices it should check Redis.
const BLOCK_MS: u64 = 1000;
/// Entries read per `XREAD`. An entry carries at most one message of `--max-body-bytes`
/// (64 KiB by default), so one reply stays within a few MiB whatever the room sends (K1).
const BATCH: usize = 64;

pub(crate) struct Reader {
    pub(crate) session: Session,
    pub(crate) position: Position,
    pub(crate) names: Names,
    /// `--history`: the chat lines read back at each snapshot (E5).
    pub(crate) history: usize,
}

/// Entries per `XREVRANGE` while reading the history back: as many as one `XREAD`, so one
/// reply stays within the same few MiB (K1).
const HISTORY_PAGE: usize = BATCH;

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

    /// Takes a snapshot and moves the read position to it; returns the members and the
    /// history up to it.
    #[allow(clippy::type_complexity)]
    pub(crate) fn resync(
        &mut self,
        missed: bool,
    ) -> RedisResult<(Vec<(MemberRef, UserName)>, Option<SharedHistory>)> {
        let snapshot = self.snapshot()?;
        if missed {
            tracing::warn!(
                from = self.position.n,
                to = snapshot.n,
                "resynchronising with the shared log"
            );
        }
        let history = self.history_at(&snapshot)?;
        self.position.reset_to(&snapshot);
        Ok((snapshot.members, history))
    }

    /// The last `--history` chat lines up to `snapshot`'s last entry, read backwards a page
    /// at a time until there are enough or the stream begins (E5). Every node reads the same
    /// lines for the same snapshot point, so they replay the same ids.
    fn history_at(&mut self, snapshot: &Snapshot) -> RedisResult<Option<SharedHistory>> {
        if self.history == 0 {
            return Ok(None);
        }
        let log = &self.session.keys.log;
        let mut lines = Vec::new();
        let mut end = snapshot.id.clone();
        while lines.len() < self.history {
            let page: Value = self.session.link.run(|c| {
                redis::cmd("XREVRANGE")
                    .arg(log)
                    .arg(&end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(HISTORY_PAGE)
                    .query(c)
            })?;
            let Value::Array(entries) = page else { break };
            let Some(oldest) = entries.last().and_then(entry_id) else {
                break;
            };
            let wanted = self.history - lines.len();
            lines.extend(
                entries
                    .iter()
                    .filter_map(parse_line)
                    .filter(|line| line.seq <= snapshot.line)
                    .take(wanted),
            );
            if entries.len() < HISTORY_PAGE {
                break;
            }
            end = format!("({oldest}");
        }
        lines.reverse();
        Ok(Some(SharedHistory {
            epoch: history_epoch(&snapshot.epoch),
            last: snapshot.line,
            lines,
        }))
    }

    /// Entries were lost to this node: the event that rebuilds the driver's view.
    fn reset(&mut self) -> RedisResult<LogEvent> {
        let (members, history) = self.resync(true)?;
        Ok(LogEvent::Reset {
            members,
            missed: true,
            history,
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
                .key(&keys.lines)
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
