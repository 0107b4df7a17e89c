//! The read rules of each consistency level, decided from what a node knows: a leader, a
//! follower (voter) and a read-only replica (learner), fresh or stale, caught up or behind.

use std::time::Duration;

use super::*;
use crate::types::NodeInfo;

fn leader_node() -> NodeInfo {
    NodeInfo {
        name: "db-1".into(),
        api_addr: "127.0.0.1:4001".into(),
        raft_addr: "127.0.0.1:4002".into(),
    }
}

/// A caught-up node that heard from its leader 10 ms ago.
fn view(leader: Leader) -> NodeView {
    NodeView {
        leader,
        read_only_replica: false,
        applied: 10,
        commit: 10,
        last_log: 10,
        since_contact: Some(Duration::from_millis(10)),
        since_applied: Duration::from_millis(10),
    }
}

fn follower() -> NodeView {
    view(Leader::Other(leader_node()))
}

fn replica() -> NodeView {
    NodeView {
        read_only_replica: true,
        ..follower()
    }
}

fn read(level: Consistency) -> ReadRequest {
    ReadRequest {
        statements: Vec::new(),
        level,
        freshness: None,
        freshness_strict: false,
        min_index: None,
        linearizable_timeout: LINEARIZABLE_TIMEOUT,
        transaction: false,
        blob_array: false,
        forwarded: false,
    }
}

fn fresh(level: Consistency, freshness: Duration, strict: bool) -> ReadRequest {
    ReadRequest {
        freshness: Some(freshness),
        freshness_strict: strict,
        ..read(level)
    }
}

/// The leader `admit` names when it refuses with `NotLeader`.
fn refused_to(r: Result<Path, StoreError>) -> Option<String> {
    match r {
        Err(StoreError::NotLeader { leader }) => leader.map(|n| n.name),
        other => panic!("expected NotLeader, got {other:?}"),
    }
}

#[test]
fn levels_parse_as_rqlite_names_them_and_anything_else_is_weak() {
    assert_eq!(Consistency::from_param(Some("none")), Consistency::None);
    assert_eq!(Consistency::from_param(Some("STRONG")), Consistency::Strong);
    assert_eq!(
        Consistency::from_param(Some("linearizable")),
        Consistency::Linearizable
    );
    assert_eq!(Consistency::from_param(Some("auto")), Consistency::Auto);
    assert_eq!(
        Consistency::from_param(Some("sometimes")),
        Consistency::Weak
    );
    assert_eq!(Consistency::from_param(None), Consistency::Weak);
}

#[test]
fn the_leader_serves_every_level_itself() {
    let me = view(Leader::Me);
    assert_eq!(admit(&read(Consistency::None), &me).unwrap(), Path::Local);
    assert_eq!(admit(&read(Consistency::Weak), &me).unwrap(), Path::Local);
    assert_eq!(admit(&read(Consistency::Auto), &me).unwrap(), Path::Local);
    assert_eq!(
        admit(&read(Consistency::Linearizable), &me).unwrap(),
        Path::Linearizable
    );
    assert_eq!(
        admit(&read(Consistency::Strong), &me).unwrap(),
        Path::Strong
    );
}

#[test]
fn a_follower_sends_weak_linearizable_and_strong_reads_to_its_leader() {
    for level in [
        Consistency::Weak,
        Consistency::Linearizable,
        Consistency::Strong,
        Consistency::Auto,
    ] {
        assert_eq!(
            refused_to(admit(&read(level), &follower())),
            Some("db-1".into()),
            "{level:?}"
        );
    }
    assert_eq!(
        admit(&read(Consistency::None), &follower()).unwrap(),
        Path::Local
    );
}

#[test]
fn without_a_leader_only_none_is_served() {
    let lost = view(Leader::Unknown);
    assert_eq!(refused_to(admit(&read(Consistency::Weak), &lost)), None);
    assert_eq!(refused_to(admit(&read(Consistency::Strong), &lost)), None);
    assert_eq!(admit(&read(Consistency::None), &lost).unwrap(), Path::Local);
}

#[test]
fn auto_is_none_on_a_read_only_replica_and_weak_on_a_voter() {
    assert_eq!(
        admit(&read(Consistency::Auto), &replica()).unwrap(),
        Path::Local
    );
    assert!(admit(&read(Consistency::Auto), &follower()).is_err());
    // A replica still sends the levels that need the leader to it.
    assert!(admit(&read(Consistency::Weak), &replica()).is_err());
}

#[test]
fn freshness_refuses_a_none_read_on_a_node_that_lost_its_leader() {
    let second = Duration::from_secs(1);
    let silent = NodeView {
        since_contact: Some(Duration::from_secs(5)),
        ..follower()
    };
    assert!(matches!(
        admit(&fresh(Consistency::None, second, false), &silent),
        Err(StoreError::StaleRead)
    ));
    // Never heard from a leader: stale too.
    let never = NodeView {
        since_contact: None,
        ..view(Leader::Unknown)
    };
    assert!(matches!(
        admit(&fresh(Consistency::None, second, false), &never),
        Err(StoreError::StaleRead)
    ));
    // Fresh enough, no freshness asked, or a zero freshness: served.
    assert!(admit(&fresh(Consistency::None, second, false), &follower()).is_ok());
    assert!(admit(&read(Consistency::None), &silent).is_ok());
    assert!(admit(&fresh(Consistency::None, Duration::ZERO, false), &silent).is_ok());
    // On a read-only replica, auto is none, and freshness applies.
    let silent_replica = NodeView {
        read_only_replica: true,
        ..silent
    };
    assert!(matches!(
        admit(&fresh(Consistency::Auto, second, false), &silent_replica),
        Err(StoreError::StaleRead)
    ));
}

#[test]
fn a_leader_ignores_freshness() {
    let alone = NodeView {
        since_contact: None,
        ..view(Leader::Me)
    };
    let r = fresh(Consistency::None, Duration::from_millis(1), true);
    assert_eq!(admit(&r, &alone).unwrap(), Path::Local);
}

#[test]
fn strict_freshness_also_wants_the_known_commit_index_applied_or_a_recent_apply() {
    let second = Duration::from_secs(1);
    let behind = NodeView {
        applied: 5,
        commit: 10,
        since_applied: Duration::from_secs(3),
        ..follower()
    };
    assert!(matches!(
        admit(&fresh(Consistency::None, second, true), &behind),
        Err(StoreError::StaleRead)
    ));
    // Not strict: only the contact counts.
    assert!(admit(&fresh(Consistency::None, second, false), &behind).is_ok());
    // Behind, but applying: an entry applied within the freshness.
    let applying = NodeView {
        since_applied: Duration::from_millis(100),
        ..behind.clone()
    };
    assert!(admit(&fresh(Consistency::None, second, true), &applying).is_ok());
    // Caught up: fresh however long ago it applied.
    let caught_up = NodeView {
        applied: 10,
        ..behind
    };
    assert!(admit(&fresh(Consistency::None, second, true), &caught_up).is_ok());
}

#[test]
fn min_index_already_applied_reads_at_once() {
    assert_eq!(
        min_index_step(10, &follower(), false).unwrap(),
        MinIndex::Reached
    );
    assert_eq!(
        min_index_step(3, &view(Leader::Me), false).unwrap(),
        MinIndex::Reached
    );
}

#[test]
fn min_index_in_the_log_but_not_applied_waits() {
    let applying = NodeView {
        applied: 8,
        last_log: 12,
        ..follower()
    };
    assert_eq!(
        min_index_step(12, &applying, false).unwrap(),
        MinIndex::Wait
    );
    let leader = NodeView {
        leader: Leader::Me,
        ..applying
    };
    assert_eq!(min_index_step(11, &leader, false).unwrap(), MinIndex::Wait);
}

#[test]
fn min_index_beyond_the_leaders_log_is_refused_at_once() {
    match min_index_step(99, &view(Leader::Me), false) {
        Err(e @ StoreError::BeyondLog { .. }) => assert_eq!(
            e.to_string(),
            "min_index 99 is beyond the log (commit index 10)"
        ),
        other => panic!("expected BeyondLog, got {other:?}"),
    }
}

#[test]
fn min_index_beyond_a_followers_log_goes_to_the_leader_once() {
    match min_index_step(99, &follower(), false) {
        Err(StoreError::LogBehind { leader }) => assert_eq!(leader.name, "db-1"),
        other => panic!("expected LogBehind, got {other:?}"),
    }
    // Forwarded already, or no leader known: wait here.
    assert_eq!(
        min_index_step(99, &follower(), true).unwrap(),
        MinIndex::Wait
    );
    assert_eq!(
        min_index_step(99, &view(Leader::Unknown), false).unwrap(),
        MinIndex::Wait
    );
}
