//! Time as the core sees it: a value handed in by the host, never read from a clock.
//!
//! A [`Timestamp`] carries two readings taken together by the host:
//!
//! * a **monotonic** reading, which orders events and sets deadlines (timeouts must not jump
//!   when an administrator or NTP moves the wall clock), and
//! * the **local wall-clock** time, which only feeds the `Datetime` header (H2 asks for the
//!   server's local time, formatted `%Y-%m-%d %H:%M:%S`).
//!
//! Comparisons and arithmetic use the monotonic reading alone. Tests build timestamps from
//! constants with [`Timestamp::from_millis`], so transcripts are stable.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};

/// One instant, as read by the host. See the module docs for the two readings it carries.
#[derive(Clone, Copy, Debug)]
pub struct Timestamp {
    monotonic: Duration,
    local: NaiveDateTime,
}

impl Timestamp {
    /// Builds a timestamp from the host's two clock readings.
    ///
    /// `monotonic` is the time since any origin the host chose once (for example the
    /// `Instant` at start-up); `local` is the wall-clock time in the server's zone.
    pub fn new(monotonic: Duration, local: NaiveDateTime) -> Self {
        Self { monotonic, local }
    }

    /// A timestamp `millis` after a fixed origin whose wall clock reads
    /// `2015-11-29 10:17:34` (the seed's first example). For tests and simulations.
    pub fn from_millis(millis: u64) -> Self {
        let origin = NaiveDate::from_ymd_opt(2015, 11, 29)
            .and_then(|d| d.and_hms_opt(10, 17, 34))
            .expect("the seed's date is a valid calendar date");
        let monotonic = Duration::from_millis(millis);
        Self {
            monotonic,
            local: origin + monotonic,
        }
    }

    /// The monotonic reading: time since the host's origin.
    pub fn monotonic(&self) -> Duration {
        self.monotonic
    }

    /// The local wall-clock reading.
    pub fn local(&self) -> NaiveDateTime {
        self.local
    }

    /// This instant plus `delay`, on both readings.
    pub fn saturating_add(&self, delay: Duration) -> Self {
        let local = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|d| self.local.checked_add_signed(d))
            .unwrap_or(self.local);
        Self {
            monotonic: self.monotonic.saturating_add(delay),
            local,
        }
    }

    /// How long from `self` until `later`; zero if `later` is not after `self`.
    ///
    /// Hosts use it to turn [`poll_timeout`](crate::server::Server::poll_timeout) into a sleep.
    pub fn duration_until(&self, later: Timestamp) -> Duration {
        later.monotonic.saturating_sub(self.monotonic)
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.monotonic == other.monotonic
    }
}

impl Eq for Timestamp {}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.monotonic.cmp(&other.monotonic)
    }
}

/// The `Datetime` header's layout (H2), as a chrono format: `2015-11-29 10:17:48`.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Reads a `Datetime` value (H2); `None` if it is not one.
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, DATETIME_FORMAT).ok()
}

/// The `Datetime` header's text for a local time: `%Y-%m-%d %H:%M:%S`, 19 bytes.
///
/// Formatting through chrono's format strings costs more than the rest of a frame, so the
/// digits are written directly.
pub(crate) fn datetime_text(local: NaiveDateTime) -> [u8; 19] {
    use chrono::{Datelike, Timelike};
    let mut out = *b"0000-00-00 00:00:00";
    let year = local.year().clamp(0, 9999) as u32;
    let fields = [
        (0, 4, year),
        (5, 2, local.month()),
        (8, 2, local.day()),
        (11, 2, local.hour()),
        (14, 2, local.minute()),
        (17, 2, local.second().min(59)),
    ];
    for (at, width, mut value) in fields {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_matches_the_seed_format() {
        let t = Timestamp::from_millis(14_000);
        assert_eq!(&datetime_text(t.local()), b"2015-11-29 10:17:48");
        let formatted = t.local().format(DATETIME_FORMAT).to_string();
        assert_eq!(formatted.as_bytes(), &datetime_text(t.local()));
    }

    #[test]
    fn order_follows_the_monotonic_reading_only() {
        let early = Timestamp::from_millis(5);
        let late = Timestamp::new(
            Duration::from_millis(6),
            early.local() - chrono::Duration::hours(1),
        );
        assert!(
            early < late,
            "a wall clock stepped back must not reorder events"
        );
        assert_eq!(early.duration_until(late), Duration::from_millis(1));
        assert_eq!(late.duration_until(early), Duration::ZERO);
    }
}
