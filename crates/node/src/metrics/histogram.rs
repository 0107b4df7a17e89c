//! A histogram whose observation is a few relaxed atomic adds: no lock, no allocation.
//!
//! prometheus-client's own `Histogram` takes a mutex on every `observe`; the lb observes
//! four latencies per request on every event-loop thread, so its buckets are atomics here
//! and the histogram is written out at scrape time through the crate's encoder
//! ([`super::Scrape::histograms`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets in seconds, 0.5 ms to 10 s: a proxied request or a SQL statement.
pub const LATENCY_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// etcd's `etcd_disk_wal_fsync_duration_seconds` buckets: 1 ms doubling up to 8.192 s.
pub const FSYNC_SECONDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// Sizes (entries, requests): powers of two, 1 to 1024.
pub const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A Prometheus histogram with fixed upper bounds and atomic buckets.
///
/// Values are kept as integers of a unit ([`Histogram::seconds`]: nanoseconds;
/// [`Histogram::counts`]: ones) so observing needs no floating point and no CAS loop: one
/// `fetch_add` on the bucket and one on the sum. The count is the buckets' total, read at
/// scrape time.
#[derive(Debug)]
pub struct Histogram {
    /// The upper bounds as exposed (`le`), ascending.
    bounds: &'static [f64],
    /// The same bounds in raw units.
    raw_bounds: Box<[u64]>,
    /// One per bound, then the `+Inf` bucket; not cumulative.
    buckets: Box<[AtomicU64]>,
    /// The sum of the observations, in raw units.
    sum: AtomicU64,
    /// What one raw unit is worth in exposed units (1e-9 for seconds kept as nanoseconds).
    unit: f64,
}

/// What a histogram held when it was read: per-bucket counts (not cumulative, as
/// prometheus-client's encoder takes them), the sum in exposed units and the count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations in this bucket only)`, the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations (seconds for [`Histogram::seconds`]).
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64], unit: f64) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        let raw_bounds = bounds.iter().map(|b| (b / unit).round() as u64).collect();
        Histogram {
            bounds,
            raw_bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            unit,
        }
    }

    /// A histogram of durations, exposed in seconds, with upper bounds `bounds` (seconds).
    pub fn seconds(bounds: &'static [f64]) -> Histogram {
        Histogram::new(bounds, 1e-9)
    }

    /// A histogram of whole numbers (sizes, counts) with upper bounds `bounds`.
    pub fn counts(bounds: &'static [f64]) -> Histogram {
        Histogram::new(bounds, 1.0)
    }

    fn observe_raw(&self, raw: u64) {
        let i = self
            .raw_bounds
            .iter()
            .position(|&b| raw <= b)
            .unwrap_or(self.raw_bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(raw, Ordering::Relaxed);
    }

    /// Observes a duration (for a [`Histogram::seconds`]).
    pub fn observe(&self, d: Duration) {
        self.observe_raw(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Observes a whole number (for a [`Histogram::counts`]).
    pub fn observe_count(&self, n: u64) {
        self.observe_raw(n);
    }

    /// The buckets, sum and count now. Each bucket is read once, so the count is always
    /// the buckets' total; the sum may include an observation a bucket missed.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        HistogramSnapshot {
            count: counts.iter().sum(),
            buckets: bounds.zip(counts).collect(),
            sum: self.sum.load(Ordering::Relaxed) as f64 * self.unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = Histogram::seconds(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on the bound: `le` is inclusive
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        let s = h.snapshot();
        assert_eq!(
            s.buckets,
            vec![(0.001, 2), (0.01, 1), (0.1, 0), (f64::INFINITY, 1)]
        );
        assert_eq!(s.count, 4);
        assert!((s.sum - 3.0065).abs() < 1e-9, "sum {}", s.sum);
    }

    #[test]
    fn counts_keep_whole_numbers() {
        let h = Histogram::counts(SIZES);
        for n in [1, 1, 3, 2000] {
            h.observe_count(n);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.sum, 2005.0);
        assert_eq!(s.buckets[0], (1.0, 2));
        assert_eq!(s.buckets[2], (4.0, 1));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::seconds(LATENCY_SECONDS));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe(Duration::from_micros(i % 3000));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.snapshot().count, 40_000);
    }
}
