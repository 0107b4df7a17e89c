//! Server selection: the [`Balancer`] trait and one type per algorithm (HAProxy's
//! `balance`), one file per family:
//!
//! - [`roundrobin`]: `roundrobin` (smooth weighted, weights read at every pick, so run-time
//!   changes and slowstart apply at once) and `static-rr` (a fixed sequence).
//! - [`leastconn`]: `leastconn` (fewest requests in flight per unit of weight) and `first`.
//! - [`hash`]: `source`, `uri`, `hdr(name)` with `hash_type` `map-based` or `consistent`.
//! - [`random`]: `random(N)`, the power of N choices.
//!
//! A balancer sees the servers through a [`ServerView`]: which are eligible for this pick
//! (usable, not yet tried, with a free slot), their effective weights and load. It never
//! does I/O and holds no lock across a pick longer than a few additions per server.

mod hash;
mod leastconn;
mod random;
mod roundrobin;

use std::net::IpAddr;

use http::HeaderMap;
use webfarm_config::{Balance, HashType};

pub(crate) use hash::{HashBalancer, KeySource};
pub(crate) use leastconn::{First, Leastconn};
pub(crate) use random::Random;
pub(crate) use roundrobin::{SmoothWeighted, StaticRr};

/// The servers of a backend as one pick sees them.
pub(crate) trait ServerView {
    /// How many servers (eligible or not); indices are `0..len()`.
    fn len(&self) -> usize;
    /// Whether server `i` may be picked now.
    fn eligible(&self, i: usize) -> bool;
    /// Server `i`'s effective weight now (slowstart applied).
    fn weight(&self, i: usize) -> u32;
    /// Server `i`'s run-time weight without the slowstart ramp (stable, for hash rings).
    fn base_weight(&self, i: usize) -> u32;
    /// Requests in flight on server `i`.
    fn conns(&self, i: usize) -> u64;
    /// Server `i`'s name (consistent hash points derive from it).
    fn name(&self, i: usize) -> &str;
}

/// What of a request the hash algorithms may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestKey<'a> {
    /// The client's address (`source`).
    pub client: IpAddr,
    /// The request path without the query (`uri`); empty in TCP mode.
    pub path: &'a str,
    /// The request headers (`hdr(name)`); `None` in TCP mode.
    pub headers: Option<&'a HeaderMap>,
}

/// Picks the server for the next request.
pub(crate) trait Balancer: Send + Sync + std::fmt::Debug {
    /// An eligible server, or `None` when none is.
    fn select(&self, view: &dyn ServerView, key: &RequestKey<'_>) -> Option<usize>;

    /// True when the algorithm maps a request to one server (hashes): a full server is
    /// waited for rather than skipped, so a key keeps its server.
    fn is_deterministic(&self, key: &RequestKey<'_>) -> bool {
        let _ = key;
        false
    }
}

/// The balancer of `balance` / `hash_type` for servers of `weights` (file order).
pub(crate) fn build(balance: &Balance, hash_type: HashType, weights: &[u32]) -> Box<dyn Balancer> {
    match balance {
        Balance::Roundrobin => Box::new(SmoothWeighted::new(weights.len())),
        Balance::StaticRr => Box::new(StaticRr::new(weights)),
        Balance::Leastconn => Box::new(Leastconn::new()),
        Balance::First => Box::new(First),
        Balance::Source => Box::new(HashBalancer::new(
            KeySource::Source,
            hash_type,
            weights.len(),
        )),
        Balance::Uri => Box::new(HashBalancer::new(KeySource::Uri, hash_type, weights.len())),
        Balance::Hdr(name) => Box::new(HashBalancer::new(
            KeySource::Header(name.clone()),
            hash_type,
            weights.len(),
        )),
        Balance::Random { draws } => Box::new(Random::new(*draws)),
    }
}

/// Test helpers: a fixed view over plain vectors.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// Servers `s0, s1, ...` with weights, all eligible unless marked down.
    pub struct FakeView {
        pub weights: Vec<u32>,
        pub conns: RefCell<Vec<u64>>,
        pub down: Vec<bool>,
        pub names: Vec<String>,
    }

    impl FakeView {
        pub fn new(weights: &[u32]) -> FakeView {
            FakeView {
                weights: weights.to_vec(),
                conns: RefCell::new(vec![0; weights.len()]),
                down: vec![false; weights.len()],
                names: (0..weights.len()).map(|i| format!("s{i}")).collect(),
            }
        }
    }

    impl ServerView for FakeView {
        fn len(&self) -> usize {
            self.weights.len()
        }
        fn eligible(&self, i: usize) -> bool {
            !self.down[i] && self.weights[i] > 0
        }
        fn weight(&self, i: usize) -> u32 {
            self.weights[i]
        }
        fn base_weight(&self, i: usize) -> u32 {
            self.weights[i]
        }
        fn conns(&self, i: usize) -> u64 {
            self.conns.borrow()[i]
        }
        fn name(&self, i: usize) -> &str {
            &self.names[i]
        }
    }

    /// A key with only a client address.
    pub fn client_key(ip: IpAddr) -> RequestKey<'static> {
        RequestKey {
            client: ip,
            path: "/",
            headers: None,
        }
    }

    /// `n` picks with `key`, counted by server.
    pub fn counts(b: &dyn Balancer, v: &FakeView, n: usize) -> HashMap<usize, usize> {
        let key = client_key(IpAddr::from([127, 0, 0, 1]));
        let mut out = HashMap::new();
        for _ in 0..n {
            *out.entry(b.select(v, &key).unwrap()).or_insert(0) += 1;
        }
        out
    }
}
