//! Hash balancing: `source`, `uri` and `hdr(name)`, with `hash_type` `map-based` or
//! `consistent`.
//!
//! The hash is FNV-1a 64 followed by splitmix64's finalizer (every input bit reaches every
//! output bit), fixed across processes, so every lb node of the farm maps a key to the same
//! server.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use webfarm_config::HashType;

use super::roundrobin::SmoothWeighted;
use super::{Balancer, RequestKey, ServerView};

/// Ring points per unit of weight (`consistent`).
const POINTS_PER_WEIGHT: u32 = 64;

pub(crate) use webfarm_node::hash::mix64;

/// The hash of `bytes`: FNV-1a 64, then [`mix64`].
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    mix64(webfarm_node::hash::fnv1a64(bytes))
}

/// What of the request is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// The client's IP address (an IPv4-mapped IPv6 address counts as IPv4).
    Source,
    /// The path, without the query string.
    Uri,
    /// The first value of this (lower-case) header.
    Header(String),
}

impl KeySource {
    /// The key's hash, or `None` when the request has no such key (no header).
    fn hash(&self, key: &RequestKey<'_>) -> Option<u64> {
        match self {
            KeySource::Source => Some(match key.client {
                IpAddr::V4(v4) => hash_bytes(&v4.octets()),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => hash_bytes(&v4.octets()),
                    None => hash_bytes(&v6.octets()),
                },
            }),
            KeySource::Uri => Some(hash_bytes(key.path.as_bytes())),
            KeySource::Header(name) => key
                .headers?
                .get(name.as_str())
                .map(|v| v.as_bytes())
                .filter(|v| !v.is_empty())
                .map(hash_bytes),
        }
    }
}

/// The consistent-hash ring for one set of weights.
#[derive(Debug)]
struct Ring {
    weights: Vec<u32>,
    /// `(point, server index)`, sorted by point.
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn build(view: &dyn ServerView) -> Ring {
        let weights: Vec<u32> = (0..view.len()).map(|i| view.base_weight(i)).collect();
        let mut points = Vec::new();
        for (i, &w) in weights.iter().enumerate() {
            let base = hash_bytes(view.name(i).as_bytes());
            for p in 0..w.saturating_mul(POINTS_PER_WEIGHT) {
                points.push((mix64(base ^ mix64(u64::from(p) + 1)), i));
            }
        }
        points.sort_unstable();
        Ring { weights, points }
    }

    fn matches(&self, view: &dyn ServerView) -> bool {
        self.weights.len() == view.len()
            && self
                .weights
                .iter()
                .enumerate()
                .all(|(i, &w)| view.base_weight(i) == w)
    }

    /// The first eligible server clockwise from `hash`.
    fn lookup(&self, view: &dyn ServerView, hash: u64) -> Option<usize> {
        let n = self.points.len();
        let start = self.points.partition_point(|&(p, _)| p < hash);
        (0..n)
            .map(|k| self.points[(start + k) % n].1)
            .find(|&i| view.eligible(i))
    }
}

/// A hash balancer: the key picks the server; requests without a key go round robin.
#[derive(Debug)]
pub(crate) struct HashBalancer {
    source: KeySource,
    kind: HashType,
    ring: ArcSwapOption<Ring>,
    fallback: SmoothWeighted,
}

impl HashBalancer {
    /// A balancer hashing `source` over `count` servers.
    pub fn new(source: KeySource, kind: HashType, count: usize) -> HashBalancer {
        HashBalancer {
            source,
            kind,
            ring: ArcSwapOption::empty(),
            fallback: SmoothWeighted::new(count),
        }
    }

    /// `map-based`: `hash % total weight` over the eligible servers (their run-time
    /// weights, so a slowstart ramp does not remap keys).
    fn map_based(view: &dyn ServerView, hash: u64) -> Option<usize> {
        let total: u64 = (0..view.len())
            .filter(|&i| view.eligible(i))
            .map(|i| u64::from(view.base_weight(i)))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = hash % total;
        for i in 0..view.len() {
            if !view.eligible(i) {
                continue;
            }
            let w = u64::from(view.base_weight(i));
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    fn consistent(&self, view: &dyn ServerView, hash: u64) -> Option<usize> {
        let current = self.ring.load();
        let ring = match current.as_ref() {
            Some(r) if r.matches(view) => r.clone(),
            _ => {
                let r = Arc::new(Ring::build(view));
                self.ring.store(Some(r.clone()));
                r
            }
        };
        ring.lookup(view, hash)
    }
}

impl Balancer for HashBalancer {
    fn select(&self, view: &dyn ServerView, key: &RequestKey<'_>) -> Option<usize> {
        let Some(hash) = self.source.hash(key) else {
            return self.fallback.select(view, key);
        };
        match self.kind {
            HashType::MapBased => HashBalancer::map_based(view, hash),
            HashType::Consistent => self.consistent(view, hash),
        }
    }

    fn is_deterministic(&self, key: &RequestKey<'_>) -> bool {
        self.source.hash(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use http::HeaderMap;

    fn pick_for(b: &HashBalancer, v: &FakeView, path: &str) -> usize {
        let key = RequestKey {
            client: "127.0.0.1".parse().unwrap(),
            path,
            headers: None,
        };
        b.select(v, &key).unwrap()
    }

    fn spread(b: &HashBalancer, v: &FakeView, n: usize) -> Vec<usize> {
        let mut counts = vec![0; v.len()];
        for k in 0..n {
            counts[pick_for(b, v, &format!("/item/{k}"))] += 1;
        }
        counts
    }

    #[test]
    fn same_key_same_server() {
        for kind in [HashType::MapBased, HashType::Consistent] {
            let v = FakeView::new(&[1, 1, 1]);
            let b = HashBalancer::new(KeySource::Uri, kind, 3);
            for k in 0..50 {
                let path = format!("/p/{k}");
                let first = pick_for(&b, &v, &path);
                assert!((0..5).all(|_| pick_for(&b, &v, &path) == first));
            }
        }
    }

    #[test]
    fn keys_spread_by_weight() {
        for kind in [HashType::MapBased, HashType::Consistent] {
            let v = FakeView::new(&[1, 1, 2]);
            let b = HashBalancer::new(KeySource::Uri, kind, 3);
            let c = spread(&b, &v, 8000);
            let share = |i: usize| c[i] as f64 / 8000.0;
            assert!((share(0) - 0.25).abs() < 0.06, "{kind:?} {c:?}");
            assert!((share(1) - 0.25).abs() < 0.06, "{kind:?} {c:?}");
            assert!((share(2) - 0.50).abs() < 0.06, "{kind:?} {c:?}");
        }
    }

    #[test]
    fn consistent_remaps_only_the_down_servers_keys() {
        let mut v = FakeView::new(&[1, 1, 1, 1]);
        let b = HashBalancer::new(KeySource::Uri, HashType::Consistent, 4);
        let before: Vec<usize> = (0..2000)
            .map(|k| pick_for(&b, &v, &format!("/k{k}")))
            .collect();
        v.down[2] = true;
        let after: Vec<usize> = (0..2000)
            .map(|k| pick_for(&b, &v, &format!("/k{k}")))
            .collect();
        for (k, (&x, &y)) in before.iter().zip(&after).enumerate() {
            if x == 2 {
                assert_ne!(y, 2, "key {k} left the down server");
            } else {
                assert_eq!(x, y, "key {k} of a server still up moved");
            }
        }
        // Back up: every key returns where it was.
        v.down[2] = false;
        let again: Vec<usize> = (0..2000)
            .map(|k| pick_for(&b, &v, &format!("/k{k}")))
            .collect();
        assert_eq!(before, again);
    }

    #[test]
    fn map_based_remaps_many_keys() {
        let mut v = FakeView::new(&[1, 1, 1, 1]);
        let b = HashBalancer::new(KeySource::Uri, HashType::MapBased, 4);
        let before: Vec<usize> = (0..2000)
            .map(|k| pick_for(&b, &v, &format!("/k{k}")))
            .collect();
        v.down[2] = true;
        let moved = (0..2000)
            .filter(|&k| before[k] != 2 && pick_for(&b, &v, &format!("/k{k}")) != before[k])
            .count();
        assert!(
            moved > 500,
            "map-based moves keys of servers still up too: {moved}"
        );
    }

    #[test]
    fn source_and_header_keys() {
        let v = FakeView::new(&[1, 1, 1]);
        let b = HashBalancer::new(KeySource::Source, HashType::Consistent, 3);
        let mut counts = [0; 3];
        for a in 0..=255u8 {
            for c in [1u8, 2, 3, 4] {
                let ip = IpAddr::from([10, c, a, 7]);
                let i = b.select(&v, &client_key(ip)).unwrap();
                assert_eq!(b.select(&v, &client_key(ip)), Some(i));
                counts[i] += 1;
            }
        }
        assert!(counts.iter().all(|&n| n > 200), "{counts:?}");
        let mapped: IpAddr = "::ffff:10.1.0.7".parse().unwrap();
        assert_eq!(
            b.select(&v, &client_key(mapped)),
            b.select(&v, &client_key(IpAddr::from([10, 1, 0, 7])))
        );

        let b = HashBalancer::new(KeySource::Header("x-user".into()), HashType::MapBased, 3);
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        let key = RequestKey {
            client: "127.0.0.1".parse().unwrap(),
            path: "/",
            headers: Some(&h),
        };
        assert!(b.is_deterministic(&key));
        let alice = b.select(&v, &key).unwrap();
        assert!((0..10).all(|_| b.select(&v, &key) == Some(alice)));
        // Without the header: round robin.
        let none = HeaderMap::new();
        let key = RequestKey {
            headers: Some(&none),
            ..key
        };
        assert!(!b.is_deterministic(&key));
        let picks: Vec<usize> = (0..3).map(|_| b.select(&v, &key).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2]);
    }
}
