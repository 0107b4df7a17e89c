//! Test support shared by webfarm's crates.
//!
//! Tests run in parallel threads of one process (and, under `cargo nextest`, in parallel
//! processes). Picking a "free" port on `127.0.0.1` by binding port 0 and releasing it races:
//! another test can bind the same port before the node under test does, and a db node of one
//! test can then receive the Raft traffic of another test's cluster. Instead every test farm
//! gets loopback addresses nobody else uses: Linux routes the whole `127.0.0.0/8` to `lo`, so
//! `127.A.B.C` needs no setup, and a port on an address of its own cannot be taken by another
//! test.
//!
//! Layout: each process takes a block `127.A.0.0/16` (A in 64..=126) that no other running
//! process holds: it keeps a listener on the block's sentinel address `127.A.255.254:1024`
//! for its whole life, and the kernel lets only one process bind it. The search starts at
//! 64 + (process id mod 63), so concurrent processes (`cargo nextest`, two checkouts testing
//! at once) usually get their first choice. `B.C` counts the addresses this process handed out
//! (`C` in 1..=254, `B` below 255). `127.0.x.x` (the default farm's `127.0.1.x` and the cli
//! tests' `127.0.N.x`) is never used.
//!
//! Besides addresses, every test uses the same three tools: [`DEADLINE`] (how long anything
//! may take on a loaded machine), [`eventually`] / [`eventually_blocking`] (poll a condition
//! until it holds or the deadline passes, instead of sleeping a fixed time) and [`TempDir`]
//! (a directory of the test's own, removed on drop).

pub mod metrics;

use std::collections::HashSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long a test waits for anything (a node ready, a leader elected, a server DOWN) before
/// it fails: generous, because the suite must pass on a loaded 2-core machine. Conditions that
/// are expected to take long (a failover under load, a process exit) still use this; a test
/// that needs more passes its own deadline to [`eventually`].
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often [`eventually`] and [`eventually_blocking`] poll.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` every 20 ms until it returns `Some`, and returns that value.
///
/// # Panics
/// With `what` in the message, when `deadline` passes first.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`eventually`] for synchronous tests: polls `f` every 20 ms on this thread.
///
/// # Panics
/// With `what` in the message, when `deadline` passes first.
pub fn eventually_blocking<T>(
    deadline: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for: {what}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A child process (a node, a reference server, a browser driver) killed and reaped when the
/// test ends, also when it panics, so nothing outlives the test.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory under the system temp dir, of this test alone, removed (with its
/// contents) on drop. Set `WEBFARM_KEEP_TEST_DIRS=1` to keep it for a post-mortem.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/webfarm-test-<pid>-<what>-<n>` (any old one of that name removed first).
    ///
    /// # Panics
    /// If the directory cannot be created.
    pub fn new(what: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("webfarm-test-{}-{what}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create test dir {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("WEBFARM_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

static NEXT_IP: AtomicU32 = AtomicU32::new(0);
static BLOCK: OnceLock<(u8, TcpListener)> = OnceLock::new();

/// The port of each block's sentinel listener.
const SENTINEL_PORT: u16 = 1024;

/// This process's `A` (see the crate docs), reserved on first use.
///
/// # Panics
/// When every block is held by another running process.
fn block() -> u8 {
    BLOCK
        .get_or_init(|| {
            let first = std::process::id() % 63;
            (0..63)
                .map(|i| 64 + ((first + i) % 63) as u8)
                .find_map(|a| {
                    let sentinel = Ipv4Addr::new(127, a, 255, 254);
                    TcpListener::bind((sentinel, SENTINEL_PORT))
                        .ok()
                        .map(|l| (a, l))
                })
                .expect("every 127.64-126.0.0/16 test block is held by another process")
        })
        .0
}
static HANDED_OUT: Mutex<Option<HashSet<SocketAddr>>> = Mutex::new(None);

/// A loopback address this process has not handed out before, in a `127.A.0.0/16` block that
/// no other running test process holds (see the crate docs).
///
/// # Panics
/// After 64,770 addresses in one process.
pub fn loopback_ip() -> Ipv4Addr {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
    assert!(n < 255 * 254, "out of test loopback addresses");
    let a = block();
    let b = (n / 254) as u8;
    let c = (n % 254) as u8 + 1;
    Ipv4Addr::new(127, a, b, c)
}

/// A TCP port free on `ip` that this process has not handed out before for `ip`.
///
/// # Panics
/// If `ip` cannot be bound (not a local address).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    loop {
        let port = TcpListener::bind((ip, 0))
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("bind {ip}:0: {e}"))
            .port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if seen
            .get_or_insert_with(HashSet::new)
            .insert(SocketAddr::from((ip, port)))
        {
            return port;
        }
    }
}

/// The `[[nodes]]` tables of `n` db nodes `db-1`..`db-n` for a test farm file, each on a
/// fresh [`loopback_ip`] with the default ports (SQL API 4001, Raft 4002, admin 9000).
pub fn db_nodes_toml(n: usize) -> String {
    (1..=n)
        .map(|i| {
            let ip = loopback_ip();
            format!(
                "[[nodes]]\nname = \"db-{i}\"\nrole = \"db\"\naddress = \"{ip}\"\n\
                 port = 4001\nraft_port = 4002\nadmin_port = 9000\n"
            )
        })
        .collect()
}

/// The `[tls]` table of test farms whose clients talk plain HTTP to the nodes: internal TLS
/// off (the tests of internal TLS leave it on, its default). A whole table: insert it
/// between tables, never in the middle of one.
pub const INTERNAL_TLS_OFF: &str = "[tls]\ninternal = false\n";

/// A test farm's topology text: one web node `web-1` (a fresh [`loopback_ip`], port 8000,
/// admin 9000) serving `root`, with `[web] db_timeout`, and `dbs` db nodes
/// ([`db_nodes_toml`]); data under `dir/data`; `tail` (more tables, such as `[db]`) appended.
pub fn web_farm_toml(dir: &Path, root: &Path, db_timeout: &str, dbs: usize, tail: &str) -> String {
    format!(
        "data_dir = '{data}'\n[[nodes]]\nname = \"web-1\"\nrole = \"web\"\n\
         address = \"{web_ip}\"\nport = 8000\nadmin_port = 9000\n{db_nodes}\
         {INTERNAL_TLS_OFF}[web]\nroot = '{root}'\ndb_timeout = \"{db_timeout}\"\n{tail}",
        data = dir.join("data").display(),
        web_ip = loopback_ip(),
        db_nodes = db_nodes_toml(dbs),
        root = root.display(),
    )
}

/// A free address of its own: a fresh [`loopback_ip`] and a port on it.
pub fn free_addr() -> SocketAddr {
    let ip = loopback_ip();
    SocketAddr::from((ip, free_port(ip)))
}

/// The path of `program` on `PATH`, or a failure naming the Debian package to install
/// (`package`) and why the test needs it (`why`): a test whose prerequisite is missing fails
/// with the reason, never passes silently.
///
/// # Panics
/// When `program` is not on `PATH`.
pub fn which(program: &str, package: &str, why: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is not installed ({why}): install Debian's {package}; .ci/run does")
        })
}

/// Reads one HTTP request's head from `conn` (up to the blank line; its body, if any, stays
/// unread) and returns it lowercased, for tests that check what a client sent.
///
/// # Panics
///
/// When the connection ends before the head does.
pub async fn read_request_head(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request's head ends");
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_bindable() {
        let a = loopback_ip();
        let b = loopback_ip();
        assert_ne!(a, b);
        assert!(a.is_loopback() && a.octets()[1] >= 64);
        // The block is held: nobody else can take its sentinel.
        let sentinel = Ipv4Addr::new(127, a.octets()[1], 255, 254);
        assert!(TcpListener::bind((sentinel, SENTINEL_PORT)).is_err());
        let p = free_port(a);
        let q = free_port(a);
        assert_ne!(p, q, "a port is handed out once");
        TcpListener::bind((a, p)).expect("the handed-out port binds");
        let addr = free_addr();
        assert_ne!(addr.ip(), std::net::IpAddr::V4(a));
    }

    #[test]
    fn temp_dirs_are_distinct_and_removed_on_drop() {
        let a = TempDir::new("x");
        let b = TempDir::new("x");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("f"), b"1").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
    }

    #[test]
    fn eventually_blocking_returns_the_first_some_and_panics_past_the_deadline() {
        let mut n = 0;
        let v = eventually_blocking(DEADLINE, "n reaches 3", || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(v, 3);
        let r = std::panic::catch_unwind(|| {
            eventually_blocking(Duration::from_millis(50), "never", || None::<()>)
        });
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("never"), "{msg}");
    }
}
