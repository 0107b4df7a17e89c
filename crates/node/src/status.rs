//! What every node's `GET /status` answers, as types: [`NodeStatus`] with the role's
//! [`RoleStatus`] as `details`. The admin server serializes them; `webfarm status` reads them.
//! Also the answers of the load balancer's run-time control on its admin address
//! ([`LbServersAnswer`], [`ReloadAnswer`], [`WeightChange`], [`StateChange`],
//! [`LbErrorAnswer`]), which the lb serializes and `webfarm lb` / `webfarm reload` read.
//!
//! The JSON keys are the field names; objects are written with their keys in alphabetical
//! order (the admin server and the lb render them through [`serde_json::Value`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use webfarm_config::{Replica, Role};

/// The whole `/status` answer of a node's admin server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    /// The node's name in the farm, such as `db-2`.
    pub name: String,
    /// `lb`, `web` or `db`.
    pub role: String,
    /// `ready` or `not ready`.
    pub state: String,
    /// Why the node is not ready; absent when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The role's own status.
    pub details: RoleStatus,
}

impl NodeStatus {
    /// Whether the node said it is ready (`state` is `ready`).
    pub fn is_ready(&self) -> bool {
        self.state == "ready"
    }
}

/// `details` is read according to `role`: the JSON does not name its variant.
impl<'de> Deserialize<'de> for NodeStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            name: String,
            role: String,
            state: String,
            #[serde(default)]
            reason: Option<String>,
            details: serde_json::Value,
        }
        let raw = Raw::deserialize(d)?;
        let details = match raw.role.as_str() {
            r if r == Role::Lb.as_str() => serde_json::from_value(raw.details).map(RoleStatus::Lb),
            r if r == Role::Web.as_str() => {
                serde_json::from_value(raw.details).map(RoleStatus::Web)
            }
            r if r == Role::Db.as_str() => serde_json::from_value(raw.details).map(RoleStatus::Db),
            r if r == Role::Monitor.as_str() => {
                serde_json::from_value(raw.details).map(RoleStatus::Monitor)
            }
            r if r == Role::Dns.as_str() => {
                serde_json::from_value(raw.details).map(RoleStatus::Dns)
            }
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown role {other:?} in /status"
                )))
            }
        }
        .map_err(serde::de::Error::custom)?;
        Ok(NodeStatus {
            name: raw.name,
            role: raw.role,
            state: raw.state,
            reason: raw.reason,
            details,
        })
    }
}

/// A role's `/status` details ([`crate::Health::status`]). Serialized as the inner object
/// alone (`"details": {...}`); [`NodeStatus`] reads it back by its `role`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RoleStatus {
    /// A load balancer node.
    Lb(LbStatus),
    /// A web node.
    Web(WebStatus),
    /// A db node.
    Db(DbStatus),
    /// The monitor node.
    Monitor(MonitorStatus),
    /// A dns node.
    Dns(DnsStatus),
}

impl RoleStatus {
    /// The details as `/status` shows them, a JSON object (keys sorted).
    pub fn to_json(&self) -> serde_json::Value {
        // Structs of strings, numbers and maps with string keys always serialize.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// A load balancer's live configuration and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbStatus {
    /// Every frontend, in the order of the topology file.
    pub frontends: Vec<FrontendStatus>,
    /// Every backend with its servers.
    pub backends: Vec<BackendStatus>,
    /// Client connections open now, over every frontend.
    pub conns: usize,
    /// Event-loop threads (`[lb] threads`).
    pub threads: usize,
    /// The reload generation in force (see [`LbServersAnswer::generation`]).
    #[serde(default)]
    pub generation: u64,
    /// Reloads refused since the node started.
    #[serde(default)]
    pub reloads_refused: u64,
    /// The node's VRRP instances (`[[vrrp]]`), in file order; empty without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vrrp: Vec<VrrpStatus>,
}

/// One VRRP instance (virtual router) as an lb node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpStatus {
    /// The instance's name (`VI_1`).
    pub name: String,
    /// Its virtual router id.
    pub vrid: u8,
    /// This node's state: `master`, `backup` or `init`.
    pub state: String,
    /// This node's priority.
    pub priority: u8,
    /// The current master's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The instance's virtual IPs.
    pub vips: Vec<String>,
    /// The VIPs this node holds (serves) now: all of them as master, none otherwise.
    pub held: Vec<String>,
}

/// One frontend of a load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendStatus {
    /// Its name in the topology file.
    pub name: String,
    /// The port it listens on, on every lb node.
    pub port: u16,
    /// `http` or `tcp`.
    pub mode: String,
    /// The name of its default backend.
    pub backend: String,
    /// Its TLS termination, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<FrontendTlsStatus>,
}

/// A TLS frontend's certificates and failed handshakes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendTlsStatus {
    /// The certificates in force, the default first.
    pub certificates: Vec<CertificateStatus>,
    /// TLS handshakes that failed since the node started.
    pub handshake_failures: u64,
}

/// One certificate in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// Its file.
    pub file: String,
    /// The names it covers, comma-separated.
    pub names: String,
    /// End of validity (`notAfter`), RFC 3339 UTC.
    pub not_after: String,
    /// Whether it has expired (it is still served, with a warning at load).
    pub expired: bool,
}

/// One backend of a load balancer (also the items of `GET /lb/servers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// Its name in the topology file.
    pub name: String,
    /// `http` or `tcp`.
    pub mode: String,
    /// The balancing algorithm, as written in the file (`roundrobin`, `uri`...).
    pub balance: String,
    /// `map-based` or `consistent` (HAProxy's `hash-type`).
    pub hash_type: String,
    /// `retries` of the backend.
    pub retries: u32,
    /// Whether a retry may go to another server (`option redispatch`).
    pub redispatch: bool,
    /// Requests waiting in the backend's queue now.
    pub queued: usize,
    /// Its servers, in the order of the file.
    pub servers: Vec<ServerStatus>,
}

/// One server of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Its name in the backend.
    pub name: String,
    /// `ip:port`.
    pub addr: String,
    /// What HAProxy's stats page shows: `UP`, `DOWN`, `DRAIN`, `MAINT`...
    pub state: String,
    /// What the health checks decided: `UP` or `DOWN`.
    pub health: String,
    /// The administrative state: `ready`, `drain` or `maint`.
    pub admin: String,
    /// The configured weight.
    pub weight: u32,
    /// The weight after `slowstart` ramping.
    pub effective_weight: u32,
    /// Whether it is a backup server.
    pub backup: bool,
    /// Most concurrent requests it is sent (0: no limit).
    pub maxconn: u32,
    /// The outcome of the last health check, in words.
    pub check: String,
    /// Requests in flight to it now.
    pub current_conns: u64,
    /// Requests sent to it since the node started.
    pub total_requests: u64,
    /// Failed checks in a row.
    pub consecutive_failures: u32,
    /// Idle keep-alive connections to it in the pool.
    pub idle_conns: usize,
}

/// The answer of `GET /lb/servers` on an lb node's admin address: the reload counters and
/// every backend with its servers, as the live configuration has them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbServersAnswer {
    /// The reload generation in force: 0 as the node started, one more with each applied
    /// reload (`POST /lb/reload` or SIGHUP); a refused reload leaves it as it was.
    pub generation: u64,
    /// Reloads refused since the node started (an invalid file, or a change that needs a
    /// restart).
    pub reloads_refused: u64,
    /// Every backend with its servers, in the order of the topology file (as in `/status`).
    pub backends: Vec<BackendStatus>,
}

/// The answer of `POST /lb/reload` when the reload applied: what changed and the new
/// generation. Backends and servers whose settings did not change keep their run-time state
/// (health, admin state, counters, idle connections).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// The topology file read, as the node was given it (a path).
    pub reloaded: String,
    /// Names of the backends that did not exist before.
    pub backends_added: Vec<String>,
    /// Names of the backends that are gone.
    pub backends_removed: Vec<String>,
    /// `backend/server` of the servers that are new or whose options changed.
    pub servers_added: Vec<String>,
    /// `backend/server` of the servers that are gone (or replaced).
    pub servers_removed: Vec<String>,
    /// The reload generation now in force (see [`LbServersAnswer::generation`]).
    pub generation: u64,
    /// TLS frontends whose certificates were read again (and swapped in).
    #[serde(default)]
    pub certificates_reloaded: usize,
}

/// The answer of `POST /lb/servers/{backend}/{server}/weight`: the weight set and the one it
/// replaced, as HAProxy's `set weight` changes the configured weight until the next reload
/// or restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightChange {
    /// The server, `backend/server`.
    pub server: String,
    /// Its weight now, 0..=256 (0: no balanced traffic).
    pub weight: u32,
    /// Its weight before.
    pub previous: u32,
}

/// The answer of `POST /lb/servers/{backend}/{server}/state`: the administrative state set
/// and the one it replaced (HAProxy's `set server ... state ready|drain|maint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// The server, `backend/server`.
    pub server: String,
    /// Its administrative state now: `ready`, `drain` or `maint`.
    pub state: String,
    /// Its administrative state before, in the same words.
    pub previous: String,
}

/// The answer of `POST /lb/servers/{backend}/{server}/backup`: whether the server is a
/// backup server now, and before. HAProxy makes `backup` a configuration keyword only;
/// webfarm also changes it at run time, until the server is replaced by a reload that
/// changes its settings, or a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupChange {
    /// The server, `backend/server`.
    pub server: String,
    /// Whether it is a backup server now.
    pub backup: bool,
    /// Whether it was before.
    pub previous: bool,
}

/// How the lb's run-time control refuses a request: `{"error": text}`, with 400 (a bad
/// value, an invalid file on reload), 404 (no such backend or server), 409 (a reload that
/// needs a restart) or 500.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbErrorAnswer {
    /// What was refused and why, in words (a 404 names the backends or servers that exist).
    pub error: String,
}

/// The monitor node: its dashboard and what its last scrape found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorStatus {
    /// `http://ip:port/`: the live dashboard.
    pub dashboard: String,
    /// Nodes it scrapes (every node of the farm but itself).
    pub nodes: usize,
    /// Of those, how many answered the last scrape ready.
    pub nodes_ready: usize,
    /// Scrapes done since the node started.
    pub scrapes: u64,
}

/// A dns node: the zone it serves, its serial, and what its health checks found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStatus {
    /// `ip:port` it answers on, UDP and TCP.
    pub listen: String,
    /// The zone, without the final dot (`foobar.com`).
    pub zone: String,
    /// The SOA serial in force.
    pub serial: u32,
    /// The site's name (`www.foobar.com`), whose A/AAAA records follow the checks.
    pub site: String,
    /// Every site address with its health (`UP` or `DOWN`), in the farm's order.
    pub addresses: Vec<DnsAddressStatus>,
    /// The addresses answered for the site now: the UP ones, or all when none is UP.
    pub answering: Vec<String>,
    /// Queries answered since the node started.
    pub queries: u64,
}

/// One site address as a dns node's health check sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAddressStatus {
    /// The IP address.
    pub addr: String,
    /// `UP` or `DOWN`.
    pub health: String,
    /// The outcome of the last check, in words.
    pub check: String,
}

/// A web node's addresses and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebStatus {
    /// `ip:port` it serves HTTP on.
    pub http: String,
    /// The directory of static files it serves.
    pub root: String,
    /// The SQL API addresses (`ip:port`) of every db node.
    pub db_nodes: Vec<String>,
    /// The db node its reads go to first.
    pub read_from: String,
    /// Requests served since the node started.
    pub requests: u64,
    /// `reachable`, or why the database cannot be used yet.
    pub database: String,
}

/// The Raft state of a node, as rqlite's `/status` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftState {
    /// It leads the cluster.
    Leader,
    /// A voter following a leader.
    Follower,
    /// A voter asking for votes.
    Candidate,
    /// A learner (read-only replica).
    Learner,
    /// Raft has stopped.
    Shutdown,
}

impl RaftState {
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub fn as_str(self) -> &'static str {
        match self {
            RaftState::Leader => "Leader",
            RaftState::Follower => "Follower",
            RaftState::Candidate => "Candidate",
            RaftState::Learner => "Learner",
            RaftState::Shutdown => "Shutdown",
        }
    }
}

/// A db node's view of Raft: its state, the log's indexes, the membership and, on the leader,
/// each member's replication. Also the flat part of the db API's own `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbStatus {
    /// The Raft node id (FNV-1a 64 of the name), in decimal.
    pub node_id: String,
    /// The Raft state.
    pub raft_state: RaftState,
    /// What the node is in the current membership: `voter`, `learner`, or `none` (not a
    /// member yet).
    #[serde(with = "replica_or::none")]
    pub replica: Option<Replica>,
    /// The current Raft term.
    pub term: u64,
    /// The leader's name, `null` when none is known.
    pub leader: Option<String>,
    /// The highest log index known to be committed.
    pub commit_index: u64,
    /// The highest log index applied to this node's SQLite.
    pub applied_index: u64,
    /// The index of the last entry of this node's log.
    pub last_log_index: u64,
    /// The log index of the current snapshot, if any.
    pub snapshot_index: Option<u64>,
    /// The highest log index purged from the log, if any.
    pub purged_index: Option<u64>,
    /// The log index of the membership in force, if any.
    pub membership_index: Option<u64>,
    /// The voters' names, sorted.
    pub voters: Vec<String>,
    /// The learners' names, sorted.
    pub learners: Vec<String>,
    /// On the leader: each other member's replication, by name; empty on other nodes.
    pub replication: BTreeMap<String, Replication>,
    /// Whether the database holds a user table.
    pub has_data: bool,
    /// Why Raft stopped (a storage error...); absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    /// Present (`true`) while this leader transfers its leadership to another voter.
    #[serde(default, skip_serializing_if = "is_false")]
    pub transferring_leadership: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How far the leader has replicated its log to one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    /// `voter`, `learner`, or `removed` (still replicated to while it leaves).
    #[serde(with = "replica_or::removed")]
    pub replica: Option<Replica>,
    /// The highest log index the member is known to have (0 before the first answer).
    pub matched_index: u64,
    /// Whether the member has answered a replication request yet.
    pub replicated: bool,
    /// The leader's last log index minus `matched_index`: entries behind.
    pub lag: u64,
}

/// `Option<Replica>` as a string, with a word of its own for `None`.
pub mod replica_or {
    macro_rules! with_word {
        ($module:ident, $word:literal) => {
            #[doc = concat!("`None` is written `\"", $word, "\"`.")]
            pub mod $module {
                use serde::{Deserialize, Deserializer, Serializer};
                use webfarm_config::Replica;

                /// Serializes `voter`, `learner` or the word for `None`.
                ///
                /// # Errors
                ///
                /// The serializer's.
                pub fn serialize<S: Serializer>(
                    r: &Option<Replica>,
                    s: S,
                ) -> Result<S::Ok, S::Error> {
                    s.serialize_str(r.map_or($word, Replica::as_str))
                }

                /// Reads `voter`, `learner`; anything else is `None`.
                ///
                /// # Errors
                ///
                /// When the value is not a string.
                pub fn deserialize<'de, D: Deserializer<'de>>(
                    d: D,
                ) -> Result<Option<Replica>, D::Error> {
                    let word = String::deserialize(d)?;
                    Ok(match word.as_str() {
                        "voter" => Some(Replica::Voter),
                        "learner" => Some(Replica::Learner),
                        _ => None,
                    })
                }
            }
        };
    }
    with_word!(none, "none");
    with_word!(removed, "removed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> WebStatus {
        WebStatus {
            http: "127.0.0.1:8000".into(),
            root: "site".into(),
            db_nodes: vec!["127.0.0.1:4001".into()],
            read_from: "127.0.0.1:4001".into(),
            requests: 3,
            database: "reachable".into(),
        }
    }

    #[test]
    fn details_are_read_back_by_role() {
        let status = NodeStatus {
            name: "web-1".into(),
            role: "web".into(),
            state: "ready".into(),
            reason: None,
            details: RoleStatus::Web(web()),
        };
        let text = serde_json::to_string(&status).unwrap();
        assert!(!text.contains("reason"), "{text}");
        assert!(text.contains(r#""details":{"http":"#), "{text}");
        let back: NodeStatus = serde_json::from_str(&text).unwrap();
        assert_eq!(back, status);
        let as_db = text.replace(r#""role":"web""#, r#""role":"db""#);
        assert!(serde_json::from_str::<NodeStatus>(&as_db).is_err());
    }

    #[test]
    fn lb_control_answers_keep_their_keys() {
        let reload = ReloadAnswer {
            reloaded: "farm.toml".into(),
            backends_added: vec![],
            backends_removed: vec!["api".into()],
            servers_added: vec!["web/web-3".into()],
            servers_removed: vec![],
            generation: 2,
            certificates_reloaded: 1,
        };
        let v = serde_json::to_value(&reload).unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            [
                "backends_added",
                "backends_removed",
                "certificates_reloaded",
                "generation",
                "reloaded",
                "servers_added",
                "servers_removed"
            ]
        );
        assert_eq!(v["servers_added"][0], "web/web-3");
        assert_eq!(serde_json::from_value::<ReloadAnswer>(v).unwrap(), reload);
        let weight: WeightChange =
            serde_json::from_str(r#"{"previous":1,"server":"web/s1","weight":5}"#).unwrap();
        assert_eq!((weight.previous, weight.weight), (1, 5));
        let state: StateChange =
            serde_json::from_str(r#"{"previous":"ready","server":"web/s1","state":"drain"}"#)
                .unwrap();
        assert_eq!(
            (state.previous.as_str(), state.state.as_str()),
            ("ready", "drain")
        );
        let servers = LbServersAnswer {
            generation: 1,
            reloads_refused: 0,
            backends: vec![],
        };
        let text = serde_json::to_string(&servers).unwrap();
        assert_eq!(
            text,
            r#"{"generation":1,"reloads_refused":0,"backends":[]}"#
        );
    }

    #[test]
    fn membership_words_round_trip() {
        let r = Replication {
            replica: None,
            matched_index: 4,
            replicated: true,
            lag: 1,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["replica"], "removed");
        assert_eq!(serde_json::from_value::<Replication>(v).unwrap(), r);
        let learner = Replication {
            replica: Some(Replica::Learner),
            ..r
        };
        let v = serde_json::to_value(&learner).unwrap();
        assert_eq!(v["replica"], "learner");
    }
}
