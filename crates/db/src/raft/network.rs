//! Raft traffic between db nodes: HTTP/1.1 with JSON bodies on each node's Raft address.
//!
//! - `POST /raft/append`: AppendEntries (replication and heartbeats).
//! - `POST /raft/vote`: RequestVote.
//! - `POST /raft/snapshot`: one chunk of InstallSnapshot.
//!
//! Each answer is the JSON of `Result<response, RaftError>`. On the sending side a refused
//! connection becomes openraft's `Unreachable` (openraft backs off), any other transport failure
//! a `NetworkError`, and an error answered by the peer a `RemoteError`.
//!
//! Every request names the farm (`X-Webfarm-Site`, the topology file's `site`) and the node it
//! is meant for (`X-Webfarm-Node`); a node that is not that node of that farm answers 421
//! Misdirected Request (RFC 9110 §15.5.20) and hands nothing to Raft. Node ids are hashes of
//! node names, so without this a node whose address was reused by another farm's node of the
//! same name would take that farm's log entries and votes as its own. The site is therefore
//! part of the db cluster's identity: renaming it needs every db node restarted together.
//!
//! The receiving side notes when the leader last reached this node ([`LeaderContact`]: an
//! AppendEntries, heartbeats included, that the node accepted as coming from its leader), for
//! rqlite's `freshness` on `none` reads.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::Full;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use webfarm_node::access::AdminToken;
use webfarm_node::http::HttpClient;

use crate::types::{NodeInfo, Raft, TypeConfig};

/// Largest Raft request body accepted (a batch of entries, or one snapshot chunk as JSON).
const MAX_RAFT_BODY: usize = 256 * 1024 * 1024;

/// The header naming the farm (its `site`) a Raft request belongs to.
const SITE_HEADER: &str = "x-webfarm-site";
/// The header naming the node a Raft request is meant for.
const NODE_HEADER: &str = "x-webfarm-node";
/// The header naming the node that sends a Raft request; with internal TLS its client
/// certificate must name that node.
const FROM_HEADER: &str = "x-webfarm-from";

/// Makes one [`Peer`] per target node; they share one connection pool.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    http: HttpClient,
    site: HeaderValue,
    /// This node's name.
    from: HeaderValue,
}

impl Network {
    /// The network of node `me` of the farm whose `site` is `site`, calling the others with
    /// `http` (`https://` and this node's certificate with internal TLS).
    ///
    /// # Errors
    ///
    /// [`NotAHeader`] when the site's or the node's name cannot travel in an HTTP header.
    pub(crate) fn new(site: &str, me: &str, http: HttpClient) -> Result<Network, NotAHeader> {
        Ok(Network {
            http,
            site: header_value(site)?,
            from: header_value(me)?,
        })
    }
}

/// A name (of the site or a node) that cannot be sent in an HTTP header.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?} cannot travel in an HTTP header")]
pub(crate) struct NotAHeader(String);

fn header_value(s: &str) -> Result<HeaderValue, NotAHeader> {
    HeaderValue::from_str(s).map_err(|_| NotAHeader(s.to_string()))
}

/// The sending side of the Raft RPCs to one node.
#[derive(Debug)]
pub(crate) struct Peer {
    http: HttpClient,
    target: u64,
    base: String,
    site: HeaderValue,
    from: HeaderValue,
    /// The target's name, or `Err` when it cannot be sent (every call then fails).
    name: Result<HeaderValue, NotAHeader>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Peer {
        Peer {
            http: self.http.clone(),
            target,
            base: self.http.url(&node.raft_addr, ""),
            site: self.site.clone(),
            from: self.from.clone(),
            name: header_value(&node.name),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<u64, NodeInfo, RaftError<u64, E>>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}{path}", self.base);
        let network = |m: String| RPCError::Network(NetworkError::new(&Message(m)));
        let name = self.name.clone().map_err(|e| network(e.to_string()))?;
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let request = axum::http::Request::post(&url)
            .header(CONTENT_TYPE, "application/json")
            .header(SITE_HEADER, self.site.clone())
            .header(NODE_HEADER, name)
            .header(FROM_HEADER, self.from.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| network(format!("{url}: {e}")))?;
        let resp = self
            .http
            .request(request, option.hard_ttl())
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        if resp.status != StatusCode::OK {
            let m = Message(format!(
                "{url} answered {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
            return Err(RPCError::Network(NetworkError::new(&m)));
        }
        let answer: Result<Resp, RaftError<u64, E>> =
            serde_json::from_slice(&resp.body).map_err(|e| {
                RPCError::Network(NetworkError::new(&Message(format!(
                    "unreadable answer from {url}: {e}"
                ))))
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.call("/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.call("/raft/vote", &rpc, &option).await
    }
}

/// When this node last heard from its leader (this node's clock). Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaderContact {
    last: Arc<Mutex<Option<Instant>>>,
}

impl LeaderContact {
    /// Notes a contact now.
    pub(crate) fn touch(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// The last contact, if any.
    pub(crate) fn last(&self) -> Option<Instant> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the Raft endpoint's handlers share.
#[derive(Clone)]
struct RaftState {
    raft: Raft,
    contact: LeaderContact,
}

/// Who this node is, for the misdirected-request check.
#[derive(Clone)]
struct Identity {
    site: Arc<str>,
    name: Arc<str>,
    /// With internal TLS: the farm's db nodes, one of which the caller's certificate must
    /// name (and be the node it says it is); `None` without TLS.
    peers: Option<Arc<[String]>>,
    /// Without internal TLS: the farm's admin token, which every caller must send
    /// (`Authorization: Bearer`); `None` (no token configured) accepts every caller, as the
    /// farm's [`webfarm_node::access::Guard`] does.
    token: Option<AdminToken>,
    /// When a refusal was last logged: at most one line per [`REFUSAL_LOG_EVERY`], since a
    /// misdirected leader retries at its heartbeat rate.
    last_logged: Arc<Mutex<Option<Instant>>>,
}

/// How often a refused misdirected request is logged at most.
const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The receiving side: the router served on the node's Raft address, for node `name` of the
/// farm whose `site` is `site`; `peers`: with internal TLS, the db nodes that may call it;
/// `token`: without TLS, the admin token every caller must send.
pub(crate) fn router(
    raft: Raft,
    contact: LeaderContact,
    (site, name): (&str, &str),
    peers: Option<Vec<String>>,
    token: Option<AdminToken>,
) -> Router {
    let me = Identity {
        site: site.into(),
        name: name.into(),
        peers: peers.map(Into::into),
        token,
        last_logged: Arc::default(),
    };
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY))
        .layer(middleware::from_fn_with_state(me, only_for_me))
        .with_state(RaftState { raft, contact })
}

/// Answers 421 to a request meant for another farm or another node (see the module docs).
async fn only_for_me(State(me): State<Identity>, req: Request, next: Next) -> Response {
    if me.peers.is_none() {
        if let Some(token) = &me.token {
            let ok = req
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .is_some_and(|h| token.accepts(h));
            if !ok {
                tracing::warn!("refused a Raft request without the farm's admin token");
                return (
                    StatusCode::UNAUTHORIZED,
                    "the farm's admin token is required\n",
                )
                    .into_response();
            }
        }
    }
    if let Some(refusal) = impostor(&me, &req) {
        tracing::warn!("refused a Raft request: {refusal}");
        return (StatusCode::FORBIDDEN, format!("{refusal}\n")).into_response();
    }
    match misdirected(&me, req.headers()) {
        None => next.run(req).await,
        Some(message) => {
            let now = Instant::now();
            let mut last = me
                .last_logged
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY) {
                *last = Some(now);
                tracing::warn!("refused a misdirected Raft request: {}", message.trim_end());
            }
            (StatusCode::MISDIRECTED_REQUEST, message).into_response()
        }
    }
}

/// With internal TLS, why the caller may not send this Raft request: it names no db node
/// of the farm, or its certificate does not name the node it says it is.
fn impostor(me: &Identity, req: &Request) -> Option<String> {
    let peers = me.peers.as_ref()?;
    let from = req
        .headers()
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !peers.iter().any(|p| p == from) {
        return Some(format!("the sender {from:?} is not a db node of this farm"));
    }
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<webfarm_node::tls::Peer>>()
        .map(|c| &c.0);
    match peer {
        Some(p) if p.is(from) => None,
        Some(p) => Some(format!(
            "the caller at {} says it is {from:?} but its certificate names {:?}",
            p.addr,
            p.names.iter().map(ToString::to_string).collect::<Vec<_>>()
        )),
        None => Some("no client certificate".into()),
    }
}

/// Why a request with `headers` is not for this node, if it is not.
fn misdirected(me: &Identity, headers: &HeaderMap) -> Option<String> {
    // Bytes, not `to_str()`: a header value need not be visible ASCII to match.
    let named = |h: &str| headers.get(h).map(HeaderValue::as_bytes);
    if named(SITE_HEADER) == Some(me.site.as_bytes())
        && named(NODE_HEADER) == Some(me.name.as_bytes())
    {
        return None;
    }
    let named = |h: &str| named(h).map(String::from_utf8_lossy);
    let (site, node) = (named(SITE_HEADER), named(NODE_HEADER));
    Some(format!(
        "this is node {} of farm {:?}; the request was meant for node {} of farm {}\n",
        me.name,
        me.site,
        node.as_deref().unwrap_or("(unnamed)"),
        site.map_or("(unnamed)".to_string(), |s| format!("{s:?}")),
    ))
}

/// A Raft request body that does not decode (answered 400 with this text).
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} request: {source}\n")]
struct Undecodable {
    what: &'static str,
    #[source]
    source: serde_json::Error,
}

/// The request, or why it does not decode.
fn decode<T: DeserializeOwned>(body: &[u8], what: &'static str) -> Result<T, Undecodable> {
    serde_json::from_slice(body).map_err(|source| Undecodable { what, source })
}

fn refuse(e: &Undecodable) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

fn answer<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn append(State(st): State<RaftState>, body: Bytes) -> Response {
    match decode::<AppendEntriesRequest<TypeConfig>>(&body, "append") {
        Ok(req) => {
            let resp = st.raft.append_entries(req).await;
            // Any answer but "higher vote" means the sender is this node's leader.
            if matches!(&resp, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                st.contact.touch();
            }
            answer(&resp)
        }
        Err(e) => refuse(&e),
    }
}

async fn vote(State(st): State<RaftState>, body: Bytes) -> Response {
    match decode::<VoteRequest<u64>>(&body, "vote") {
        Ok(req) => answer(&st.raft.vote(req).await),
        Err(e) => refuse(&e),
    }
}

async fn snapshot(State(st): State<RaftState>, body: Bytes) -> Response {
    match decode::<InstallSnapshotRequest<TypeConfig>>(&body, "snapshot") {
        Ok(req) => {
            let resp = st.raft.install_snapshot(req).await;
            if resp.is_ok() {
                st.contact.touch();
            }
            answer(&resp)
        }
        Err(e) => refuse(&e),
    }
}
