//! What a db node tells the admin server (`/readyz`, `/status`) and its own `/status`.
//!
//! A Raft node that hit a fatal error (openraft's `running_state`, e.g. a storage error) is
//! never ready, whatever leader it last knew, and `/status` shows the error as `"fatal"`.
//!
//! Names and addresses of the cluster's members come from the membership in the log (the
//! metrics' membership config), so a node added at run time is known to every member even if
//! their farm file does not list it; the farm's db nodes are only a fallback for a node that
//! has no membership yet.
//!
//! While the leader hands its leadership over ([`DbHealth::transferring_leadership`], `webfarm db
//! step-down`), it reports no leader: the API then refuses new writes with 503 (not proposed,
//! safe to retry) so the chosen successor can catch up with the whole log and win the vote.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::error::Fatal;
use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;
use webfarm_config::Replica;
use webfarm_node::metrics::Scrape;
use webfarm_node::status::{DbStatus, RaftState, Replication, RoleStatus};

use crate::metrics::DbMetrics;
use crate::raft::log_store::LogStore;
use crate::types::NodeInfo;

/// Raft's view of one node, read from openraft's metrics.
#[derive(Clone)]
pub(crate) struct DbHealth {
    pub(crate) id: u64,
    /// The farm's db nodes (fallback when the log has no membership naming a node).
    pub(crate) members: Arc<BTreeMap<u64, NodeInfo>>,
    pub(crate) metrics: watch::Receiver<RaftMetrics<u64, NodeInfo>>,
    pub(crate) log: LogStore,
    pub(crate) applied: watch::Receiver<u64>,
    /// Whether the database holds a user table (`"has_data"` in `/status`).
    pub(crate) user_data: Arc<AtomicBool>,
    /// Set while this leader hands its leadership over: it takes no new request as leader.
    pub(crate) transferring_leadership: Arc<AtomicBool>,
    /// What the node counts for `/metrics` besides openraft's metrics.
    pub(crate) stats: Arc<DbMetrics>,
}

/// Who leads, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leader {
    /// This node.
    Me,
    /// Another node.
    Other(NodeInfo),
    /// None known (election in progress, no quorum, or a leadership transfer).
    Unknown,
}

/// Why Raft no longer runs, from its metrics: `None` while it runs.
pub(crate) fn failure(m: &RaftMetrics<u64, NodeInfo>) -> Option<String> {
    match &m.running_state {
        Ok(()) => None,
        Err(Fatal::Stopped) => Some("raft stopped".into()),
        Err(f) => Some(format!("raft failed: {f}")),
    }
}

/// What node `id` is in the membership of `m`; `None` when it is not a member.
pub(crate) fn kind_of(m: &RaftMetrics<u64, NodeInfo>, id: u64) -> Option<Replica> {
    let membership = m.membership_config.membership();
    if membership.voter_ids().any(|v| v == id) {
        Some(Replica::Voter)
    } else if membership.learner_ids().any(|l| l == id) {
        Some(Replica::Learner)
    } else {
        None
    }
}

impl DbHealth {
    /// Why Raft no longer runs (`None` while it runs).
    pub(crate) fn fatal(&self) -> Option<String> {
        failure(&self.metrics.borrow())
    }

    /// What the cluster knows of node `id`: from the log's membership, else the farm file.
    pub(crate) fn node(&self, id: u64) -> Option<NodeInfo> {
        let from_log = self
            .metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned();
        from_log.or_else(|| self.members.get(&id).cloned())
    }

    /// The name of node `id`, or its id when it is unknown.
    pub(crate) fn name_of(&self, id: u64) -> String {
        self.node(id).map_or_else(|| id.to_string(), |n| n.name)
    }

    /// What this node is in the current membership; `None` when it is not (yet) a member.
    pub(crate) fn kind(&self) -> Option<Replica> {
        kind_of(&self.metrics.borrow(), self.id)
    }

    /// The current leader as this node sees it.
    pub(crate) fn leader(&self) -> Leader {
        let (leader, state) = {
            let m = self.metrics.borrow();
            (m.current_leader, m.state)
        };
        match leader {
            Some(id) if id == self.id && state == ServerState::Leader => {
                if self.transferring_leadership.load(Ordering::Acquire) {
                    Leader::Unknown
                } else {
                    Leader::Me
                }
            }
            Some(id) if id == self.id => Leader::Unknown,
            Some(id) => match self.node(id) {
                Some(n) => Leader::Other(n),
                None => Leader::Unknown,
            },
            None => Leader::Unknown,
        }
    }
}

impl webfarm_node::Health for DbHealth {
    fn ready(&self) -> Result<(), String> {
        if let Some(f) = self.fatal() {
            return Err(f);
        }
        if self.kind().is_none() {
            return Err(format!(
                "not a member of the db cluster yet; add it from a running majority with \
                 `webfarm db add {}`",
                self.name_of(self.id)
            ));
        }
        if self.transferring_leadership.load(Ordering::Acquire) {
            return Err("handing leadership over (webfarm db step-down)".into());
        }
        match self.leader() {
            Leader::Unknown => Err("no leader".into()),
            _ => Ok(()),
        }
    }

    fn status(&self) -> RoleStatus {
        RoleStatus::Db(self.raft_status())
    }

    /// The `webfarm_db_*` families ([`crate::metrics`]).
    fn metrics(&self, scrape: &mut Scrape<'_>) -> std::fmt::Result {
        crate::metrics::write(self, scrape)
    }
}

impl DbHealth {
    /// Raft's view of this node: the `/status` details.
    pub(crate) fn raft_status(&self) -> DbStatus {
        let m = self.metrics.borrow().clone();
        let raft_state = match m.state {
            ServerState::Leader => RaftState::Leader,
            ServerState::Follower => RaftState::Follower,
            ServerState::Candidate => RaftState::Candidate,
            ServerState::Learner => RaftState::Learner,
            ServerState::Shutdown => RaftState::Shutdown,
        };
        let last_log_index = m.last_log_index.unwrap_or(0);
        let membership = m.membership_config.membership();
        let mut voters: Vec<String> = membership.voter_ids().map(|id| self.name_of(id)).collect();
        voters.sort();
        let mut learners: Vec<String> = membership
            .learner_ids()
            .map(|id| self.name_of(id))
            .collect();
        learners.sort();
        let mut replication = BTreeMap::new();
        if let Some(rep) = &m.replication {
            for (id, matched) in rep {
                if *id == self.id {
                    continue;
                }
                let index = matched.map_or(0, |l| l.index);
                replication.insert(
                    self.name_of(*id),
                    Replication {
                        replica: kind_of(&m, *id),
                        matched_index: index,
                        replicated: matched.is_some(),
                        lag: last_log_index.saturating_sub(index),
                    },
                );
            }
        }
        DbStatus {
            node_id: self.id.to_string(),
            raft_state,
            replica: kind_of(&m, self.id),
            term: m.current_term,
            leader: m.current_leader.map(|id| self.name_of(id)),
            commit_index: self.log.committed_index(),
            applied_index: m.last_applied.map_or(*self.applied.borrow(), |l| l.index),
            last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            membership_index: m.membership_config.log_id().map(|l| l.index),
            voters,
            learners,
            replication,
            has_data: self.user_data.load(Ordering::Relaxed),
            fatal: failure(&m),
            transferring_leadership: self.transferring_leadership.load(Ordering::Acquire),
        }
    }
}
