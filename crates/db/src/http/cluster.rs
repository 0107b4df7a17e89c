//! The membership endpoints, on the SQL API port next to rqlite's API (what each does:
//! [`crate::raft::membership`]).
//!
//! | endpoint | body |
//! |---|---|
//! | `POST /join`, `POST /cluster/add` | `{"id", "addr"?, "api_addr"?, "voter"?}` |
//! | `DELETE /remove`, `POST /cluster/remove` | `{"id"}` |
//! | `POST /cluster/promote` | `{"id"}` |
//! | `POST /cluster/step-down` | `{"to"?}` |
//! | `GET /cluster/nodes` | |
//! | `POST /cluster/campaign` | (internal: the leader asks its chosen successor to campaign) |
//!
//! `/join` and `DELETE /remove` take rqlite's bodies (`id` is the node's name, `addr` its Raft
//! address); `name` is accepted for `id`. Every change runs on the leader: any other node
//! forwards the request there (a forwarded request is never forwarded again). Errors are JSON
//! `{"error": ...}`: 400 bad request, 404 not a member, 409 refused, 503 nothing was changed
//! (retry), 504 not done in time (it may still complete).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use webfarm_db_client::membership::CampaignAnswer;
use webfarm_db_client::{ErrorAnswer, RemoveAnswer};

use crate::http::api::{Api, Incoming};
use crate::http::service::Service;
use crate::store::{JoinRequest, Leader, MembershipError, Removal};
use crate::types::NodeInfo;

/// How long a forwarded membership request may take (longer than any change).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(100);

/// The membership routes, merged into the API router.
pub(crate) fn routes<S: Service>() -> Router<Arc<Api<S>>> {
    Router::new()
        .route("/join", post(join::<S>))
        .route("/remove", delete(remove::<S>).post(remove::<S>))
        .route("/cluster/add", post(join::<S>))
        .route("/cluster/remove", post(remove::<S>))
        .route("/cluster/promote", post(promote::<S>))
        .route("/cluster/step-down", post(step_down::<S>))
        .route("/cluster/campaign", post(campaign::<S>))
        .route("/cluster/nodes", get(nodes::<S>))
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
    fn parse(bytes: &[u8]) -> Result<Body, MembershipError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body::default());
        }
        serde_json::from_slice(bytes).map_err(|e| {
            MembershipError::Invalid(format!(
                "invalid body: {e}; expected JSON like {{\"id\": \"db-4\", \"voter\": true}}"
            ))
        })
    }

    /// The node named by `id` or `name`.
    fn node_name(&self) -> Result<&str, MembershipError> {
        match self.name.as_deref().or(self.id.as_deref()) {
            Some(n) if !n.trim().is_empty() => Ok(n),
            _ => Err(MembershipError::Invalid(
                "name the node: {\"id\": \"db-4\"} (rqlite) or {\"name\": \"db-4\"}".into(),
            )),
        }
    }

    /// The name of the node a request body names.
    fn named_node(bytes: &[u8]) -> Result<String, MembershipError> {
        Ok(Body::parse(bytes)?.node_name()?.to_string())
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

/// A refusal as its JSON answer: `{"error": ...}` with the status of its kind.
fn refused(e: &MembershipError) -> Response {
    let status = match e {
        MembershipError::Invalid(_) => StatusCode::BAD_REQUEST,
        MembershipError::NotMember(_) => StatusCode::NOT_FOUND,
        MembershipError::Refused(_) => StatusCode::CONFLICT,
        MembershipError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        MembershipError::NotDone(_) => StatusCode::GATEWAY_TIMEOUT,
    };
    answer(status, &ErrorAnswer::new(e.to_string()))
}

/// The 200 answer of a change, or its refusal.
fn done<T: Serialize>(result: Result<T, MembershipError>) -> Response {
    match result {
        Ok(v) => answer(StatusCode::OK, &v),
        Err(e) => refused(&e),
    }
}

impl<S: Service> Api<S> {
    /// `None` when this node leads and serves the request; otherwise the leader's answer
    /// (forwarded) or a 503.
    async fn route_change(&self, req: &Incoming) -> Option<Response> {
        let unavailable = |m: &str| refused(&MembershipError::Unavailable(m.into()));
        match self.store.leader() {
            Leader::Me => None,
            Leader::Other(leader) if !req.forwarded => {
                Some(self.forward_change(req, &leader).await)
            }
            _ if self.store.transferring_leadership() => Some(unavailable(
                "a leadership transfer is in progress; retry in a moment",
            )),
            Leader::Other(_) => Some(unavailable("not leader")),
            Leader::Unknown => Some(unavailable("no leader")),
        }
    }

    async fn forward_change(&self, req: &Incoming, leader: &NodeInfo) -> Response {
        let change = Some("the change (check with `webfarm db nodes`)");
        let parts = (&req.method, req.path_and_query.as_str(), &req.body);
        match self
            .forwarder
            .relay(parts, leader, FORWARD_TIMEOUT, change)
            .await
        {
            Ok(resp) => resp,
            Err((status, reason)) => answer(status, &ErrorAnswer::new(reason)),
        }
    }
}

async fn join<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    if let Some(r) = api.route_change(&req).await {
        return r;
    }
    let request = Body::parse(&req.body).and_then(|b| {
        Ok(JoinRequest {
            name: b.node_name()?.to_string(),
            addr: b.addr,
            api_addr: b.api_addr,
            voter: b.voter,
        })
    });
    match request {
        Ok(request) => done(api.store.join(request).await),
        Err(e) => refused(&e),
    }
}

async fn promote<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    if let Some(r) = api.route_change(&req).await {
        return r;
    }
    match Body::named_node(&req.body) {
        Ok(name) => done(api.store.promote(name).await),
        Err(e) => refused(&e),
    }
}

async fn remove<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    if let Some(r) = api.route_change(&req).await {
        return r;
    }
    let name = match Body::named_node(&req.body) {
        Ok(name) => name,
        Err(e) => return refused(&e),
    };
    match api.store.remove(name).await {
        Ok(Removal::Removed { node, raft_index }) => answer(
            StatusCode::OK,
            &RemoveAnswer {
                node,
                removed: true,
                raft_index,
            },
        ),
        // This leader handed leadership over to be removed: the new leader removes it.
        Ok(Removal::HandedOver { node }) => match api.store.leader() {
            Leader::Other(leader) => api.forward_change(&req, &leader).await,
            _ => refused(&MembershipError::Unavailable(format!(
                "handed leadership over, but no new leader is known yet; retry removing {node}"
            ))),
        },
        Err(e) => refused(&e),
    }
}

async fn step_down<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    if let Some(r) = api.route_change(&req).await {
        return r;
    }
    match Body::parse(&req.body) {
        Ok(body) => done(api.store.step_down(body.to).await),
        Err(e) => refused(&e),
    }
}

async fn campaign<S: Service>(State(api): State<Arc<Api<S>>>) -> Response {
    match api.store.campaign().await {
        Ok(campaigning) => answer(StatusCode::OK, &CampaignAnswer { campaigning }),
        Err(e) => refused(&e),
    }
}

async fn nodes<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    if let Leader::Other(leader) = api.store.leader() {
        if !req.forwarded {
            let r = api.forward_change(&req, &leader).await;
            if r.status().is_success() {
                return r;
            }
        }
    }
    answer(StatusCode::OK, &api.store.cluster_view().await)
}
