//! The nemesis: at random moments it kills (SIGKILL) or pauses (SIGSTOP) a node — half the
//! time the current leader — and later restarts or resumes (SIGCONT) it. At most two nodes
//! are faulty at once, so the cluster loses its majority now and then but never for long.

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, NodeState, NODES};
use crate::rng::Rng;

/// What the nemesis did.
#[derive(Debug, Default)]
pub struct Faults {
    /// SIGKILLs.
    pub kills: usize,
    /// SIGSTOPs.
    pub pauses: usize,
    /// Faults aimed at the node that was leader.
    pub leader_faults: usize,
    /// Restarts after a kill.
    pub restarts: usize,
    /// SIGCONTs.
    pub resumes: usize,
    /// Times two nodes were faulty at once (no majority).
    pub majority_lost: usize,
    /// One line per action: `time action node`.
    pub timeline: Vec<String>,
}

impl Faults {
    /// Faults injected (kills and pauses).
    pub fn injected(&self) -> usize {
        self.kills + self.pauses
    }
}

/// Injects faults into `cluster` until `end`; leaves the faulty nodes faulty (the caller
/// heals them).
pub async fn run(cluster: &mut Cluster, mut rng: Rng, start: Instant, end: Instant) -> Faults {
    let mut f = Faults::default();
    loop {
        let pause_for = Duration::from_millis(rng.between(600, 2500));
        let now = Instant::now();
        if now + pause_for >= end {
            tokio::time::sleep_until(end.into()).await;
            break;
        }
        tokio::time::sleep(pause_for).await;
        cluster.reap_crashes();
        let at = start.elapsed().as_secs_f64();
        let faulty: Vec<usize> = (1..=NODES)
            .filter(|n| cluster.states()[n - 1] != NodeState::Up)
            .collect();
        if !faulty.is_empty() && (faulty.len() >= 2 || rng.chance(0.75)) {
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
            f.timeline.push(format!("{at:7.2}s {what} db-{n}"));
            continue;
        }
        let up: Vec<usize> = (1..=NODES)
            .filter(|n| cluster.states()[n - 1] == NodeState::Up)
            .collect();
        let leader = if rng.chance(0.5) {
            cluster.leader().await
        } else {
            None
        };
        let (n, aimed) = match leader {
            Some(l) if up.contains(&l) => (l, " (leader)"),
            _ => (up[rng.below(up.len() as u64) as usize], ""),
        };
        if !aimed.is_empty() {
            f.leader_faults += 1;
        }
        let what = if rng.chance(0.5) {
            cluster.kill(n);
            f.kills += 1;
            "SIGKILL"
        } else {
            cluster.pause(n);
            f.pauses += 1;
            "SIGSTOP"
        };
        if faulty.len() + 1 >= 2 {
            f.majority_lost += 1;
        }
        let at = start.elapsed().as_secs_f64();
        f.timeline.push(format!("{at:7.2}s {what} db-{n}{aimed}"));
    }
    cluster.reap_crashes();
    f
}
