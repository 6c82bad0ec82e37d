//! The command thread: appends the driver's entries, and releases this node's members at
//! shutdown. (Keeping the node alive is the liveness thread's job: see [`crate::liveness`].)
//!
//! It owns one connection. Entries already waiting go as one pipeline (one round trip);
//! leaves and rejoins that cannot be appended are retried until Redis answers, because they
//! must not be lost; a join or a message that cannot be appended is refused at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use chathttp_core::server::{AppendRefusal, LogEntry, LogKind};
use redis::RedisResult;

use crate::connection::describe;
use crate::liveness::reap_dead;
use crate::scripts::{eval, invoke};
use crate::{Job, LogEvent, Session};

/// Most appends sent in one pipeline.
const MAX_PIPELINE: usize = 256;

/// How often entries waiting for Redis (leaves, rejoins) are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

pub(crate) struct Commands {
    pub(crate) session: Session,
    pub(crate) max_len: usize,
    /// Leaves and rejoins that could not be appended yet: retried until Redis answers.
    pub(crate) retry: VecDeque<LogEntry>,
    pub(crate) retired: Arc<AtomicBool>,
}

/// Whether an entry must reach the log whatever happens: it is retried, and keeps its order
/// behind those waiting.
fn must_append(entry: &LogEntry) -> bool {
    matches!(entry.kind, LogKind::Leave | LogKind::Rejoin(_))
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
        let node = self.session.node.clone();
        match self.reap(&node) {
            Ok(count) => tracing::info!(count, "released this node's members"),
            Err(error) => tracing::warn!(%error, "could not release members"),
        }
        self.retired.store(true, Ordering::Relaxed);
        (self.session.deliver)(LogEvent::Retired);
    }

    fn reap(&mut self, retiring: &str) -> RedisResult<i64> {
        let session = &mut self.session;
        reap_dead(&mut session.link, &session.keys, self.max_len, retiring)
    }

    fn retry_waiting(&mut self) {
        while let Some(entry) = self.retry.pop_front() {
            match self.invoke(&entry) {
                Err(_) => return self.retry.push_front(entry),
                Ok(true) => {}
                // A leave of a member already reaped appends nothing: nothing to say.
                Ok(false) if matches!(entry.kind, LogKind::Leave) => {}
                Ok(false) => {
                    (self.session.deliver)(LogEvent::Refused(entry, AppendRefusal::NameTaken))
                }
            }
        }
    }

    /// Appends `batch` in order, as one pipeline of `EVAL`s when it can.
    fn append_all(&mut self, batch: Vec<LogEntry>) {
        self.retry_waiting();
        if batch.len() == 1 || !self.retry.is_empty() {
            return batch.into_iter().for_each(|entry| self.append(entry));
        }
        let (prefix, max_len) = (self.session.keys.prefix.as_str(), self.max_len);
        let results = self.session.link.run(|c| {
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
        self.retry_waiting();
        if must_append(&entry) && !self.retry.is_empty() {
            return self.retry.push_back(entry);
        }
        let result = self.invoke(&entry).map_err(|error| describe(&error));
        self.settle(entry, result);
    }

    /// What follows an append's result: nothing, a refusal for the driver, or a retry.
    fn settle(&mut self, entry: LogEntry, result: Result<bool, String>) {
        match result {
            Ok(true) => {}
            Ok(false) => {
                let refusal = match entry.kind {
                    LogKind::Join(_) | LogKind::Rejoin(_) => AppendRefusal::NameTaken,
                    _ => AppendRefusal::NotMember,
                };
                (self.session.deliver)(LogEvent::Refused(entry, refusal));
            }
            Err(_) if must_append(&entry) => self.retry.push_back(entry),
            Err(reason) => {
                let refusal = AppendRefusal::Unavailable(reason);
                (self.session.deliver)(LogEvent::Refused(entry, refusal));
            }
        }
    }

    /// Runs the entry's script: `Ok(false)` if the script refused it.
    fn invoke(&mut self, entry: &LogEntry) -> RedisResult<bool> {
        let (prefix, max_len) = (&self.session.keys.prefix, self.max_len);
        let done = self.session.link.run(|c| invoke(prefix, max_len, entry, c));
        let done = done.inspect_err(|error| tracing::debug!(%error, ?entry, "append failed"))?;
        Ok(done == 1)
    }
}
