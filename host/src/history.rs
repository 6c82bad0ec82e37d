//! The host's half of history (E1, E4): the epoch of an in-memory room's ids, and
//! `--history-db`, the room's lines in an SQLite file.
//!
//! The core draws no random numbers, so the host picks the epoch. An in-memory room's
//! history dies with the process, so every start is a new epoch: a client that resumes
//! `after` an id of the previous run is told that some lines were missed instead of being
//! given lines that merely share a sequence number.
//!
//! With `--history-db`, the epoch and the last `--history` lines live in the file
//! ([`HistoryDb::open`]), and every line is written by a [`Recorder`], a thread of its own,
//! before anyone receives it: the room machine hands each line out
//! ([`Output::Record`](chathttp_core::Output::Record)) and holds what follows it until the
//! recorder reports the batch committed. The recorder takes whatever lines have queued
//! while it committed the last batch, so one commit carries many lines when the room is busy
//! and a lone line is committed at once. SQLite runs in WAL mode with `synchronous=NORMAL`:
//! a commit is in the operating system's hands before it is reported, so it survives the
//! process being killed (SIGKILL included), though not the machine losing power.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use chathttp_core::Timestamp;
use chathttp_core::server::history::{Epoch, HistoryConfig, Line};
use chathttp_core::time::{DATETIME_FORMAT, parse_datetime};
use rusqlite::{Connection, OptionalExtension, params};

/// A new epoch: 64 bits from the operating system's generator, as 16 hex digits.
pub fn fresh_epoch() -> Epoch {
    let mut bytes = [0u8; 8];
    // Without the system's generator, the start time still tells runs apart.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ u64::from(std::process::id()).rotate_left(40)).to_be_bytes();
    }
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Epoch::new(&token).expect("16 hex digits are a valid epoch")
}

/// `--history N` for an in-memory room: `N` lines under a fresh epoch; 0 is off.
pub fn in_memory(lines: usize) -> HistoryConfig {
    match lines {
        0 => HistoryConfig::off(),
        lines => HistoryConfig::in_memory(lines, fresh_epoch()),
    }
}

/// The most lines one commit carries.
const BATCH: usize = 4096;

/// Why the history file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("history file {path}: {source}")]
pub struct HistoryDbError {
    path: PathBuf,
    source: rusqlite::Error,
}

/// `--history-db PATH`, opened: the epoch and the lines read back, and the connection the
/// [`Recorder`] writes through.
#[derive(Debug)]
pub struct HistoryDb {
    connection: Connection,
    /// The room's history, recorded under the file's epoch.
    pub config: HistoryConfig,
    /// The last sequence number the file ever gave.
    pub last: u64,
    /// The kept lines, oldest first.
    pub lines: Vec<Line>,
}

impl HistoryDb {
    /// Opens (or creates) the file and reads back its epoch and last `keep` lines. A file
    /// without an epoch (new, or cleared after a failure) gets a fresh one, and whatever
    /// lines it held are dropped: their ids belonged to the epoch that is gone.
    pub fn open(path: &Path, keep: usize) -> Result<Self, HistoryDbError> {
        let error = |source| HistoryDbError {
            path: path.to_owned(),
            source,
        };
        let connection = Connection::open(path).map_err(error)?;
        connection
            .execute_batch(
                // Exclusive locking, taken at once and never released: a second server on the
                // same file fails here, not at its first commit.
                "PRAGMA locking_mode = EXCLUSIVE;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 BEGIN EXCLUSIVE; COMMIT;
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS lines (
                     seq INTEGER PRIMARY KEY, said TEXT NOT NULL, name TEXT NOT NULL,
                     text TEXT NOT NULL);",
            )
            .map_err(error)?;
        let stored: Option<String> = connection
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(error)?;
        let epoch = match stored.as_deref().map(Epoch::new) {
            Some(Ok(epoch)) => epoch,
            _ => {
                let epoch = fresh_epoch();
                connection
                    .execute_batch("DELETE FROM lines; DELETE FROM meta;")
                    .map_err(error)?;
                connection
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('epoch', ?1)",
                        params![epoch.as_str()],
                    )
                    .map_err(error)?;
                epoch
            }
        };
        let last: i64 = connection
            .query_row(
                "SELECT max(coalesce((SELECT max(seq) FROM lines), 0),
                            coalesce((SELECT CAST(value AS INTEGER) FROM meta
                                      WHERE key = 'last_seq'), 0))",
                [],
                |row| row.get(0),
            )
            .map_err(error)?;
        let mut lines = read_lines(&connection, keep).map_err(error)?;
        lines.reverse();
        Ok(Self {
            connection,
            config: HistoryConfig {
                recorded: true,
                ..HistoryConfig::in_memory(keep, epoch)
            },
            last: u64::try_from(last).unwrap_or(0),
            lines,
        })
    }
}

/// The last `keep` lines, newest first.
fn read_lines(connection: &Connection, keep: usize) -> rusqlite::Result<Vec<Line>> {
    let mut statement =
        connection.prepare("SELECT seq, said, name, text FROM lines ORDER BY seq DESC LIMIT ?1")?;
    let rows = statement.query_map(params![keep as i64], |row| {
        let said: String = row.get(1)?;
        let local = parse_datetime(&said).unwrap_or_default();
        Ok(Line {
            seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
            // Only the wall-clock half dates a replayed line.
            at: Timestamp::new(Duration::ZERO, local),
            name: row.get::<_, String>(2)?.into(),
            text: row.get::<_, String>(3)?.into(),
        })
    })?;
    rows.collect()
}

/// What the [`Recorder`] reports to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Every line up to this one is committed.
    UpTo(u64),
    /// A commit failed; the recorder has stopped (history is off from now on).
    Failed(String),
    /// The room gave up on recording and the recorder has cleared the file's epoch (or
    /// logged that it could not); it has stopped.
    Abandoned,
}

/// The thread that writes lines to the history file, in batches (see the module docs).
#[derive(Debug)]
pub struct Recorder {
    jobs: mpsc::Sender<Job>,
}

/// What the recorder is asked to do.
#[derive(Debug)]
enum Job {
    Record(Arc<Line>),
    /// The room gave up on recording (it timed out): lines went out unrecorded, so the file's
    /// epoch must not be used again.
    Abandon,
}

impl Recorder {
    /// Starts the thread on `db`'s connection, keeping the last `keep` lines in the file;
    /// `deliver` hands its reports to the driver.
    pub fn start(db: HistoryDb, deliver: Arc<dyn Fn(Recorded) + Send + Sync>) -> Self {
        let (jobs, queued) = mpsc::channel::<Job>();
        let keep = db.config.lines;
        let mut connection = db.connection;
        thread::Builder::new()
            .name("history".into())
            .spawn(move || {
                while let Ok(first) = queued.recv() {
                    let mut batch = Vec::new();
                    let mut abandon = false;
                    for job in std::iter::once(first).chain(queued.try_iter().take(BATCH - 1)) {
                        match job {
                            Job::Record(line) => batch.push(line),
                            Job::Abandon => abandon = true,
                        }
                    }
                    if abandon {
                        forget_epoch(&connection);
                        deliver(Recorded::Abandoned);
                        return;
                    }
                    match commit(&mut connection, &batch, keep) {
                        Ok(last) => deliver(Recorded::UpTo(last)),
                        Err(error) => {
                            forget_epoch(&connection);
                            deliver(Recorded::Failed(error.to_string()));
                            return;
                        }
                    }
                }
            })
            .expect("one thread can be spawned at start-up");
        Self { jobs }
    }

    /// Queues `line` for the next batch. Never blocks.
    pub fn record(&self, line: Arc<Line>) {
        // After a failure the thread is gone; the room has turned history off by then.
        let _ = self.jobs.send(Job::Record(line));
    }

    /// The room turned history off without a failed commit (it waited too long): the file's
    /// epoch is cleared, once the commit under way ends, and the thread reports
    /// [`Recorded::Abandoned`] and ends.
    pub fn abandon(self) {
        let _ = self.jobs.send(Job::Abandon);
    }
}

/// Lines went out unrecorded, with ids a restart on this file could give again: the next start
/// must use a new epoch (and drops the lines kept under this one).
fn forget_epoch(connection: &Connection) {
    if let Err(error) = connection.execute("DELETE FROM meta WHERE key = 'epoch'", []) {
        tracing::error!(%error, "cannot clear the history file's epoch either");
    }
}

/// Writes `batch` in one transaction, drops lines past the last `keep`; returns the last
/// sequence number written.
fn commit(connection: &mut Connection, batch: &[Arc<Line>], keep: usize) -> rusqlite::Result<u64> {
    let transaction = connection.transaction()?;
    let mut last = 0;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT OR REPLACE INTO lines (seq, said, name, text) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for line in batch {
            // The server's local time, as `Datetime` shows it.
            let said = line.at.local().format(DATETIME_FORMAT).to_string();
            insert.execute(params![line.seq as i64, said, &*line.name, &*line.text])?;
            last = last.max(line.seq);
        }
    }
    transaction.execute(
        "DELETE FROM lines WHERE seq <= ?1",
        params![last.saturating_sub(keep as u64) as i64],
    )?;
    transaction.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?1)",
        params![last.to_string()],
    )?;
    transaction.commit()?;
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_start_is_a_new_epoch() {
        assert_ne!(fresh_epoch(), fresh_epoch());
        assert_eq!(fresh_epoch().as_str().len(), 16);
        assert_eq!(in_memory(0).lines, 0);
        assert_eq!(in_memory(7).lines, 7);
    }

    fn line(seq: u64) -> Arc<Line> {
        Arc::new(Line {
            seq,
            at: Timestamp::from_millis(seq * 1000),
            name: "alice".into(),
            text: format!("line {seq}").into(),
        })
    }

    #[test]
    fn e4_a_file_keeps_its_epoch_its_numbering_and_its_last_lines() {
        let dir = std::env::temp_dir().join(format!("chathttp-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("unit.db");
        let _ = std::fs::remove_file(&path);
        let mut db = HistoryDb::open(&path, 3).expect("a new file");
        let epoch = db.config.epoch.clone();
        assert_eq!((db.last, db.lines.len()), (0, 0));
        assert!(db.config.recorded);
        let batch: Vec<Arc<Line>> = (1..=5).map(line).collect();
        assert_eq!(commit(&mut db.connection, &batch, 3).expect("a commit"), 5);
        drop(db);
        let db = HistoryDb::open(&path, 3).expect("the same file");
        assert_eq!(db.config.epoch, epoch, "the epoch survives");
        assert_eq!(db.last, 5);
        let seqs: Vec<u64> = db.lines.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [3, 4, 5], "the last 3, oldest first");
        assert_eq!(&*db.lines[0].text, "line 3");
        assert_eq!(db.lines[0].at.local(), Timestamp::from_millis(3000).local());
        drop(db);
        // Lines are trimmed, the numbering is not: with none kept it still goes on.
        let db = HistoryDb::open(&path, 0).expect("the same file");
        assert_eq!((db.last, db.lines.len()), (5, 0));
        // A cleared epoch (after a failure) starts over under a new one.
        db.connection
            .execute("DELETE FROM meta WHERE key = 'epoch'", [])
            .expect("clearing");
        drop(db);
        let db = HistoryDb::open(&path, 3).expect("the same file");
        assert_ne!(db.config.epoch, epoch);
        assert_eq!((db.last, db.lines.len()), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn e4_a_file_one_server_holds_cannot_be_opened_by_another() {
        let dir =
            std::env::temp_dir().join(format!("chathttp-history-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("locked.db");
        let first = HistoryDb::open(&path, 3).expect("a new file");
        let second = HistoryDb::open(&path, 3);
        assert!(second.is_err(), "two servers would share one epoch");
        drop(first);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn e4_a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("chathttp-history-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("not-a.db");
        std::fs::write(&path, vec![b'x'; 4096]).expect("a file");
        let error = HistoryDb::open(&path, 3).expect_err("not a database");
        assert!(error.to_string().starts_with("history file "), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
