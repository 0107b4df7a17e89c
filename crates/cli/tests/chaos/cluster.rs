//! A 3-node db cluster of real `webfarm run --node db-N` processes on `127.0.84.3N`, each in
//! its own process group, with the faults the nemesis injects: SIGKILL and restart,
//! SIGSTOP and SIGCONT.
//!
//! Nodes run with `--supervised`, so they stop when this test process goes away (their
//! stdin closes) even if it dies without running `Drop`. Each node's stderr goes to
//! `<dir>/db-N.log`; the directory is kept when the test fails.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use webfarm_node::http::HttpClient;
use webfarm_testkit::eventually;

/// The loopback network of this test: `127.0.N.x`, N = 84 unless `WEBFARM_CHAOS_NET` says
/// otherwise (to run two copies of the test at once).
pub fn net() -> u8 {
    static NET: OnceLock<u8> = OnceLock::new();
    *NET.get_or_init(|| match std::env::var("WEBFARM_CHAOS_NET") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WEBFARM_CHAOS_NET={v:?}: expected 1..=254")),
        Err(_) => 84,
    })
}

/// How many db nodes.
pub const NODES: usize = 3;

/// A node's state as the nemesis left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Running.
    Up,
    /// Stopped by SIGSTOP.
    Paused,
    /// Killed by SIGKILL (or exited on its own), not restarted yet.
    Down,
}

struct Proc {
    child: Child,
    /// Kept open: the node stops when it closes.
    _stdin: ChildStdin,
}

/// The running cluster.
pub struct Cluster {
    /// Temp dir: farm.toml, data/, logs.
    pub dir: PathBuf,
    config: PathBuf,
    procs: Vec<Option<Proc>>,
    states: Vec<NodeState>,
    /// Unexpected exits seen: node number, exit status.
    pub crashes: Vec<(usize, String)>,
    http: HttpClient,
}

/// `http://127.0.84.3N:4001`, the SQL API of node `n` (1-based).
pub fn api(n: usize) -> String {
    format!("http://127.0.{}.3{n}:4001", net())
}

fn farm_toml() -> String {
    let mut s = String::from("site = \"www.foobar.com\"\ndata_dir = \"data\"\n");
    for i in 1..=NODES {
        s += &format!(
            "[[nodes]]\nname = \"db-{i}\"\nrole = \"db\"\naddress = \"127.0.{}.3{i}\"\n",
            net()
        );
    }
    // Fast elections so faults cause many of them; frequent snapshots so restarted nodes
    // often catch up from one.
    s += webfarm_testkit::INTERNAL_TLS_OFF;
    s += "[db]\nheartbeat_interval = \"100ms\"\nelection_timeout = \"600ms\"\nsnapshot_threshold = 200\n";
    s
}

impl Cluster {
    /// Writes the farm into a fresh temp dir and starts every node.
    ///
    /// # Panics
    ///
    /// When one of the nodes' addresses is taken (another copy of this test is running).
    pub fn start() -> Cluster {
        for n in 1..=NODES {
            for port in [4001, 4002, 9000] {
                let addr = format!("127.0.{}.3{n}:{port}", net());
                if let Err(e) = std::net::TcpListener::bind(&addr) {
                    panic!(
                        "{addr} is taken ({e}): is another chaos test running? Set \
                         WEBFARM_CHAOS_NET to another N (127.0.N.x) to run two at once"
                    );
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("webfarm-chaos-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        let config = dir.join("farm.toml");
        std::fs::write(&config, farm_toml()).expect("write farm.toml");
        let mut c = Cluster {
            dir,
            config,
            procs: (0..NODES).map(|_| None).collect(),
            states: vec![NodeState::Down; NODES],
            crashes: Vec::new(),
            http: HttpClient::new(),
        };
        for n in 1..=NODES {
            c.spawn(n, "start");
        }
        c
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("db-{n}.log"))
    }

    fn spawn(&mut self, n: usize, why: &str) {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(n))
            .expect("open the node log");
        let _ = writeln!(log, "===== chaos test: {why} db-{n} =====");
        let err = log.try_clone().expect("clone the log handle");
        let mut child = Command::new(env!("CARGO_BIN_EXE_webfarm"))
            .args([
                "run",
                "--supervised",
                "--node",
                &format!("db-{n}"),
                "--config",
            ])
            .arg(&self.config)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn webfarm run");
        let stdin = child.stdin.take().expect("piped stdin");
        self.procs[n - 1] = Some(Proc {
            child,
            _stdin: stdin,
        });
        self.states[n - 1] = NodeState::Up;
    }

    fn signal(&self, n: usize, sig: Signal) {
        if let Some(p) = &self.procs[n - 1] {
            let pid = Pid::from_raw(p.child.id() as i32);
            kill(pid, sig).unwrap_or_else(|e| panic!("kill -{sig} db-{n}: {e}"));
        }
    }

    /// Every node's state (index `n - 1`).
    pub fn states(&self) -> &[NodeState] {
        &self.states
    }

    /// SIGKILL node `n` and reap it.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut p) = self.procs[n - 1].take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        self.states[n - 1] = NodeState::Down;
    }

    /// SIGSTOP node `n`.
    pub fn pause(&mut self, n: usize) {
        self.signal(n, Signal::SIGSTOP);
        self.states[n - 1] = NodeState::Paused;
    }

    /// Brings node `n` back: SIGCONT if paused, a new process if down.
    pub fn heal(&mut self, n: usize) {
        match self.states[n - 1] {
            NodeState::Up => {}
            NodeState::Paused => {
                self.signal(n, Signal::SIGCONT);
                self.states[n - 1] = NodeState::Up;
            }
            NodeState::Down => self.spawn(n, "restart"),
        }
    }

    /// Brings every node back.
    pub fn heal_all(&mut self) {
        for n in 1..=NODES {
            self.heal(n);
        }
    }

    /// Records nodes that exited although nobody killed them (a crash is a bug: storage
    /// errors and panics must not happen under these faults) and marks them down.
    pub fn reap_crashes(&mut self) {
        for n in 1..=NODES {
            let exited = match &mut self.procs[n - 1] {
                Some(p) => p.child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.crashes.push((n, status.to_string()));
                self.procs[n - 1] = None;
                self.states[n - 1] = NodeState::Down;
            }
        }
    }

    /// `GET /status` of node `n`'s SQL API, if it answers within `timeout`.
    pub async fn status(&self, n: usize, timeout: Duration) -> Option<Value> {
        let r = self
            .http
            .get(&format!("{}/status", api(n)), timeout)
            .await
            .ok()?;
        serde_json::from_slice(&r.body).ok()
    }

    /// The node that says it is the leader, if a running one does.
    pub async fn leader(&self) -> Option<usize> {
        for n in 1..=NODES {
            if self.states[n - 1] != NodeState::Up {
                continue;
            }
            if let Some(s) = self.status(n, Duration::from_millis(500)).await {
                if s["raft_state"] == "Leader" {
                    return Some(n);
                }
            }
        }
        None
    }

    /// Waits until every node answers `/readyz` 200 (it knows a leader).
    pub async fn wait_ready(&self, timeout: Duration) {
        let _tails = TailsOnPanic(self);
        eventually(timeout, "every node to be ready", || async {
            let mut ready = 0;
            for n in 1..=NODES {
                let url = format!("{}/readyz", api(n));
                if let Ok(r) = self.http.get(&url, Duration::from_secs(1)).await {
                    ready += usize::from(r.status == 200);
                }
            }
            (ready == NODES).then_some(())
        })
        .await;
    }

    /// The last `lines` lines of each node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in 1..=NODES {
            let text = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out += &format!(
                "--- {} (last {lines} lines) ---\n",
                self.log_path(n).display()
            );
            for l in &all[all.len().saturating_sub(lines)..] {
                out += l;
                out.push('\n');
            }
        }
        out
    }

    /// Stops every node (SIGCONT then SIGKILL) and removes the temp dir.
    pub fn destroy(mut self) {
        self.stop_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn stop_all(&mut self) {
        for n in 1..=NODES {
            if self.states[n - 1] == NodeState::Paused {
                self.signal(n, Signal::SIGCONT);
            }
            self.kill(n);
        }
    }

    /// Where the history and logs are.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `text` to `<dir>/name`; returns the path.
    pub fn save(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        if let Ok(mut f) = File::create(&p) {
            let _ = f.write_all(text.as_bytes());
        }
        p
    }
}

/// Prints the last lines of every node's log if the test panics while it is alive.
struct TailsOnPanic<'a>(&'a Cluster);

impl Drop for TailsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.log_tails(40));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
