//! The answers of `GET /status` and `GET /nodes` on a db node's SQL API, in rqlite's shapes
//! (<https://rqlite.io/docs/guides/monitoring-rqlite/>).
//!
//! A db node writes them through a [`serde_json::Value`], so their keys come out sorted
//! whatever the order of the fields (and `/status?key=a.b` picks a sub-object).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use webfarm_config::Replica;
use webfarm_node::status::{DbStatus, RaftState};

/// `GET /status`: the node's Raft view as flat fields ([`DbStatus`], what `webfarm status`
/// and cluster formation read) plus rqlite's sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// The Raft view.
    #[serde(flatten)]
    pub raft: DbStatus,
    /// The node's name in the farm.
    pub name: String,
    /// rqlite's `store` section.
    pub store: StoreSection,
    /// rqlite's `http` section.
    pub http: HttpSection,
    /// rqlite's `node` section: the process's times.
    pub node: NodeSection,
    /// rqlite's `build` section.
    pub build: BuildSection,
    /// rqlite's `runtime` section.
    pub runtime: RuntimeSection,
    /// rqlite's `os` section.
    pub os: OsSection,
}

/// The `store` section of `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreSection {
    /// This node's name.
    pub node_id: String,
    /// Its Raft address, `ip:port`.
    pub addr: String,
    /// Its data directory.
    pub dir: String,
    /// Whether it is ready (a member, and a leader is known).
    pub ready: bool,
    /// The leader, empty strings when none is known.
    pub leader: LeaderRef,
    /// Raft's counters.
    pub raft: RaftSection,
    /// The members of the current membership.
    pub nodes: Vec<StoreNode>,
    /// The SQLite database.
    pub sqlite3: Sqlite3Section,
}

/// The leader in the `store` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRef {
    /// Its name (empty when none is known).
    pub node_id: String,
    /// Its Raft address (empty when none is known).
    pub addr: String,
}

/// `store.raft` of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftSection {
    /// The Raft state.
    pub state: RaftState,
    /// The current term.
    pub term: u64,
    /// The commit index this node knows of.
    pub commit_index: u64,
    /// The last index applied to its SQLite.
    pub applied_index: u64,
    /// The index of the last entry of its log.
    pub last_log_index: u64,
    /// The index of its current snapshot (0: none).
    pub last_snapshot_index: u64,
    /// Whether it is a voter.
    pub voter: bool,
    /// How many other members the membership has.
    pub num_peers: usize,
    /// Log entries this node proposed as leader since it started (one per group commit).
    pub log_entries_proposed: u64,
}

/// One member in `store.nodes` of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreNode {
    /// Its name.
    pub id: String,
    /// Its Raft address.
    pub addr: String,
    /// `Voter` or `Nonvoter`, rqlite's (and Hashicorp Raft's) words.
    #[serde(with = "suffrage")]
    pub suffrage: Replica,
}

/// A [`Replica`] as rqlite's `suffrage`: `Voter` or `Nonvoter`.
mod suffrage {
    use serde::{Deserialize, Deserializer, Serializer};
    use webfarm_config::Replica;

    pub(super) fn serialize<S: Serializer>(r: &Replica, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match r {
            Replica::Voter => "Voter",
            Replica::Learner => "Nonvoter",
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Replica, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "Voter" => Replica::Voter,
            _ => Replica::Learner,
        })
    }
}

/// `store.sqlite3` of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sqlite3Section {
    /// The database file.
    pub path: String,
    /// Its size in bytes.
    pub db_size: u64,
    /// `enabled` or `disabled` (`PRAGMA foreign_keys`).
    pub fk_constraints: String,
}

/// The `http` section of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSection {
    /// The SQL API address, `ip:port`.
    pub bind_addr: String,
    /// Always `disabled`: the API has no authentication.
    pub auth: String,
    /// The write queues (`?queue`) by name; webfarm has one, `_default`.
    pub queue: BTreeMap<String, QueueSection>,
}

/// One write queue in `http.queue` of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSection {
    /// The sequence number of the last queued write that was written.
    pub sequence_number: u64,
    /// Queued writes not written yet.
    pub pending: u64,
}

/// The `node` section of `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSection {
    /// When the node started, seconds since the Unix epoch.
    pub start_time: f64,
    /// Now, seconds since the Unix epoch.
    pub current_time: f64,
    /// Time since the start, such as `12.345s`.
    pub uptime: String,
}

/// The `build` section of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSection {
    /// The crate version.
    pub version: String,
    /// `webfarm-db`.
    pub name: String,
}

/// The `runtime` section of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSection {
    /// The operating system (`linux`...).
    pub os: String,
    /// The CPU architecture (`x86_64`...).
    pub arch: String,
    /// CPUs available to the process.
    pub num_cpu: usize,
}

/// The `os` section of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsSection {
    /// The process id.
    pub pid: u32,
}

/// One member in the answer of `GET /nodes` (rqlite's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Its name.
    pub id: String,
    /// Its Raft node id, in decimal.
    pub node_id: String,
    /// Its SQL API URL, `http://ip:port`.
    pub api_addr: String,
    /// Its Raft address, `ip:port`.
    pub addr: String,
    /// The version of the answering node.
    pub version: String,
    /// Whether it is a voter.
    pub voter: bool,
    /// Whether it answered `GET /readyz?noleader` within the timeout.
    pub reachable: bool,
    /// Whether it leads.
    pub leader: bool,
    /// How long the reachability check took, in seconds.
    pub time: f64,
    /// The same, as Rust's `Debug` of a duration (`1.2ms`).
    pub time_s: String,
    /// Why it is not reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /nodes?ver=2`: `{"nodes": [...]}` (the default answer is rqlite's legacy shape, a
/// `BTreeMap<String, NodeEntry>` keyed by name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesV2 {
    /// Every member, by name.
    pub nodes: Vec<NodeEntry>,
}
