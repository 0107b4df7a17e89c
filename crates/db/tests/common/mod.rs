//! Shared helpers of the cluster tests: a farm of db nodes on loopback addresses of their own, started
//! in-process, and small HTTP helpers. Everything polls with deadlines.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use webfarm_config::Farm;
use webfarm_db::{DbError, DbNode};
use webfarm_node::http::HttpClient;
use webfarm_node::{NodeContext, Shutdown, ShutdownTrigger};
use webfarm_testkit::TempDir;
pub use webfarm_testkit::{eventually, DEADLINE};

/// A running node: its shutdown trigger and handle.
struct Running {
    trigger: ShutdownTrigger,
    node: DbNode,
}

/// A farm of `n` db nodes, each on a loopback address of its own.
pub struct Cluster {
    pub farm: Arc<Farm>,
    dir: TempDir,
    nodes: Vec<Option<Running>>,
    pub http: HttpClient,
    /// What every node started from now on checks its callers with (default: nothing).
    pub auth: webfarm_node::access::NodeAuth,
}

/// Makes the farm CA's files for `farm` and returns an HTTP client with the operator's
/// certificate.
fn operator(farm: &Farm) -> HttpClient {
    let layout = webfarm_tls::ca::Layout::of_data_dir(&farm.data_dir);
    let nodes: Vec<_> = farm
        .nodes
        .iter()
        .map(|n| webfarm_tls::farm::NodeIdentity {
            name: n.name.clone(),
            address: n.address,
        })
        .collect();
    let subjects = webfarm_tls::farm::Subjects {
        nodes,
        ..webfarm_tls::farm::Subjects::site(&farm.site)
    };
    webfarm_tls::farm::ensure(&layout, &subjects).expect("the farm CA");
    let id = webfarm_tls::internal::operator(&layout).expect("the operator's certificate");
    HttpClient::with_tls(&id.client)
}

impl Cluster {
    /// Writes the farm (own loopback addresses, temp dir) without starting anything.
    pub fn new(n: usize, snapshot_threshold: u64) -> Cluster {
        Self::with_internal_tls(n, snapshot_threshold, false)
    }

    /// As [`Cluster::new`], with internal TLS on or off; on, the farm CA's files are made in
    /// the data dir (as `webfarm up` makes them) and the test's client is the operator.
    pub fn with_internal_tls(n: usize, snapshot_threshold: u64, tls: bool) -> Cluster {
        let dir = TempDir::new("db-cluster");
        // A site of its own too: a Raft request meant for another test's cluster is refused.
        let mut toml = format!(
            "site = \"{}\"\ndata_dir = \"{}\"\n",
            dir.path().file_name().unwrap().to_string_lossy(),
            dir.path().join("data").display()
        );
        // Each node on a loopback address of its own (see webfarm-testkit): no other test
        // can take its ports or reach it by mistake.
        toml.push_str(&webfarm_testkit::db_nodes_toml(n));
        if !tls {
            toml.push_str(webfarm_testkit::INTERNAL_TLS_OFF);
        }
        toml.push_str(&format!(
            "[db]\nheartbeat_interval = \"150ms\"\nelection_timeout = \"1s\"\n\
             snapshot_threshold = {snapshot_threshold}\n"
        ));
        let farm = Farm::parse(&toml, None, dir.path()).expect("the test farm is valid");
        let http = if tls {
            operator(&farm)
        } else {
            HttpClient::new()
        };
        Cluster {
            farm: Arc::new(farm),
            dir,
            nodes: (0..n).map(|_| None).collect(),
            http,
            auth: webfarm_node::access::NodeAuth::default(),
        }
    }

    /// Starts every node.
    pub async fn start_all(n: usize, snapshot_threshold: u64) -> Cluster {
        let mut c = Cluster::new(n, snapshot_threshold);
        for i in 0..n {
            c.start(i).await;
        }
        c
    }

    /// The cluster's directory (the farm's data dir is under it), removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn name(&self, i: usize) -> String {
        format!("db-{}", i + 1)
    }

    /// The SQL API address of node `i`.
    pub fn api(&self, i: usize) -> SocketAddr {
        self.farm.nodes[i].main_addr()
    }

    pub fn apis(&self) -> Vec<SocketAddr> {
        (0..self.nodes.len()).map(|i| self.api(i)).collect()
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.farm.node_data_dir(&self.name(i))
    }

    pub async fn start(&mut self, i: usize) {
        self.try_start(i).await.expect("the db node starts");
    }

    /// Starts node `i`; its start error if it does not.
    pub async fn try_start(&mut self, i: usize) -> Result<(), DbError> {
        let node = self.farm.nodes[i].clone();
        let data_dir = self.data_dir(i);
        std::fs::create_dir_all(&data_dir).expect("create the node's data dir");
        let (trigger, shutdown) = Shutdown::new();
        let ctx = NodeContext {
            farm: Arc::clone(&self.farm),
            node,
            data_dir,
            shutdown,
            auth: self.auth.clone(),
        };
        let node = DbNode::start(ctx).await?;
        self.nodes[i] = Some(Running { trigger, node });
        Ok(())
    }

    /// Takes node `i` out of the cluster's hands, still running: its trigger and handle.
    pub fn take(&mut self, i: usize) -> (ShutdownTrigger, DbNode) {
        let r = self.nodes[i].take().expect("the node runs");
        (r.trigger, r.node)
    }

    /// Shuts node `i` down gracefully and waits until it stopped.
    pub async fn stop(&mut self, i: usize) {
        if let Some(r) = self.nodes[i].take() {
            r.trigger.trigger();
            tokio::time::timeout(DEADLINE, r.node.wait())
                .await
                .expect("the node stops in time")
                .expect("the node stops cleanly");
        }
    }

    pub async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// The health status JSON of node `i` (as the admin server shows it).
    pub fn status(&self, i: usize) -> Value {
        self.nodes[i]
            .as_ref()
            .expect("the node runs")
            .node
            .health()
            .status()
            .to_json()
    }

    /// Node `i`'s `/metrics` text (as its admin server answers).
    pub fn metrics(&self, i: usize) -> String {
        let node = &self.nodes[i].as_ref().expect("the node runs").node;
        webfarm_node::metrics::text(node.health()).unwrap()
    }

    /// Waits until the running nodes agree on one leader; returns its index.
    pub async fn leader(&self) -> usize {
        eventually(DEADLINE, "an agreed leader", || async {
            self.agreed_leader()
        })
        .await
    }

    /// The leader every running node names, if they agree on one that says it leads.
    fn agreed_leader(&self) -> Option<usize> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect();
        let leaders: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&i| self.status(i)["raft_state"] == "Leader")
            .collect();
        let [l] = leaders.as_slice() else {
            return None;
        };
        let name = self.name(*l);
        running
            .iter()
            .all(|&i| self.status(i)["leader"].as_str() == Some(name.as_str()))
            .then_some(*l)
    }

    /// A running node other than `not`.
    pub fn other_than(&self, not: usize) -> usize {
        (0..self.nodes.len())
            .find(|&i| i != not && self.is_running(i))
            .expect("another running node")
    }

    /// Waits until node `i` applied log index `n`.
    pub async fn wait_applied(&self, i: usize, n: u64) {
        let what = format!("node {i} applies index {n}");
        eventually(DEADLINE, &what, || async {
            (self.status(i)["applied_index"].as_u64().unwrap_or(0) >= n).then_some(())
        })
        .await;
    }

    /// POSTs a JSON body to node `i`; returns the status, the JSON answer and the headers.
    pub async fn post(&self, i: usize, path: &str, body: &str) -> (u16, Value, http::HeaderMap) {
        let url = self.http.url(self.api(i), path);
        let r = self
            .http
            .post(
                &url,
                "application/json",
                Bytes::from(body.to_string()),
                DEADLINE,
            )
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status.as_u16(), v, r.headers)
    }

    pub async fn get(&self, i: usize, path: &str) -> (u16, Value) {
        let url = self.http.url(self.api(i), path);
        let r = self
            .http
            .get(&url, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let v = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
        (r.status.as_u16(), v)
    }

    /// Runs a write through node `i`, expecting 200; returns the answer.
    pub async fn execute(&self, i: usize, path: &str, body: &str) -> Value {
        let (status, v, _) = self.post(i, path, body).await;
        assert_eq!(status, 200, "{path} {body} on node {i}: {v}");
        v
    }

    /// The rows of one query on node `i`.
    pub async fn rows(&self, i: usize, query: &str, sql: &str) -> Value {
        let body = serde_json::to_string(&vec![sql]).expect("json");
        let (status, v, _) = self.post(i, &format!("/db/query?{query}"), &body).await;
        assert_eq!(status, 200, "query {sql} on node {i}: {v}");
        v["results"][0].clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for r in self.nodes.iter().flatten() {
            r.trigger.trigger();
        }
    }
}
