//! Test harness: a whole farm run by the real `webfarm up` binary, on its own loopback
//! addresses (`127.0.N.x`, one N per test) and its own temp dir; [`in_process`] starts db and
//! web nodes inside the test process instead.
#![allow(dead_code)]

pub mod in_process;
pub mod netns;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use webfarm_node::http::{HttpClient, HttpResponse};
use webfarm_node::status::RaftState;
use webfarm_node::{NodeStatus, RoleStatus};
pub use webfarm_testkit::{eventually, TempDir, DEADLINE};

/// Spawns `up` (a `webfarm up` command) in its own process group, like a shell job, so a
/// test can Ctrl-C the whole group; its output lines go to `log` through threads pushed on
/// `readers`. Returns the child and whether it printed "farm is up" within 180 s, with the
/// reason if not.
pub fn spawn_up(
    mut up: Command,
    log: &Arc<Mutex<Vec<String>>>,
    readers: &mut Vec<std::thread::JoinHandle<()>>,
) -> (Child, bool, String) {
    let mut child = up
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn webfarm up");
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let (log, tx) = (log.clone(), tx.clone());
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if line.contains("farm is up") {
                    let _ = tx.send(true);
                }
                log.lock().unwrap().push(line);
            }
            let _ = tx.send(false);
        }));
    }
    let (ok, why) = match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(true) => (true, String::new()),
        Ok(false) => (false, "webfarm up exited".into()),
        Err(_) => (false, "no 'farm is up' within 180s".into()),
    };
    (child, ok, why)
}

/// Creates the farm's secrets in `data_dir` as `webfarm up` does (for tests that start nodes
/// with `webfarm run`, which reads them); returns the operator's `Authorization`.
pub fn make_secrets(data_dir: &Path) -> http::HeaderValue {
    webfarm_auth::Secrets::of_data_dir(data_dir)
        .ensure()
        .expect("make the farm's secrets");
    operator_authorization(data_dir).expect("the admin token")
}

/// As [`make_secrets`], the data directory then owned by `nobody` (uid 65534) for a node
/// that a test runs as `nobody` (through setpriv, as root).
pub fn make_secrets_for_nobody(data_dir: &Path) {
    make_secrets(data_dir);
    let done = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(data_dir)
        .status()
        .expect("run chown");
    assert!(done.success(), "chown -R nobody {}", data_dir.display());
}

/// The operator's `Authorization` for the farm whose data directory is `data_dir`: the
/// generated `operator` user with the admin token (the db API and the admin routes both
/// take it); `None` before `webfarm up` made the secrets.
pub fn operator_authorization(data_dir: &Path) -> Option<http::HeaderValue> {
    let token = webfarm_auth::Secrets::of_data_dir(data_dir)
        .admin_token()
        .ok()?;
    Some(webfarm_auth::basic::header(
        webfarm_auth::secrets::OPERATOR_USER,
        token.expose(),
    ))
}

/// The data directory of the farm file `config`.
pub fn data_dir_of(config: &Path) -> PathBuf {
    webfarm_config::Farm::load(config)
        .expect("the test's farm file")
        .data_dir
}

/// The `webfarm` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_webfarm")
}

/// The repository's `site/` directory.
pub fn site_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../site")
}

/// Three voters db-1..3 and a learner db-4 on `127.0.<net>.3i`, nothing else.
pub fn db_farm_toml(net: u8) -> String {
    let mut s = String::from("site = \"www.foobar.com\"\ndata_dir = \"data\"\n");
    for i in 1..=4 {
        s += &format!(
            "[[nodes]]\nname = \"db-{i}\"\nrole = \"db\"\naddress = \"127.0.{net}.3{i}\"\n"
        );
        if i == 4 {
            s += "replica = \"learner\"\n";
        }
    }
    s + webfarm_testkit::INTERNAL_TLS_OFF + "[db]\nsnapshot_threshold = 20\n"
}

/// The seed farm (lb-1, web-1..3, db-1..3) on `127.0.<net>.x`, with fast health checks
/// (inter 300ms) and small snapshots (every 20 entries) so tests exercise them.
pub fn farm_toml(net: u8) -> String {
    let p = format!("127.0.{net}");
    let site = site_dir();
    let mut s = String::from("site = \"www.foobar.com\"\ndata_dir = \"data\"\n");
    s += &format!("[[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"{p}.10\"\n");
    for i in 1..=3 {
        s += &format!("[[nodes]]\nname = \"web-{i}\"\nrole = \"web\"\naddress = \"{p}.2{i}\"\n");
    }
    for i in 1..=3 {
        s += &format!("[[nodes]]\nname = \"db-{i}\"\nrole = \"db\"\naddress = \"{p}.3{i}\"\n");
    }
    s += "[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n";
    s += "[[backends]]\nname = \"web\"\n[backends.check]\npath = \"/healthz\"\ninter = \"300ms\"\nrise = 2\nfall = 3\ntimeout = \"1s\"\n";
    for i in 1..=3 {
        s += &format!("[[backends.servers]]\nname = \"web-{i}\"\n");
    }
    s += webfarm_testkit::INTERNAL_TLS_OFF;
    s += &format!(
        "[web]\nroot = \"{}\"\ndb_timeout = \"10s\"\n[db]\nsnapshot_threshold = 20\n",
        site.display()
    );
    s
}

/// A running `webfarm up`.
pub struct TestFarm {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub net: u8,
    pub child: Option<Child>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// The threads copying the supervisor's stdout and stderr into `log`.
    pub readers: Vec<std::thread::JoinHandle<()>>,
    pub http: HttpClient,
}

impl TestFarm {
    /// Writes the seed farm for `net` into `tmp` and starts it.
    pub fn start(tmp: &TempDir, net: u8) -> TestFarm {
        let dir = tmp.path().to_path_buf();
        let config = dir.join("farm.toml");
        std::fs::write(&config, farm_toml(net)).unwrap();
        Self::start_in(dir, config, net)
    }

    /// Starts `webfarm up` on an existing dir and config (a restart).
    pub fn start_in(dir: PathBuf, config: PathBuf, net: u8) -> TestFarm {
        let mut farm = TestFarm {
            dir,
            config,
            net,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            readers: Vec::new(),
            http: HttpClient::new(),
        };
        let (ok, why) = farm.spawn_up();
        assert!(ok, "farm did not come up: {why}\n{}", farm.log_text());
        // The operator's credentials, which `webfarm up` made, on every call of the helpers.
        let auth = operator_authorization(&data_dir_of(&farm.config));
        farm.http = HttpClient::new().with_authorization(auth);
        farm
    }

    /// Spawns `webfarm up`; returns whether it printed "farm is up", and the reason if not.
    pub fn spawn_up(&mut self) -> (bool, String) {
        let mut up = Command::new(bin());
        up.args(["up", "--config"]).arg(&self.config);
        let (child, ok, why) = spawn_up(up, &self.log, &mut self.readers);
        self.child = Some(child);
        (ok, why)
    }

    /// Waits for `webfarm up` to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                // The last lines (an error printed just before exiting) may still be in the
                // pipes: the readers end at EOF, which follows the exit.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `http://127.0.N.10:8080`
    pub fn lb(&self) -> String {
        format!("http://127.0.{}.10:8080", self.net)
    }
    /// `http://127.0.N.2i:8000`
    pub fn web(&self, i: u8) -> String {
        format!("http://127.0.{}.2{i}:8000", self.net)
    }
    /// `http://127.0.N.3i:4001`
    pub fn db(&self, i: u8) -> String {
        format!("http://127.0.{}.3{i}:4001", self.net)
    }
    /// Admin `/status` URL of node `name`.
    pub fn status_url(&self, name: &str) -> String {
        let host = match name.split_once('-') {
            Some(("lb", i)) => format!("1{}", i.parse::<u8>().unwrap() - 1),
            Some(("web", i)) => format!("2{i}"),
            Some(("db", i)) => format!("3{i}"),
            _ => panic!("bad node name {name}"),
        };
        format!("http://127.0.{}.{host}:9000/status", self.net)
    }

    /// Runs `webfarm ARGS --config <farm.toml>`.
    pub fn webfarm(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run webfarm")
    }

    /// Stops the farm as Ctrl-C in a terminal does (SIGINT to the job's whole process group);
    /// asserts a clean exit and that every node stopped gracefully.
    pub fn stop(&mut self) {
        let pid = self.child.as_ref().expect("farm running").id();
        Command::new("kill")
            .args(["-INT", "--", &format!("-{pid}")])
            .status()
            .unwrap();
        let code = self.wait_exit(Duration::from_secs(60));
        assert_eq!(
            code,
            Some(0),
            "webfarm up did not stop cleanly:\n{}",
            self.log_text()
        );
        let log = self.log_text();
        assert!(
            !log.contains("did not stop within") && !log.contains("exit code 1"),
            "a node did not stop gracefully:\n{log}"
        );
    }

    pub async fn get(&self, url: &str) -> HttpResponse {
        self.http
            .get(url, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    pub async fn get_with_cookie(&self, url: &str, cookie: &str) -> HttpResponse {
        let req = http::Request::get(url)
            .header("cookie", cookie)
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        self.http
            .request(req, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> HttpResponse {
        self.http
            .post(
                url,
                "application/json",
                Bytes::from(body.to_string()),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// Node `name`'s admin `/status`, if it answers.
    pub async fn status(&self, name: &str) -> Option<NodeStatus> {
        let r = self
            .http
            .get(&self.status_url(name), Duration::from_secs(2))
            .await
            .ok()?;
        serde_json::from_slice(&r.body).ok()
    }

    /// The Raft state of db node `name`, if it answers.
    pub async fn raft_state(&self, name: &str) -> Option<RaftState> {
        match self.status(name).await?.details {
            RoleStatus::Db(d) => Some(d.raft_state),
            _ => None,
        }
    }

    /// The name of the db leader, polling until one is known.
    pub async fn db_leader(&self) -> String {
        eventually(DEADLINE, "a db leader", || async {
            for i in 1..=3 {
                let name = format!("db-{i}");
                if self.raft_state(&name).await == Some(RaftState::Leader) {
                    return Some(name);
                }
            }
            None
        })
        .await
    }
}

impl Drop for TestFarm {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            if self.wait_exit(Duration::from_secs(30)).is_none() {
                if let Some(c) = self.child.as_mut() {
                    let _ = c.kill();
                }
            }
        }
    }
}

/// The `X-Served-By` header of a response.
pub fn served_by(r: &HttpResponse) -> String {
    r.headers
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// `name=value` of the first `Set-Cookie` of a response.
pub fn cookie(r: &HttpResponse) -> String {
    r.headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .to_string()
}

/// A virtual environment in `dir` with pyrqlite (rqlite's Python client) from PyPI; its
/// python. Fails saying what is missing without python3, venv or pip (CI installs them:
/// `.ci/run`).
pub fn pyrqlite(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap_or_else(|e| panic!("this test needs python3 with venv and pip: {e}"));
    assert!(
        made.status.success() && venv.join("bin/pip").exists(),
        "python3 cannot make a virtual environment with pip (on Debian: apt-get install \
         python3-venv python3-pip): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pip = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "pyrqlite==2.2.3",
        ])
        .output()
        .expect("run pip");
    assert!(
        pip.status.success(),
        "pip could not install pyrqlite from PyPI: {}",
        String::from_utf8_lossy(&pip.stderr)
    );
    venv.join("bin/python")
}
