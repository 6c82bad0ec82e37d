//! The descriptor limit (S13): every connection holds one, so the server raises its soft
//! limit to the hard limit at start and says what it got once it listens.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for what is not a connection: the listener, standard streams, the
/// cluster's Redis connections, a log file.
pub const RESERVED_DESCRIPTORS: u64 = 32;

/// What the soft descriptor limit was and is, after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit the process started with, if known.
    pub before: Option<u64>,
    /// The soft limit now; `None` when unlimited.
    pub now: Option<u64>,
}

impl DescriptorLimit {
    /// How many connections the limit leaves room for; `None` when unlimited.
    pub fn connections(&self) -> Option<u64> {
        self.now.map(|n| n.saturating_sub(RESERVED_DESCRIPTORS))
    }

    /// The startup warning when `max_connections` is more than the limit allows.
    pub fn warning(&self, max_connections: usize) -> Option<String> {
        let room = self.connections()?;
        let limit = self.now?;
        (max_connections as u64 > room).then(|| {
            format!(
                "--max-connections {max_connections} is more than the descriptor limit allows: \
                 {limit} descriptors leave room for {room} connections (raise the hard limit, \
                 `ulimit -Hn`, or lower --max-connections)"
            )
        })
    }
}

/// Raises the soft descriptor limit to the hard limit, as far as the system lets it.
pub fn raise() -> DescriptorLimit {
    let start = getrlimit(Resource::Nofile);
    let wanted = Rlimit {
        current: start.maximum,
        maximum: start.maximum,
    };
    if start.current != start.maximum {
        // Refused only where the hard limit is above what the kernel allows; keep what we have.
        let _ = setrlimit(Resource::Nofile, wanted);
    }
    DescriptorLimit {
        before: start.current,
        now: getrlimit(Resource::Nofile).current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s13_the_warning_names_both_numbers() {
        let limit = DescriptorLimit {
            before: Some(1024),
            now: Some(1024),
        };
        let warning = limit.warning(10_000).expect("10,000 do not fit in 1,024");
        assert!(warning.contains("--max-connections 10000"), "{warning}");
        assert!(warning.contains("1024 descriptors"), "{warning}");
        assert!(limit.warning(992).is_none());
        assert!(limit.warning(993).is_some());
    }

    #[test]
    fn s13_no_warning_without_a_limit() {
        let limit = DescriptorLimit {
            before: None,
            now: None,
        };
        assert!(limit.warning(usize::MAX).is_none());
    }

    #[test]
    fn s13_the_soft_limit_is_raised_never_lowered() {
        let limit = raise();
        // `None` is unlimited. A hard limit past what the kernel allows (`nr_open`) may keep
        // the soft one where it was; a finite one is reached.
        let hard = getrlimit(Resource::Nofile).maximum;
        match (limit.before, limit.now) {
            (Some(before), Some(now)) => assert!(now >= before, "{limit:?}"),
            (None, now) => assert_eq!(now, None, "an unlimited soft limit stays so"),
            (Some(_), None) => {}
        }
        if let Some(hard) = hard.filter(|&h| h <= 1 << 20) {
            assert_eq!(limit.now, Some(hard), "a finite hard limit is reached");
        }
    }
}
