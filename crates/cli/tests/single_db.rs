//! A farm of one db node, run by the real binary (`webfarm run --node db-1`), is a complete
//! rqlite-compatible server: it forms a one-node cluster, takes writes, answers reads at every
//! consistency level, `/status`, `/nodes` and `/readyz`; its database holds only the user's
//! objects; killed with SIGKILL in the middle of writes and started again, it applies no
//! entry twice and loses no acknowledged one; stopped gracefully, it starts from its file.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use webfarm_node::http::HttpClient;
use webfarm_testkit::{eventually, KillOnDrop, TempDir, DEADLINE};

/// `webfarm run --node db-1`, killed when dropped.
/// db-1, killed when the test ends.
struct Node(KillOnDrop);

impl Node {
    fn start(config: &Path, log: &Path) -> Node {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = log.try_clone().unwrap();
        Node(KillOnDrop(
            Command::new(common::bin())
                .args(["run", "--node", "db-1", "--config"])
                .arg(config)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(err))
                .spawn()
                .unwrap(),
        ))
    }

    fn kill_9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.0.wait().unwrap();
        assert!(status.success(), "db-1 exited with {status}");
    }
}

struct Api {
    http: HttpClient,
    base: String,
}

impl Api {
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = self
            .http
            .get(&format!("{}{path}", self.base), DEADLINE)
            .await
            .ok()?;
        Some((
            r.status.as_u16(),
            String::from_utf8_lossy(&r.body).into_owned(),
        ))
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await.expect("the node answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// POSTs `body`; `None` when no answer came (the node is down).
    async fn try_post(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        let r = self
            .http
            .post(
                &format!("{}{path}", self.base),
                "application/json",
                Bytes::from(body.to_string()),
                DEADLINE,
            )
            .await
            .ok()?;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        Some((r.status.as_u16(), v))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.try_post(path, body)
            .await
            .unwrap_or_else(|| panic!("POST {path}: no answer"))
    }

    async fn ready(&self) {
        eventually(DEADLINE, "db-1 is ready", || async {
            self.get("/readyz")
                .await
                .filter(|(status, _)| *status == 200)
        })
        .await;
    }

    /// One row of `sql` read at `level`.
    async fn row(&self, level: &str, sql: &str) -> Value {
        let (status, v) = self
            .post(&format!("/db/query?level={level}"), &json!([sql]))
            .await;
        assert_eq!(status, 200, "{level}: {v}");
        v["results"][0]["values"][0].clone()
    }
}

/// The rows, distinct keys and counter of the crash workload.
async fn counts(api: &Api) -> (i64, i64, i64) {
    let row = api
        .row(
            "strong",
            "SELECT count(*), count(DISTINCT k), (SELECT n FROM c) FROM t",
        )
        .await;
    let n = |i: usize| row[i].as_i64().unwrap_or(-1);
    (n(0), n(1), n(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_db_node_is_a_complete_rqlite_server() {
    let dir = TempDir::new("single-db");
    let ip = webfarm_testkit::loopback_ip();
    let config = dir.path().join("farm.toml");
    std::fs::write(
        &config,
        format!(
            "site = \"db.example\"\ndata_dir = \"data\"\n\
             [[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"{ip}\"\n\
             [tls]\ninternal = false\n[db]\nsnapshot_threshold = 50\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("db-1.log");
    let auth = common::make_secrets(&dir.path().join("data"));
    let api = Arc::new(Api {
        http: HttpClient::new().with_authorization(Some(auth)),
        base: format!("http://{ip}:4001"),
    });
    let node = Node::start(&config, &log);
    api.ready().await;

    // It formed a one-node cluster and leads it.
    let status = api.json("/status").await;
    assert_eq!(status["store"]["raft"]["state"], "Leader", "{status}");
    let nodes = api.json("/nodes").await;
    assert_eq!(nodes["db-1"]["leader"], true, "{nodes}");
    assert_eq!(nodes["db-1"]["voter"], true, "{nodes}");
    let (_, readyz) = api.get("/readyz").await.unwrap();
    assert!(readyz.contains("[+]leader ok"), "{readyz}");

    // Writes, and reads at every level.
    let (status, v) = api
        .post(
            "/db/execute",
            &json!([
                "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, at DATETIME)",
                "CREATE TABLE c (n INTEGER)",
                "INSERT INTO c VALUES (0)",
                ["INSERT INTO t (k, at) VALUES (?, ?)", 0, 1_076_742_900]
            ]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for level in ["none", "weak", "linearizable", "strong", "auto"] {
        assert_eq!(
            api.row(level, "SELECT k, at FROM t").await,
            json!([0, "2004-02-14T07:15:00Z"]),
            "level={level}"
        );
    }
    let schema = api
        .post(
            "/db/query",
            &json!(["SELECT name FROM sqlite_master ORDER BY name"]),
        )
        .await
        .1;
    assert_eq!(
        schema["results"][0]["values"],
        json!([["c"], ["t"]]),
        "only the user's objects"
    );
    let r = api
        .http
        .get(&format!("{}/db/backup", api.base), DEADLINE)
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    let backup = dir.path().join("backup.sqlite");
    std::fs::write(&backup, &r.body).unwrap();
    let names: String = rusqlite::Connection::open(&backup)
        .unwrap()
        .query_row(
            "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master ORDER BY name)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(names, "c,t", "the backup holds the user's objects");
    api.post("/db/execute", &json!(["DELETE FROM t"])).await;

    // SIGKILL while writers run: each write is a row and an increment, in one transaction.
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (api, acked) = (Arc::clone(&api), Arc::clone(&acked));
            tokio::spawn(async move {
                for i in 0.. {
                    let k = w * 1_000_000 + i;
                    let body = json!([
                        ["INSERT INTO t (k) VALUES (?)", k],
                        "UPDATE c SET n = n + 1"
                    ]);
                    match api.try_post("/db/execute?transaction", &body).await {
                        Some((200, _)) => acked.lock().unwrap().push(k),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    eventually(DEADLINE, "200 writes acknowledged", || async {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    node.kill_9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let node = Node::start(&config, &log);
    api.ready().await;
    // The first read after the restart, at `linearizable`, already holds every acknowledged
    // write (the node leads again at once, from a commit index that may trail).
    let first = api.row("linearizable", "SELECT count(*) FROM t").await;
    assert!(
        first[0].as_u64().unwrap_or(0) >= acked.len() as u64,
        "{first} rows read, {} acknowledged",
        acked.len()
    );
    let (rows, distinct, counter) = counts(&api).await;
    let rebuilt = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("not closed cleanly");
    println!(
        "{} writes acknowledged before SIGKILL, {rows} applied after the restart \
         (db.sqlite rebuilt from the snapshot and the log: {rebuilt})",
        acked.len()
    );
    assert!(rebuilt, "the restart after SIGKILL rebuilt db.sqlite");
    assert_eq!(
        (rows, distinct),
        (counter, counter),
        "no write applied twice or half"
    );
    assert!(
        usize::try_from(rows).unwrap() >= acked.len(),
        "{rows} rows, {} acknowledged",
        acked.len()
    );
    for k in acked.iter().step_by(17) {
        let n = api
            .row("none", &format!("SELECT count(*) FROM t WHERE k = {k}"))
            .await;
        assert_eq!(n, json!([1]), "acknowledged write {k}");
    }

    // A graceful stop and start: db.sqlite is used as it is, with the same data and only
    // the user's objects.
    node.stop();
    let rebuilds = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("not closed cleanly")
            .count()
    };
    let before = rebuilds();
    let node = Node::start(&config, &log);
    api.ready().await;
    assert_eq!(rebuilds(), before, "a graceful stop needs no rebuild");
    assert_eq!(counts(&api).await, (rows, distinct, counter));
    let (status, v) = api
        .post(
            "/db/query?level=strong",
            &json!(["SELECT name FROM sqlite_master ORDER BY name"]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["results"][0]["values"], json!([["c"], ["t"]]));
    node.stop();
}
