//! Nodes started inside the test process, for tests that stop and start one db node at a
//! time or call a crate's API directly: db nodes of webfarm-db and a web node of webfarm-web,
//! each on a loopback address of its own (webfarm-testkit), so these tests run in parallel
//! with each other and with the `127.0.N.x` farms of the `webfarm up` tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use webfarm_config::{Farm, Role};
use webfarm_db::DbNode;
use webfarm_node::http::{HttpClient, HttpResponse};
use webfarm_node::{Health, NodeContext, RoleStatus, Shutdown, ShutdownTrigger};
use webfarm_web::WebNode;

use super::{eventually, TempDir, DEADLINE};

/// A farm of one web node `web-1` serving `root` and `dbs` db nodes `db-1`.., each on a
/// loopback address of its own, with fast elections (heartbeat 150ms, election timeout 1s).
pub fn farm(tmp: &TempDir, root: &Path, db_timeout: &str, dbs: usize) -> Farm {
    let text = webfarm_testkit::web_farm_toml(
        tmp.path(),
        root,
        db_timeout,
        dbs,
        "[db]\nheartbeat_interval = \"150ms\"\nelection_timeout = \"1s\"\n",
    );
    Farm::parse(&text, None, tmp.path()).unwrap()
}

/// The context of node `name` of `farm`, its data directory created.
fn context(farm: &Arc<Farm>, name: &str) -> (ShutdownTrigger, NodeContext) {
    let data_dir = farm.node_data_dir(name);
    std::fs::create_dir_all(&data_dir).unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let ctx = NodeContext {
        farm: farm.clone(),
        node: farm.node(name).unwrap().clone(),
        data_dir,
        shutdown,
        auth: Default::default(),
    };
    (trigger, ctx)
}

/// The db nodes of a farm, started in this process.
pub struct Dbs {
    farm: Arc<Farm>,
    nodes: Vec<Option<(ShutdownTrigger, DbNode)>>,
}

impl Dbs {
    /// Starts every db node of `farm`.
    pub async fn start_all(farm: &Farm) -> Dbs {
        let n = farm.nodes_with_role(Role::Db).count();
        let mut dbs = Dbs {
            farm: Arc::new(farm.clone()),
            nodes: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            dbs.start(i).await;
        }
        dbs
    }

    /// Starts `db-{i + 1}` (again).
    pub async fn start(&mut self, i: usize) {
        let (trigger, ctx) = context(&self.farm, &format!("db-{}", i + 1));
        let node = DbNode::start(ctx).await.unwrap();
        self.nodes[i] = Some((trigger, node));
    }

    /// Stops `db-{i + 1}` gracefully, if it runs.
    pub async fn stop(&mut self, i: usize) {
        if let Some((trigger, node)) = self.nodes[i].take() {
            trigger.trigger();
            tokio::time::timeout(DEADLINE, node.wait())
                .await
                .expect("the db node stops in time")
                .unwrap();
        }
    }

    /// Stops every running db node.
    pub async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }

    /// The SQL API addresses of every db node of the farm, running or not, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.farm
            .nodes_with_role(Role::Db)
            .map(webfarm_config::Node::main_addr)
            .collect()
    }

    fn health(&self) -> Vec<Arc<dyn Health>> {
        self.nodes
            .iter()
            .flatten()
            .map(|(_, n)| n.health())
            .collect()
    }

    /// Waits until the running db nodes agree on a leader; returns its name.
    pub async fn leader(&self) -> String {
        let health = self.health();
        eventually(DEADLINE, "an agreed leader", || {
            let health = health.clone();
            async move {
                let leaders: Vec<_> = health
                    .iter()
                    .map(|h| match h.status() {
                        RoleStatus::Db(s) => s.leader,
                        other => panic!("not a db node's status: {other:?}"),
                    })
                    .collect();
                match leaders.first() {
                    Some(Some(l)) if leaders.iter().all(|x| x.as_deref() == Some(l)) => {
                        Some(l.clone())
                    }
                    _ => None,
                }
            }
        })
        .await
    }
}

/// A web node started in this process, and an HTTP client for it.
pub struct Web {
    node: Option<WebNode>,
    trigger: ShutdownTrigger,
    /// Its HTTP address.
    pub addr: SocketAddr,
    http: HttpClient,
}

impl Web {
    /// Starts node `name` of `farm`.
    pub async fn start(farm: &Farm, name: &str) -> Web {
        let (trigger, ctx) = context(&Arc::new(farm.clone()), name);
        let node = WebNode::start(ctx).await.unwrap();
        Web {
            addr: node.http_addr(),
            node: Some(node),
            trigger,
            http: HttpClient::new(),
        }
    }

    /// Waits until the node created the `messages` table (it is ready).
    pub async fn until_ready(&self) {
        let health = self.node.as_ref().expect("running").health();
        eventually(DEADLINE, "the web node to be ready", || {
            let h = health.clone();
            async move { h.ready().ok() }
        })
        .await;
    }

    /// Sends `method path` with `headers` and `body`; the whole answer, within [`DEADLINE`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> HttpResponse {
        let url = format!("http://{}{path}", self.addr);
        let mut req = Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        self.http
            .request(req, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// `GET path` with `headers`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    /// `POST path` with a JSON `body`.
    pub async fn post_json(&self, path: &str, body: &str) -> HttpResponse {
        let json = [("content-type", "application/json")];
        self.send(Method::POST, path, &json, body.to_string()).await
    }

    /// Stops the node gracefully and waits until it stopped.
    pub async fn stop(mut self) {
        self.trigger.trigger();
        let node = self.node.take().expect("running");
        tokio::time::timeout(DEADLINE, node.wait())
            .await
            .expect("the web node stops in time")
            .unwrap();
    }
}

/// A response's body as text (lossy).
pub fn text(r: &HttpResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A response's body as JSON.
///
/// # Panics
/// When the body is not JSON.
pub fn json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", r.status, text(r)))
}

/// A response's header `name`.
///
/// # Panics
/// When it has none.
pub fn header<'r>(r: &'r HttpResponse, name: &str) -> &'r str {
    match r.headers.get(name) {
        Some(v) => v.to_str().unwrap(),
        None => panic!("no {name} header in {r:?}"),
    }
}
