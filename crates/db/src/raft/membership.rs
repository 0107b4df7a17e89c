//! Membership changes at run time, served on the SQL API port next to rqlite's API.
//!
//! | endpoint | body | what |
//! |---|---|---|
//! | `POST /join`, `POST /cluster/add` | `{"id", "addr"?, "api_addr"?, "voter"?}` | add a node: as a learner, then, once it caught up, promoted when `voter` |
//! | `DELETE /remove`, `POST /cluster/remove` | `{"id"}` | remove a voter or a learner |
//! | `POST /cluster/promote` | `{"id"}` | make a learner a voter once it caught up |
//! | `POST /cluster/step-down` | `{"to"?}` | hand leadership to a voter (default: the most up to date) |
//! | `GET /cluster/nodes` | | every member: kind, addresses, replication, reachability |
//! | `POST /cluster/campaign` | | internal: the leader asks its chosen successor to campaign |
//!
//! `/join` and `DELETE /remove` take rqlite's bodies (`id` is the node's name, `addr` its Raft
//! address); `name` is accepted for `id`. A node of this node's farm file needs only its name:
//! the addresses, and whether it is a voter (`replica`), come from the file.
//!
//! Every change runs on the leader: any other node forwards the request there (a forwarded
//! request is never forwarded again), and the leader runs one change at a time. Errors are
//! JSON `{"error": ...}`: 400 bad request, 404 not a member, 409 refused (the last voter, a
//! change already in progress), 503 no leader (nothing was changed: retry), 504 not done in
//! time (it may still complete; `GET /cluster/nodes` tells).
//!
//! **Adding** uses openraft's `add_learner` (without its unbounded wait), then waits until the
//! leader has replicated its whole log to the node, from a snapshot when the log it needs was
//! compacted, within [`CATCH_UP_TIMEOUT`], then promotes it with `change_membership`
//! (joint consensus). A node that does not catch up in time stays a learner; promote it
//! later.
//!
//! **Leadership transfer.** openraft 0.9 has no `transfer_leader`. A voter grants its vote only
//! when its leader lease (`election_timeout_max` since it last heard from a leader) has
//! expired and the candidate's log is at least as complete as its own; a leader's own lease
//! counts from its election. So the leader (1) stops taking requests as leader (its
//! `/readyz` and the API answer 503, safe to retry) and stops its heartbeats, (2) waits
//! until the successor has its whole log, (3) asks the successor to campaign
//! (`trigger().elect()`). The old leader, elected long enough ago, grants that vote and
//! steps down at once: with it the successor has a majority in a 3-voter cluster, without
//! waiting for an election timeout. In a larger cluster, or a leader elected less than a
//! lease ago, the other voters grant their votes when their lease runs out, which the
//! stopped heartbeats bring within `election_timeout_max`, still before their own election
//! timers (`lease + election_timeout`) fire, so the chosen node wins.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use tokio::sync::watch;
use webfarm_config::{Farm, Replica, Role};
use webfarm_db_client::{ChangeAnswer, ClusterMember, ClusterView};
use webfarm_node::http::HttpClient;
use webfarm_node::status::DbStatus;

mod leadership_transfer;

use crate::raft::health::{kind_of, DbHealth};
use crate::types::{node_id, NodeInfo, Raft};

/// How long a membership log entry may take to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an added node may take to catch up before it is promoted.
pub(crate) const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest time a leadership transfer may take before it is given up.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/cluster/nodes` waits for each member's `/status`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the membership handlers share.
pub(crate) struct Membership {
    pub(crate) raft: Raft,
    pub(crate) health: DbHealth,
    pub(crate) http: HttpClient,
    /// This node's farm file: addresses and replica kinds of the nodes it names.
    pub(crate) farm: Arc<Farm>,
    /// One change at a time on this leader.
    pub(crate) busy: tokio::sync::Mutex<()>,
}

/// Why a membership request was refused or failed; each kind is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MembershipError {
    /// The request is malformed or names no usable node (400).
    #[error("{0}")]
    Invalid(String),
    /// The node named is not a member (404).
    #[error("{0}")]
    NotMember(String),
    /// The change is refused as it stands: the last voter, a learner asked to lead, other
    /// addresses for a member, a change openraft refuses (409).
    #[error("{0}")]
    Refused(String),
    /// Nothing was changed: no leader, leadership lost or being transferred, Raft stopped,
    /// a node unreachable; retry (503).
    #[error("{0}")]
    Unavailable(String),
    /// Not done in time; it may still complete (504).
    #[error("{0}")]
    NotDone(String),
}

/// The answer to a membership change openraft refused.
fn change_error(e: RaftError<u64, ClientWriteError<u64, NodeInfo>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MembershipError::Unavailable(
            "this node stopped being the leader before the change; retry".into(),
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            MembershipError::Refused(e.to_string())
        }
        RaftError::Fatal(f) => MembershipError::Unavailable(format!("raft stopped: {f}")),
    }
}

fn not_committed() -> MembershipError {
    MembershipError::NotDone(format!(
        "the membership change was not committed within {COMMIT_TIMEOUT:?}: is a majority \
             of the voters up? It may still complete; check with `webfarm db nodes`"
    ))
}

fn matched(m: &RaftMetrics<u64, NodeInfo>, id: u64) -> Option<u64> {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id).copied().flatten())
        .map(|l| l.index)
}

fn leads(m: &RaftMetrics<u64, NodeInfo>) -> bool {
    m.state == ServerState::Leader
}

/// Waits until `f` holds for the metrics, or `deadline`; whether it held.
async fn wait_until(
    rx: &mut watch::Receiver<RaftMetrics<u64, NodeInfo>>,
    deadline: Instant,
    mut f: impl FnMut(&RaftMetrics<u64, NodeInfo>) -> bool,
) -> bool {
    tokio::time::timeout_at(deadline.into(), rx.wait_for(|m| f(m)))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// A node to add (`/join`): its name, and what the farm file does not say.
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinRequest {
    /// The node's name (rqlite's `id`).
    pub(crate) name: String,
    /// Its Raft address (rqlite's `addr`), when the farm file does not name the node.
    pub(crate) addr: Option<String>,
    /// Its SQL API address, when the farm file does not name the node.
    pub(crate) api_addr: Option<String>,
    /// Whether it becomes a voter; default: what the farm file says, else a voter.
    pub(crate) voter: Option<bool>,
}

/// The answer to `/join` and `/cluster/promote` when node `node` already is `kind`.
fn unchanged(node: String, kind: Replica) -> ChangeAnswer {
    ChangeAnswer {
        node,
        replica: kind,
        changed: false,
        raft_index: None,
    }
}

/// What `/remove` did.
#[derive(Debug, Clone)]
pub(crate) enum Removal {
    /// The node left the membership at this log index.
    Removed {
        /// The node's name.
        node: String,
        /// The log index of the change.
        raft_index: u64,
    },
    /// The leader was asked to remove itself: it handed leadership over first, and the new
    /// leader (if one is known yet) must be asked to remove it.
    HandedOver {
        /// The node's name.
        node: String,
    },
}

impl Membership {
    /// Id, node info and wanted kind of the node a `/join` names.
    fn join_target(&self, body: &JoinRequest) -> Result<(u64, NodeInfo, bool), MembershipError> {
        let name = body.name.as_str();
        let in_farm = self.farm.node(name).filter(|n| n.role == Role::Db);
        let addr = |given: &Option<String>, from_farm: Option<String>, key: &str| {
            let text = given.clone().or(from_farm).ok_or_else(|| {
                MembershipError::Invalid(format!(
                    "{name:?} is not a db node of {}'s farm file: give its {key} \
                         (\"addr\": Raft address, \"api_addr\": SQL API address)",
                    self.health.name_of(self.health.id)
                ))
            })?;
            text.parse::<std::net::SocketAddr>()
                .map(|a| a.to_string())
                .map_err(|_| {
                    MembershipError::Invalid(format!("{key}: {text:?} is not an ip:port address"))
                })
        };
        let raft_addr = addr(
            &body.addr,
            in_farm.map(|n| n.raft_addr().to_string()),
            "addr",
        )?;
        let api_addr = addr(
            &body.api_addr,
            in_farm.map(|n| n.main_addr().to_string()),
            "api_addr",
        )?;
        let voter = body
            .voter
            .or(in_farm.map(|n| n.replica == Replica::Voter))
            .unwrap_or(true);
        let info = NodeInfo {
            name: name.to_string(),
            api_addr,
            raft_addr,
        };
        Ok((node_id(name), info, voter))
    }

    /// Waits until the leader replicated its log, as of now, to node `id`.
    async fn catch_up(&self, id: u64, name: &str) -> Result<u64, MembershipError> {
        let mut rx = self.health.metrics.clone();
        let target = rx.borrow().last_log_index.unwrap_or(0);
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let done = wait_until(&mut rx, deadline, |m| {
            !leads(m) || matched(m, id).is_some_and(|i| i >= target)
        })
        .await;
        let m = rx.borrow().clone();
        if !leads(&m) {
            return Err(MembershipError::Unavailable(format!(
                "this node stopped being the leader while {name} caught up; retry"
            )));
        }
        if !done {
            let at =
                matched(&m, id).map_or_else(|| "nothing".to_string(), |i| format!("index {i}"));
            return Err(MembershipError::NotDone(format!(
                "{name} is a learner but has not caught up within {CATCH_UP_TIMEOUT:?} (it \
                     has {at}, the log is at {target}): is it running? It keeps catching up; \
                     promote it with `webfarm db promote {name}` once it has"
            )));
        }
        Ok(target)
    }

    /// Makes learner `id` a voter (after it caught up); the answer says it `changed`.
    async fn promote_learner(&self, id: u64, name: &str) -> Result<ChangeAnswer, MembershipError> {
        self.catch_up(id, name).await?;
        let changed = tokio::time::timeout(
            COMMIT_TIMEOUT,
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true),
        )
        .await
        .map_err(|_| not_committed())?
        .map_err(change_error)?;
        tracing::info!(node = %name, index = changed.log_id.index, "learner promoted to voter");
        Ok(ChangeAnswer {
            node: name.to_string(),
            replica: Replica::Voter,
            changed: true,
            raft_index: Some(changed.log_id.index),
        })
    }

    /// Adds a node as a learner, then, for a voter, promotes it once it caught up (see the
    /// module docs). The caller has checked that this node leads.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: a bad request, other addresses for a member, a change refused,
    /// leadership lost, not committed or not caught up in time.
    pub(crate) async fn join(
        &self,
        request: &JoinRequest,
    ) -> Result<ChangeAnswer, MembershipError> {
        let m = self;
        let (id, info, voter) = m.join_target(request)?;
        let _busy = m.busy.lock().await;
        let (kind, known) = {
            let metrics = m.health.metrics.borrow();
            let known = metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned();
            (kind_of(&metrics, id), known)
        };
        let name = info.name.clone();
        if let Some(known) = known.filter(|k| *k != info) {
            return Err(MembershipError::Refused(format!(
                "{name} is already a member with Raft address {} and API address {}; remove it \
                 first (`webfarm db remove {name}`) to add it with other addresses",
                known.raft_addr, known.api_addr
            )));
        }
        let mut raft_index = None;
        match kind {
            Some(Replica::Voter) => return Ok(unchanged(name, Replica::Voter)),
            Some(Replica::Learner) if !voter => return Ok(unchanged(name, Replica::Learner)),
            Some(Replica::Learner) => {}
            None => {
                let added = tokio::time::timeout(
                    COMMIT_TIMEOUT,
                    m.raft.add_learner(id, info.clone(), false),
                )
                .await
                .map_err(|_| not_committed())?
                .map_err(change_error)?;
                tracing::info!(node = %name, raft = %info.raft_addr, index = added.log_id.index, "learner added");
                raft_index = Some(added.log_id.index);
            }
        }
        if !voter {
            return Ok(ChangeAnswer {
                node: name,
                replica: Replica::Learner,
                changed: true,
                raft_index,
            });
        }
        m.promote_learner(id, &name).await
    }

    /// Makes learner `name` a voter once it caught up. The caller has checked that this node
    /// leads.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: not a member, leadership lost, not caught up or not committed in
    /// time.
    pub(crate) async fn promote(&self, name: &str) -> Result<ChangeAnswer, MembershipError> {
        let (m, name, id) = (self, name.to_string(), node_id(name));
        let _busy = m.busy.lock().await;
        let kind = kind_of(&m.health.metrics.borrow(), id);
        match kind {
            None => Err(MembershipError::NotMember(format!(
                "{name} is not a member of the cluster; add it with `webfarm db add {name}`"
            ))),
            Some(Replica::Voter) => Ok(unchanged(name, Replica::Voter)),
            Some(Replica::Learner) => m.promote_learner(id, &name).await,
        }
    }

    /// Removes voter or learner `name`. A leader asked to remove itself hands leadership
    /// over first ([`Removal::HandedOver`]). The caller has checked that this node leads.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: not a member, the only voter, no successor, leadership lost, not
    /// committed in time.
    pub(crate) async fn remove(&self, name: &str) -> Result<Removal, MembershipError> {
        let (m, name, id) = (self, name.to_string(), node_id(name));
        let busy = m.busy.lock().await;
        let (kind, voters) = {
            let metrics = m.health.metrics.borrow();
            let voters = metrics.membership_config.membership().voter_ids().count();
            (kind_of(&metrics, id), voters)
        };
        let change = match kind {
            None => {
                return Err(MembershipError::NotMember(format!(
                    "{name} is not a member of the cluster"
                )))
            }
            Some(Replica::Voter) if voters <= 1 => {
                return Err(MembershipError::Refused(format!(
                    "{name} is the only voter; a cluster needs at least one"
                )))
            }
            Some(Replica::Voter) => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            Some(Replica::Learner) => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
        };
        if id == m.health.id {
            // The leader removes itself: hand leadership over first, then let the new leader
            // remove this node, so the cluster does not wait for an election timeout.
            let to = m.successor().ok_or_else(|| {
                MembershipError::Refused("no other voter to hand leadership to".into())
            })?;
            m.transfer_leadership(to).await?;
            drop(busy);
            return Ok(Removal::HandedOver { node: name });
        }
        let removed = tokio::time::timeout(COMMIT_TIMEOUT, m.raft.change_membership(change, false))
            .await
            .map_err(|_| not_committed())?
            .map_err(change_error)?;
        tracing::info!(node = %name, index = removed.log_id.index, "node removed from the cluster");
        Ok(Removal::Removed {
            node: name,
            raft_index: removed.log_id.index,
        })
    }

    /// Every member as this node sees it (`/cluster/nodes`); replication progress when it is
    /// the leader.
    pub(crate) async fn view(&self) -> ClusterView {
        let m = self;
        let metrics = m.health.metrics.borrow().clone();
        let membership = metrics.membership_config.membership();
        let last = metrics.last_log_index.unwrap_or(0);
        let mut probes = tokio::task::JoinSet::new();
        for (id, node) in membership.nodes() {
            let (id, node, http) = (*id, node.clone(), m.http.clone());
            probes.spawn(async move {
                let url = http.url(&node.api_addr, "/status");
                let status = match http.get(&url, PROBE_TIMEOUT).await {
                    Ok(r) if r.status.is_success() => {
                        serde_json::from_slice::<DbStatus>(&r.body).ok()
                    }
                    _ => None,
                };
                (id, node, status)
            });
        }
        let leads = leads(&metrics);
        let mut nodes = Vec::new();
        while let Some(joined) = probes.join_next().await {
            let Ok((id, node, status)) = joined else {
                continue;
            };
            let progress = if id == m.health.id {
                Some(last)
            } else {
                matched(&metrics, id)
            };
            nodes.push(ClusterMember {
                name: node.name,
                node_id: id.to_string(),
                api_addr: node.api_addr,
                raft_addr: node.raft_addr,
                replica: kind_of(&metrics, id),
                leader: metrics.current_leader == Some(id),
                reachable: status.is_some(),
                matched_index: leads.then_some(progress),
                lag: leads.then_some(progress.map(|p| last.saturating_sub(p))),
                raft_state: status.as_ref().map(|s| s.raft_state),
                applied_index: status.as_ref().map(|s| s.applied_index),
            });
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        ClusterView {
            answered_by: m.health.name_of(m.health.id),
            leader: metrics.current_leader.map(|l| m.health.name_of(l)),
            term: metrics.current_term,
            last_log_index: last,
            membership_index: metrics.membership_config.log_id().map(|l| l.index),
            joint: membership.get_joint_config().len() > 1,
            nodes,
        }
    }
}
