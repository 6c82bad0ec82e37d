//! Latency histograms and the order checks of PROTOCOL.md S7.

/// A log-linear histogram of nanosecond values: exact below 128, then 64 buckets per power
/// of two, so a reported percentile is within 1/128 (0.8 %) of the true value. Constant
/// memory (about 30 KiB) however many deliveries a run makes.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; Self::index(u64::MAX) + 1],
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < 2 * SUB {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        (shift as u64 * SUB + (v >> shift)) as usize
    }

    /// The middle of the values that fall in bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < 2 * SUB {
            return i;
        }
        let shift = i / SUB - 1;
        let mantissa = i % SUB + SUB;
        (mantissa << shift) + (1u64 << shift) / 2
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The smallest recorded value that at least `p` percent of the values do not exceed.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0 * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

/// Marks a message that a reference member never received.
const ABSENT: u32 = u32::MAX;

/// Order violations of one member against one reference order (S7: every member sees one
/// and the same order). `reference` and `received` are message ids in arrival order.
///
/// Counts the messages a member received *after* one that comes later in the reference
/// order: zero when the member's order agrees with the reference, and for a member that
/// got one message late, one. Messages the reference never received are not compared.
pub struct ReferenceOrder {
    position: Vec<u32>,
}

impl ReferenceOrder {
    pub fn new(ids: usize, reference: &[u32]) -> Self {
        let mut position = vec![ABSENT; ids];
        for (k, &id) in reference.iter().enumerate() {
            if let Some(p) = position.get_mut(id as usize) {
                if *p == ABSENT {
                    *p = k as u32;
                }
            }
        }
        Self { position }
    }

    pub fn violations(&self, received: &[u32]) -> u64 {
        let mut highest: Option<u32> = None;
        let mut violations = 0;
        for &id in received {
            let p = self.position.get(id as usize).copied().unwrap_or(ABSENT);
            if p == ABSENT {
                continue;
            }
            match highest {
                Some(h) if p < h => violations += 1,
                _ => highest = Some(p),
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_continuous_and_tight() {
        for v in (0..100_000u64).chain([1 << 40, u64::MAX / 3, u64::MAX]) {
            let i = Histogram::index(v);
            let mid = Histogram::value(i);
            let err = mid.abs_diff(v) as f64 / v.max(1) as f64;
            assert!(err <= 1.0 / 128.0 + 1e-12, "v {v} bucket {i} mid {mid}");
            assert!(v == u64::MAX || Histogram::index(v + 1) >= i);
        }
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1_000_000);
        let p50 = h.percentile(50.0) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.01, "{p50}");
        let p99 = h.percentile(99.0) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.01, "{p99}");
        assert_eq!(h.percentile(100.0), 1_000_000);
        assert_eq!(Histogram::default().percentile(50.0), 0);
    }

    #[test]
    fn order_against_reference() {
        let r = ReferenceOrder::new(6, &[0, 1, 2, 3, 4]);
        assert_eq!(r.violations(&[0, 1, 2, 3, 4]), 0);
        assert_eq!(
            r.violations(&[1, 2, 3, 4]),
            0,
            "a missing message is not disorder"
        );
        assert_eq!(r.violations(&[0, 2, 1, 3, 4]), 1);
        assert_eq!(r.violations(&[4, 0, 1, 2, 3]), 4);
        assert_eq!(r.violations(&[0, 5, 1]), 0, "unknown to the reference");
    }
}
