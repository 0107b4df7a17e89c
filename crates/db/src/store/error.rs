//! Why the store did not serve a request: one variant per answer the HTTP layer gives.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};

use crate::sqlite::database::DatabaseError;
use crate::sqlite::dump::LoadError;
use crate::types::NodeInfo;

/// Why a write, a read or a query of the store failed. Whether a retry is safe follows from
/// the variant: nothing was proposed for `NotLeader`, `Stopped`, `StaleRead`, `BeyondLog`,
/// `LogBehind`, `NotApplied`, `NotConfirmed`, `Unconfirmed`; a write may still be applied
/// after `CommitTimeout` or `Lost`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// This node does not lead; `leader` is the one it knows of, if any.
    #[error("not leader")]
    NotLeader {
        /// The leader as this node knows it.
        leader: Option<NodeInfo>,
    },
    /// A `none` read with `freshness`: this node has not heard from its leader recently
    /// enough (rqlite answers `{"error": "stale read"}`).
    #[error("stale read")]
    StaleRead,
    /// `min_index` is beyond the leader's log: it was never handed out by this cluster.
    #[error("min_index {min_index} is beyond the log (commit index {commit_index})")]
    BeyondLog {
        /// The index the read asked for.
        min_index: u64,
        /// The leader's commit index.
        commit_index: u64,
    },
    /// `min_index` is beyond this follower's log: the leader can tell whether it exists.
    #[error("min_index is beyond this node's log; the leader {} can serve it", leader.name)]
    LogBehind {
        /// The leader to send the read to.
        leader: NodeInfo,
    },
    /// `min_index` was not applied here in time.
    #[error(
        "node {node} has applied log index {applied}, below min_index {min_index}, after \
         {waited:?}; try another node or later"
    )]
    NotApplied {
        /// This node's name.
        node: String,
        /// What it applied.
        applied: u64,
        /// What the read asked for.
        min_index: u64,
        /// How long it waited.
        waited: Duration,
    },
    /// A `weak` or `linearizable` read on a leader that restarted and has not yet applied
    /// the log it held at start (see `Store::reach_startup_log`).
    #[error(
        "node {node} restarted and has applied its log up to index {applied} of {startup} \
         after {waited:?}; retry"
    )]
    CatchingUp {
        /// This node's name.
        node: String,
        /// What it applied.
        applied: u64,
        /// The last log index it held at start.
        startup: u64,
        /// How long it waited.
        waited: Duration,
    },
    /// A `linearizable` read: a quorum did not confirm the leader in time.
    #[error(
        "leadership not confirmed by a quorum within linearizable_timeout ({0:?}); the read \
         was not served"
    )]
    NotConfirmed(Duration),
    /// A `linearizable` read: Raft could not confirm the leader.
    #[error("cannot confirm leadership: {0}")]
    Unconfirmed(#[source] Box<RaftError<u64, CheckIsLeaderError<u64, NodeInfo>>>),
    /// Not proposed: Raft is stopping, or the group commit task is gone.
    #[error("{0}")]
    Stopped(String),
    /// Proposed, but not applied within the timeout: it may still be.
    #[error("the write was not committed within {0:?}; it may still be applied")]
    CommitTimeout(Duration),
    /// Proposed, but Raft stopped before confirming: it may or may not have been applied.
    #[error("raft stopped before confirming the write; it may or may not have been applied")]
    Lost,
    /// Raft refused the entry for another reason.
    #[error("{0}")]
    Rejected(String),
    /// This node's database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// A `/db/load` body that cannot be loaded.
    #[error(transparent)]
    InvalidLoad(#[from] LoadError),
    /// The SQL dump of this node's database failed.
    #[error(transparent)]
    Dump(rusqlite::Error),
}
