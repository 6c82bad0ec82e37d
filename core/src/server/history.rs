//! History and resume (E1–E3): the room's last chat lines, their ids, and what a joiner asks
//! to be replayed.
//!
//! # Theory of operation
//!
//! Every chat line the room applies is recorded here, with the next sequence number, before
//! it is delivered (see [`log`](super::log)). A line's id is `EPOCH.SEQ`: `SEQ` counts the
//! room's lines from 1; the [`Epoch`] is a token the host hands in, changed whenever the
//! lines are lost (a new in-memory room, a new history file), so an id never names two lines.
//! The core draws no random numbers: the host picks the epoch.
//!
//! A joiner that sends `History` on `ADD` is *history-aware* ([`Ask`]). When its join is
//! applied, the lines it asked for are taken from here at that same point in the log
//! ([`History::replay`]): every line applied before the join is in the replay, every line
//! after it is live, so the two neither overlap nor leave a gap. The replay is fed to the
//! joiner as it drains (see [`Server`](super::Server)'s `feed_replay`): until it ends with
//! [`marker`], whatever else the joiner is due (live lines, notices, replies) waits behind
//! it, in order.
//!
//! | ask | replayed | marker says missed |
//! |---|---|---|
//! | `History: N` | the last `min(N, kept)` lines | never |
//! | `History: after ID`, ID of this epoch, still held or the line before the oldest kept | every kept line after ID | no |
//! | `History: after ID`, ID of this epoch, lines after it no longer held | every kept line | yes |
//! | `History: after ID`, ID of another epoch (or no id this room gave) | every kept line | yes |

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::error::HistoryError;
use crate::ids::UserName;
use crate::time::Timestamp;

/// The longest epoch token: ids stay short enough to be cheap in every chat line.
pub const MAX_EPOCH_LEN: usize = 32;

/// The token that tells one run of a room's history from another (E1). ASCII letters,
/// digits, `-` and `_`, 1 to [`MAX_EPOCH_LEN`] of them, so an id is one plain header value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

impl Epoch {
    /// Checks a token chosen by the host (at random, or read back from a history file).
    pub fn new(token: &str) -> Result<Self, HistoryError> {
        let valid = !token.is_empty()
            && token.len() <= MAX_EPOCH_LEN
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match valid {
            true => Ok(Self(token.into())),
            false => Err(HistoryError::BadEpoch),
        }
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", self.0)
    }
}

/// How much history a room keeps, and under which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// The most lines kept for replay; 0 turns history off (E1): the `History` header is
    /// then ignored, as by a revision-1 server.
    pub lines: usize,
    /// The epoch of this room's ids.
    pub epoch: Epoch,
    /// Every line must be recorded by the host before anyone receives it (E4): see
    /// [`Output::Record`](super::Output::Record).
    pub recorded: bool,
}

impl HistoryConfig {
    /// No history: the room behaves as revision 1 did.
    pub fn off() -> Self {
        Self {
            lines: 0,
            epoch: Epoch("off".into()),
            recorded: false,
        }
    }

    /// `lines` kept in memory under `epoch`, lost with the process.
    pub fn in_memory(lines: usize, epoch: Epoch) -> Self {
        Self {
            lines,
            epoch,
            recorded: false,
        }
    }
}

/// How long a line may wait for the host to record it (E4) before the room gives up on
/// recording: history is turned off and what waited goes out. A disk that slow would
/// otherwise hold every member's output until S8 cut them all.
pub const RECORD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One kept chat line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its place in the room's history, counted from 1.
    pub seq: u64,
    /// When the room applied it: replays carry it in `Datetime`, as the live line did.
    pub at: Timestamp,
    /// Who said it (the name as members see it).
    pub name: Box<str>,
    /// What was said (one trailing newline dropped, as in the log).
    pub text: Box<str>,
}

/// What a joiner asked to be replayed (E2), read from its `History` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// `History: N`: the last N lines.
    Last(usize),
    /// `History: after ID`: every line after ID. The id is kept as sent; ids are opaque to
    /// clients, and one that this room never gave is of another epoch.
    After(Box<str>),
}

impl Ask {
    /// The header's value that asks for this.
    pub fn to_header(&self) -> String {
        match self {
            Self::Last(n) => n.to_string(),
            Self::After(id) => format!("after {id}"),
        }
    }

    /// Reads a `History` header's value.
    pub fn parse(value: &[u8]) -> Result<Self, HistoryError> {
        let value = std::str::from_utf8(value).map_err(|_| HistoryError::BadAsk)?;
        if let Some(id) = value.strip_prefix("after ") {
            let id = id.trim_matches([' ', '\t']);
            // An id is one token of visible ASCII: nothing else could be one this room gave.
            let token =
                !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic());
            return match token {
                true => Ok(Self::After(id.into())),
                false => Err(HistoryError::BadAsk),
            };
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HistoryError::BadAsk);
        }
        // Any count past what is kept means "all of it".
        Ok(Self::Last(value.parse().unwrap_or(usize::MAX)))
    }
}

/// The lines one joiner is due, taken when its join was applied.
#[derive(Debug)]
pub(crate) struct Replay {
    /// The epoch of the lines' ids, taken with them: a replay that outlives the history (turned
    /// off, E4) still names its lines as they were named.
    pub(crate) epoch: Epoch,
    /// Still to send, oldest first.
    pub(crate) lines: VecDeque<Arc<Line>>,
    /// Sent so far.
    pub(crate) sent: usize,
    /// Some line the joiner asked for is no longer held (or its id was of another epoch).
    pub(crate) missed: bool,
}

/// The id of line `seq` of `epoch`: `EPOCH.SEQ` (E1).
pub fn id(epoch: &Epoch, seq: u64) -> String {
    format!("{}.{seq}", epoch.as_str())
}

/// Whether `id` could be one this family of servers gives, and so may go back in
/// `History: after ID` as one header value: 1 to 64 bytes of visible ASCII.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The body of the `200` that ends a replay (E3), exactly as the contract spells it: "1
/// messages" included, so that a client can match it.
pub fn marker(replayed: usize, missed: bool) -> String {
    match missed {
        false => format!("History: {replayed} messages replayed\n"),
        true => format!("History: {replayed} messages replayed, some were missed\n"),
    }
}

/// The room's last lines.
#[derive(Debug)]
pub struct History {
    config: HistoryConfig,
    lines: VecDeque<Arc<Line>>,
    /// The last line's sequence number; 0 before the first.
    last: u64,
    /// With recording (E4): the last line the host has recorded.
    recorded: u64,
    /// With recording: lines handed out and not yet recorded, with when they were.
    unrecorded: VecDeque<(u64, Timestamp)>,
}

impl History {
    /// An empty history, or (with `lines: 0`) none.
    pub fn new(config: HistoryConfig) -> Self {
        Self {
            config,
            lines: VecDeque::new(),
            last: 0,
            recorded: 0,
            unrecorded: VecDeque::new(),
        }
    }

    /// Whether every line must be recorded before anyone receives it (E4).
    pub fn is_recorded(&self) -> bool {
        self.is_on() && self.config.recorded
    }

    /// Keeps lines the host read back from its record, oldest first, as already recorded;
    /// the next line follows `last`, the last sequence number the record ever gave, kept or
    /// not. Call before the room takes its first line.
    pub fn restore(&mut self, last: u64, lines: impl IntoIterator<Item = Line>) {
        for line in lines {
            self.push(line);
        }
        self.last = self.last.max(last);
        self.recorded = self.last;
    }

    /// The last line the host has recorded (E4).
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// The newest line that outputs decided now must wait behind, if it is not recorded.
    pub(crate) fn waiting_for(&self) -> Option<u64> {
        (self.recorded < self.last && self.is_recorded()).then_some(self.last)
    }

    /// The host recorded every line up to `seq`.
    pub(crate) fn recorded_up_to(&mut self, seq: u64) {
        self.recorded = self.recorded.max(seq.min(self.last));
        while self
            .unrecorded
            .front()
            .is_some_and(|&(s, _)| s <= self.recorded)
        {
            self.unrecorded.pop_front();
        }
    }

    /// With recording (E4): the line `seq`, just appended, to hand to the host at `at`; the
    /// room's outputs wait for it from now on. `None` without recording.
    pub(crate) fn hand_out(&mut self, seq: u64, at: Timestamp) -> Option<Arc<Line>> {
        if !self.is_recorded() {
            return None;
        }
        let line = self.lines.back().filter(|line| line.seq == seq).cloned()?;
        self.unrecorded.push_back((seq, at));
        Some(line)
    }

    /// When the oldest line waiting to be recorded times out.
    pub(crate) fn record_deadline(&self) -> Option<Timestamp> {
        let &(_, since) = self.unrecorded.front()?;
        Some(since.saturating_add(RECORD_TIMEOUT))
    }

    /// Whether the room keeps history at all.
    pub fn is_on(&self) -> bool {
        self.config.lines > 0
    }

    /// The epoch of this room's ids.
    pub fn epoch(&self) -> &Epoch {
        &self.config.epoch
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = &Line> {
        self.lines.iter().map(|line| &**line)
    }

    /// The last line's sequence number (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The id of line `seq`, as sent in `Message_Id`.
    pub fn id(&self, seq: u64) -> String {
        id(&self.config.epoch, seq)
    }

    /// Keeps `line` as the newest, dropping the oldest past the limit. Lines must come in
    /// sequence order; a restored history hands them in oldest first.
    pub fn push(&mut self, line: Line) {
        if !self.is_on() {
            return;
        }
        self.last = self.last.max(line.seq);
        self.lines.push_back(Arc::new(line));
        while self.lines.len() > self.config.lines {
            self.lines.pop_front();
        }
    }

    /// Keeps a line the room is applying now (in memory; recording it durably is the host's,
    /// E4): it gets the next sequence number.
    pub fn append(&mut self, at: Timestamp, name: &UserName, text: &str) -> u64 {
        let seq = self.last + 1;
        self.last = seq;
        if !self.is_on() {
            return seq;
        }
        self.push(Line {
            seq,
            at,
            name: name.as_str().into(),
            text: text.into(),
        });
        seq
    }

    /// Keeps a line a shared log numbered `seq` (E5); `None` (and nothing kept) if it
    /// does not follow the last one, as after a log reset this node has not heard of yet.
    pub fn append_at(
        &mut self,
        seq: u64,
        at: Timestamp,
        name: &UserName,
        text: &str,
    ) -> Option<u64> {
        if !self.is_on() || seq <= self.last {
            return None;
        }
        self.last = seq;
        self.push(Line {
            seq,
            at,
            name: name.as_str().into(),
            text: text.into(),
        });
        Some(seq)
    }

    /// What `ask` is due, as of now (see the table in the module docs).
    pub(crate) fn replay(&self, ask: &Ask) -> Replay {
        let (skip, missed) = match ask {
            Ask::Last(n) => (self.lines.len().saturating_sub(*n), false),
            Ask::After(id) => match self.seq_of(id) {
                Some(after) => {
                    let oldest = self.lines.front().map_or(self.last + 1, |line| line.seq);
                    let missed = after.saturating_add(1) < oldest;
                    let skip = self.lines.iter().take_while(|l| l.seq <= after).count();
                    (skip, missed)
                }
                None => (0, true),
            },
        };
        Replay {
            epoch: self.config.epoch.clone(),
            lines: self.lines.iter().skip(skip).cloned().collect(),
            sent: 0,
            missed,
        }
    }

    /// The sequence number of `id` if it is one of this epoch's and not past the last line.
    fn seq_of(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.rsplit_once('.')?;
        if epoch != self.config.epoch.as_str() || seq.starts_with('+') {
            return None;
        }
        let seq: u64 = seq.parse().ok()?;
        (seq <= self.last).then_some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(lines: usize) -> History {
        History::new(HistoryConfig::in_memory(
            lines,
            Epoch::new("e1").expect("a valid epoch"),
        ))
    }

    fn said(h: &mut History, n: u64) {
        let name = UserName::parse("alice").expect("a valid name");
        for i in 0..n {
            h.append(Timestamp::from_millis(i), &name, &format!("line {i}"));
        }
    }

    fn seqs(replay: &Replay) -> Vec<u64> {
        replay.lines.iter().map(|l| l.seq).collect()
    }

    #[test]
    fn asks_parse_as_counts_or_ids() {
        assert_eq!(Ask::parse(b"50"), Ok(Ask::Last(50)));
        assert_eq!(Ask::parse(b"0"), Ok(Ask::Last(0)));
        assert_eq!(
            Ask::parse(b"99999999999999999999999"),
            Ok(Ask::Last(usize::MAX))
        );
        assert_eq!(Ask::parse(b"after e1.7"), Ok(Ask::After("e1.7".into())));
        for bad in [
            &b""[..],
            b"-1",
            b"ten",
            b"after ",
            b"after a b",
            b"after \x1b",
            b"\xff",
        ] {
            assert_eq!(Ask::parse(bad), Err(HistoryError::BadAsk), "{bad:?}");
        }
    }

    #[test]
    fn epochs_are_short_plain_tokens() {
        assert!(Epoch::new("k3J-9_x").is_ok());
        for bad in ["", "a.b", "a b", "é", &"x".repeat(MAX_EPOCH_LEN + 1)] {
            assert_eq!(Epoch::new(bad), Err(HistoryError::BadEpoch), "{bad:?}");
        }
    }

    #[test]
    fn the_ring_keeps_the_last_lines_and_counts_on() {
        let mut h = history(3);
        said(&mut h, 5);
        assert_eq!(h.lines().map(|l| l.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(h.last_seq(), 5);
        assert_eq!(h.id(5), "e1.5");
    }

    #[test]
    fn a_count_replays_the_newest_lines_and_never_says_missed() {
        let mut h = history(3);
        said(&mut h, 5);
        assert_eq!(seqs(&h.replay(&Ask::Last(2))), [4, 5]);
        assert_eq!(seqs(&h.replay(&Ask::Last(10))), [3, 4, 5]);
        assert!(!h.replay(&Ask::Last(10)).missed);
        assert!(h.replay(&Ask::Last(0)).lines.is_empty());
    }

    #[test]
    fn after_an_id_replays_what_follows_and_says_when_some_is_gone() {
        let mut h = history(3);
        said(&mut h, 5);
        let after = |id: &str| {
            let r = h.replay(&Ask::After(id.into()));
            (seqs(&r), r.missed)
        };
        assert_eq!(after("e1.4"), (vec![5], false));
        assert_eq!(after("e1.5"), (vec![], false));
        // Line 3 is the oldest kept: after 2, nothing is missing.
        assert_eq!(after("e1.2"), (vec![3, 4, 5], false));
        assert_eq!(after("e1.1"), (vec![3, 4, 5], true));
        assert_eq!(after("e0.4"), (vec![3, 4, 5], true));
        assert_eq!(after("e1.9"), (vec![3, 4, 5], true));
        assert_eq!(after("e1.+4"), (vec![3, 4, 5], true));
        assert_eq!(after("nonsense"), (vec![3, 4, 5], true));
    }

    #[test]
    fn an_empty_room_replays_nothing_and_misses_nothing() {
        let h = history(3);
        let r = h.replay(&Ask::After("e1.0".into()));
        assert!(r.lines.is_empty() && !r.missed);
    }

    #[test]
    fn history_off_keeps_nothing() {
        let mut h = History::new(HistoryConfig::off());
        said(&mut h, 2);
        assert!(!h.is_on());
        assert_eq!(h.lines().len(), 0);
    }

    #[test]
    fn markers_read_as_none_of_the_four_bodies() {
        use crate::wire::body::{Body, parse};
        for (n, missed) in [(0, false), (1, false), (3, true)] {
            let text = marker(n, missed);
            assert!(matches!(parse(text.as_bytes()), Body::Other(_)), "{text}");
        }
        assert_eq!(marker(1, false), "History: 1 messages replayed\n");
        assert_eq!(
            marker(3, true),
            "History: 3 messages replayed, some were missed\n"
        );
    }
}
