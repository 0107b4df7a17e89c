//! What the HTTP layer needs from the node: the [`Service`] trait, declared here by its
//! consumer (rqlite's `http/service.go` shape) and implemented by [`crate::store::Store`].
//! The handlers parse a request, call the service, and render its answer; they never see
//! Raft.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::command::Request;
use crate::store::{
    Applied, ChangeAnswer, ClusterView, JoinRequest, Leader, Loaded, Member, MembershipError,
    ReadRequest, ReadResult, Removal, StepDownAnswer, StoreError, StoreStatus,
};

/// The store as the HTTP handlers use it. Every method's contract is the one of the
/// [`crate::store::Store`] method of the same name.
pub(crate) trait Service: Send + Sync + 'static {
    /// This node's name.
    fn name(&self) -> &str;
    /// This node's Raft id.
    fn id(&self) -> u64;
    /// Who leads, as this node sees it.
    fn leader(&self) -> Leader;
    /// Whether this leader is handing its leadership over.
    fn transferring_leadership(&self) -> bool;
    /// Why Raft no longer runs, `None` while it runs.
    fn fatal(&self) -> Option<String>;
    /// The leader's commit index as this node last heard it.
    fn commit_index(&self) -> u64;
    /// Writes `request` through the Raft log, waiting at most `timeout` for its commit.
    fn execute(
        &self,
        request: Request,
        timeout: Duration,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;
    /// Serves a read at its consistency level.
    fn query(
        &self,
        read: ReadRequest,
    ) -> impl Future<Output = Result<ReadResult, StoreError>> + Send;
    /// Whether every statement is read-only.
    fn all_read_only(
        &self,
        sql: Vec<String>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Waits until this node applied index `n`; the applied index after `timeout` otherwise.
    fn wait_applied(
        &self,
        n: u64,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), u64>> + Send;
    /// A SQLite copy of this node's database.
    fn backup(&self) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
    /// Loads a SQLite file or an SQL dump (this node leads).
    fn load(&self, body: Bytes) -> impl Future<Output = Result<Loaded, StoreError>> + Send;
    /// This node's database as SQL text.
    fn dump(
        &self,
        tables: Option<Vec<String>>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
    /// The members of the current membership and the leader's id.
    fn members(&self) -> (Option<u64>, Vec<Member>);
    /// What this node knows of itself and its cluster.
    fn status(&self) -> StoreStatus;
    /// Adds a node (this node leads).
    fn join(
        &self,
        request: JoinRequest,
    ) -> impl Future<Output = Result<ChangeAnswer, MembershipError>> + Send;
    /// Removes a node (this node leads).
    fn remove(&self, name: String)
        -> impl Future<Output = Result<Removal, MembershipError>> + Send;
    /// Makes a learner a voter (this node leads).
    fn promote(
        &self,
        name: String,
    ) -> impl Future<Output = Result<ChangeAnswer, MembershipError>> + Send;
    /// Hands leadership over (this node leads).
    fn step_down(
        &self,
        to: Option<String>,
    ) -> impl Future<Output = Result<StepDownAnswer, MembershipError>> + Send;
    /// Starts an election on this node.
    fn campaign(&self) -> impl Future<Output = Result<String, MembershipError>> + Send;
    /// Every member as this node sees it (`/cluster/nodes`).
    fn cluster_view(&self) -> impl Future<Output = ClusterView> + Send;
}
