//! A 3-node db cluster of real `webfarm run --node db-N` processes, each in its own process
//! group, with the faults the nemesis injects: SIGKILL and restart, SIGSTOP and SIGCONT, and
//! (in network namespaces) network faults.
//!
//! By default every node runs in a network namespace of its own (`wfc-db-N`, at
//! `10.78.1.3N` on bridge `wfc-br0`, made with `webfarm_netns`), which needs root; with
//! `WEBFARM_CHAOS_NETNS=0` the nodes run on loopback (`127.0.84.3N`) and the nemesis cannot
//! partition them. Nodes run with `--supervised`, so they stop when this test process goes
//! away (their stdin closes) even if it dies without running `Drop`. Each node's stderr goes
//! to `<dir>/db-N.log`; the directory is kept when the test fails.

use std::collections::BTreeSet;
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
use webfarm_netns::{Block, Host, Network, Spec};
use webfarm_node::http::HttpClient;
use webfarm_testkit::eventually;

use crate::partition::{self, Drop as Cut};

/// Whether the nodes run in network namespaces (unless `WEBFARM_CHAOS_NETNS=0`).
pub fn netns() -> bool {
    static NETNS: OnceLock<bool> = OnceLock::new();
    *NETNS.get_or_init(|| std::env::var("WEBFARM_CHAOS_NETNS").map_or(true, |v| v.trim() != "0"))
}

/// The network of this test: `10.78.N.0/24` (N = 1) in namespaces, `127.0.N.x` (N = 84) on
/// loopback, unless `WEBFARM_CHAOS_NET` says otherwise (to run two copies of the test at
/// once).
pub fn net() -> u8 {
    static NET: OnceLock<u8> = OnceLock::new();
    *NET.get_or_init(|| match std::env::var("WEBFARM_CHAOS_NET") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WEBFARM_CHAOS_NET={v:?}: expected 1..=254")),
        Err(_) if netns() => 1,
        Err(_) => 84,
    })
}

/// Node `n`'s address (1-based).
pub fn host(n: usize) -> String {
    if netns() {
        format!("10.78.{}.3{n}", net())
    } else {
        format!("127.0.{}.3{n}", net())
    }
}

/// The namespaces' names: `wfc-*` (`wfcN-*` for another `WEBFARM_CHAOS_NET`).
fn spec() -> Spec {
    let prefix = match net() {
        1 => "wfc".to_string(),
        n => format!("wfc{n}"),
    };
    Spec::new(&prefix, Block::new([10, 78, net()])).expect("a valid netns spec")
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
    /// The namespaces, in netns mode; dropped (removed) after the nodes were stopped.
    network: Option<Network>,
    /// Nodes whose namespace holds a `chaos` nftables table.
    filtered: BTreeSet<usize>,
}

/// The test's directory.
fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("webfarm-chaos-{}", std::process::id()))
}

/// A client calling the db API as the farm's operator (the generated `operator` user).
pub fn client() -> HttpClient {
    let secrets = webfarm_auth::Secrets::of_data_dir(&dir().join("data"));
    let token = secrets.admin_token().expect("the farm's admin token");
    HttpClient::new().with_authorization(Some(webfarm_auth::basic::header(
        webfarm_auth::secrets::OPERATOR_USER,
        token.expose(),
    )))
}

/// `http://<host>:4001`, the SQL API of node `n` (1-based).
pub fn api(n: usize) -> String {
    format!("http://{}:4001", host(n))
}

fn farm_toml() -> String {
    let mut s = String::from("site = \"www.foobar.com\"\ndata_dir = \"data\"\n");
    for i in 1..=NODES {
        s += &format!(
            "[[nodes]]\nname = \"db-{i}\"\nrole = \"db\"\naddress = \"{}\"\n",
            host(i)
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
    /// When one of the nodes' addresses is taken (another copy of this test is running), or
    /// the namespaces cannot be made (not root, or a copy of this test uses them).
    pub fn start() -> Cluster {
        let network = if netns() {
            Some(make_network())
        } else {
            check_free();
            None
        };
        let dir = dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        // The farm's secrets, as `webfarm up` makes them: the nodes need them to start.
        webfarm_auth::Secrets::of_data_dir(&dir.join("data"))
            .ensure()
            .expect("make the farm's secrets");
        let config = dir.join("farm.toml");
        std::fs::write(&config, farm_toml()).expect("write farm.toml");
        let mut c = Cluster {
            dir,
            config,
            procs: (0..NODES).map(|_| None).collect(),
            states: vec![NodeState::Down; NODES],
            crashes: Vec::new(),
            http: client(),
            network,
            filtered: BTreeSet::new(),
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
        let bin = env!("CARGO_BIN_EXE_webfarm");
        let mut cmd = match &self.network {
            Some(net) => net.command(&format!("db-{n}"), bin),
            None => Command::new(bin),
        };
        let mut child = cmd
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

    /// Brings every node back and heals the network.
    pub fn heal_all(&mut self) {
        self.heal_network();
        for n in 1..=NODES {
            self.heal(n);
        }
    }

    /// Whether the nodes run in namespaces, so that the network can fail.
    pub fn has_network(&self) -> bool {
        self.network.is_some()
    }

    /// Installs a grudge: each `Cut` drops packets at one node from one peer.
    ///
    /// # Panics
    ///
    /// Without a network, or when `nft` fails.
    pub fn cut(&mut self, cuts: &[Cut]) {
        let net = self
            .network
            .as_ref()
            .expect("network faults need namespaces");
        for (at, script) in partition::nft_scripts(cuts, host) {
            net.run(&format!("db-{at}"), &["nft", &script])
                .unwrap_or_else(|e| panic!("cutting db-{at}'s links: {e}"));
            self.filtered.insert(at);
        }
    }

    /// Removes every grudge; returns whether there was one.
    pub fn heal_network(&mut self) -> bool {
        let Some(net) = &self.network else {
            return false;
        };
        let healed = !self.filtered.is_empty();
        for at in std::mem::take(&mut self.filtered) {
            net.run(&format!("db-{at}"), &["nft", "delete table inet chaos"])
                .unwrap_or_else(|e| panic!("healing db-{at}'s links: {e}"));
        }
        healed
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

/// Panics when one of the nodes' loopback addresses is taken.
fn check_free() {
    for n in 1..=NODES {
        for port in [4001, 4002, 9000] {
            let addr = format!("{}:{port}", host(n));
            if let Err(e) = std::net::TcpListener::bind(&addr) {
                panic!(
                    "{addr} is taken ({e}): is another chaos test running? Set \
                     WEBFARM_CHAOS_NET to another N (127.0.N.x) to run two at once"
                );
            }
        }
    }
}

/// The namespaces `wfc-db-N` on bridge `wfc-br0`.
fn make_network() -> Network {
    if let Err(e) = webfarm_netns::check_privileges() {
        panic!(
            "the chaos test partitions the network between nodes in network namespaces, which \
             needs root: {e}. WEBFARM_CHAOS_NETNS=0 runs it on loopback, without partitions"
        );
    }
    let hosts = (1..=NODES)
        .map(|n| Host::new(&format!("db-{n}"), host(n).parse().unwrap()))
        .collect();
    Network::create(spec(), hosts).unwrap_or_else(|e| panic!("the chaos network: {e}"))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
