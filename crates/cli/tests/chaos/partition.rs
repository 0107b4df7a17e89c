//! Network faults between the db nodes, Jepsen's way: a fault is a *grudge*, the set of
//! (node, peer) pairs where the node drops what arrives from the peer. Each node in its own
//! network namespace gets an nftables table `inet chaos` with one rule per peer it drops
//! (`ip saddr PEER drop`, or a random share of the packets for a lossy link); healing
//! deletes the tables. The test process (the bridge's address) is never dropped, so clients
//! still reach every node, as Jepsen's control node does.

use std::collections::BTreeMap;

use crate::cluster::NODES;
use crate::rng::Rng;

/// Node `at` drops `percent` % of the packets that arrive from node `from` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Drop {
    /// The node whose input is filtered.
    pub at: usize,
    /// The peer whose packets it drops.
    pub from: usize,
    /// 100 for a cut link, less for a lossy one.
    pub percent: u8,
}

/// The network faults, named after Jepsen's nemeses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The leader against the others.
    IsolateLeader,
    /// A random minority against the majority.
    RandomHalves,
    /// Every node sees a majority (itself and the next ⌊N/2⌋ nodes of a ring), no two nodes
    /// the same one.
    MajoritiesRing,
    /// Packets from one node to another are lost (all of them, or a random share); the
    /// other direction works.
    OneWayLoss,
}

impl Kind {
    /// Every kind, for counting.
    pub const ALL: [Kind; 4] = [
        Kind::IsolateLeader,
        Kind::RandomHalves,
        Kind::MajoritiesRing,
        Kind::OneWayLoss,
    ];

    /// Jepsen's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::IsolateLeader => "isolate-leader",
            Kind::RandomHalves => "random-halves",
            Kind::MajoritiesRing => "majorities-ring",
            Kind::OneWayLoss => "one-way-loss",
        }
    }
}

/// Every node drops what comes from nodes outside its component.
pub fn complete_grudge(components: &[Vec<usize>]) -> Vec<Drop> {
    let mut drops = Vec::new();
    for c in components {
        for &at in c {
            for other in components.iter().filter(|o| *o != c) {
                drops.extend(other.iter().map(|&from| Drop {
                    at,
                    from,
                    percent: 100,
                }));
            }
        }
    }
    drops.sort();
    drops
}

/// Node `i` keeps what comes from itself and the next ⌊n/2⌋ nodes of the ring and drops
/// the rest: each node sees a majority, and the majorities all differ. With 3 nodes every
/// pair is cut in one direction (1 drops 3, 2 drops 1, 3 drops 2).
pub fn majorities_ring(n: usize) -> Vec<Drop> {
    let mut drops = Vec::new();
    for at in 1..=n {
        let sees: Vec<usize> = (0..=n / 2).map(|k| (at - 1 + k) % n + 1).collect();
        drops.extend((1..=n).filter(|p| !sees.contains(p)).map(|from| Drop {
            at,
            from,
            percent: 100,
        }));
    }
    drops
}

/// A random minority (⌊n/2⌋ nodes) against the rest.
pub fn random_halves(rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut nodes: Vec<usize> = (1..=NODES).collect();
    for i in (1..nodes.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        nodes.swap(i, j);
    }
    let rest = nodes.split_off(NODES / 2);
    vec![nodes, rest]
}

/// One direction of one link, all of it or a random 20–60 % share.
pub fn one_way_loss(rng: &mut Rng) -> Vec<Drop> {
    let from = 1 + rng.below(NODES as u64) as usize;
    let at = 1 + (from + rng.below(NODES as u64 - 1) as usize) % NODES;
    let percent = if rng.chance(0.5) {
        100
    } else {
        rng.between(20, 60) as u8
    };
    vec![Drop { at, from, percent }]
}

/// The nft commands that install `drops` in each node's namespace: node → one argument for
/// `nft` (commands separated by `;`). `host(n)` is node n's address.
pub fn nft_scripts(drops: &[Drop], host: impl Fn(usize) -> String) -> BTreeMap<usize, String> {
    let mut scripts: BTreeMap<usize, String> = BTreeMap::new();
    for d in drops {
        let s = scripts.entry(d.at).or_insert_with(|| {
            "add table inet chaos; add chain inet chaos input { type filter hook input \
             priority 0 ; policy accept ; }"
                .to_string()
        });
        let share = if d.percent >= 100 {
            String::new()
        } else {
            format!("numgen random mod 100 < {} ", d.percent)
        };
        s.push_str(&format!(
            "; add rule inet chaos input ip saddr {} {share}drop",
            host(d.from)
        ));
    }
    scripts
}

/// `1->2 3->2 (30%)`: who drops what, for the fault timeline.
pub fn describe(drops: &[Drop]) -> String {
    drops
        .iter()
        .map(|d| {
            let share = if d.percent < 100 {
                format!(" ({}%)", d.percent)
            } else {
                String::new()
            };
            format!("db-{}-x->db-{}{share}", d.from, d.at)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_of_three_cuts_each_pair_in_one_direction() {
        let d: Vec<(usize, usize)> = majorities_ring(3).iter().map(|d| (d.at, d.from)).collect();
        assert_eq!(d, [(1, 3), (2, 1), (3, 2)]);
        // Five nodes: each sees itself and two more, drops two.
        let five = majorities_ring(5);
        assert_eq!(five.len(), 10);
        assert!(five
            .iter()
            .filter(|d| d.at == 1)
            .all(|d| d.from == 4 || d.from == 5));
    }

    #[test]
    fn a_complete_grudge_cuts_both_ways_between_components() {
        let d = complete_grudge(&[vec![2], vec![1, 3]]);
        let pairs: Vec<(usize, usize)> = d.iter().map(|d| (d.at, d.from)).collect();
        assert_eq!(pairs, [(1, 2), (2, 1), (2, 3), (3, 2)]);
    }

    #[test]
    fn random_halves_are_a_minority_and_a_majority_and_one_way_loss_is_one_link() {
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let h = random_halves(&mut rng);
            assert_eq!((h[0].len(), h[1].len()), (1, 2));
            let l = one_way_loss(&mut rng);
            assert_eq!(l.len(), 1);
            assert_ne!(l[0].at, l[0].from);
        }
        let s = nft_scripts(&majorities_ring(3), |n| format!("10.0.0.{n}"));
        assert!(s[&2].ends_with("ip saddr 10.0.0.1 drop"), "{}", s[&2]);
    }
}
