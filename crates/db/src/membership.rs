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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use webfarm_config::{Farm, Replica, Role};
use webfarm_db_client::{ChangeAnswer, ClusterMember, ClusterView, ErrorAnswer, RemoveAnswer};
use webfarm_node::http::HttpClient;
use webfarm_node::status::DbStatus;

use crate::forward::{Forwarder, FORWARDED};

mod handover;
use crate::health::{kind_of, DbHealth, Leader};
use crate::types::{node_id, NodeInfo, Raft};

/// How long a membership log entry may take to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an added node may take to catch up before it is promoted.
pub(crate) const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a forwarded membership request may take (longer than any change).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(100);
/// The shortest time a leadership handover may take before it is given up.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/cluster/nodes` waits for each member's `/status`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the membership handlers share.
pub(crate) struct Membership {
    pub(crate) raft: Raft,
    pub(crate) health: DbHealth,
    pub(crate) http: HttpClient,
    pub(crate) forwarder: Forwarder,
    /// This node's farm file: addresses and replica kinds of the nodes it names.
    pub(crate) farm: Arc<Farm>,
    /// One change at a time on this leader.
    pub(crate) busy: tokio::sync::Mutex<()>,
}

/// The membership router, merged into the SQL API's.
pub(crate) fn router(m: Arc<Membership>) -> Router {
    Router::new()
        .route("/join", post(join))
        .route("/remove", delete(remove).post(remove))
        .route("/cluster/add", post(join))
        .route("/cluster/remove", post(remove))
        .route("/cluster/promote", post(promote))
        .route("/cluster/step-down", post(handover::step_down))
        .route("/cluster/campaign", post(handover::campaign))
        .route("/cluster/nodes", get(nodes))
        .with_state(m)
}

/// A request body: rqlite's `id`/`addr`/`voter`, webfarm's `name`/`api_addr`/`to`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    id: Option<String>,
    name: Option<String>,
    addr: Option<String>,
    api_addr: Option<String>,
    voter: Option<bool>,
    to: Option<String>,
}

impl Body {
    fn parse(bytes: &[u8]) -> Result<Body, Refusal> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body::default());
        }
        serde_json::from_slice(bytes).map_err(|e| {
            fail(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid body: {e}; expected JSON like {{\"id\": \"db-4\", \"voter\": true}}"
                ),
            )
        })
    }

    /// The node named by `id` or `name`.
    fn node_name(&self) -> Result<&str, Refusal> {
        match self.name.as_deref().or(self.id.as_deref()) {
            Some(n) if !n.trim().is_empty() => Ok(n),
            _ => Err(fail(
                StatusCode::BAD_REQUEST,
                "name the node: {\"id\": \"db-4\"} (rqlite) or {\"name\": \"db-4\"}",
            )),
        }
    }

    /// The name and Raft id of the node a request body names.
    fn named_node(bytes: &[u8]) -> Result<(String, u64), Refusal> {
        let name = Body::parse(bytes)?.node_name()?.to_string();
        let id = node_id(&name);
        Ok((name, id))
    }
}

/// `v` as a JSON answer; through a [`serde_json::Value`], so its keys come out sorted.
fn answer<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let text = serde_json::to_value(v).unwrap_or_default().to_string();
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

/// A refused or failed membership request: its HTTP status and the reason.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        answer(self.status, &ErrorAnswer::new(self.message))
    }
}

fn fail(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// The answer to a membership change openraft refused.
fn change_error(e: RaftError<u64, ClientWriteError<u64, NodeInfo>>) -> Refusal {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node stopped being the leader before the change; retry",
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            fail(StatusCode::CONFLICT, e.to_string())
        }
        RaftError::Fatal(f) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {f}"),
        ),
    }
}

fn not_committed() -> Refusal {
    fail(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "the membership change was not committed within {COMMIT_TIMEOUT:?}: is a majority \
             of the voters up? It may still complete; check with `webfarm db nodes`"
        ),
    )
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

/// The parts of a request needed to serve or forward it.
struct Incoming {
    method: Method,
    path_and_query: String,
    forwarded: bool,
    body: Bytes,
}

/// Every membership handler takes its request as an [`Incoming`] (the body is read with
/// axum's `Bytes` extractor, so the router's body limit applies).
impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
        let forwarded = parts.headers.contains_key(FORWARDED);
        let method = parts.method.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Incoming {
            method,
            path_and_query,
            forwarded,
            body,
        })
    }
}

impl Membership {
    /// `None` when this node leads and serves the request; otherwise the leader's answer
    /// (forwarded) or a 503.
    async fn route(&self, req: &Incoming) -> Option<Response> {
        match self.health.leader() {
            Leader::Me => None,
            Leader::Other(leader) if !req.forwarded => Some(self.forward(req, &leader).await),
            _ if self.health.handover.load(Ordering::Acquire) => Some(
                fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "leadership is being handed over; retry in a moment",
                )
                .into_response(),
            ),
            Leader::Other(_) => {
                Some(fail(StatusCode::SERVICE_UNAVAILABLE, "not leader").into_response())
            }
            Leader::Unknown => {
                Some(fail(StatusCode::SERVICE_UNAVAILABLE, "no leader").into_response())
            }
        }
    }

    async fn forward(&self, req: &Incoming, leader: &NodeInfo) -> Response {
        let change = Some("the change (check with `webfarm db nodes`)");
        let parts = (&req.method, req.path_and_query.as_str(), &req.body);
        match self
            .forwarder
            .relay(parts, leader, FORWARD_TIMEOUT, change)
            .await
        {
            Ok(resp) => resp,
            Err((status, reason)) => fail(status, reason).into_response(),
        }
    }

    /// Id, node info and wanted kind of the node a `/join` names.
    fn join_target(&self, body: &Body) -> Result<(u64, NodeInfo, bool), Refusal> {
        let name = body.node_name()?;
        let in_farm = self.farm.node(name).filter(|n| n.role == Role::Db);
        let addr = |given: &Option<String>, from_farm: Option<String>, key: &str| {
            let text = given.clone().or(from_farm).ok_or_else(|| {
                fail(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{name:?} is not a db node of {}'s farm file: give its {key} \
                         (\"addr\": Raft address, \"api_addr\": SQL API address)",
                        self.health.name_of(self.health.id)
                    ),
                )
            })?;
            text.parse::<std::net::SocketAddr>()
                .map(|a| a.to_string())
                .map_err(|_| {
                    fail(
                        StatusCode::BAD_REQUEST,
                        format!("{key}: {text:?} is not an ip:port address"),
                    )
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
    async fn catch_up(&self, id: u64, name: &str) -> Result<u64, Refusal> {
        let mut rx = self.health.metrics.clone();
        let target = rx.borrow().last_log_index.unwrap_or(0);
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let done = wait_until(&mut rx, deadline, |m| {
            !leads(m) || matched(m, id).is_some_and(|i| i >= target)
        })
        .await;
        let m = rx.borrow().clone();
        if !leads(&m) {
            return Err(fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("this node stopped being the leader while {name} caught up; retry"),
            ));
        }
        if !done {
            let at =
                matched(&m, id).map_or_else(|| "nothing".to_string(), |i| format!("index {i}"));
            return Err(fail(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{name} is a learner but has not caught up within {CATCH_UP_TIMEOUT:?} (it \
                     has {at}, the log is at {target}): is it running? It keeps catching up; \
                     promote it with `webfarm db promote {name}` once it has"
                ),
            ));
        }
        Ok(target)
    }

    /// Makes learner `id` a voter (after it caught up); the answer says it `changed`.
    async fn promote_learner(&self, id: u64, name: &str) -> Result<ChangeAnswer, Refusal> {
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
}

/// A handler's outcome: an answer, or a refusal with its status.
type Handled = Result<Response, Refusal>;

fn ok<T: Serialize>(v: &T) -> Handled {
    Ok(answer(StatusCode::OK, v))
}

/// The answer when node `name` already is `replica`.
fn unchanged(name: String, replica: Replica) -> ChangeAnswer {
    ChangeAnswer {
        node: name,
        replica,
        changed: false,
        raft_index: None,
    }
}

async fn join(State(m): State<Arc<Membership>>, req: Incoming) -> Handled {
    if let Some(r) = m.route(&req).await {
        return Ok(r);
    }
    let (id, info, voter) = m.join_target(&Body::parse(&req.body)?)?;
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
        return Err(fail(
            StatusCode::CONFLICT,
            format!(
                "{name} is already a member with Raft address {} and API address {}; remove it \
                 first (`webfarm db remove {name}`) to add it with other addresses",
                known.raft_addr, known.api_addr
            ),
        ));
    }
    let mut raft_index = None;
    match kind {
        Some(Replica::Voter) => return ok(&unchanged(name, Replica::Voter)),
        Some(Replica::Learner) if !voter => return ok(&unchanged(name, Replica::Learner)),
        Some(Replica::Learner) => {}
        None => {
            let added =
                tokio::time::timeout(COMMIT_TIMEOUT, m.raft.add_learner(id, info.clone(), false))
                    .await
                    .map_err(|_| not_committed())?
                    .map_err(change_error)?;
            tracing::info!(node = %name, raft = %info.raft_addr, index = added.log_id.index, "learner added");
            raft_index = Some(added.log_id.index);
        }
    }
    if !voter {
        return ok(&ChangeAnswer {
            node: name,
            replica: Replica::Learner,
            changed: true,
            raft_index,
        });
    }
    ok(&m.promote_learner(id, &name).await?)
}

async fn promote(State(m): State<Arc<Membership>>, req: Incoming) -> Handled {
    if let Some(r) = m.route(&req).await {
        return Ok(r);
    }
    let (name, id) = Body::named_node(&req.body)?;
    let _busy = m.busy.lock().await;
    let kind = kind_of(&m.health.metrics.borrow(), id);
    match kind {
        None => Err(fail(
            StatusCode::NOT_FOUND,
            format!("{name} is not a member of the cluster; add it with `webfarm db add {name}`"),
        )),
        Some(Replica::Voter) => ok(&unchanged(name, Replica::Voter)),
        Some(Replica::Learner) => ok(&m.promote_learner(id, &name).await?),
    }
}

async fn remove(State(m): State<Arc<Membership>>, req: Incoming) -> Handled {
    if let Some(r) = m.route(&req).await {
        return Ok(r);
    }
    let (name, id) = Body::named_node(&req.body)?;
    let busy = m.busy.lock().await;
    let (kind, voters) = {
        let metrics = m.health.metrics.borrow();
        let voters = metrics.membership_config.membership().voter_ids().count();
        (kind_of(&metrics, id), voters)
    };
    let change = match kind {
        None => {
            return Err(fail(
                StatusCode::NOT_FOUND,
                format!("{name} is not a member of the cluster"),
            ))
        }
        Some(Replica::Voter) if voters <= 1 => {
            return Err(fail(
                StatusCode::CONFLICT,
                format!("{name} is the only voter; a cluster needs at least one"),
            ))
        }
        Some(Replica::Voter) => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
        Some(Replica::Learner) => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
    };
    if id == m.health.id {
        // The leader removes itself: hand leadership over first, then let the new leader
        // remove this node, so the cluster does not wait for an election timeout.
        let to = m
            .successor()
            .ok_or_else(|| fail(StatusCode::CONFLICT, "no other voter to hand leadership to"))?;
        m.handover(to).await?;
        drop(busy);
        return match m.health.leader() {
            Leader::Other(leader) => Ok(m.forward(&req, &leader).await),
            _ => Err(fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "handed leadership over, but no new leader is known yet; retry removing \
                     {name}"
                ),
            )),
        };
    }
    let removed = tokio::time::timeout(COMMIT_TIMEOUT, m.raft.change_membership(change, false))
        .await
        .map_err(|_| not_committed())?
        .map_err(change_error)?;
    tracing::info!(node = %name, index = removed.log_id.index, "node removed from the cluster");
    ok(&RemoveAnswer {
        node: name,
        removed: true,
        raft_index: removed.log_id.index,
    })
}

async fn nodes(State(m): State<Arc<Membership>>, req: Incoming) -> Response {
    if let Leader::Other(leader) = m.health.leader() {
        if !req.forwarded {
            let r = m.forward(&req, &leader).await;
            if r.status().is_success() {
                return r;
            }
        }
    }
    answer(StatusCode::OK, &view(&m).await)
}

/// Every member as this node sees it; replication progress when it is the leader.
async fn view(m: &Membership) -> ClusterView {
    let metrics = m.health.metrics.borrow().clone();
    let membership = metrics.membership_config.membership();
    let last = metrics.last_log_index.unwrap_or(0);
    let mut probes = tokio::task::JoinSet::new();
    for (id, node) in membership.nodes() {
        let (id, node, http) = (*id, node.clone(), m.http.clone());
        probes.spawn(async move {
            let url = format!("http://{}/status", node.api_addr);
            let status = match http.get(&url, PROBE_TIMEOUT).await {
                Ok(r) if r.status.is_success() => serde_json::from_slice::<DbStatus>(&r.body).ok(),
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
