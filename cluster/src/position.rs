//! Where this node is in the shared log, and whether what Redis holds now goes on from there.
//!
//! Every entry carries a room-wide counter `n`, one more than the entry before it, and the
//! log an epoch, set once per life of the Redis data. A jump in `n` is a gap (entries trimmed
//! before this node read them); a new epoch, or a counter that went back, is a reset (Redis
//! lost its data). Either way the node must rebuild its view from a snapshot.

use crate::entry::Snapshot;

/// The last entry this node has read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    /// The epoch of the log it was read from.
    pub(crate) epoch: String,
    /// Its counter.
    pub(crate) n: u64,
    /// Its stream id, where the next read starts.
    pub(crate) id: String,
}

impl Default for Position {
    /// Before the first snapshot: nothing read.
    fn default() -> Self {
        Self {
            epoch: String::new(),
            n: 0,
            id: "0-0".into(),
        }
    }
}

impl Position {
    /// Whether the entry counted `n` comes right after this one.
    pub(crate) fn is_next(&self, n: u64) -> bool {
        n == self.n + 1
    }

    /// Moves on to the entry `id`, counted `n`.
    pub(crate) fn advance(&mut self, id: String, n: u64) {
        self.n = n;
        self.id = id;
    }

    /// Moves past the entry `id`, which does not count (a malformed one).
    pub(crate) fn skip(&mut self, id: String) {
        self.id = id;
    }

    /// Moves to the end of the log as `snapshot` saw it.
    pub(crate) fn reset_to(&mut self, snapshot: &Snapshot) {
        self.epoch.clone_from(&snapshot.epoch);
        self.n = snapshot.n;
        self.id.clone_from(&snapshot.id);
    }

    /// After an outage: whether the log goes on from here with nothing lost, given its
    /// epoch and counter now and the counter of the first entry after this one (`None` if
    /// there is none, or it was trimmed away).
    pub(crate) fn continues(&self, epoch: &str, n: u64, next_n: Option<u64>) -> bool {
        epoch == self.epoch
            && n >= self.n
            && match next_n {
                Some(next) => self.is_next(next),
                None => n == self.n,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u64) -> Position {
        Position {
            epoch: "e1".into(),
            n,
            id: format!("{n}-0"),
        }
    }

    #[test]
    fn only_the_next_counter_follows() {
        let here = at(5);
        assert!(here.is_next(6));
        assert!(!here.is_next(5), "a repeat is not next");
        assert!(!here.is_next(7), "a jump is a gap");
        assert!(!here.is_next(1), "a counter that went back is a reset");
    }

    #[test]
    fn advancing_moves_the_read_position() {
        let mut here = at(5);
        here.advance("9-1".into(), 6);
        assert_eq!((here.n, here.id.as_str()), (6, "9-1"));
        assert!(here.is_next(7));
    }

    #[test]
    fn a_log_that_did_not_move_continues() {
        assert!(at(5).continues("e1", 5, None));
    }

    #[test]
    fn a_log_whose_next_entry_is_still_there_continues() {
        assert!(at(5).continues("e1", 9, Some(6)));
    }

    #[test]
    fn a_trimmed_log_does_not_continue() {
        assert!(
            !at(5).continues("e1", 9, Some(8)),
            "entries 6 and 7 are gone"
        );
        assert!(
            !at(5).continues("e1", 9, None),
            "everything after 5 is gone"
        );
    }

    #[test]
    fn a_log_that_lost_its_data_does_not_continue() {
        assert!(!at(5).continues("e2", 5, None), "a new epoch");
        assert!(!at(5).continues("e1", 2, None), "a counter that went back");
        assert!(
            !at(5).continues("e1", 3, Some(6)),
            "a counter that went back"
        );
    }

    #[test]
    fn a_reset_moves_to_the_snapshot() {
        let mut here = at(5);
        let snapshot = Snapshot {
            epoch: "e2".into(),
            n: 2,
            line: 1,
            id: "3-0".into(),
            members: Vec::new(),
        };
        here.reset_to(&snapshot);
        assert_eq!(
            here,
            Position {
                epoch: "e2".into(),
                n: 2,
                id: "3-0".into()
            }
        );
    }

    #[test]
    fn before_the_first_snapshot_nothing_is_read() {
        let start = Position::default();
        assert_eq!((start.n, start.id.as_str()), (0, "0-0"));
        assert!(!start.continues("e1", 0, None), "any epoch is new");
    }
}
