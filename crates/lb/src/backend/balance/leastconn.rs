//! `leastconn` and `first`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, RequestKey, ServerView};

/// Whether server `a` (with `ca` requests in flight, weight `wa`) is less loaded than `b`:
/// `(ca + 1) / wa < (cb + 1) / wb`, compared without division.
pub(crate) fn less_loaded(ca: u64, wa: u32, cb: u64, wb: u32) -> bool {
    u128::from(ca + 1) * u128::from(wb) < u128::from(cb + 1) * u128::from(wa)
}

/// HAProxy's `leastconn`: the eligible server with the fewest requests in flight per unit
/// of effective weight; among equals, round robin (the scan starts one further each pick).
#[derive(Debug, Default)]
pub(crate) struct Leastconn {
    start: AtomicUsize,
}

impl Leastconn {
    /// A new balancer.
    pub fn new() -> Leastconn {
        Leastconn::default()
    }
}

impl Balancer for Leastconn {
    fn select(&self, view: &dyn ServerView, _key: &RequestKey<'_>) -> Option<usize> {
        let n = view.len();
        if n == 0 {
            return None;
        }
        let start = self.start.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64, u32)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !view.eligible(i) {
                continue;
            }
            let (c, w) = (view.conns(i), view.weight(i).max(1));
            if best.is_none_or(|(_, bc, bw)| less_loaded(c, w, bc, bw)) {
                best = Some((i, c, w));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

/// HAProxy's `first`: the first eligible server in file order. Eligible servers have a free
/// slot, so once one reaches its `maxconn` the next takes the traffic.
#[derive(Debug)]
pub(crate) struct First;

impl Balancer for First {
    fn select(&self, view: &dyn ServerView, _key: &RequestKey<'_>) -> Option<usize> {
        (0..view.len()).find(|&i| view.eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn leastconn_takes_the_least_loaded_and_rotates_ties() {
        let v = FakeView::new(&[1, 1, 1]);
        let b = Leastconn::new();
        // All idle: ties rotate, so the spread is even.
        let c = counts(&b, &v, 30);
        assert_eq!((c[&0], c[&1], c[&2]), (10, 10, 10));
        // Loaded servers are avoided.
        *v.conns.borrow_mut() = vec![5, 0, 3];
        let c = counts(&b, &v, 10);
        assert_eq!(c.get(&1), Some(&10));
    }

    #[test]
    fn leastconn_distribution_follows_load_and_weight() {
        // Simulate requests that stay in flight: each pick adds one connection.
        let v = FakeView::new(&[1, 3]);
        let b = Leastconn::new();
        let key = client_key("127.0.0.1".parse().unwrap());
        for _ in 0..40 {
            let i = b.select(&v, &key).unwrap();
            v.conns.borrow_mut()[i] += 1;
        }
        let conns = v.conns.borrow().clone();
        assert_eq!(conns, [10, 30], "in-flight load proportional to weight");
    }

    #[test]
    fn first_fills_servers_in_order() {
        let mut v = FakeView::new(&[1, 1, 1]);
        let c = counts(&First, &v, 5);
        assert_eq!(c.get(&0), Some(&5));
        v.down[0] = true;
        let c = counts(&First, &v, 5);
        assert_eq!(c.get(&1), Some(&5));
    }
}
