//! The read rules of rqlite's consistency levels, as pure decisions over what this node knows
//! ([`NodeView`]), so that they can be tested without Raft or HTTP.
//!
//! - `weak` (the default, also for an unknown level): served by the node that believes it
//!   leads; any other node refuses with [`StoreError::NotLeader`] (the HTTP layer forwards).
//! - `linearizable`: as `weak`, and then the leader confirms with a quorum that it still leads
//!   and waits until it applied the commit index of that moment (openraft's
//!   `ensure_linearizable`), within the request's `linearizable_timeout`.
//! - `strong`: the statements go through the Raft log as an entry of their own kind (read-only
//!   statements only), and the leader answers with the rows its apply gave.
//! - `none`: the local copy of whichever node answers. With `freshness=D` a node other than
//!   the leader that has not heard from its leader within `D` refuses with
//!   [`StoreError::StaleRead`]; with `freshness_strict` too, it must also have applied the
//!   leader's commit index it knows of, or have applied something within `D`. A leader ignores
//!   `freshness`.
//! - `auto`: `none` on a read-only replica (learner), `weak` on a voter.
//!
//! `min_index=N`: the answering node must have applied log index N ([`min_index_step`]).
//! A node that has not waits up to [`MIN_INDEX_WAIT`]. A follower whose log does not reach N
//! yet sends the read to the leader ([`StoreError::LogBehind`]); the leader refuses an N
//! beyond its own log at once ([`StoreError::BeyondLog`]): such an index was never handed out
//! by this cluster (a forged or stale read-your-writes index, a wiped cluster), and waiting
//! for it would only time out.

use std::time::Duration;

use crate::raft::health::Leader;
use crate::store::StoreError;
use crate::types::SqlStatement;

/// How long a read waits for `min_index` to be applied. Shorter than the forwarding timeout
/// and the client's per-attempt timeout, so a lagging node answers 503 and the client can try
/// another node in time.
pub(crate) const MIN_INDEX_WAIT: Duration = Duration::from_secs(2);

/// How long a `linearizable` read waits for a quorum to confirm the leader when the request
/// does not say (`linearizable_timeout`); rqlite's server default.
pub(crate) const LINEARIZABLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A read consistency level, as the request asks for it (rqlite's `level`): the client
/// API's [`Consistency`]; `auto` is resolved by [`Consistency::resolve`].
pub(crate) use webfarm_db_client::Consistency;

/// A read, as the HTTP layer hands it to the store.
#[derive(Debug, Clone)]
pub(crate) struct ReadRequest {
    /// The statements, read-only (a `strong` read refuses a write in its results).
    pub(crate) statements: Vec<SqlStatement>,
    /// The consistency level asked for.
    pub(crate) level: Consistency,
    /// `none` only: how long ago this node may last have heard from its leader.
    pub(crate) freshness: Option<Duration>,
    /// `none` with `freshness` only: the node must also be caught up (see the module docs).
    pub(crate) freshness_strict: bool,
    /// The log index this node must have applied before it reads.
    pub(crate) min_index: Option<u64>,
    /// `linearizable` only: how long the leader may take to confirm its leadership.
    pub(crate) linearizable_timeout: Duration,
    /// `strong` only: the statements run in one transaction.
    pub(crate) transaction: bool,
    /// BLOBs as arrays of bytes instead of base64.
    pub(crate) blob_array: bool,
    /// The read was already sent on by another node: it is never sent on again.
    pub(crate) forwarded: bool,
}

/// What a node knows when it decides how to serve a read.
#[derive(Debug, Clone)]
pub(crate) struct NodeView {
    /// Who leads, as this node sees it.
    pub(crate) leader: Leader,
    /// Whether this node is a read-only replica (a learner).
    pub(crate) read_only_replica: bool,
    /// The last log index this node applied.
    pub(crate) applied: u64,
    /// The leader's commit index as this node last heard it.
    pub(crate) commit: u64,
    /// The last index in this node's log.
    pub(crate) last_log: u64,
    /// How long ago this node last heard from its leader; `None`: never.
    pub(crate) since_contact: Option<Duration>,
    /// How long ago this node last applied an entry.
    pub(crate) since_applied: Duration,
}

impl NodeView {
    fn not_leader(&self) -> StoreError {
        StoreError::NotLeader {
            leader: match &self.leader {
                Leader::Other(n) => Some(n.clone()),
                _ => None,
            },
        }
    }

    /// Whether a `none` read with `freshness` is stale here.
    fn is_stale(&self, freshness: Duration, strict: bool) -> bool {
        let Some(since) = self.since_contact else {
            return true;
        };
        if since > freshness {
            return true;
        }
        if !strict || self.applied >= self.commit {
            return false;
        }
        self.since_applied > freshness
    }
}

/// How the read is served once [`admit`] let it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// From this node's copy (after `min_index`, if any).
    Local,
    /// From this node's copy once a quorum confirmed its leadership.
    Linearizable,
    /// Through the Raft log.
    Strong,
}

/// Whether this node may serve a read at `level`, and how.
///
/// # Errors
///
/// [`StoreError::NotLeader`] for `weak`, `linearizable` and `strong` reads on a node that
/// does not lead; [`StoreError::StaleRead`] for a `none` read with `freshness` on a node that
/// is not fresh enough.
pub(crate) fn admit(read: &ReadRequest, view: &NodeView) -> Result<Path, StoreError> {
    let leads = view.leader == Leader::Me;
    match read.level.resolve(view.read_only_replica) {
        Consistency::Strong if leads => Ok(Path::Strong),
        Consistency::Linearizable if leads => Ok(Path::Linearizable),
        Consistency::Weak if leads => Ok(Path::Local),
        Consistency::Strong | Consistency::Linearizable | Consistency::Weak => {
            Err(view.not_leader())
        }
        Consistency::None | Consistency::Auto => match read.freshness.filter(|f| !f.is_zero()) {
            Some(f) if !leads && view.is_stale(f, read.freshness_strict) => {
                Err(StoreError::StaleRead)
            }
            _ => Ok(Path::Local),
        },
    }
}

/// What a read with `min_index = n` does on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MinIndex {
    /// Applied already: read now.
    Reached,
    /// Wait (up to [`MIN_INDEX_WAIT`]) until `n` is applied.
    Wait,
}

/// The `min_index` step of a read (see the module docs).
///
/// # Errors
///
/// [`StoreError::BeyondLog`] on a leader whose log does not reach `n`;
/// [`StoreError::LogBehind`] on a follower whose log does not reach `n` yet, for a read not
/// forwarded already.
pub(crate) fn min_index_step(
    n: u64,
    view: &NodeView,
    forwarded: bool,
) -> Result<MinIndex, StoreError> {
    if view.applied >= n {
        return Ok(MinIndex::Reached);
    }
    if n > view.last_log {
        match &view.leader {
            // A leader's log holds every committed entry: nothing past it was handed out.
            Leader::Me => {
                return Err(StoreError::BeyondLog {
                    min_index: n,
                    commit_index: view.commit,
                })
            }
            // The leader knows whether n exists, and has it applied if it does.
            Leader::Other(leader) if !forwarded => {
                return Err(StoreError::LogBehind {
                    leader: leader.clone(),
                })
            }
            _ => {}
        }
    }
    Ok(MinIndex::Wait)
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
