//! `random(N)`: the power of N random choices.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::leastconn::less_loaded;
use super::{Balancer, RequestKey, ServerView};

/// A small lock-free pseudo-random generator (splitmix64 over an atomic counter), seeded
/// from the OS's randomness through std's `RandomState`. Good enough to spread load; not
/// for secrets.
#[derive(Debug)]
pub(crate) struct Rng(AtomicU64);

impl Rng {
    /// A generator with a random seed.
    pub fn new() -> Rng {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Rng(AtomicU64::new(h.finish()))
    }

    /// A generator with a fixed seed: the same sequence every time (tests).
    #[cfg(test)]
    pub fn seeded(seed: u64) -> Rng {
        Rng(AtomicU64::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        super::hash::mix64(z)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for load spreading, no division.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// HAProxy's `random(draws)`: draws `draws` servers at random, each with probability
/// proportional to its effective weight, and takes the least loaded of them.
#[derive(Debug)]
pub(crate) struct Random {
    draws: u32,
    rng: Rng,
}

impl Random {
    /// A balancer that draws `draws` servers (at least 1).
    pub fn new(draws: u32) -> Random {
        Random {
            draws: draws.max(1),
            rng: Rng::new(),
        }
    }

    fn draw(&self, view: &dyn ServerView, total: u64) -> Option<usize> {
        let mut r = self.rng.below(total);
        for i in 0..view.len() {
            if !view.eligible(i) {
                continue;
            }
            let w = u64::from(view.weight(i));
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }
}

impl Balancer for Random {
    fn select(&self, view: &dyn ServerView, _key: &RequestKey<'_>) -> Option<usize> {
        let total: u64 = (0..view.len())
            .filter(|&i| view.eligible(i))
            .map(|i| u64::from(view.weight(i)))
            .sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        for _ in 0..self.draws {
            let Some(i) = self.draw(view, total) else {
                continue;
            };
            best = match best {
                Some(b)
                    if !less_loaded(
                        view.conns(i),
                        view.weight(i).max(1),
                        view.conns(b),
                        view.weight(b).max(1),
                    ) =>
                {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn one_draw_follows_the_weights() {
        let v = FakeView::new(&[1, 2, 1]);
        let c = counts(&Random::new(1), &v, 8000);
        let share = |i: usize| c.get(&i).copied().unwrap_or(0) as f64 / 8000.0;
        assert!((share(0) - 0.25).abs() < 0.03, "{c:?}");
        assert!((share(1) - 0.50).abs() < 0.03, "{c:?}");
        assert!((share(2) - 0.25).abs() < 0.03, "{c:?}");
    }

    /// The spread (most minus fewest in-flight requests) over 8 equal servers after 800
    /// requests that all stay in flight, with `draws` choices and a fixed seed.
    fn spread(draws: u32, seed: u64) -> u64 {
        let v = FakeView::new(&[1; 8]);
        let b = Random {
            draws,
            rng: Rng::seeded(seed),
        };
        let key = client_key("127.0.0.1".parse().unwrap());
        for _ in 0..800 {
            let i = b.select(&v, &key).unwrap();
            v.conns.borrow_mut()[i] += 1;
        }
        let conns = v.conns.borrow();
        conns.iter().max().unwrap() - conns.iter().min().unwrap()
    }

    #[test]
    fn two_choices_keep_load_even() {
        // The power of two choices keeps the spread tight, far tighter than one random draw
        // (whose spread over 8 x 100 is about 30). Fixed seeds: the same draws every run.
        for seed in 0..50 {
            let two = spread(2, seed);
            assert!(two <= 8, "seed {seed}: spread {two} with two choices");
        }
        let one: u64 = (0..50).map(|seed| spread(1, seed)).sum();
        let two: u64 = (0..50).map(|seed| spread(2, seed)).sum();
        assert!(
            two * 3 < one,
            "mean spread: two choices {two}/50, one draw {one}/50"
        );
    }

    #[test]
    fn never_picks_an_ineligible_server() {
        let mut v = FakeView::new(&[1, 1, 1]);
        v.down[1] = true;
        let c = counts(&Random::new(2), &v, 300);
        assert_eq!(c.get(&1), None);
        v.down = vec![true; 3];
        let key = client_key("127.0.0.1".parse().unwrap());
        assert_eq!(Random::new(2).select(&v, &key), None);
    }

    #[test]
    fn below_stays_in_range() {
        let r = Rng::new();
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
