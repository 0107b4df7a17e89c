//! Membership at run time: the requests and answers of `/join`, `/remove` and
//! `/cluster/{add,remove,promote,step-down,nodes}` on a db node's SQL API.
//!
//! The request bodies are rqlite's (`id` is the node's name, `addr` its Raft address); the
//! answers are webfarm's. A db node writes the answers through a [`serde_json::Value`], so
//! their keys come out sorted.

use serde::{Deserialize, Serialize};
use webfarm_config::Replica;
use webfarm_node::status::{replica_or, RaftState};

/// The body of `POST /join` (`/cluster/add`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The node's name.
    pub id: String,
    /// Its Raft address, `ip:port` (default: from the answering node's farm file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Its SQL API address, `ip:port` (default: from the farm file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_addr: Option<String>,
    /// Whether it becomes a voter once it caught up (default: from the farm file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voter: Option<bool>,
}

/// The body of `DELETE /remove` and `POST /cluster/promote`: the node's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    /// The node's name.
    pub id: String,
}

/// The body of `POST /cluster/step-down`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDownRequest {
    /// The voter to hand leadership to (default: the most up-to-date voter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// The answer of `/join` and `/cluster/promote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeAnswer {
    /// The node's name.
    pub node: String,
    /// What it is now.
    pub replica: Replica,
    /// Whether the request changed the membership (false: it already was that).
    pub changed: bool,
    /// The log index of the membership change, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
}

/// The answer of `/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveAnswer {
    /// The node's name.
    pub node: String,
    /// Always `true`.
    pub removed: bool,
    /// The log index of the membership change.
    pub raft_index: u64,
}

/// The answer of `/cluster/step-down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDownAnswer {
    /// The leader that transferred its leadership.
    pub from: String,
    /// The voter it chose.
    pub to: String,
    /// The leader afterwards.
    pub leader: String,
    /// How long the leadership transfer took, in milliseconds.
    pub took_ms: u64,
}

/// The answer of `/cluster/campaign` (the leader asks its chosen successor to campaign).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignAnswer {
    /// The node now campaigning.
    pub campaigning: String,
}

/// The answer of `GET /cluster/nodes`: every member as the answering node (the leader,
/// unless it cannot be reached) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The node that answered.
    pub answered_by: String,
    /// The leader's name, `null` when none is known.
    pub leader: Option<String>,
    /// The current term.
    pub term: u64,
    /// The answering node's last log index.
    pub last_log_index: u64,
    /// The log index of the membership in force.
    pub membership_index: Option<u64>,
    /// Whether a membership change is under way (joint consensus).
    pub joint: bool,
    /// Every member, by name.
    pub nodes: Vec<ClusterMember>,
}

/// One member in [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Its name.
    pub name: String,
    /// Its Raft node id, in decimal.
    pub node_id: String,
    /// Its SQL API address, `ip:port`.
    pub api_addr: String,
    /// Its Raft address, `ip:port`.
    pub raft_addr: String,
    /// `voter` or `learner` (`none`: not in the membership).
    #[serde(with = "replica_or::none")]
    pub replica: Option<Replica>,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it answered `GET /status`.
    pub reachable: bool,
    /// On the leader: the highest log index it is known to have (`null`: not known yet);
    /// absent on other nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<Option<u64>>,
    /// On the leader: entries it is behind (`null`: not known yet); absent on other nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Option<u64>>,
    /// Its Raft state, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_state: Option<RaftState>,
    /// Its applied index, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_leave_out_what_is_not_given() {
        let join = JoinRequest {
            id: "db-4".into(),
            voter: Some(false),
            ..JoinRequest::default()
        };
        assert_eq!(
            serde_json::to_string(&join).unwrap(),
            r#"{"id":"db-4","voter":false}"#
        );
        assert_eq!(
            serde_json::to_string(&StepDownRequest::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn a_member_seen_by_a_follower_has_no_replication_fields() {
        let m = ClusterMember {
            name: "db-2".into(),
            node_id: "2".into(),
            api_addr: "127.0.0.1:4002".into(),
            raft_addr: "127.0.0.1:4102".into(),
            replica: Some(Replica::Learner),
            leader: false,
            reachable: false,
            matched_index: None,
            lag: None,
            raft_state: None,
            applied_index: None,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert!(
            v.get("lag").is_none() && v.get("raft_state").is_none(),
            "{v}"
        );
        assert_eq!(v["replica"], "learner");
        let on_leader = ClusterMember {
            matched_index: Some(None),
            lag: Some(None),
            ..m
        };
        let v = serde_json::to_value(&on_leader).unwrap();
        assert!(v["lag"].is_null() && v.get("lag").is_some(), "{v}");
    }
}
