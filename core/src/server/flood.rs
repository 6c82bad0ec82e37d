//! Flood control (S12): a token bucket per connection, as arithmetic on the time the host
//! hands in.
//!
//! # Theory of operation
//!
//! The bucket is kept as one instant, its *theoretical arrival time* (the generic cell rate
//! algorithm): each request that costs the room work moves it one interval (`1 / rate`) later,
//! starting from now if it lies in the past. A request is taken while that instant stays
//! within `burst` intervals of now, so a connection that was quiet may send `burst` requests
//! at once and then one per interval. A refused request moves nothing, so a flooder's own
//! refusals never push its next chance further away.
//!
//! Refusals are remembered for a minute; the `kick`-th within one minute closes the
//! connection (after its `429`).

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Timestamp;

/// The window in which repeated refusals count towards a kick.
pub const KICK_WINDOW: Duration = Duration::from_secs(60);

/// S12's limits for each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimits {
    /// Time between two requests at the sustained rate (`1 / --message-rate`); `None` turns
    /// flood control off (`--message-rate 0`).
    pub interval: Option<Duration>,
    /// Requests a quiet connection may send at once (`--message-burst`).
    pub burst: u32,
    /// Refusals within [`KICK_WINDOW`] that close the connection (`--flood-kick`).
    pub kick: u32,
}

impl Default for FloodLimits {
    /// 5 requests a second, 20 at once, closed at the 50th refusal in a minute.
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_millis(200)),
            burst: 20,
            kick: 50,
        }
    }
}

impl FloodLimits {
    /// No flood control, for benchmarks and load tests.
    pub const OFF: Self = Self {
        interval: None,
        burst: 1,
        kick: u32::MAX,
    };
}

/// What the bucket says to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Carry it out.
    Take,
    /// `429`: a token is back after `retry_after`.
    Refuse { retry_after: Duration },
    /// `429`, and this was the `kick`-th refusal in a minute: close the connection.
    Kick { retry_after: Duration },
}

/// One connection's bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    /// The theoretical arrival time: at or before now when the bucket is full.
    tat: Timestamp,
    /// When the refusals of the last minute happened, oldest first; at most `kick` of them.
    refusals: VecDeque<Timestamp>,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn new(now: Timestamp) -> Self {
        Self {
            tat: now,
            refusals: VecDeque::new(),
        }
    }

    /// A request that costs the room work arrived at `now`.
    pub(crate) fn take(&mut self, now: Timestamp, limits: &FloodLimits) -> Verdict {
        let Some(interval) = limits.interval else {
            return Verdict::Take;
        };
        let start = self.tat.max(now);
        let next = start.saturating_add(interval);
        let limit = now.saturating_add(interval.saturating_mul(limits.burst.max(1)));
        if next <= limit {
            self.tat = next;
            return Verdict::Take;
        }
        let retry_after = limit.duration_until(next);
        while self
            .refusals
            .front()
            .is_some_and(|&at| at.saturating_add(KICK_WINDOW) <= now)
        {
            self.refusals.pop_front();
        }
        self.refusals.push_back(now);
        if self.refusals.len() >= limits.kick as usize {
            return Verdict::Kick { retry_after };
        }
        Verdict::Refuse { retry_after }
    }
}

/// The `429` body (S12): the rate, and when to try again, rounded up to a tenth of a second.
pub(crate) fn slow_down(limits: &FloodLimits, retry_after: Duration) -> String {
    let rate = limits.interval.map_or(0.0, |i| 1.0 / i.as_secs_f64());
    let rate = if (rate - rate.round()).abs() < 1e-6 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.2}")
    };
    let tenths = (retry_after.as_secs_f64() * 10.0).ceil().max(1.0) / 10.0;
    format!("slow down: {rate} requests/s, try again in {tenths:.1} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn s12_a_full_bucket_takes_a_burst_then_one_per_interval() {
        let limits = FloodLimits::default();
        let mut bucket = Bucket::new(at(0));
        for i in 0..20 {
            assert_eq!(bucket.take(at(0), &limits), Verdict::Take, "request {i}");
        }
        assert_eq!(
            bucket.take(at(0), &limits),
            Verdict::Refuse {
                retry_after: Duration::from_millis(200)
            }
        );
        assert_eq!(
            bucket.take(at(150), &limits),
            Verdict::Refuse {
                retry_after: Duration::from_millis(50)
            }
        );
        assert_eq!(bucket.take(at(200), &limits), Verdict::Take);
        assert_eq!(bucket.take(at(400), &limits), Verdict::Take);
        // Quiet for four seconds: the bucket is full again.
        for _ in 0..20 {
            assert_eq!(bucket.take(at(4_400), &limits), Verdict::Take);
        }
    }

    /// Default limits but `kick`, and a bucket emptied by a burst at time zero.
    fn emptied(kick: u32) -> (FloodLimits, Bucket) {
        let limits = FloodLimits {
            kick,
            ..FloodLimits::default()
        };
        let mut bucket = Bucket::new(at(0));
        for _ in 0..limits.burst {
            assert_eq!(bucket.take(at(0), &limits), Verdict::Take);
        }
        (limits, bucket)
    }

    #[test]
    fn s12_the_kick_th_refusal_within_a_minute_closes() {
        let (limits, mut bucket) = emptied(3);
        assert!(matches!(
            bucket.take(at(1), &limits),
            Verdict::Refuse { .. }
        ));
        assert!(matches!(
            bucket.take(at(2), &limits),
            Verdict::Refuse { .. }
        ));
        assert!(matches!(bucket.take(at(3), &limits), Verdict::Kick { .. }));
    }

    #[test]
    fn s12_refusals_older_than_a_minute_are_forgotten() {
        let (limits, mut bucket) = emptied(2);
        assert!(matches!(
            bucket.take(at(1), &limits),
            Verdict::Refuse { .. }
        ));
        // A minute later the bucket is full: drain it and be refused once more.
        for _ in 0..20 {
            let _ = bucket.take(at(61_001), &limits);
        }
        assert!(matches!(
            bucket.take(at(61_001), &limits),
            Verdict::Refuse { .. }
        ));
    }

    #[test]
    fn s12_off_takes_everything() {
        let mut bucket = Bucket::new(at(0));
        for _ in 0..10_000 {
            assert_eq!(bucket.take(at(0), &FloodLimits::OFF), Verdict::Take);
        }
    }

    #[test]
    fn s12_the_body_says_the_rate_and_when_to_retry() {
        let limits = FloodLimits::default();
        assert_eq!(
            slow_down(&limits, Duration::from_millis(350)),
            "slow down: 5 requests/s, try again in 0.4 s"
        );
        let half = FloodLimits {
            interval: Some(Duration::from_secs(2)),
            ..limits
        };
        assert_eq!(
            slow_down(&half, Duration::from_millis(1)),
            "slow down: 0.50 requests/s, try again in 0.1 s"
        );
    }
}
