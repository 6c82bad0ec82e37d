//! Latency histograms and the order checks of PROTOCOL.md S7.

/// Nanosecond values in an HDR histogram with three significant digits, so a reported
/// percentile is within 0.1 % of the true value in constant memory however many deliveries a
/// run makes. Values above an hour count as an hour; the maximum is kept exactly.
#[derive(Clone, Debug)]
pub struct Histogram {
    values: hdrhistogram::Histogram<u64>,
    max: u64,
}

/// The largest value the histogram tells apart: no latency of a run comes near it.
const HOUR_NS: u64 = 3_600_000_000_000;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            values: hdrhistogram::Histogram::new_with_max(HOUR_NS, 3)
                .expect("an hour in ns and three significant digits are valid bounds"),
            max: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.values.saturating_record(v);
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.values.len()
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        self.values.mean()
    }

    /// The smallest recorded value that at least `p` percent of the values do not exceed
    /// (0 when nothing was recorded).
    pub fn percentile(&self, p: f64) -> u64 {
        if self.values.is_empty() {
            return 0;
        }
        self.values.value_at_quantile(p / 100.0).min(self.max)
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
            if let Some(p) = position.get_mut(id as usize)
                && *p == ABSENT
            {
                *p = k as u32;
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
    fn percentiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1_000_000);
        let p50 = h.percentile(50.0) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.001, "{p50}");
        let p90 = h.percentile(90.0) as f64;
        assert!((p90 - 900_000.0).abs() / 900_000.0 < 0.001, "{p90}");
        let p99 = h.percentile(99.0) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.001, "{p99}");
        assert_eq!(h.percentile(100.0), 1_000_000);
        assert!((h.mean() - 500_500.0).abs() / 500_500.0 < 0.001);
        assert_eq!(Histogram::default().percentile(50.0), 0);
        let mut long = Histogram::default();
        long.record(2 * HOUR_NS);
        assert_eq!(long.max(), 2 * HOUR_NS);
        let clamped = long.percentile(50.0);
        assert!(
            clamped.abs_diff(HOUR_NS) <= HOUR_NS / 1000,
            "{clamped}: about an hour"
        );
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
