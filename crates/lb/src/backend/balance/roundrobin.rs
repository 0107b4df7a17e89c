//! `roundrobin` (nginx's smooth weighted round robin) and `static-rr`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{Balancer, RequestKey, ServerView};

/// nginx's smooth weighted round robin, HAProxy's `roundrobin`.
///
/// Each pick adds every eligible server's effective weight to its `current` score, takes the
/// highest score (first in order on a tie), and subtracts the total eligible weight from the
/// winner. Over any `sum(weights)` consecutive picks among a fixed set each server gets
/// exactly `weight` picks, spread out (weights 5, 1, 1 give `a a b a c a a`). Weights are
/// read at every pick, so run-time changes and slowstart apply to the next request.
#[derive(Debug)]
pub(crate) struct SmoothWeighted {
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    /// A balancer over `count` servers.
    pub fn new(count: usize) -> SmoothWeighted {
        SmoothWeighted {
            current: Mutex::new(vec![0; count]),
        }
    }
}

impl Balancer for SmoothWeighted {
    fn select(&self, view: &dyn ServerView, _key: &RequestKey<'_>) -> Option<usize> {
        // `view` only reads atomics; the section is a few additions per server.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.len() < view.len() {
            current.resize(view.len(), 0);
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..view.len() {
            if !view.eligible(i) {
                continue;
            }
            let weight = i64::from(view.weight(i));
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total;
        }
        best
    }
}

/// HAProxy's `static-rr`: weighted round robin over a sequence fixed when the backend is
/// built (smoothly interleaved); run-time weight changes do not apply.
#[derive(Debug)]
pub(crate) struct StaticRr {
    sequence: Vec<usize>,
    cursor: AtomicUsize,
}

impl StaticRr {
    /// The sequence for servers of `weights`: `sum(weights)` picks, each server `weight`
    /// times.
    pub fn new(weights: &[u32]) -> StaticRr {
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut sequence = Vec::new();
        for _ in 0..total {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += i64::from(w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            sequence.push(best);
        }
        StaticRr {
            sequence,
            cursor: AtomicUsize::new(0),
        }
    }
}

impl Balancer for StaticRr {
    fn select(&self, view: &dyn ServerView, _key: &RequestKey<'_>) -> Option<usize> {
        let n = self.sequence.len();
        for _ in 0..n {
            let at = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            let i = self.sequence[at];
            if i < view.len() && view.eligible(i) {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn picks(b: &dyn Balancer, v: &FakeView, n: usize) -> Vec<usize> {
        let key = client_key("127.0.0.1".parse().unwrap());
        (0..n).map(|_| b.select(v, &key).unwrap()).collect()
    }

    #[test]
    fn equal_weights_cycle_in_order() {
        let v = FakeView::new(&[1, 1, 1]);
        assert_eq!(picks(&SmoothWeighted::new(3), &v, 6), [0, 1, 2, 0, 1, 2]);
        assert_eq!(picks(&StaticRr::new(&[1, 1, 1]), &v, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn nginx_example_is_smooth() {
        let v = FakeView::new(&[5, 1, 1]);
        assert_eq!(picks(&SmoothWeighted::new(3), &v, 7), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            picks(&StaticRr::new(&[5, 1, 1]), &v, 7),
            [0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn every_window_of_sum_weights_is_exact() {
        let weights = [3, 1, 7, 2];
        let v = FakeView::new(&weights);
        let sum: u32 = weights.iter().sum();
        for b in [
            &SmoothWeighted::new(4) as &dyn Balancer,
            &StaticRr::new(&weights),
        ] {
            for _ in 0..5 {
                let mut counts = [0u32; 4];
                for i in picks(b, &v, sum as usize) {
                    counts[i] += 1;
                }
                assert_eq!(counts, weights);
            }
        }
    }

    #[test]
    fn ineligible_servers_are_skipped() {
        let mut v = FakeView::new(&[1, 1, 1]);
        v.down[1] = true;
        for b in [
            &SmoothWeighted::new(3) as &dyn Balancer,
            &StaticRr::new(&[1, 1, 1]),
        ] {
            let p = picks(b, &v, 6);
            assert_eq!(p.iter().filter(|&&i| i == 0).count(), 3);
            assert_eq!(p.iter().filter(|&&i| i == 2).count(), 3);
        }
        v.down = vec![true; 3];
        let key = client_key("127.0.0.1".parse().unwrap());
        assert_eq!(SmoothWeighted::new(3).select(&v, &key), None);
        assert_eq!(StaticRr::new(&[1, 1, 1]).select(&v, &key), None);
    }

    #[test]
    fn roundrobin_follows_weight_changes_static_rr_does_not() {
        let mut v = FakeView::new(&[1, 1]);
        let rr = SmoothWeighted::new(2);
        let st = StaticRr::new(&[1, 1]);
        v.weights = vec![3, 1];
        let c = counts(&rr, &v, 40);
        assert_eq!((c[&0], c[&1]), (30, 10));
        let c = counts(&st, &v, 40);
        assert_eq!((c[&0], c[&1]), (20, 20));
    }
}
