//! What a db node tells the admin server (`/readyz`, `/status`) and its own `/status`.
//!
//! A Raft node that hit a fatal error (openraft's `running_state`, e.g. a storage error) is
//! never ready, whatever leader it last knew, and `/status` shows the error as `"fatal"`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::error::Fatal;
use openraft::{RaftMetrics, ServerState};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::log_store::LogStore;
use crate::types::NodeInfo;

/// Raft's view of one node, read from openraft's metrics.
#[derive(Clone)]
pub(crate) struct DbHealth {
    pub(crate) id: u64,
    pub(crate) members: Arc<BTreeMap<u64, NodeInfo>>,
    pub(crate) metrics: watch::Receiver<RaftMetrics<u64, NodeInfo>>,
    pub(crate) log: LogStore,
    pub(crate) applied: watch::Receiver<u64>,
    /// Whether the database holds a user table (`"has_data"` in `/status`).
    pub(crate) user_data: Arc<AtomicBool>,
}

/// Who leads, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leader {
    /// This node.
    Me,
    /// Another node.
    Other(NodeInfo),
    /// None known (election in progress, or no quorum).
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

impl DbHealth {
    /// Why Raft no longer runs (`None` while it runs).
    pub(crate) fn fatal(&self) -> Option<String> {
        failure(&self.metrics.borrow())
    }

    fn name_of(&self, id: u64) -> String {
        self.members
            .get(&id)
            .map_or_else(|| id.to_string(), |n| n.name.clone())
    }

    /// The current leader as this node sees it.
    pub(crate) fn leader(&self) -> Leader {
        let (leader, state) = {
            let m = self.metrics.borrow();
            (m.current_leader, m.state)
        };
        match leader {
            Some(id) if id == self.id && state == ServerState::Leader => Leader::Me,
            Some(id) if id == self.id => Leader::Unknown,
            Some(id) => match self.members.get(&id) {
                Some(n) => Leader::Other(n.clone()),
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
        match self.leader() {
            Leader::Unknown => Err("no leader".into()),
            _ => Ok(()),
        }
    }

    fn status(&self) -> Value {
        let m = self.metrics.borrow().clone();
        let state = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        let last_log_index = m.last_log_index.unwrap_or(0);
        let mut voters: Vec<String> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|id| self.name_of(id))
            .collect();
        voters.sort();
        let mut replication = serde_json::Map::new();
        if let Some(rep) = &m.replication {
            for (id, matched) in rep {
                if *id == self.id {
                    continue;
                }
                let matched = matched.map_or(0, |l| l.index);
                replication.insert(
                    self.name_of(*id),
                    json!({
                        "matched_index": matched,
                        "lag": last_log_index.saturating_sub(matched),
                    }),
                );
            }
        }
        let mut out = json!({
            "node_id": self.id.to_string(),
            "raft_state": state,
            "term": m.current_term,
            "leader": m.current_leader.map(|id| self.name_of(id)),
            "commit_index": self.log.committed_index(),
            "applied_index": m.last_applied.map_or(*self.applied.borrow(), |l| l.index),
            "last_log_index": last_log_index,
            "voters": voters,
            "replication": replication,
            "has_data": self.user_data.load(Ordering::Relaxed),
        });
        if let (Some(f), Value::Object(o)) = (failure(&m), &mut out) {
            o.insert("fatal".into(), Value::from(f));
        }
        out
    }
}
