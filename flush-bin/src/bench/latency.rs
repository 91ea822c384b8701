//! Latency samples and their percentiles.
//!
//! Every request's latency is kept (8 bytes each; a run is bounded by its
//! request count), then sorted once: percentiles by the nearest-rank method,
//! exact rather than bucketed.

use serde_json::{json, Value};
use std::time::Duration;

/// Percentiles of one run's latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// How many samples.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// The slowest request.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples` (nanoseconds; sorted in place). All zero when empty.
    pub fn from_nanos(samples: &mut [u64]) -> Summary {
        samples.sort_unstable();
        let at = |per_mille: u64| Duration::from_nanos(nearest_rank(samples, per_mille));
        Summary {
            count: samples.len() as u64,
            p50: at(500),
            p90: at(900),
            p99: at(990),
            p999: at(999),
            max: Duration::from_nanos(samples.last().copied().unwrap_or(0)),
        }
    }

    /// One line: `p50 0.41 ms, p90 ..., max ...`.
    pub fn line(&self) -> String {
        format!(
            "p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
            millis(self.p50),
            millis(self.p90),
            millis(self.p99),
            millis(self.p999),
            millis(self.max)
        )
    }

    /// The percentiles in milliseconds, as JSON.
    pub fn to_json(&self) -> Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        json!({
            "count": self.count,
            "p50_ms": ms(self.p50),
            "p90_ms": ms(self.p90),
            "p99_ms": ms(self.p99),
            "p999_ms": ms(self.p999),
            "max_ms": ms(self.max),
        })
    }
}

/// The smallest sample with at least `per_mille`/1000 of the samples at or
/// below it (nearest rank); 0 for no samples. `sorted` must be sorted.
fn nearest_rank(sorted: &[u64], per_mille: u64) -> u64 {
    let n = sorted.len() as u64;
    if n == 0 {
        return 0;
    }
    let rank = (n * per_mille).div_ceil(1000).clamp(1, n);
    sorted[(rank - 1) as usize]
}

/// `d` in milliseconds with three significant-ish digits: `0.412 ms`, `12.3 ms`.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=1000 microseconds, shuffled.
        let mut samples: Vec<u64> = (1..=1000u64)
            .map(|i| (i * 7919 % 1000 + 1) * 1000)
            .collect();
        let s = Summary::from_nanos(&mut samples);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50, Duration::from_micros(500));
        assert_eq!(s.p90, Duration::from_micros(900));
        assert_eq!(s.p99, Duration::from_micros(990));
        assert_eq!(s.p999, Duration::from_micros(999));
        assert_eq!(s.max, Duration::from_micros(1000));
    }

    #[test]
    fn small_and_empty_sets() {
        let mut one = vec![42];
        let s = Summary::from_nanos(&mut one);
        assert_eq!(
            (s.p50, s.p999, s.max),
            (
                Duration::from_nanos(42),
                Duration::from_nanos(42),
                Duration::from_nanos(42)
            )
        );
        assert_eq!(Summary::from_nanos(&mut []), Summary::default());
        // Two samples: the median is the lower one, p90 the upper.
        let s = Summary::from_nanos(&mut [20, 10]);
        assert_eq!(
            (s.p50, s.p90),
            (Duration::from_nanos(10), Duration::from_nanos(20))
        );
    }

    #[test]
    fn millis_formats() {
        assert_eq!(millis(Duration::from_micros(412)), "0.412 ms");
        assert_eq!(millis(Duration::from_micros(12_346)), "12.35 ms");
        assert_eq!(millis(Duration::from_millis(1500)), "1500 ms");
    }
}
