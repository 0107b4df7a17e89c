//! The db node's metrics: Raft's state (read from openraft's `RaftMetrics` at scrape time),
//! the log's fsync latency, group-commit sizes, snapshots, SQL latency by consistency level
//! and forwarded requests.
//!
//! Names: etcd's Raft metrics are what dashboards and alerts know (`etcd_server_has_leader`,
//! `etcd_server_leader_changes_seen_total`, `etcd_disk_wal_fsync_duration_seconds`); ours
//! keep etcd's words after a `webfarm_db_` prefix (`webfarm_db_has_leader`,
//! `webfarm_db_leader_changes_seen_total`, `webfarm_db_disk_wal_fsync_duration_seconds`),
//! so nobody mistakes this cluster for an etcd one while an etcd user recognises each
//! series. etcd's `proposals_committed_total` and `proposals_applied_total` are gauges of
//! indexes with a counter's suffix (which `promtool` flags); ours are
//! `webfarm_db_commit_index` and `webfarm_db_applied_index`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use openraft::RaftMetrics;
use tokio::sync::watch;
use webfarm_db_client::Consistency;
use webfarm_node::metrics::{Histogram, Scrape, LATENCY_SECONDS, SIZES};
use webfarm_node::Shutdown;

use crate::raft::health::DbHealth;
use crate::types::NodeInfo;

/// Snapshots built and installed by the state machine.
#[derive(Debug)]
pub(crate) struct SnapshotStats {
    /// Snapshots built by this node.
    pub built: AtomicU64,
    /// Snapshots received from a leader and installed.
    pub installed: AtomicU64,
    /// How long building one took, seconds.
    pub seconds: Histogram,
    /// The size of the last snapshot built, bytes.
    pub bytes: AtomicU64,
}

impl Default for SnapshotStats {
    fn default() -> SnapshotStats {
        SnapshotStats {
            built: AtomicU64::new(0),
            installed: AtomicU64::new(0),
            seconds: Histogram::seconds(LATENCY_SECONDS),
            bytes: AtomicU64::new(0),
        }
    }
}

/// What the db node counts beside what openraft and the log store keep.
#[derive(Debug)]
pub(crate) struct DbMetrics {
    /// The state machine's snapshots.
    pub snapshots: Arc<SnapshotStats>,
    /// Requests per proposed log entry (group commit).
    pub group_requests: Histogram,
    /// `/db/execute` (and queued writes) served by this node's store, seconds.
    pub execute: Histogram,
    /// Queries served by this node's store, by [`Consistency::ALL`] index, seconds.
    pub query: [Histogram; 5],
    /// API requests relayed to the leader (shared with the API's forwarder).
    pub forwarded: Arc<AtomicU64>,
    /// Times this node saw a new leader.
    pub leader_changes: AtomicU64,
    /// Failed authentications on the API (shared with its auth layer).
    pub auth_failures: Arc<crate::http::auth::AuthFailures>,
    /// When each follower was last caught up with this leader's log (leader only).
    caught_up: Mutex<BTreeMap<u64, Instant>>,
}

impl DbMetrics {
    /// Counters for a node whose state machine keeps `snapshots`.
    pub(crate) fn new(snapshots: Arc<SnapshotStats>) -> DbMetrics {
        DbMetrics {
            snapshots,
            group_requests: Histogram::counts(SIZES),
            execute: Histogram::seconds(LATENCY_SECONDS),
            query: std::array::from_fn(|_| Histogram::seconds(LATENCY_SECONDS)),
            forwarded: Arc::default(),
            leader_changes: AtomicU64::new(0),
            auth_failures: Arc::default(),
            caught_up: Mutex::new(BTreeMap::new()),
        }
    }

    /// The query histogram of `level`.
    pub(crate) fn query(&self, level: Consistency) -> &Histogram {
        let i = Consistency::ALL.iter().position(|l| *l == level);
        &self.query[i.unwrap_or(0)]
    }

    /// Notes, as leader, which followers have every entry of the log now (`now`); as
    /// follower, forgets them.
    fn note_replication(&self, m: &RaftMetrics<u64, NodeInfo>, now: Instant) {
        let mut caught_up = self
            .caught_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(rep) = &m.replication else {
            caught_up.clear();
            return;
        };
        let last = m.last_log_index.unwrap_or(0);
        caught_up.retain(|id, _| rep.contains_key(id));
        for (id, matched) in rep {
            let since = caught_up.entry(*id).or_insert(now);
            if matched.map_or(0, |l| l.index) >= last {
                *since = now;
            }
        }
    }

    /// How long follower `id` has been behind (0 when it is not, `lag` being its entries).
    fn lag_seconds(&self, id: u64, lag: u64) -> f64 {
        if lag == 0 {
            return 0.0;
        }
        let caught_up = self
            .caught_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        caught_up
            .get(&id)
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

/// Follows openraft's metrics until `shutdown`: counts leader changes and notes when each
/// follower was last caught up (for `webfarm_db_replication_lag_seconds`).
pub(crate) async fn watch(
    mut rx: watch::Receiver<RaftMetrics<u64, NodeInfo>>,
    stats: Arc<DbMetrics>,
    shutdown: Shutdown,
) {
    let mut leader = None;
    loop {
        {
            let m = rx.borrow_and_update();
            if m.current_leader.is_some() && m.current_leader != leader {
                stats.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            leader = m.current_leader;
            stats.note_replication(&m, Instant::now());
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            () = shutdown.wait() => return,
        }
    }
}

/// Writes the `webfarm_db_*` families of `h`'s node.
///
/// # Errors
/// The writer's.
pub(crate) fn write(h: &DbHealth, s: &mut Scrape<'_>) -> fmt::Result {
    raft(h, s)?;
    let stats = &h.stats;
    s.histogram(
        "webfarm_db_disk_wal_fsync_duration_seconds",
        "Latency of the Raft log's durable appends (one SQLite commit, synchronous=FULL), seconds.",
        h.log.fsync_seconds(),
    )?;
    s.histogram(
        "webfarm_db_group_commit_requests",
        "Requests gathered into one proposed log entry by this node as leader (group commit).",
        &stats.group_requests,
    )?;
    snapshots(&stats.snapshots, s)?;
    s.histogram(
        "webfarm_db_sql_execute_duration_seconds",
        "Time this node's store took to commit and apply a write (leader only), seconds.",
        &stats.execute,
    )?;
    s.histograms(
        "webfarm_db_sql_query_duration_seconds",
        "Time this node's store took to serve a query, by consistency level, seconds.",
        Consistency::ALL
            .iter()
            .zip(&stats.query)
            .map(|(l, h)| ([("level", l.as_str())], h)),
    )?;
    s.counter(
        "webfarm_db_forwarded_requests_total",
        "API requests this node relayed to the leader.",
        stats.forwarded.load(Ordering::Relaxed),
    )?;
    s.counters(
        "webfarm_db_auth_failures_total",
        "API requests refused by rqlite's auth file, by reason: no_credentials, unknown_user, bad_password, forbidden (a permission the user lacks), busy (every bcrypt slot stayed taken: 503).",
        stats.auth_failures.counts().map(|(reason, n)| ([("reason", reason)], n)),
    )
}

fn raft(h: &DbHealth, s: &mut Scrape<'_>) -> fmt::Result {
    let m = h.metrics.borrow().clone();
    let status = h.raft_status();
    let is_leader = m.state == openraft::ServerState::Leader;
    s.gauge(
        "webfarm_db_has_leader",
        "Whether a leader exists (1) or not (0), as this node sees it.",
        u64::from(status.leader.is_some()),
    )?;
    s.gauge(
        "webfarm_db_is_leader",
        "Whether this node is the leader (1) or not (0).",
        u64::from(is_leader),
    )?;
    s.counter(
        "webfarm_db_leader_changes_seen_total",
        "The number of leader changes seen.",
        h.stats.leader_changes.load(Ordering::Relaxed),
    )?;
    s.gauge("webfarm_db_term", "The current Raft term.", m.current_term)?;
    let indexes = [
        (
            "webfarm_db_commit_index",
            "The commit index (replicated on a majority).",
            status.commit_index,
        ),
        (
            "webfarm_db_applied_index",
            "The applied index (executed by this node's SQLite).",
            status.applied_index,
        ),
        (
            "webfarm_db_last_log_index",
            "The last index in this node's log.",
            status.last_log_index,
        ),
    ];
    for (name, help, v) in indexes {
        s.gauge(name, help, v)?;
    }
    s.gauge(
        "webfarm_db_millis_since_quorum_ack",
        "Leader only: milliseconds since a quorum last acknowledged it (-1 elsewhere).",
        m.millis_since_quorum_ack
            .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)),
    )?;
    let followers: Vec<(String, u64, u64)> = m
        .replication
        .iter()
        .flatten()
        .filter(|(id, _)| **id != h.id)
        .map(|(id, matched)| {
            let lag = m
                .last_log_index
                .unwrap_or(0)
                .saturating_sub(matched.map_or(0, |l| l.index));
            (h.name_of(*id), *id, lag)
        })
        .collect();
    s.gauges(
        "webfarm_db_replication_lag_entries",
        "Leader only: log entries a follower is behind (last log index minus matched index).",
        followers
            .iter()
            .map(|(n, _, lag)| ([("follower", n.as_str())], *lag)),
    )?;
    s.gauges(
        "webfarm_db_replication_lag_seconds",
        "Leader only: how long a follower has been behind the leader's log (0 when caught up).",
        followers
            .iter()
            .map(|(n, id, lag)| ([("follower", n.as_str())], h.stats.lag_seconds(*id, *lag))),
    )
}

fn snapshots(st: &SnapshotStats, s: &mut Scrape<'_>) -> fmt::Result {
    s.counter(
        "webfarm_db_snapshots_total",
        "Snapshots of the database this node built.",
        st.built.load(Ordering::Relaxed),
    )?;
    s.counter(
        "webfarm_db_snapshots_installed_total",
        "Snapshots this node received from a leader and installed.",
        st.installed.load(Ordering::Relaxed),
    )?;
    s.histogram(
        "webfarm_db_snapshot_duration_seconds",
        "Time to build a snapshot, seconds.",
        &st.seconds,
    )?;
    s.gauge(
        "webfarm_db_snapshot_size_bytes",
        "Size of the last snapshot built, bytes.",
        st.bytes.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn query_histograms_are_kept_per_level() {
        let m = DbMetrics::new(Arc::default());
        m.query(Consistency::Linearizable)
            .observe(Duration::from_millis(3));
        assert_eq!(m.query(Consistency::Linearizable).snapshot().count, 1);
        assert_eq!(m.query(Consistency::None).snapshot().count, 0);
    }

    #[test]
    fn lag_seconds_is_zero_when_caught_up_and_grows_from_the_last_catch_up() {
        let m = DbMetrics::new(Arc::default());
        let long_ago = Instant::now() - Duration::from_secs(5);
        m.caught_up.lock().unwrap().insert(7, long_ago);
        assert_eq!(m.lag_seconds(7, 0), 0.0);
        assert!(m.lag_seconds(7, 3) >= 5.0);
        assert_eq!(m.lag_seconds(8, 3), 0.0, "unknown follower");
    }
}
