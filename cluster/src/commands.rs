//! The command thread: appends the driver's entries, and releases this node's members at
//! shutdown. (Keeping the node alive is the liveness thread's job: see [`crate::liveness`].)
//!
//! It owns one connection. Entries already waiting go as one pipeline (one round trip).
//! Every entry carries a ticket, under which its script records what it did; an append
//! whose answer is lost (a timeout, a broken connection) is retried with the same ticket
//! until Redis answers, and a retry of one that did run returns its recorded outcome
//! instead of appending it again. So each request gets exactly one answer: its entry in the
//! log, or a refusal the script gave (K4).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use chathttp_core::server::{AppendRefusal, LogEntry, LogKind};
use redis::RedisResult;

use crate::liveness::reap_dead;
use crate::scripts::{Appending, eval, invoke};
use crate::{Job, LogEvent, Session};

/// Most appends sent in one pipeline.
const MAX_PIPELINE: usize = 256;

/// How often appends whose answer was lost are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// An entry on its way to the log, with its ticket.
pub(crate) struct Pending {
    entry: LogEntry,
    ticket: u64,
}

pub(crate) struct Commands {
    pub(crate) session: Session,
    /// The room's keys and the limits every append passes to its script.
    pub(crate) appending: Appending,
    /// Appends whose answer was lost, in order: retried until Redis answers.
    pub(crate) retry: VecDeque<Pending>,
    /// The ticket of the next entry (see the module docs).
    pub(crate) next_ticket: u64,
    pub(crate) retired: Arc<AtomicBool>,
}

impl Commands {
    pub(crate) fn run(&mut self, queue: &Receiver<Job>) {
        loop {
            if !self.retry.is_empty() {
                self.retry_waiting();
            }
            // Entries waiting for Redis are tried again soon; otherwise only a job wakes us.
            let wait = match self.retry.is_empty() {
                true => Duration::from_secs(3600),
                false => RETRY_EVERY,
            };
            match queue.recv_timeout(wait) {
                Ok(Job::Append(entry)) => {
                    // Everything already waiting goes in one pipeline: one round trip.
                    let mut batch = vec![self.ticket(entry)];
                    let mut retire = false;
                    while batch.len() < MAX_PIPELINE {
                        match queue.try_recv() {
                            Ok(Job::Append(entry)) => batch.push(self.ticket(entry)),
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
        let node = self.session.node.clone();
        match self.reap(&node) {
            Ok(count) => tracing::info!(count, "released this node's members"),
            Err(error) => tracing::warn!(%error, "could not release members"),
        }
        self.retired.store(true, Ordering::Relaxed);
        (self.session.deliver)(LogEvent::Retired);
    }

    fn reap(&mut self, retiring: &str) -> RedisResult<i64> {
        let max_len = self.appending.max_len;
        reap_dead(
            &mut self.session.link,
            &self.session.keys,
            max_len,
            retiring,
        )
    }

    /// Gives `entry` the next ticket.
    fn ticket(&mut self, entry: LogEntry) -> Pending {
        self.next_ticket += 1;
        Pending {
            entry,
            ticket: self.next_ticket,
        }
    }

    /// Retries, in order, the appends whose answer was lost; stops at the first that fails
    /// again.
    fn retry_waiting(&mut self) {
        while let Some(pending) = self.retry.pop_front() {
            match self.invoke(&pending) {
                Err(_) => return self.retry.push_front(pending),
                Ok(done) => self.settle(pending, done),
            }
        }
    }

    /// Appends `batch` in order, as one pipeline of `EVAL`s when it can.
    fn append_all(&mut self, batch: Vec<Pending>) {
        self.retry_waiting();
        if batch.len() == 1 || !self.retry.is_empty() {
            return batch.into_iter().for_each(|pending| self.append(pending));
        }
        let how = &self.appending;
        let results = self.session.link.run(|c| {
            let mut pipe = redis::pipe();
            for pending in &batch {
                pipe.add_command(eval(how, &pending.entry, pending.ticket));
            }
            pipe.query::<Vec<i64>>(c)
        });
        match results {
            Ok(codes) if codes.len() == batch.len() => {
                for (pending, code) in batch.into_iter().zip(codes) {
                    self.settle(pending, code == 1);
                }
            }
            // Some may have run before the answer was lost: every one is retried with its
            // ticket, which tells those apart.
            other => {
                if let Err(error) = other {
                    tracing::debug!(%error, count = batch.len(), "pipeline failed; retrying");
                }
                self.retry.extend(batch);
            }
        }
    }

    fn append(&mut self, pending: Pending) {
        self.retry_waiting();
        if !self.retry.is_empty() {
            return self.retry.push_back(pending);
        }
        match self.invoke(&pending) {
            Ok(done) => self.settle(pending, done),
            Err(_) => self.retry.push_back(pending),
        }
    }

    /// What follows a script's answer (`appended` or not): nothing, or a refusal for the
    /// driver.
    fn settle(&mut self, pending: Pending, appended: bool) {
        let entry = pending.entry;
        // A leave of a member already reaped appends nothing: nothing to say.
        if appended || matches!(entry.kind, LogKind::Leave) {
            return;
        }
        let refusal = match entry.kind {
            LogKind::Join(_) | LogKind::Rejoin(_) => AppendRefusal::NameTaken,
            _ => AppendRefusal::NotMember,
        };
        (self.session.deliver)(LogEvent::Refused(entry, refusal));
    }

    /// Runs the entry's script: `Ok(false)` if the script refused it.
    fn invoke(&mut self, pending: &Pending) -> RedisResult<bool> {
        let how = &self.appending;
        let done = self
            .session
            .link
            .run(|c| invoke(how, &pending.entry, pending.ticket, c));
        let done = done.inspect_err(
            |error| tracing::debug!(%error, entry = ?pending.entry, "append failed; will retry"),
        )?;
        Ok(done == 1)
    }
}
