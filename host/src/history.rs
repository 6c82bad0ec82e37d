//! The host's half of history (E1): the epoch of an in-memory room's ids.
//!
//! The core draws no random numbers, so the host picks the epoch. An in-memory room's
//! history dies with the process, so every start is a new epoch: a client that resumes
//! `after` an id of the previous run is told that some lines were missed instead of being
//! given lines that merely share a sequence number.

use chathttp_core::server::history::{Epoch, HistoryConfig};

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
        lines => HistoryConfig {
            lines,
            epoch: fresh_epoch(),
        },
    }
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
}
