//! Server selection: the [`Balancer`] trait and one type per algorithm.
//!
//! Today one algorithm, HAProxy's `roundrobin` done as nginx's smooth weighted round robin:
//! over any `sum(weights)` consecutive picks among a fixed set of eligible servers, each
//! server gets exactly `weight` picks, spread out rather than in bursts (weights 5, 1, 1 give
//! `a a b a c a a`).

use std::sync::{Mutex, PoisonError};

use webfarm_config::Balance;

/// Picks the server for the next request.
pub(crate) trait Balancer: Send + Sync + std::fmt::Debug {
    /// Picks an index in `0..servers` among those for which `eligible(index)` is true
    /// (up, not already tried for this request). `None` when no server is eligible.
    fn select(&self, eligible: &dyn Fn(usize) -> bool) -> Option<usize>;
}

/// The balancer of `balance` for servers of `weights` (in server order).
pub(crate) fn build(balance: Balance, weights: &[u32]) -> Box<dyn Balancer> {
    match balance {
        Balance::Roundrobin => Box::new(SmoothWeighted::new(weights)),
    }
}

/// nginx's smooth weighted round robin.
///
/// Each pick adds every eligible server's weight to its `current` score, takes the highest
/// score (first in order on a tie), and subtracts the total eligible weight from the winner.
#[derive(Debug)]
pub(crate) struct SmoothWeighted {
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    /// A balancer over servers of `weights`.
    pub fn new(weights: &[u32]) -> SmoothWeighted {
        SmoothWeighted {
            weights: weights.iter().map(|&w| i64::from(w)).collect(),
            current: Mutex::new(vec![0; weights.len()]),
        }
    }
}

impl Balancer for SmoothWeighted {
    fn select(&self, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        // `eligible` only reads atomics; the section is a few additions per server.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, &weight) in self.weights.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(b: &dyn Balancer, n: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        (0..n).map(|_| b.select(eligible).unwrap()).collect()
    }

    #[test]
    fn equal_weights_cycle_in_order() {
        let b = SmoothWeighted::new(&[1, 1, 1]);
        assert_eq!(picks(&b, 6, &|_| true), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn nginx_example_is_smooth() {
        let b = SmoothWeighted::new(&[5, 1, 1]);
        assert_eq!(picks(&b, 7, &|_| true), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn every_window_of_sum_weights_is_exact() {
        let weights = [3, 1, 7, 2];
        let b = SmoothWeighted::new(&weights);
        let sum: u32 = weights.iter().sum();
        for _ in 0..5 {
            let mut counts = [0u32; 4];
            for i in picks(&b, sum as usize, &|_| true) {
                counts[i] += 1;
            }
            assert_eq!(counts, weights);
        }
    }

    #[test]
    fn ineligible_servers_are_skipped() {
        let b = SmoothWeighted::new(&[1, 1, 1]);
        let p = picks(&b, 6, &|i| i != 1);
        assert_eq!(p.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(p.iter().filter(|&&i| i == 2).count(), 3);
        assert_eq!(b.select(&|_| false), None);
    }
}
