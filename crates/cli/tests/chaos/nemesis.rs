//! The nemesis: at random moments (every 0.5–2 s) it injects a fault or heals one.
//!
//! Process faults: it kills (SIGKILL) or pauses (SIGSTOP) a node — half the time the current
//! leader — and later restarts or resumes (SIGCONT) it; at most two nodes are faulty at once,
//! so the cluster loses its majority now and then but never for long. Network faults (when
//! the nodes run in namespaces, half of the faults): isolate the leader, random halves, a
//! majorities ring, one-way loss ([`crate::partition`]); at most one at a time, healed after
//! its duration (1–5 s). The two kinds overlap freely.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, NodeState, NODES};
use crate::partition::{self, Kind};
use crate::rng::Rng;

/// What the nemesis did.
#[derive(Debug, Default)]
pub struct Faults {
    /// Faults injected, by kind (`SIGKILL`, `SIGSTOP`, `isolate-leader`, ...).
    pub counts: BTreeMap<&'static str, usize>,
    /// Faults aimed at the node that was leader.
    pub leader_faults: usize,
    /// Restarts after a kill.
    pub restarts: usize,
    /// SIGCONTs.
    pub resumes: usize,
    /// Network faults healed.
    pub network_heals: usize,
    /// Times two nodes were faulty at once (no majority).
    pub majority_lost: usize,
    /// One line per action: `time action node`.
    pub timeline: Vec<String>,
}

impl Faults {
    /// Faults injected, of every kind.
    pub fn injected(&self) -> usize {
        self.counts.values().sum()
    }

    /// `12 SIGKILL, 9 SIGSTOP, 4 isolate-leader, ...`: every kind, zeros included.
    pub fn by_kind(&self) -> String {
        let network = Kind::ALL.map(Kind::name);
        ["SIGKILL", "SIGSTOP"]
            .iter()
            .chain(&network)
            .map(|k| format!("{} {k}", self.counts.get(k).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn note(&mut self, start: Instant, line: String) {
        let at = start.elapsed().as_secs_f64();
        self.timeline.push(format!("{at:7.2}s {line}"));
    }
}

/// Injects faults into `cluster` until `end`; leaves the faulty nodes faulty and the
/// network cut (the caller heals them).
pub async fn run(cluster: &mut Cluster, mut rng: Rng, start: Instant, end: Instant) -> Faults {
    let mut f = Faults::default();
    let mut network_until: Option<Instant> = None;
    loop {
        let gap = Duration::from_millis(rng.between(500, 2000));
        if Instant::now() + gap >= end {
            tokio::time::sleep_until(end.into()).await;
            break;
        }
        tokio::time::sleep(gap).await;
        cluster.reap_crashes();
        if network_until.is_some_and(|u| Instant::now() >= u) {
            cluster.heal_network();
            network_until = None;
            f.network_heals += 1;
            f.note(start, "heal network".into());
            continue;
        }
        let faulty: Vec<usize> = (1..=NODES)
            .filter(|n| cluster.states()[n - 1] != NodeState::Up)
            .collect();
        if !faulty.is_empty() && (faulty.len() >= 2 || rng.chance(0.75)) {
            heal_process(cluster, &mut rng, &faulty, &mut f, start);
        } else if cluster.has_network() && network_until.is_none() && rng.chance(0.5) {
            let lasts = Duration::from_millis(rng.between(1000, 5000));
            cut_network(cluster, &mut rng, &mut f, start, lasts).await;
            network_until = Some(Instant::now() + lasts);
        } else {
            process_fault(cluster, &mut rng, faulty.len(), &mut f, start).await;
        }
    }
    cluster.reap_crashes();
    f
}

fn heal_process(
    cluster: &mut Cluster,
    rng: &mut Rng,
    faulty: &[usize],
    f: &mut Faults,
    start: Instant,
) {
    let n = faulty[rng.below(faulty.len() as u64) as usize];
    let what = match cluster.states()[n - 1] {
        NodeState::Paused => {
            f.resumes += 1;
            "SIGCONT"
        }
        _ => {
            f.restarts += 1;
            "restart"
        }
    };
    cluster.heal(n);
    f.note(start, format!("{what} db-{n}"));
}

/// The leader half the time, else a random running node; and whether it is the leader.
async fn target(cluster: &Cluster, rng: &mut Rng, always_leader: bool) -> (usize, bool) {
    let up: Vec<usize> = (1..=NODES)
        .filter(|n| cluster.states()[n - 1] == NodeState::Up)
        .collect();
    let leader = if always_leader || rng.chance(0.5) {
        cluster.leader().await
    } else {
        None
    };
    match leader {
        Some(l) if up.contains(&l) => (l, true),
        _ if up.is_empty() => (1 + rng.below(NODES as u64) as usize, false),
        _ => (up[rng.below(up.len() as u64) as usize], false),
    }
}

async fn process_fault(
    cluster: &mut Cluster,
    rng: &mut Rng,
    faulty: usize,
    f: &mut Faults,
    start: Instant,
) {
    let (n, leader) = target(cluster, rng, false).await;
    f.leader_faults += usize::from(leader);
    let what = if rng.chance(0.5) {
        cluster.kill(n);
        "SIGKILL"
    } else {
        cluster.pause(n);
        "SIGSTOP"
    };
    *f.counts.entry(what).or_default() += 1;
    if faulty + 1 >= 2 {
        f.majority_lost += 1;
    }
    let aimed = if leader { " (leader)" } else { "" };
    f.note(start, format!("{what} db-{n}{aimed}"));
}

async fn cut_network(
    cluster: &mut Cluster,
    rng: &mut Rng,
    f: &mut Faults,
    start: Instant,
    lasts: Duration,
) {
    let kind = Kind::ALL[rng.below(Kind::ALL.len() as u64) as usize];
    let cuts = match kind {
        Kind::IsolateLeader => {
            let (l, leader) = target(cluster, rng, true).await;
            f.leader_faults += usize::from(leader);
            let others = (1..=NODES).filter(|&n| n != l).collect();
            partition::complete_grudge(&[vec![l], others])
        }
        Kind::RandomHalves => partition::complete_grudge(&partition::random_halves(rng)),
        Kind::MajoritiesRing => partition::majorities_ring(NODES),
        Kind::OneWayLoss => partition::one_way_loss(rng),
    };
    cluster.cut(&cuts);
    *f.counts.entry(kind.name()).or_default() += 1;
    f.note(
        start,
        format!(
            "{} for {:.1}s: {}",
            kind.name(),
            lasts.as_secs_f64(),
            partition::describe(&cuts)
        ),
    );
}
