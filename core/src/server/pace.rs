//! Overload pacing (S8.1): when the members read, just not as fast as the senders send, the
//! room stops taking requests until they catch up, instead of cutting them as slow readers.
//!
//! # Theory of operation
//!
//! S8 counts each connection's *queue*: bytes emitted for it and not yet drained. Pacing
//! compares a member's queue with a *soft mark*, a quarter of `max_output_bytes`. A member
//! at or past the mark is *behind*, from the moment it reaches the mark until it reads
//! below it again: a *stretch*. A member that is behind **holds** the room while it is still
//! draining, that is until [`DRAIN_WINDOW`] after the host last reported bytes of it
//! written, and for at most [`HOLD_LIMIT`] in one stretch; after that it is *excused* for
//! the rest of the stretch. A member that is behind and not draining, or excused, holds
//! nothing: the room goes on without it, and S8 cuts it if its queue reaches the limit.
//!
//! The room is *paced* once more members hold it than are below the mark: the server, not
//! a few readers, is then the bottleneck. It stays paced until no member holds it, or until
//! those still holding are no more than those below the mark and have had their *grace*:
//! as long again as the others took to catch up, and at least [`STRAGGLER_GRACE`].
//!
//! The room is paced, too, while any member is *urgent*: it holds the room, its queue is at
//! or past the *urgent mark* (three quarters of `max_output_bytes`), and it drains fast, a
//! soft mark's worth per [`DRAIN_WINDOW`] over its stretch. Within the stretch's first
//! window that is granted without a measure, but only until the window ends. Such a member
//! reads as fast as the others; it is further behind only because less of what was sent to
//! it fits in its peer's kernel, which the server cannot see. A pause that only urgent
//! members caused ends as soon as none is urgent.
//!
//! While the room is paced the machine decodes no new requests: bytes handed in are set
//! aside in order (the connection's *deferred* input), and the host is asked to stop
//! reading ([`Output::PauseReading`](super::Output::PauseReading)), so that TCP slows the
//! senders down. Once it resumes ([`Output::ResumeReading`](super::Output::ResumeReading)),
//! deferred input is taken first, [`RESUMES_PER_CALL`] connections per call.
//!
//! Why these rules:
//!
//! * **More holding than clear.** One slow reader among many that keep up never starts a
//!   pause: it is cut as in S8. Pacing starts only when most members are behind and reading.
//! * **Wait for everyone, with a grace.** Members that read at about the same pace all get
//!   below the mark before more is sent, so none of them drifts towards the limit: a member
//!   that is last only by chance, or because it started further behind, needs little more
//!   time than the rest. A member that needs more than twice as long as the others is far
//!   slower than the room; it is not waited for beyond its grace.
//! * **Drain window.** Holding is earned by reading. A crowd that stops reading holds the
//!   room for at most [`DRAIN_WINDOW`] after its last drain (and not at all if its queue
//!   reaches the mark later than that): then the room goes on, and S8 cuts it.
//! * **Urgent members.** Counting heads alone, a few members with smaller kernel buffers
//!   than the rest reach the limit while most are still below the mark, and are cut though
//!   they read as fast. Near the limit, the rate decides instead: a member that drains fast
//!   is worth a pause, which it ends quickly by draining; a slow one, hostile or on a poor
//!   link, is not, and S8 cuts it.
//! * **Hold limit.** However it drains, a member holds the room for at most [`HOLD_LIMIT`]
//!   in one stretch, so a majority of very slow readers (or of hostile ones) slows the room
//!   for at most that long before the room goes on without them, and a reader far slower
//!   than the others, which never gets below the mark again, stops costing the room its
//!   grace after that long.
//!
//! # Transitions
//!
//! | member | on | becomes |
//! |---|---|---|
//! | clear | its queue reaches the mark, drained within the window | holding until the window ends; a stretch begins |
//! | clear | its queue reaches the mark, not drained within the window | behind; a stretch begins |
//! | behind or holding | a drain, still at or past the mark, within [`HOLD_LIMIT`] of the stretch's start | holding until the window ends (at most the hold limit) |
//! | behind or holding | such a drain, [`HOLD_LIMIT`] or more after the stretch began | excused |
//! | holding | the window runs out | behind (excused at the hold limit) |
//! | holding | its queue reaches the urgent mark, or it drains there, draining fast | urgent until its hold ends |
//! | holding | the same within the stretch's first window, not measured fast | urgent until that window ends |
//! | urgent | a drain leaves it below the urgent mark, or not fast; its urgency or hold ends | not urgent |
//! | any of those | a drain leaves the queue below the mark | clear; the stretch ends |
//! | any | the connection closes | forgotten |
//!
//! | room | when | becomes |
//! |---|---|---|
//! | reading | more members hold it than are below the mark, or a member is urgent | paced: pause reading |
//! | paced | a member is urgent | paced |
//! | paced | no member holds it | reading: resume reading, take deferred input |
//! | paced for urgent members only | none is urgent, and no more hold it than are below the mark | reading, likewise |
//! | paced | those holding are no more than those below the mark, and their grace is over | reading, likewise |
//! | paced | more hold it again than are below the mark, during the grace | paced; the grace is set again when they are no more |
//!
//! Only members count: guests receive no broadcasts, and a guest that fills its own queue
//! with replies it does not read is cut by S8 alone.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use crate::ids::ConnId;
use crate::time::Timestamp;

/// How long one drain lets a member that is behind hold the room.
pub const DRAIN_WINDOW: Duration = Duration::from_millis(250);

/// The longest a member may hold the room in one stretch.
pub const HOLD_LIMIT: Duration = Duration::from_secs(2);

/// The least grace the last members to catch up get, however quickly the others did.
pub const STRAGGLER_GRACE: Duration = Duration::from_millis(20);

/// The most connections whose deferred input one call takes up. Each may hold up to what
/// the host had read before it saw the pause; the rest wait for the next call, and
/// [`Server::poll_timeout`](super::Server::poll_timeout) says one is due now.
pub const RESUMES_PER_CALL: usize = 32;

/// The two marks pacing compares a member's queue with, for a connection limit of
/// `max_output_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marks {
    /// A quarter of the limit: a member at or past it is behind.
    pub(crate) soft: usize,
    /// Three quarters of the limit: a member at or past it that drains fast is urgent.
    pub(crate) urgent: usize,
}

impl Marks {
    pub(crate) fn for_limit(max_output_bytes: usize) -> Self {
        let soft = (max_output_bytes / 4).max(1);
        Self {
            soft,
            urgent: max_output_bytes.saturating_sub(soft).max(soft),
        }
    }

    /// Until when a member that fell behind at `since`, has drained `drained` bytes since
    /// and holds the room until `hold` counts as draining fast, as of `now`. Measured: a
    /// soft mark's worth per [`DRAIN_WINDOW`] over the stretch (at least
    /// [`STRAGGLER_GRACE`] of it, so that one write is not taken for a rate); then until
    /// its hold ends, and its next drain measures again. Otherwise granted, until the
    /// stretch's first window is over: the drains of a member the machine has just filled
    /// may still wait in the host's queue of inputs, behind the input that filled it.
    /// `None`: slow.
    fn fast_until(
        &self,
        drained: usize,
        since: Timestamp,
        hold: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let span = since.duration_until(now).max(STRAGGLER_GRACE);
        let needed = self.soft as u128 * span.as_nanos() / DRAIN_WINDOW.as_nanos();
        let until = match drained as u128 >= needed {
            true => hold,
            false => since.saturating_add(DRAIN_WINDOW).min(hold),
        };
        (until > now).then_some(until)
    }
}

/// A member's stretch behind the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stretch {
    since: Timestamp,
    /// While set, it holds the room until then.
    until: Option<Timestamp>,
    /// It held the room for [`HOLD_LIMIT`]: it holds no more in this stretch.
    excused: bool,
    /// Bytes drained in this stretch.
    drained: usize,
    /// While set, it is urgent until then: it holds the room, its queue is at or past the
    /// urgent mark, and it drains fast. The room waits for it alone.
    urgent_until: Option<Timestamp>,
}

impl Stretch {
    /// Makes it urgent if it may be, with `queued` bytes.
    fn check_urgency(&mut self, queued: usize, marks: Marks, now: Timestamp) {
        let Some(until) = self.until.filter(|_| queued >= marks.urgent) else {
            self.urgent_until = None;
            return;
        };
        self.urgent_until = marks.fast_until(self.drained, self.since, until, now);
    }

    /// Holds the room after a drain at `drained`, if it may.
    fn hold(&mut self, drained: Timestamp, now: Timestamp) {
        let limit = self.since.saturating_add(HOLD_LIMIT);
        let until = drained.saturating_add(DRAIN_WINDOW).min(limit);
        self.excused |= limit <= now;
        self.until = (!self.excused && until > now).then_some(until);
    }
}

/// A pause of the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pause {
    since: Timestamp,
    /// Once those still holding are no more than those below the mark: when the room goes
    /// on without them.
    grace_until: Option<Timestamp>,
    /// More held the room than were below the mark at some time in this pause; if not, it
    /// was for urgent members alone, and ends with them.
    crowd: bool,
}

/// The room's pacing state: the members behind the mark, and whether the room is paced.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Members behind the mark.
    behind: HashMap<ConnId, Stretch>,
    /// When each member that holds the room stops holding it, earliest first: one entry for
    /// each `until` in `behind`.
    expiries: BTreeSet<(Timestamp, ConnId)>,
    /// Connections with deferred input, each once, in the order it was set aside. Closed
    /// ones are skipped when reached.
    waiting: VecDeque<ConnId>,
    /// When each urgent member stops being urgent, earliest first: one entry for each
    /// `urgent_until` in `behind`.
    urgencies: BTreeSet<(Timestamp, ConnId)>,
    /// Set while the room is paced.
    pause: Option<Pause>,
    /// Whether the host was last asked to stop reading.
    told_to_pause: bool,
}

impl Pace {
    /// Whether the room takes no new requests now.
    pub(crate) fn is_paced(&self) -> bool {
        self.pause.is_some()
    }

    /// Decides whether the room is paced at `now`, by the rules above; `members` is how
    /// many members the room has.
    pub(crate) fn update(&mut self, members: usize, now: Timestamp) {
        let holding = self.expiries.len();
        let clear = members.saturating_sub(self.behind.len());
        let (crowd, urgent) = (holding > clear, !self.urgencies.is_empty());
        self.pause = match self.pause {
            None if crowd || urgent => Some(Pause {
                since: now,
                grace_until: None,
                crowd,
            }),
            None => None,
            Some(pause) if urgent => Some(Pause {
                crowd: pause.crowd || crowd,
                grace_until: pause.grace_until.filter(|_| !crowd),
                ..pause
            }),
            Some(_) if holding == 0 => None,
            Some(pause) if !pause.crowd && !crowd => None,
            Some(mut pause) if holding <= clear => {
                let took = pause.since.duration_until(now);
                let grace = took.max(STRAGGLER_GRACE);
                let until = *pause.grace_until.get_or_insert(now.saturating_add(grace));
                (until > now).then_some(pause)
            }
            // More hold it again (entries applied meanwhile took more past the mark): the
            // grace is set again once they are no more than those clear, still measured from
            // the start of the pause.
            Some(pause) => Some(Pause {
                grace_until: None,
                crowd: true,
                ..pause
            }),
        };
    }

    /// A member's queue grew to `queued` at `now`; it last drained at `last_drain`.
    pub(crate) fn grew(
        &mut self,
        conn: ConnId,
        queued: usize,
        marks: Marks,
        last_drain: Option<Timestamp>,
        now: Timestamp,
    ) {
        if queued < marks.soft {
            return;
        }
        if let Some(stretch) = self.behind.get(&conn) {
            // Only reaching the urgent mark can make it urgent between drains.
            if stretch.urgent_until.is_none()
                && queued >= marks.urgent
                && stretch.until.is_some()
                && let Some(mut stretch) = self.leave(conn)
            {
                stretch.check_urgency(queued, marks, now);
                self.enter(conn, stretch);
            }
            return;
        }
        let mut stretch = Stretch {
            since: now,
            until: None,
            excused: false,
            drained: 0,
            urgent_until: None,
        };
        if let Some(drained) = last_drain {
            stretch.hold(drained, now);
        }
        stretch.check_urgency(queued, marks, now);
        self.enter(conn, stretch);
    }

    /// A member drained `count` bytes at `now`, leaving `queued`.
    pub(crate) fn drained(
        &mut self,
        conn: ConnId,
        count: usize,
        queued: usize,
        marks: Marks,
        now: Timestamp,
    ) {
        let Some(mut stretch) = self.leave(conn) else {
            return;
        };
        if queued >= marks.soft {
            stretch.hold(now, now);
            stretch.drained = stretch.drained.saturating_add(count);
            stretch.check_urgency(queued, marks, now);
            self.enter(conn, stretch);
        }
    }

    /// `conn` closed.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        self.leave(conn);
    }

    /// Members whose hold or urgency ran out by `now` stop holding the room, or stop being
    /// urgent. Each costs a map update and nothing else, so all that are due go at once.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        while let Some(&(until, conn)) = self.urgencies.first() {
            if until > now {
                break;
            }
            let Some(mut stretch) = self.leave(conn) else {
                self.urgencies.pop_first();
                continue;
            };
            stretch.urgent_until = None;
            self.enter(conn, stretch);
        }
        while let Some(&(until, conn)) = self.expiries.first() {
            if until > now {
                break;
            }
            let Some(mut stretch) = self.leave(conn) else {
                // Every expiry has its stretch (see `check`); should one not, it must not
                // be met again.
                self.expiries.pop_first();
                continue;
            };
            stretch.until = None;
            stretch.urgent_until = None;
            stretch.excused |= stretch.since.saturating_add(HOLD_LIMIT) <= now;
            self.enter(conn, stretch);
        }
    }

    /// While the room is paced, when it may next resume: a member stops holding it or being
    /// urgent, or the stragglers' grace ends.
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        let pause = self.pause?;
        let hold = self.expiries.first().map(|&(until, _)| until);
        let urgency = self.urgencies.first().map(|&(until, _)| until);
        [hold, urgency, pause.grace_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Returns `Some(pause)` when the host must be told to pause or resume reading: the room
    /// is paced, or `also` holds (input waits for the history's recorder, E4).
    pub(crate) fn tell_host(&mut self, also: bool) -> Option<bool> {
        let paced = self.is_paced() || also;
        (paced != self.told_to_pause).then(|| {
            self.told_to_pause = paced;
            paced
        })
    }

    /// `conn` now has deferred input to take up when the room resumes.
    pub(crate) fn defer(&mut self, conn: ConnId) {
        self.waiting.push_back(conn);
    }

    /// The next connection whose deferred input to take up.
    pub(crate) fn next_waiting(&mut self) -> Option<ConnId> {
        self.waiting.pop_front()
    }

    /// Whether deferred input may wait to be taken up.
    pub(crate) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether `conn` is in the list of connections with deferred input.
    pub(crate) fn is_waiting(&self, conn: ConnId) -> bool {
        self.waiting.contains(&conn)
    }

    /// Checks the stretches against the index; `members` are the room's members with their
    /// queues.
    pub(crate) fn check(&self, members: &[(ConnId, usize)], marks: Marks) -> Result<(), String> {
        let holding: BTreeSet<(Timestamp, ConnId)> = self
            .behind
            .iter()
            .filter_map(|(conn, stretch)| Some((stretch.until?, *conn)))
            .collect();
        if holding != self.expiries {
            return Err(format!(
                "{} members hold the room, {} expiries are indexed",
                holding.len(),
                self.expiries.len()
            ));
        }
        let mut counted = 0;
        for &(conn, queued) in members {
            let Some(stretch) = self.behind.get(&conn) else {
                continue;
            };
            counted += 1;
            if queued < marks.soft {
                return Err(format!("{conn:?} is behind with {queued} bytes queued"));
            }
            if stretch.until.is_some() && stretch.excused {
                return Err(format!("{conn:?} is excused and holds the room"));
            }
            if let Some(urgent_until) = stretch.urgent_until
                && (stretch.until.is_none_or(|until| urgent_until > until) || queued < marks.urgent)
            {
                return Err(format!(
                    "{conn:?} is urgent with {queued} bytes, past its hold"
                ));
            }
        }
        if counted != self.behind.len() {
            return Err("a connection that is not a member is counted behind".into());
        }
        let urgent: BTreeSet<(Timestamp, ConnId)> = self
            .behind
            .iter()
            .filter_map(|(conn, stretch)| Some((stretch.urgent_until?, *conn)))
            .collect();
        if urgent != self.urgencies {
            return Err(format!(
                "{} members are urgent, {} urgencies are indexed",
                urgent.len(),
                self.urgencies.len()
            ));
        }
        Ok(())
    }

    fn enter(&mut self, conn: ConnId, stretch: Stretch) {
        if let Some(until) = stretch.until {
            self.expiries.insert((until, conn));
        }
        if let Some(until) = stretch.urgent_until {
            self.urgencies.insert((until, conn));
        }
        self.behind.insert(conn, stretch);
    }

    fn leave(&mut self, conn: ConnId) -> Option<Stretch> {
        let stretch = self.behind.remove(&conn)?;
        if let Some(until) = stretch.until {
            self.expiries.remove(&(until, conn));
        }
        if let Some(until) = stretch.urgent_until {
            self.urgencies.remove(&(until, conn));
        }
        Some(stretch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKS: Marks = Marks {
        soft: 100,
        urgent: 300,
    };

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn conn(i: u32) -> ConnId {
        ConnId::new(i, 0)
    }

    /// Members `0..n`, which drained at `now`, fall behind.
    fn behind_and_reading(pace: &mut Pace, n: u32, now: Timestamp) {
        for i in 0..n {
            pace.grew(conn(i), 200, MARKS, Some(now), now);
        }
    }

    #[test]
    fn a_minority_behind_never_paces_the_room() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        pace.update(3, at(0));
        assert!(!pace.is_paced(), "one holding, two clear");
        behind_and_reading(&mut pace, 2, at(0));
        pace.update(3, at(0));
        assert!(pace.is_paced(), "two holding, one clear");
        assert_eq!(pace.tell_host(false), Some(true));
        assert_eq!(pace.tell_host(false), None, "told once");
    }

    #[test]
    fn members_that_stopped_reading_hold_the_room_at_most_the_window() {
        let mut pace = Pace::default();
        for i in 0..1000 {
            pace.grew(conn(i), 200, MARKS, None, at(0));
        }
        pace.update(1001, at(0));
        assert!(!pace.is_paced(), "never drained: never holds");
        let window = DRAIN_WINDOW.as_millis() as u64;
        for i in 0..1000 {
            pace.grew(conn(1000 + i), 200, MARKS, Some(at(0)), at(window / 2));
        }
        pace.update(2001, at(window / 2));
        assert!(pace.is_paced(), "drained half a window ago: holds");
        assert_eq!(pace.next_expiry(), Some(at(window)));
        pace.expire(at(window));
        pace.update(2001, at(window));
        assert!(
            !pace.is_paced(),
            "a window after their last drain, they stop holding"
        );
    }

    #[test]
    fn the_room_waits_for_everyone_who_keeps_up() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 3, at(0));
        pace.update(3, at(0));
        assert!(pace.is_paced());
        pace.drained(conn(0), 1, 10, MARKS, at(20));
        pace.drained(conn(1), 1, 60, MARKS, at(20));
        pace.update(3, at(20));
        assert!(
            pace.is_paced(),
            "one still holds it: its grace runs to 40 ms"
        );
        assert_eq!(pace.next_expiry(), Some(at(40)));
        pace.drained(conn(2), 1, 99, MARKS, at(30));
        pace.update(3, at(30));
        assert!(!pace.is_paced(), "everyone below the mark");
        assert_eq!(
            pace.tell_host(false),
            None,
            "paused and resumed between two reports"
        );
        let queues = [(conn(0), 10), (conn(1), 60), (conn(2), 99)];
        pace.check(&queues, MARKS).expect("consistent");
    }

    #[test]
    fn the_room_goes_on_without_a_member_far_slower_than_the_rest() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 16, at(0));
        pace.update(16, at(0));
        for i in 0..15 {
            pace.drained(conn(i), 1, 10, MARKS, at(40));
        }
        pace.update(16, at(40));
        assert!(pace.is_paced(), "one of sixteen holds it: its grace starts");
        assert_eq!(pace.next_expiry(), Some(at(80)), "as long again: 40 ms");
        pace.drained(conn(15), 1, 150, MARKS, at(70));
        pace.update(16, at(70));
        assert!(pace.is_paced(), "still draining within its grace");
        pace.update(16, at(80));
        assert!(!pace.is_paced(), "the room goes on without it");
        pace.update(16, at(90));
        assert!(
            !pace.is_paced(),
            "one holding is not more than fifteen clear"
        );
    }

    #[test]
    fn a_member_that_stops_draining_stops_holding_after_the_window() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        pace.update(1, at(0));
        assert!(pace.is_paced());
        let due = pace.next_expiry().expect("paced with a holder");
        assert_eq!(due, at(0).saturating_add(DRAIN_WINDOW));
        pace.expire(due);
        pace.update(1, due);
        assert!(!pace.is_paced());
        pace.drained(conn(0), 1, 150, MARKS, due);
        pace.update(1, due);
        assert!(
            pace.is_paced(),
            "a drain within the hold limit holds it again"
        );
    }

    #[test]
    fn a_slow_drainer_holds_the_room_at_most_the_hold_limit_per_stretch() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        pace.update(1, at(0));
        let mut now = 0;
        while pace.is_paced() {
            now += 100;
            pace.drained(conn(0), 1, 1000, MARKS, at(now));
            pace.expire(at(now));
            pace.update(1, at(now));
        }
        assert_eq!(at(now), at(0).saturating_add(HOLD_LIMIT));
        pace.drained(conn(0), 1, 900, MARKS, at(now + 100));
        pace.update(1, at(now + 100));
        assert!(!pace.is_paced(), "excused until it reads below the mark");
        pace.drained(conn(0), 1, 50, MARKS, at(now + 200));
        behind_and_reading(&mut pace, 1, at(now + 300));
        pace.update(1, at(now + 300));
        assert!(pace.is_paced(), "a new stretch");
        pace.check(&[(conn(0), 200)], MARKS).expect("consistent");
    }

    #[test]
    fn a_lone_member_near_the_limit_that_drains_fast_is_waited_for() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        pace.update(10, at(0));
        assert!(!pace.is_paced(), "one holding, nine clear");
        // Its kernel took less than the others' did: it reads as fast, but from further
        // behind. A soft mark's worth per window is fast.
        pace.drained(conn(0), 100, 250, MARKS, at(10));
        pace.grew(conn(0), 300, MARKS, Some(at(10)), at(20));
        pace.update(10, at(20));
        assert!(pace.is_paced(), "urgent: the room waits for it alone");
        pace.drained(conn(0), 120, 180, MARKS, at(30));
        pace.update(10, at(30));
        assert!(
            !pace.is_paced(),
            "below the urgent mark, and nobody else held it: no grace"
        );
        pace.check(&[(conn(0), 180)], MARKS).expect("consistent");
    }

    #[test]
    fn a_lone_member_that_reaches_the_urgent_mark_in_its_first_window_is_waited_for() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        // The host has not reported its drains yet: they wait behind the input that filled it.
        pace.grew(conn(0), 300, MARKS, Some(at(0)), at(5));
        pace.update(10, at(5));
        assert!(pace.is_paced(), "urgent");
        pace.check(&[(conn(0), 300)], MARKS).expect("consistent");
    }

    #[test]
    fn a_granted_urgency_ends_with_the_first_window_whatever_it_trickles() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        pace.grew(conn(0), 300, MARKS, Some(at(0)), at(10));
        pace.update(10, at(10));
        assert!(pace.is_paced(), "urgent in its first window");
        // A trickle just before the window ends keeps it holding, not urgent.
        pace.drained(conn(0), 1, 310, MARKS, at(249));
        pace.update(10, at(249));
        assert!(pace.is_paced());
        assert_eq!(pace.next_expiry(), Some(at(250)), "the grant, not the hold");
        pace.expire(at(250));
        pace.update(10, at(250));
        assert!(
            !pace.is_paced(),
            "no longer urgent, though it holds until 499 ms"
        );
        pace.check(&[(conn(0), 310)], MARKS).expect("consistent");
    }

    #[test]
    fn a_new_stretch_past_the_urgent_mark_is_urgent_at_once() {
        let mut pace = Pace::default();
        pace.grew(conn(0), 350, MARKS, Some(at(0)), at(5));
        pace.update(10, at(5));
        assert!(
            pace.is_paced(),
            "one frame took it from clear past the urgent mark"
        );
        pace.check(&[(conn(0), 350)], MARKS).expect("consistent");
    }

    #[test]
    fn a_lone_member_near_the_limit_that_drains_slowly_is_not_waited_for() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        // 10 bytes in 300 ms: a soft mark (100) per 7.5 s, thirty times too slow.
        pace.drained(conn(0), 10, 290, MARKS, at(300));
        pace.grew(conn(0), 310, MARKS, Some(at(300)), at(310));
        pace.update(10, at(310));
        assert!(!pace.is_paced(), "S8 cuts it if it reaches the limit");
        pace.check(&[(conn(0), 310)], MARKS).expect("consistent");
    }

    #[test]
    fn a_slow_member_that_grows_past_the_urgent_mark_stays_behind() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        pace.drained(conn(0), 1, 299, MARKS, at(300));
        pace.grew(conn(0), 320, MARKS, Some(at(300)), at(310));
        pace.grew(conn(0), 340, MARKS, Some(at(300)), at(310));
        pace.update(1, at(310));
        assert!(
            pace.is_paced(),
            "still behind and holding, though not urgent"
        );
        pace.check(&[(conn(0), 340)], MARKS).expect("consistent");
    }

    #[test]
    fn an_urgent_member_stops_being_waited_for_when_its_hold_runs_out() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 1, at(0));
        pace.drained(conn(0), 200, 300, MARKS, at(10));
        pace.update(10, at(10));
        assert!(pace.is_paced(), "urgent");
        let due = pace.next_expiry().expect("its hold");
        assert_eq!(due, at(10).saturating_add(DRAIN_WINDOW));
        pace.expire(due);
        pace.update(10, due);
        assert!(!pace.is_paced(), "it stopped draining");
        pace.check(&[(conn(0), 300)], MARKS).expect("consistent");
    }

    #[test]
    fn a_closed_member_is_forgotten() {
        let mut pace = Pace::default();
        behind_and_reading(&mut pace, 2, at(0));
        pace.update(2, at(0));
        assert!(pace.is_paced());
        pace.forget(conn(0));
        pace.forget(conn(1));
        pace.update(0, at(0));
        assert!(!pace.is_paced());
        pace.check(&[], MARKS).expect("consistent");
    }
}
