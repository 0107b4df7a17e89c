//! `/status`, `/nodes` and `/readyz` in rqlite's shapes.
//!
//! - `/status`: the node's Raft view as flat fields (`raft_state`, `term`, `leader`,
//!   `commit_index`, `applied_index`, `last_log_index`, `voters`, `replication`, `has_data`,
//!   what `webfarm status` and cluster formation read), plus rqlite's sections: `store`
//!   (`raft`, `leader`, `nodes`, `sqlite3`...), `http` (`bind_addr`, the write `queue` and its
//!   `sequence_number`), `node` (start time, uptime), `build`, `runtime`, `os`. `?key=a.b`
//!   answers the sub-object at that path; `?pretty` indents.
//! - `/nodes`: the members of the current membership, voters only unless `?nonvoters`, each
//!   checked for reachability (`GET /readyz?noleader`, bounded by `?timeout`, default 2s).
//!   rqlite's legacy shape (an object keyed by node id) by default, `{"nodes": [...]}` with
//!   `?ver=2`.
//! - `/readyz`: `[+]node ok`, `[+]leader ok`, `[+]store ok` lines, 200 or 503; `?noleader` only
//!   checks that the node answers; `?sync` also waits (up to `?timeout`, default 30s) until
//!   this node applied the commit index its leader had told it at the time of the request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use webfarm_config::Replica;
use webfarm_db_client::status::{
    BuildSection, HttpSection, LeaderRef, NodeEntry, NodeSection, NodesV2, OsSection, QueueSection,
    RaftSection, RuntimeSection, Sqlite3Section, StatusAnswer, StoreNode, StoreSection,
};

use crate::http::api::{Api, Incoming, DEFAULT_WAIT};
use crate::http::service::Service;
use crate::store::{Leader, StoreStatus};

/// Default of `/nodes?timeout`.
const NODES_TIMEOUT: Duration = Duration::from_secs(2);

fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl<S: Service> Api<S> {
    /// The `/status` answer of this node.
    pub(crate) fn status_answer(&self) -> StatusAnswer {
        let s = self.store.status();
        let uptime = self.started.elapsed().unwrap_or_default();
        let queue = QueueSection {
            sequence_number: self.queue.flushed(),
            pending: self.queue.pending(),
        };
        StatusAnswer {
            store: store_section(&s),
            name: self.store.name().to_string(),
            http: HttpSection {
                bind_addr: s.me.api_addr.clone(),
                auth: "disabled".into(),
                queue: [("_default".to_string(), queue)].into_iter().collect(),
            },
            node: NodeSection {
                start_time: unix_secs(self.started),
                current_time: unix_secs(std::time::SystemTime::now()),
                uptime: format!("{:.3}s", uptime.as_secs_f64()),
            },
            build: BuildSection {
                version: env!("CARGO_PKG_VERSION").into(),
                name: "webfarm-db".into(),
            },
            runtime: RuntimeSection {
                os: std::env::consts::OS.into(),
                arch: std::env::consts::ARCH.into(),
                num_cpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            os: OsSection {
                pid: std::process::id(),
            },
            raft: s.raft,
        }
    }
}

/// rqlite's `store` section: this node, the leader, Raft's counters, the members, SQLite.
fn store_section(s: &StoreStatus) -> StoreSection {
    let nodes = s
        .members
        .iter()
        .map(|m| StoreNode {
            id: m.node.name.clone(),
            addr: m.node.raft_addr.clone(),
            suffrage: if m.voter {
                Replica::Voter
            } else {
                Replica::Learner
            },
        })
        .collect();
    StoreSection {
        node_id: s.me.name.clone(),
        addr: s.me.raft_addr.clone(),
        dir: s.data_dir.display().to_string(),
        ready: s.ready,
        leader: s
            .leader
            .as_ref()
            .map(|n| LeaderRef {
                node_id: n.name.clone(),
                addr: n.raft_addr.clone(),
            })
            .unwrap_or_default(),
        raft: RaftSection {
            state: s.raft.raft_state,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_log_index: s.last_log_index,
            last_snapshot_index: s.last_snapshot_index,
            voter: s.voter,
            num_peers: s.members.len().saturating_sub(1),
            log_entries_proposed: s.entries_proposed,
        },
        nodes,
        sqlite3: Sqlite3Section {
            path: s.db_path.display().to_string(),
            db_size: std::fs::metadata(&s.db_path).map_or(0, |md| md.len()),
            fk_constraints: if s.foreign_keys {
                "enabled"
            } else {
                "disabled"
            }
            .into(),
        },
    }
}

/// `GET /status`.
pub(crate) async fn status<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    // Through a `Value`: its keys come out sorted, and `?key=` picks a sub-object.
    let mut v = serde_json::to_value(api.status_answer()).unwrap_or_default();
    if let Some(path) = req.flags.get("key").filter(|k| !k.is_empty()) {
        for key in path.split('.') {
            v = match v {
                Value::Object(mut o) => o.remove(key).unwrap_or_else(|| json!({})),
                other => other,
            };
        }
    }
    req.render.json(StatusCode::OK, &v)
}

/// `GET /nodes`.
pub(crate) async fn nodes<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    let timeout = match req.flags.duration("timeout") {
        Ok(t) => t.unwrap_or(NODES_TIMEOUT),
        Err(e) => return req.render.error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let nonvoters = req.flags.flag("nonvoters");
    let (leader, members) = api.store.members();
    let mut checks = tokio::task::JoinSet::new();
    for m in members.into_iter().filter(|m| m.voter || nonvoters) {
        let (id, node, voter) = (m.id, m.node, m.voter);
        let http = api.http.clone();
        let me = id == api.store.id();
        checks.spawn(async move {
            let started = Instant::now();
            let answer = if me {
                Ok(())
            } else {
                let url = http.url(&node.api_addr, "/readyz?noleader");
                match http.get(&url, timeout).await {
                    Ok(r) if r.status.is_success() => Ok(()),
                    Ok(r) => Err(format!("{url} answered {}", r.status)),
                    Err(e) => Err(e.to_string()),
                }
            };
            (id, node, voter, answer, started.elapsed())
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = checks.join_next().await {
        let Ok((id, node, voter, answer, took)) = joined else {
            continue;
        };
        let n = NodeEntry {
            id: node.name.clone(),
            node_id: id.to_string(),
            api_addr: api.http.url(&node.api_addr, ""),
            addr: node.raft_addr,
            version: env!("CARGO_PKG_VERSION").into(),
            voter,
            reachable: answer.is_ok(),
            leader: leader == Some(id),
            time: took.as_secs_f64(),
            time_s: format!("{took:?}"),
            error: answer.err(),
        };
        out.push((node.name, n));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    // Through a `Value`, so the keys come out sorted.
    let body = if req.flags.get("ver") == Some("2") {
        serde_json::to_value(NodesV2 {
            nodes: out.into_iter().map(|(_, n)| n).collect(),
        })
    } else {
        serde_json::to_value(out.into_iter().collect::<BTreeMap<String, NodeEntry>>())
    };
    req.render.json(StatusCode::OK, &body.unwrap_or_default())
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /readyz`.
pub(crate) async fn readyz<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    if req.flags.flag("noleader") {
        return text(StatusCode::OK, "[+]node ok\n".into());
    }
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    if let Some(f) = api.store.fatal() {
        return text(unavailable, format!("[+]node ok\n[+]store failed: {f}\n"));
    }
    if api.store.leader() == Leader::Unknown {
        return text(unavailable, "[+]node ok\n[+]leader does not exist\n".into());
    }
    let mut body = String::from("[+]node ok\n[+]leader ok\n[+]store ok\n");
    if req.flags.flag("sync") {
        let timeout = match req.flags.duration("timeout") {
            Ok(t) => t.unwrap_or(DEFAULT_WAIT),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        // The leader's commit index as this node last heard it.
        let target = api.store.commit_index();
        match api.store.wait_applied(target, timeout).await {
            Ok(()) => body.push_str("[+]sync ok\n"),
            Err(applied) => {
                body.push_str(&format!(
                    "[+]sync timeout: applied index {applied} is below the leader's commit \
                     index {target} after {timeout:?}\n"
                ));
                return text(unavailable, body);
            }
        }
    }
    text(StatusCode::OK, body)
}
