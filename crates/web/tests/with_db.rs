//! A web node in front of a real db cluster (db nodes in-process, real sockets): a replica
//! that lags behind the creation of the table, and a forged read-your-writes cookie.

mod support;

use std::sync::Arc;

use http::{Method, StatusCode};
use support::*;
use webfarm_config::Farm;
use webfarm_db::DbNode;
use webfarm_node::{Health, NodeContext, RoleStatus, Shutdown, ShutdownTrigger};
use webfarm_testkit::eventually;

/// The db nodes of a farm, started in this process.
struct Dbs {
    farm: Arc<Farm>,
    nodes: Vec<Option<(ShutdownTrigger, DbNode)>>,
}

impl Dbs {
    async fn start_all(farm: &Farm, n: usize) -> Dbs {
        let mut dbs = Dbs {
            farm: Arc::new(farm.clone()),
            nodes: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            dbs.start(i).await;
        }
        dbs
    }

    async fn start(&mut self, i: usize) {
        let name = format!("db-{}", i + 1);
        let data_dir = self.farm.node_data_dir(&name);
        std::fs::create_dir_all(&data_dir).unwrap();
        let (trigger, shutdown) = Shutdown::new();
        let ctx = NodeContext {
            farm: self.farm.clone(),
            node: self.farm.node(&name).unwrap().clone(),
            data_dir,
            shutdown,
        };
        let node = DbNode::start(ctx).await.unwrap();
        self.nodes[i] = Some((trigger, node));
    }

    async fn stop(&mut self, i: usize) {
        if let Some((trigger, node)) = self.nodes[i].take() {
            trigger.trigger();
            tokio::time::timeout(DEADLINE, node.wait())
                .await
                .expect("the db node stops in time")
                .unwrap();
        }
    }

    fn health(&self) -> Vec<Arc<dyn Health>> {
        self.nodes
            .iter()
            .flatten()
            .map(|(_, n)| n.health())
            .collect()
    }

    /// Waits until the running db nodes agree on a leader; returns its name.
    async fn leader(&self) -> String {
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

    async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Waits until the web node created the table.
async fn until_ready(web: &Running) {
    let health = web.node.as_ref().unwrap().health();
    eventually(DEADLINE, "the web node to be ready", || {
        let h = health.clone();
        async move { h.ready().ok() }
    })
    .await;
}

/// The `wf_index=N` part of a response's Set-Cookie.
fn cookie(r: &Resp) -> String {
    let set = r.header("set-cookie");
    set.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_behind_the_tables_creation_does_not_answer_no_such_table() {
    let tmp = TempDir::new("lagging");
    let site = make_site(&tmp);
    let farm = farm_with_dbs(&tmp, &site, "10s", 3);
    let mut dbs = Dbs::start_all(&farm, 3).await;
    dbs.leader().await;

    // web-1 reads from db-1 first: db-1 misses the table's creation and a message.
    dbs.stop(0).await;
    dbs.leader().await;
    let web = start(farm.clone(), "web-1").await.unwrap();
    until_ready(&web).await;
    let posted = post_json(
        web.addr,
        "/api/messages",
        r#"{"author": "ann", "text": "while db-1 was down"}"#,
    )
    .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    let wf_index = cookie(&posted);

    // Back, db-1 is behind until the leader's next replication round: reads wait for it.
    dbs.start(0).await;
    let r = get(web.addr, "/api/messages", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.json().is_array(), "{}", r.text());
    let r = get(web.addr, "/", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = get(web.addr, "/api/messages", &[("cookie", &wf_index)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()[0]["text"], "while db-1 was down", "{}", r.text());

    let mut web = web;
    web.trigger.trigger();
    web.node.take().unwrap().wait().await.unwrap();
    dbs.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_cookie_is_dropped_and_the_page_still_answers() {
    let tmp = TempDir::new("forged");
    let site = make_site(&tmp);
    // Shorter than a replica's wait for an index it never reaches, times the three nodes.
    let farm = farm_with_dbs(&tmp, &site, "3s", 3);
    let mut dbs = Dbs::start_all(&farm, 3).await;
    dbs.leader().await;
    let web = start(farm.clone(), "web-1").await.unwrap();
    until_ready(&web).await;
    let posted = post_json(
        web.addr,
        "/api/messages",
        r#"{"author": "bo", "text": "hi"}"#,
    )
    .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    let id = posted.json()["id"].as_i64().unwrap();

    let forged = [("cookie", "wf_index=18446744073709551615")];
    for path in ["/api/messages", &format!("/api/messages/{id}"), "/"] {
        let r = send(web.addr, Method::GET, path, &forged, "").await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        let set = r.header("set-cookie");
        assert!(
            set.starts_with("wf_index=;") && set.contains("Max-Age=0"),
            "{path}: {set}"
        );
        assert!(r.text().contains("hi"), "{path}: {}", r.text());
    }
    // A real cookie is kept.
    let r = get(web.addr, "/api/messages", &[("cookie", &cookie(&posted))]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.headers.contains_key("set-cookie"), "{r:?}");

    let mut web = web;
    web.trigger.trigger();
    web.node.take().unwrap().wait().await.unwrap();
    dbs.stop_all().await;
}
