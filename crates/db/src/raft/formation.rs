//! Cluster formation at start: what a node with no Raft state does.
//!
//! A node whose storage holds Raft state just rejoins: **once initialized, the membership in
//! its log wins**, whatever the farm file now says. The farm file's db nodes only seed the
//! membership when the cluster forms: voters (`replica = "voter"`, the default) call
//! openraft's `initialize` with the same voter set (documented as safe when every node uses
//! the same set), and learners ask the leader to add them ([`auto_join`]). After that,
//! membership changes only through the membership API (`webfarm db add/remove/promote`).
//!
//! A pristine node first asks every peer of its farm for `/status` (each within
//! [`PEER_STATUS_TIMEOUT`]) and decides:
//!
//! 1. A leader reports that it once replicated entries to this node (`"replicated"` in its
//!    replication details), or a peer whose database holds data (`"has_data"`: a user table
//!    exists) lists this node as a voter: this node's data is gone while the cluster
//!    exists. Coming back as an empty voter could count in a majority that lacks
//!    acknowledged writes, and a leader that once replicated to it would find its log gone
//!    backwards, so the start fails with [`DbError::DataLost`]. The procedure: remove the
//!    node (`webfarm db remove NODE`, from the running majority), start it with its empty
//!    directory, add it (`webfarm db add NODE`): it comes back as a new learner, catches up
//!    (from a snapshot when the log was compacted), then is promoted.
//! 2. A peer reports a formed cluster (a membership) in which this node is a learner or
//!    not a member: the node does not initialize. It serves the Raft endpoint and waits: as
//!    a learner the leader replicates to it; as a non-member it waits to be added. A
//!    farm learner that finds no data in the cluster (it is forming) asks to be added
//!    itself ([`Formation::Join`]).
//! 3. Otherwise a farm voter initializes with the farm's voters, a farm learner asks to be
//!    added.
//!
//! The term and the log index are no sign of data: openraft elects a leader as soon as two
//! initialized nodes see each other, and that leader appends a blank entry, so when the db
//! nodes start one after the other (as the supervisor and the tests do), the last to start
//! already sees term 1 and log index 1 from a cluster that is only forming.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use webfarm_config::Replica;
use webfarm_node::http::HttpClient;
use webfarm_node::status::DbStatus;
use webfarm_node::Shutdown;

use crate::node::DbError;
use crate::types::{node_id, NodeInfo, Raft};

/// How long a pristine node waits for each peer's `/status`.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two rounds of a learner's requests to be added.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// What a peer's `/status` says of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerLog {
    /// The peer's name.
    pub(crate) name: String,
    /// Its current term.
    pub(crate) term: u64,
    /// Its last log index.
    pub(crate) last_log_index: u64,
    /// Whether its database holds a user table.
    pub(crate) has_data: bool,
    /// The voters of its membership (names); empty when it has none yet.
    pub(crate) voters: Vec<String>,
    /// The learners of its membership (names).
    pub(crate) learners: Vec<String>,
    /// The nodes a leader once replicated entries to (names).
    pub(crate) replicated: Vec<String>,
}

impl PeerLog {
    /// Reads a `/status` answer; `None` when it is not a db node's status.
    pub(crate) fn from_status(name: &str, body: &[u8]) -> Option<PeerLog> {
        let status: DbStatus = serde_json::from_slice(body).ok()?;
        Some(PeerLog {
            name: name.to_string(),
            term: status.term,
            last_log_index: status.last_log_index,
            has_data: status.has_data,
            voters: status.voters,
            learners: status.learners,
            replicated: status
                .replication
                .into_iter()
                .filter(|(_, r)| r.replicated)
                .map(|(n, _)| n)
                .collect(),
        })
    }

    /// Whether the peer has a membership (the cluster is formed as far as it knows).
    fn formed(&self) -> bool {
        !self.voters.is_empty()
    }
}

/// What a pristine node decided, or what a node with state does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Formation {
    /// The node has Raft state (or initialized the cluster just now): it runs as its log says.
    Member,
    /// The node waits for the leader to replicate to it: it is a learner of the cluster, or
    /// it waits for `webfarm db add`.
    Wait,
    /// The node is a learner of a forming cluster: it asks the leader to add it.
    Join,
}

/// What a pristine node `me` must do given its peers' logs (rules 1 to 3 of the module).
///
/// # Errors
///
/// The peer that proves this node's data is gone.
fn decide<'a>(me: &str, replica: Replica, peers: &'a [PeerLog]) -> Result<Formation, &'a PeerLog> {
    if let Some(p) = peers.iter().find(|p| p.replicated.iter().any(|n| n == me)) {
        return Err(p);
    }
    if let Some(p) = peers
        .iter()
        .find(|p| p.has_data && p.voters.iter().any(|n| n == me))
    {
        return Err(p);
    }
    let cluster_has_data = peers.iter().any(|p| p.has_data);
    let outside = peers
        .iter()
        .any(|p| p.formed() && !p.voters.iter().any(|n| n == me));
    match replica {
        Replica::Learner if !cluster_has_data => Ok(Formation::Join),
        Replica::Learner => Ok(Formation::Wait),
        Replica::Voter if outside => Ok(Formation::Wait),
        Replica::Voter => Ok(Formation::Member),
    }
}

/// The log of every peer that answers `/status` within [`PEER_STATUS_TIMEOUT`].
async fn peer_logs(me: u64, members: &BTreeMap<u64, NodeInfo>, http: &HttpClient) -> Vec<PeerLog> {
    let mut asks = tokio::task::JoinSet::new();
    for (id, node) in members {
        if *id == me {
            continue;
        }
        let (node, http) = (node.clone(), http.clone());
        asks.spawn(async move {
            let url = http.url(&node.api_addr, "/status");
            let resp = http.get(&url, PEER_STATUS_TIMEOUT).await.ok()?;
            if !resp.status.is_success() {
                return None;
            }
            PeerLog::from_status(&node.name, &resp.body)
        });
    }
    let mut logs = Vec::new();
    while let Some(joined) = asks.join_next().await {
        if let Ok(Some(log)) = joined {
            logs.push(log);
        }
    }
    logs.sort_by(|a, b| a.name.cmp(&b.name));
    logs
}

/// Decides what this node does at start (see the module), and initializes the cluster when
/// it is a pristine voter of a forming cluster.
///
/// `members` are the farm's db nodes, `voters` those declared voters.
///
/// # Errors
///
/// [`DbError::DataLost`] when this node is pristine but its data is known to be gone;
/// [`DbError::Raft`] when openraft fails.
pub(crate) async fn form(
    raft: &Raft,
    me: &NodeInfo,
    replica: Replica,
    members: &BTreeMap<u64, NodeInfo>,
    voters: &BTreeMap<u64, NodeInfo>,
    http: &HttpClient,
    data_dir: &Path,
) -> Result<Formation, DbError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| DbError::raft("reading this node's raft state", e))?;
    if initialized {
        return Ok(Formation::Member);
    }
    let id = node_id(&me.name);
    let peers = peer_logs(id, members, http).await;
    let decided = match decide(&me.name, replica, &peers) {
        Ok(d) => d,
        Err(p) => {
            tracing::error!(
                node = %me.name,
                peer = %p.name,
                term = p.term,
                last_log_index = p.last_log_index,
                "this node has no Raft state but the cluster knows it held data: its data is \
                 gone while the cluster exists; it will not rejoin as an empty member"
            );
            return Err(DbError::DataLost {
                node: me.name.clone(),
                peer: p.name.clone(),
                term: p.term,
                last_log_index: p.last_log_index,
                dir: data_dir.to_path_buf(),
            });
        }
    };
    if decided != Formation::Member {
        tracing::info!(
            node = %me.name,
            replica = replica.as_str(),
            "no Raft state: waiting for the leader to add this node (run `webfarm db add {}` \
             if it is not in the cluster)",
            me.name
        );
        return Ok(decided);
    }
    match raft.initialize(voters.clone()).await {
        Ok(()) => {
            tracing::info!(node = %me.name, voters = voters.len(), "cluster initialized");
            Ok(Formation::Member)
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            tracing::debug!(node = %me.name, "cluster already initialized");
            Ok(Formation::Member)
        }
        Err(e) => Err(DbError::raft("cannot initialize the cluster", e)),
    }
}

/// A learner of a forming cluster asks its peers (any of them forwards to the leader) to add
/// it with `POST /join`, until the membership in its log names it or `stop` fires.
pub(crate) async fn auto_join(
    raft: Raft,
    me: NodeInfo,
    members: BTreeMap<u64, NodeInfo>,
    http: HttpClient,
    stop: Shutdown,
) {
    let id = node_id(&me.name);
    let join = webfarm_db_client::JoinRequest {
        id: me.name.clone(),
        addr: Some(me.raft_addr.clone()),
        api_addr: Some(me.api_addr.clone()),
        voter: Some(false),
    };
    // A struct of strings and a bool always serializes.
    let body = serde_json::to_string(&join).unwrap_or_default();
    let mut metrics = raft.metrics();
    let is_member = |m: &openraft::RaftMetrics<u64, NodeInfo>| {
        m.membership_config.membership().get_node(&id).is_some()
    };
    let mut attempts = 0u64;
    loop {
        if is_member(&metrics.borrow()) || stop.is_triggered() {
            return;
        }
        for node in members.values().filter(|n| n.name != me.name) {
            let url = http.url(&node.api_addr, "/join");
            let sent = http
                .post(
                    &url,
                    "application/json",
                    body.clone().into(),
                    Duration::from_secs(15),
                )
                .await;
            match sent {
                Ok(r) if r.status.is_success() => {
                    tracing::info!(node = %me.name, via = %node.name, "added to the cluster as a learner");
                    return;
                }
                Ok(r) if attempts.is_multiple_of(20) => tracing::info!(
                    node = %me.name,
                    via = %node.name,
                    status = %r.status,
                    answer = %String::from_utf8_lossy(&r.body),
                    "not added yet; retrying"
                ),
                Err(e) if attempts.is_multiple_of(20) => {
                    tracing::debug!(node = %me.name, error = %e, "cannot ask to be added; retrying")
                }
                _ => {}
            }
        }
        attempts += 1;
        tokio::select! {
            () = stop.wait() => return,
            _ = metrics.changed() => {}
            () = tokio::time::sleep(JOIN_RETRY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A `/status` answer with the fields formation reads, the others zero or empty.
    fn status(term: u64, last: u64, has_data: bool, fields: serde_json::Value) -> Vec<u8> {
        let mut v = json!({"node_id": "1", "raft_state": "Follower", "replica": "voter",
            "term": term, "leader": null, "commit_index": 0, "applied_index": 0,
            "last_log_index": last, "snapshot_index": null, "purged_index": null,
            "membership_index": null, "voters": [], "learners": [], "replication": {},
            "has_data": has_data});
        for (k, f) in fields.as_object().unwrap() {
            v[k] = f.clone();
        }
        v.to_string().into_bytes()
    }

    #[test]
    fn reads_a_peers_status() {
        let forming = status(
            1,
            1,
            false,
            json!({"voters": ["db-1", "db-2"], "learners": []}),
        );
        let p = PeerLog::from_status("db-1", &forming).unwrap();
        assert!(!p.has_data, "a leader and a blank entry are no data");
        assert_eq!(p.voters, ["db-1", "db-2"]);
        let replica = |replicated| {
            json!({"replica": "voter", "matched_index": 0,
            "replicated": replicated, "lag": 0})
        };
        let formed = status(
            2,
            9,
            true,
            json!({"replication": {"db-2": replica(true), "db-3": replica(false)}}),
        );
        let p = PeerLog::from_status("db-1", &formed).unwrap();
        assert!(p.has_data);
        assert_eq!(p.replicated, ["db-2"]);
        assert_eq!(PeerLog::from_status("x", br#"{"error": "no"}"#), None);
    }

    fn peer(voters: &[&str], learners: &[&str], has_data: bool, replicated: &[&str]) -> PeerLog {
        let s = |v: &[&str]| v.iter().map(|n| n.to_string()).collect();
        PeerLog {
            name: "db-1".into(),
            term: 2,
            last_log_index: 5,
            has_data,
            voters: s(voters),
            learners: s(learners),
            replicated: s(replicated),
        }
    }

    #[test]
    fn a_pristine_node_decides_from_its_peers() {
        use Formation::*;
        let v = Replica::Voter;
        let l = Replica::Learner;
        // Nobody answers, or the cluster is forming with this node among the voters.
        assert_eq!(decide("db-2", v, &[]), Ok(Member));
        let forming = peer(&["db-1", "db-2"], &[], false, &[]);
        assert_eq!(
            decide("db-2", v, std::slice::from_ref(&forming)),
            Ok(Member)
        );
        // A learner of a forming cluster asks to be added; of a cluster with data it waits.
        assert_eq!(decide("db-4", l, &[forming]), Ok(Join));
        let data = peer(&["db-1", "db-2"], &["db-4"], true, &[]);
        assert_eq!(decide("db-4", l, std::slice::from_ref(&data)), Ok(Wait));
        // A voter removed from (or never in) the cluster waits for `webfarm db add`.
        assert_eq!(decide("db-3", v, std::slice::from_ref(&data)), Ok(Wait));
        // A voter of a cluster with data, or any node the leader replicated to, lost its data.
        assert!(decide("db-2", v, &[data]).is_err());
        let leader = peer(&["db-1", "db-2"], &["db-4"], false, &["db-4"]);
        assert!(decide("db-4", l, &[leader]).is_err());
    }
}
