//! Summaries of timed samples, and the few formatting helpers the report tables share.

use std::time::Duration;

/// Order statistics of one set of timed runs.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// The fastest run.
    pub min: Duration,
    /// The 25th percentile.
    pub p25: Duration,
    /// The median.
    pub median: Duration,
    /// The 75th percentile.
    pub p75: Duration,
    /// The 99th percentile (nearest rank).
    pub p99: Duration,
}

impl Summary {
    /// Summarizes `samples`, which must not be empty.
    pub fn of(samples: &[Duration]) -> Summary {
        assert!(!samples.is_empty(), "no samples to summarize");
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Summary {
            min: sorted[0],
            p25: percentile(&sorted, 25.0),
            median: percentile(&sorted, 50.0),
            p75: percentile(&sorted, 75.0),
            p99: percentile(&sorted, 99.0),
        }
    }

    /// The interquartile range: the spread of the middle half, a noise measure that a few
    /// outliers (another build grabbing the CPU) do not move.
    pub fn iqr(&self) -> Duration {
        self.p75.saturating_sub(self.p25)
    }
}

/// The nearest-rank percentile of sorted samples: the smallest value with at least `pct`
/// percent of the samples at or below it.
fn percentile(sorted: &[Duration], pct: f64) -> Duration {
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with two decimals: the scale every latency here is read on.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `a / b` as `1.23x`.
pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "n/a".to_owned();
    }
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

/// Kibibytes as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// "met" or "missed", for the targets column.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&samples);
        assert_eq!(s.median, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.iqr(), Duration::from_millis(50));
        let one = Summary::of(&[Duration::from_millis(7)]);
        assert_eq!(
            (one.median, one.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
    }
}
