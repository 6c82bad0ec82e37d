//! The driver's clock: the one place where wall-clock time becomes a [`Timestamp`].
//!
//! The [`Driver`](crate::Driver) reads time only through a [`Clock`], so its tests drive a
//! clock of their own instead of sleeping.

use std::fmt::Debug;
use std::time::Instant;

use chathttp_core::Timestamp;

/// Where the driver reads the time.
pub trait Clock: Debug {
    /// Now: both readings of a [`Timestamp`], taken together.
    fn now(&self) -> Timestamp;
}

/// The system's clocks: monotonic time since the driver started, and the local wall clock
/// for the `Datetime` header.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::new(self.origin.elapsed(), chrono::Local::now().naive_local())
    }
}
