//! The store: the one thing the HTTP layer talks to (rqlite's `store` package).
//!
//! A [`Store`] holds one node's Raft instance, its view of the cluster ([`DbHealth`]), its
//! SQLite database and the group commit task, and answers in plain terms: a write is
//! [`Store::execute`]d through the Raft log, a read is served by [`Store::query`] at the
//! consistency level it asks for ([`read`]), membership changes go through
//! [`Store::join`], [`Store::remove`], [`Store::promote`] and [`Store::step_down`], and
//! [`Store::status`] tells what the node knows. Every refusal is a [`StoreError`]; forwarding
//! a request to the leader it names is the HTTP layer's job.
//!
//! The HTTP layer sees the store only through the trait it declares
//! ([`crate::http::service::Service`]), which [`Store`] implements: it never touches openraft.

mod bulk;
mod error;
pub(crate) mod read;
mod service;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use webfarm_config::Farm;
use webfarm_node::http::HttpClient;
use webfarm_node::Health as _;

pub(crate) use self::bulk::Loaded;
pub(crate) use self::error::StoreError;
use self::read::{admit, min_index_step, MinIndex, NodeView, Path as ReadPath, MIN_INDEX_WAIT};
pub(crate) use self::read::{Consistency, ReadRequest};
use crate::command::{Request, SqlRequest};
pub(crate) use crate::raft::group_commit::Applied;
use crate::raft::group_commit::{GroupCommit, WriteError};
use crate::raft::health::DbHealth;
pub(crate) use crate::raft::health::Leader;
pub(crate) use crate::raft::membership::{JoinRequest, Membership, MembershipError, Removal};
use crate::raft::network::LeaderContact;
use crate::sqlite::database::Database;
use crate::types::{NodeInfo, Outcome, Raft};
pub(crate) use webfarm_db_client::{ChangeAnswer, ClusterView, StepDownAnswer};
use webfarm_node::status::DbStatus;

/// How long the leader waits for a write to be committed and applied. Shorter than the
/// forwarding timeout, so a follower relays the leader's answer (even "not committed in
/// time") instead of timing out itself.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a read gave.
#[derive(Debug)]
pub(crate) enum ReadResult {
    /// The rows of each statement, read from this node's copy.
    Rows(Vec<Outcome>),
    /// A `strong` read: the rows its log entry gave, and the entry's index.
    Applied(Applied),
}

/// One member of the current membership.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Its Raft node id.
    pub(crate) id: u64,
    /// Its name and addresses.
    pub(crate) node: NodeInfo,
    /// A voter (else a read-only replica, a learner).
    pub(crate) voter: bool,
}

/// What a node knows of itself and its cluster, for `/status`.
#[derive(Debug, Clone)]
pub(crate) struct StoreStatus {
    /// The node's Raft view as flat fields (`raft_state`, `term`, `leader`, `voters`...),
    /// as the admin server shows it.
    pub(crate) raft: DbStatus,
    /// This node.
    pub(crate) me: NodeInfo,
    /// The leader, if known, and whether a member.
    pub(crate) leader: Option<NodeInfo>,
    /// Whether this node is ready to serve (a member, a leader known, Raft running).
    pub(crate) ready: bool,
    /// The current term.
    pub(crate) term: u64,
    /// The leader's commit index as this node last heard it.
    pub(crate) commit_index: u64,
    /// The last index this node applied.
    pub(crate) applied_index: u64,
    /// The last index in this node's log.
    pub(crate) last_log_index: u64,
    /// The last index of the current snapshot, 0 for none.
    pub(crate) last_snapshot_index: u64,
    /// Whether this node is a voter.
    pub(crate) voter: bool,
    /// The members of the current membership.
    pub(crate) members: Vec<Member>,
    /// Log entries this node proposed as leader (group commit: several writes per entry).
    pub(crate) entries_proposed: u64,
    /// The node's data directory.
    pub(crate) data_dir: PathBuf,
    /// The user's database file.
    pub(crate) db_path: PathBuf,
    /// Whether foreign keys are enforced.
    pub(crate) foreign_keys: bool,
}

/// One node's store: Raft, its log and state machine, and the cluster view.
pub(crate) struct Store {
    raft: Raft,
    health: DbHealth,
    database: Arc<Database>,
    group_commit: GroupCommit,
    contact: LeaderContact,
    name: String,
    data_dir: PathBuf,
    membership: Membership,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What [`Store::new`] needs: the parts [`crate::DbNode`] opened and started.
pub(crate) struct Parts {
    pub(crate) raft: Raft,
    pub(crate) health: DbHealth,
    pub(crate) database: Arc<Database>,
    pub(crate) name: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) farm: Arc<Farm>,
    pub(crate) http: HttpClient,
}

impl Store {
    /// The store of a node, with its group commit task running.
    pub(crate) fn new(p: Parts) -> Store {
        Store {
            group_commit: GroupCommit::spawn(
                p.raft.clone(),
                p.health.id,
                Arc::clone(&p.health.stats),
            ),
            raft: p.raft.clone(),
            health: p.health.clone(),
            database: p.database,
            contact: LeaderContact::default(),
            name: p.name,
            data_dir: p.data_dir,
            membership: Membership {
                raft: p.raft.clone(),
                health: p.health.clone(),
                http: p.http,
                farm: p.farm,
                busy: tokio::sync::Mutex::new(()),
            },
        }
    }

    /// Adds a replica (`/join`): a learner first, then, for a voter, promoted once it caught
    /// up. This node must lead.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: see [`Membership::join`].
    pub(crate) async fn join(&self, request: JoinRequest) -> Result<ChangeAnswer, MembershipError> {
        self.membership.join(&request).await
    }

    /// Removes replica `name`. This node must lead.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: see [`Membership::remove`].
    pub(crate) async fn remove(&self, name: &str) -> Result<Removal, MembershipError> {
        self.membership.remove(name).await
    }

    /// Makes read-only replica `name` a voter once it caught up. This node must lead.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: see [`Membership::promote`].
    pub(crate) async fn promote(&self, name: &str) -> Result<ChangeAnswer, MembershipError> {
        self.membership.promote(name).await
    }

    /// Transfers leadership to voter `to`, by default the most up to date one. This node must
    /// lead.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: see [`Membership::step_down`].
    pub(crate) async fn step_down(
        &self,
        to: Option<&str>,
    ) -> Result<StepDownAnswer, MembershipError> {
        self.membership.step_down(to).await
    }

    /// Starts an election on this node at once (asked by a leader transferring its
    /// leadership); this node's name.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: see [`Membership::campaign`].
    pub(crate) async fn campaign(&self) -> Result<String, MembershipError> {
        self.membership.campaign().await
    }

    /// Every member as this node sees it (`/cluster/nodes`): kind, addresses, reachability,
    /// and on the leader each one's matched index and lag.
    pub(crate) async fn cluster_view(&self) -> ClusterView {
        self.membership.view().await
    }

    /// When this node last heard from its leader (shared with the Raft endpoint, which
    /// updates it).
    pub(crate) fn leader_contact(&self) -> LeaderContact {
        self.contact.clone()
    }

    /// This node's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// This node's Raft id.
    pub(crate) fn id(&self) -> u64 {
        self.health.id
    }

    /// Who leads, as this node sees it (nobody while this leader transfers its leadership).
    pub(crate) fn leader(&self) -> Leader {
        self.health.leader()
    }

    /// Whether this leader is handing its leadership over (it takes no request as leader).
    pub(crate) fn transferring_leadership(&self) -> bool {
        self.health.transferring_leadership.load(Ordering::Acquire)
    }

    /// Whether this node is a read-only replica (a learner: not a voter of the current
    /// membership).
    pub(crate) fn is_read_only_replica(&self) -> bool {
        let m = self.health.metrics.borrow();
        let membership = m.membership_config.membership();
        !membership.voter_ids().any(|id| id == self.health.id)
    }

    /// Why Raft no longer runs (`None` while it runs).
    pub(crate) fn fatal(&self) -> Option<String> {
        self.health.fatal()
    }

    /// The leader's commit index as this node last heard it.
    pub(crate) fn commit_index(&self) -> u64 {
        self.health.log.committed_index()
    }

    /// Writes `request` through the Raft log (group commit) and waits at most `timeout` for
    /// its entry to be applied.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotLeader`] (not proposed); [`StoreError::Stopped`],
    /// [`StoreError::CommitTimeout`], [`StoreError::Lost`], [`StoreError::Rejected`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the request was proposed withdraws it; after that, it may
    /// still be applied.
    pub(crate) async fn execute(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Applied, StoreError> {
        match self.leader() {
            Leader::Me => {}
            Leader::Other(n) => return Err(StoreError::NotLeader { leader: Some(n) }),
            Leader::Unknown => return Err(StoreError::NotLeader { leader: None }),
        }
        let proposed = self.group_commit.submit(request, timeout);
        match tokio::time::timeout(timeout, proposed).await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(e)) => Err(self.write_error(e)),
            Err(_) => Err(StoreError::CommitTimeout(timeout)),
        }
    }

    fn write_error(&self, e: WriteError) -> StoreError {
        match e {
            WriteError::NotLeader(f) => StoreError::NotLeader {
                leader: f
                    .leader_node
                    .filter(|_| f.leader_id != Some(self.health.id)),
            },
            WriteError::Stopped(m) => StoreError::Stopped(m),
            WriteError::Timeout(d) => StoreError::CommitTimeout(d),
            WriteError::Lost => StoreError::Lost,
            WriteError::Other(m) => StoreError::Rejected(m),
        }
    }

    /// What this node knows when it decides how to serve a read.
    fn view(&self) -> NodeView {
        NodeView {
            leader: self.leader(),
            read_only_replica: self.is_read_only_replica(),
            applied: *self.database.applied_index().borrow(),
            commit: self.commit_index(),
            last_log: self.health.metrics.borrow().last_log_index.unwrap_or(0),
            since_contact: self.contact.last().map(|t| t.elapsed()),
            since_applied: self.database.applied_at().elapsed(),
        }
    }

    /// Serves a read at the level it asks for (see [`read`]).
    ///
    /// # Errors
    ///
    /// The refusals of [`read::admit`] and [`read::min_index_step`];
    /// [`StoreError::NotConfirmed`] / [`StoreError::Unconfirmed`] for a `linearizable` read
    /// whose leader a quorum did not confirm; [`StoreError::NotApplied`] when `min_index` was
    /// not applied within [`MIN_INDEX_WAIT`]; the errors of [`Store::execute`] for a `strong`
    /// read; [`StoreError::Database`] when the database cannot be read.
    pub(crate) async fn query(&self, read: ReadRequest) -> Result<ReadResult, StoreError> {
        let path = admit(&read, &self.view())?;
        match path {
            ReadPath::Strong => {
                let sql = SqlRequest {
                    statements: read.statements,
                    transaction: read.transaction,
                    want_rows: true,
                    read_only: true,
                    blob_array: read.blob_array,
                };
                let applied = self.execute(Request::Sql(sql), WRITE_TIMEOUT).await?;
                return Ok(ReadResult::Applied(applied));
            }
            ReadPath::Linearizable => self.confirm_leadership(read.linearizable_timeout).await?,
            ReadPath::Local => {}
        }
        let weak = read.level.resolve(self.is_read_only_replica()) == Consistency::Weak;
        if path == ReadPath::Linearizable || (path == ReadPath::Local && weak) {
            self.reach_startup_log().await?;
        }
        if let Some(n) = read.min_index {
            if min_index_step(n, &self.view(), read.forwarded)? == MinIndex::Wait {
                self.wait_applied(n, MIN_INDEX_WAIT)
                    .await
                    .map_err(|applied| StoreError::NotApplied {
                        node: self.name.clone(),
                        applied,
                        min_index: n,
                        waited: MIN_INDEX_WAIT,
                    })?;
            }
        }
        let rows = self
            .database
            .query(read.statements, read.blob_array)
            .await?;
        Ok(ReadResult::Rows(rows))
    }

    /// Makes sure the leader applied the log it held when it started before it serves a
    /// `weak` or `linearizable` read. openraft restores a leader that restarts within its
    /// term as leader at once, with the commit index `raft-log.db` saved, which can trail
    /// what it committed and acknowledged before it stopped; and a database rebuilt at start
    /// (see [`crate::sqlite::applied`]) holds only what was applied again up to that index.
    /// Every entry of a leader's log commits while it leads, so once its applied index passes
    /// its startup log, every write it acknowledged before the restart is in its database.
    ///
    /// # Errors
    ///
    /// [`StoreError::CatchingUp`] when that did not happen within [`MIN_INDEX_WAIT`].
    async fn reach_startup_log(&self) -> Result<(), StoreError> {
        let startup = self.database.startup_log_index();
        self.wait_applied(startup, MIN_INDEX_WAIT)
            .await
            .map_err(|applied| StoreError::CatchingUp {
                node: self.name.clone(),
                applied,
                startup,
                waited: MIN_INDEX_WAIT,
            })
    }

    /// Confirms with a quorum that this node still leads, and waits until it applied the
    /// commit index of that moment (openraft's `ensure_linearizable`).
    async fn confirm_leadership(&self, timeout: Duration) -> Result<(), StoreError> {
        let confirmed = tokio::time::timeout(timeout, self.raft.ensure_linearizable())
            .await
            .map_err(|_| StoreError::NotConfirmed(timeout))?;
        match confirmed {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(StoreError::NotLeader {
                    leader: f
                        .leader_node
                        .filter(|_| f.leader_id != Some(self.health.id)),
                })
            }
            Err(e) => Err(StoreError::Unconfirmed(Box::new(e))),
        }
    }

    /// Waits until this node applied log index `n`.
    ///
    /// # Errors
    ///
    /// The index it applied, when `timeout` passed first.
    pub(crate) async fn wait_applied(&self, n: u64, timeout: Duration) -> Result<(), u64> {
        let mut rx = self.database.applied_index();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&a| a >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(*rx.borrow())
        }
    }

    /// Whether every statement is read-only (one that does not compile counts as a write).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when no read connection can be opened.
    pub(crate) async fn all_read_only(&self, sql: Vec<String>) -> Result<bool, StoreError> {
        Ok(self.database.all_read_only(sql).await?)
    }

    /// The members of the current membership, and the leader's id if known.
    pub(crate) fn members(&self) -> (Option<u64>, Vec<Member>) {
        let m = self.health.metrics.borrow();
        let membership = m.membership_config.membership();
        let members = membership
            .nodes()
            .map(|(id, n)| Member {
                id: *id,
                node: n.clone(),
                voter: membership.voter_ids().any(|v| v == *id),
            })
            .collect();
        (m.current_leader, members)
    }

    /// What this node knows of itself and its cluster.
    pub(crate) fn status(&self) -> StoreStatus {
        let raft = self.health.raft_status();
        let m = self.health.metrics.borrow().clone();
        let membership = m.membership_config.membership();
        let me = membership
            .get_node(&self.health.id)
            .cloned()
            .or_else(|| self.health.members.get(&self.health.id).cloned())
            .unwrap_or_default();
        let leader = m
            .current_leader
            .and_then(|id| membership.get_node(&id).cloned());
        let (_, members) = self.members();
        StoreStatus {
            raft,
            me,
            leader,
            ready: self.health.ready().is_ok(),
            term: m.current_term,
            commit_index: self.commit_index(),
            applied_index: *self.database.applied_index().borrow(),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_snapshot_index: m.snapshot.map_or(0, |s| s.index),
            voter: membership.voter_ids().any(|id| id == self.health.id),
            members,
            entries_proposed: self.group_commit.entries_proposed(),
            data_dir: self.data_dir.clone(),
            db_path: self.database.db_path().to_path_buf(),
            foreign_keys: self.database.foreign_keys(),
        }
    }
}

#[cfg(test)]
mod tests;
