//! keepalived (Debian's 2.2.7) and a webfarm lb as the two VRRPv3 routers of one VIP, on real
//! interfaces: network namespaces `wfv-*` on a bridge, addresses in 10.79.0.0/24 only,
//! created here and removed at the end (also on a panic: [`Lab`]'s Drop).
//!
//! ```text
//!   wfv-ka-P  keepalived       10.79.0.1  (+ an HTTP server answering "keepalived")
//!   wfv-lb-P  webfarm lb-1     10.79.0.2  (its backend answers "webfarm")
//!   wfv-cl-P  client (curl)    10.79.0.3
//!   wfv-br-P  bridge br0 joining the three
//! ```
//!
//! Needs root (namespaces, raw sockets, addresses), `ip` (iproute2), `keepalived`, `curl`
//! and `python3` (the HTTP servers); without them it fails with the reason.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use webfarm_testkit::{eventually_blocking, which, TempDir};

const VIP: &str = "10.79.0.100";
/// Failovers in this test take 3 × 100 ms plus skew; generous for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// The namespaces and processes of the test; everything removed on drop.
struct Lab {
    /// Namespace names are `wfv-<tag><role>-<pid>`: each test of the file its own tag.
    tag: &'static str,
    pid: u32,
    dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Lab {
    fn new(dir: &Path, tag: &'static str) -> Lab {
        assert!(
            is_root(),
            "the keepalived interop test needs root (network namespaces, raw sockets, \
             addresses on interfaces); run it as root"
        );
        which("ip", "iproute2", "network namespaces and addresses");
        which("keepalived", "keepalived", "the VRRP peer");
        which("curl", "curl", "HTTP to the VIP from the client namespace");
        which("python3", "python3", "the routers' small HTTP servers");
        let mut lab = Lab {
            tag,
            pid: std::process::id() % 100_000,
            dir: dir.to_path_buf(),
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        lab.build();
        lab
    }

    fn ns(&self, role: &str) -> String {
        format!("wfv-{}{role}-{}", self.tag, self.pid)
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The bridge namespace and one veth per router/client namespace.
    fn build(&mut self) {
        for role in ["br", "ka", "lb", "cl"] {
            let ns = self.ns(role);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            self.ip(&["netns", "add", &ns]);
            self.namespaces.push(ns.clone());
            self.ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let br = self.ns("br");
        self.ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        self.ip(&["-n", &br, "link", "set", "br0", "up"]);
        for (role, host) in [("ka", 1), ("lb", 2), ("cl", 3)] {
            let (ns, port) = (self.ns(role), format!("p{role}"));
            self.ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            self.ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"]);
            self.ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.79.0.{host}/24"),
                "dev",
                "eth0",
            ]);
            self.ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
    }

    /// Starts `cmd` in namespace `role`, in its own process group, output to `<name>.log`.
    fn spawn(&mut self, name: &str, role: &str, cmd: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(cmd)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    /// Sends `signal` to `name`'s process group and waits for it to exit.
    fn stop(&mut self, name: &str, signal: nix::sys::signal::Signal) {
        let at = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .expect(name);
        let (_, mut child) = self.children.remove(at);
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, signal);
        let _ = child.wait();
    }

    fn holds(&self, role: &str) -> bool {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.ns(role),
                "-o",
                "-4",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/"))
    }

    /// What answers `GET http://VIP:8080/who.txt` from the client namespace.
    fn who_answers(&self) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns("cl"), "curl", "-s", "-m", "1"])
            .arg(format!("http://{VIP}:8080/who.txt"))
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Waits until `holder` ("ka" or "lb") alone holds the VIP (`alone`: the other must
    /// not; false after a kill -9, which leaves the dead router's address behind) and the
    /// client reaches it.
    fn until_vip_at(&self, holder: &str, alone: bool, why: &str) {
        let (other, answer) = match holder {
            "ka" => ("lb", "keepalived"),
            _ => ("ka", "webfarm"),
        };
        let what = format!("{why}: VIP in wfv-{holder} only, answered by {answer}");
        let seen = std::cell::RefCell::new(String::new());
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually_blocking(DEADLINE, &what, || {
                let placed = self.holds(holder) && (!alone || !self.holds(other));
                let who = self.who_answers();
                *seen.borrow_mut() = format!(
                    "holds: ka {} lb {}; answer {who:?}",
                    self.holds("ka"),
                    self.holds("lb")
                );
                (placed && who.as_deref() == Some(answer)).then_some(())
            })
        }));
        if done.is_err() {
            panic!(
                "{what}: not reached ({})\n--- keepalived ---\n{}\n--- webfarm ---\n{}",
                seen.borrow(),
                tail(&self.log("keepalived")),
                tail(&self.log("webfarm"))
            );
        }
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" GET /")).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn keepalived_conf(priority: u8) -> String {
    format!(
        "global_defs {{\n  vrrp_version 3\n  router_id wfv_ka\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 79\n  \
         priority {priority}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {VIP}/32\n  }}\n}}\n"
    )
}

const FARM: &str = r#"site = "www.foobar.com"
data_dir = "data"
[[nodes]]
name = "lb-1"
role = "lb"
address = "10.79.0.2"
[[frontends]]
name = "www"
port = 8080
default_backend = "web"
[[backends]]
name = "web"
[backends.check]
type = "tcp"
inter = "300ms"
[[backends.servers]]
address = "127.0.0.1:8000"
[tls]
internal = false
[[vrrp]]
name = "VI_1"
vrid = 79
vip = "10.79.0.100"
priority = { "lb-1" = 200 }
advert_int = "100ms"
"#;

fn start_keepalived(lab: &mut Lab, priority: u8) {
    let conf = lab.dir.join("keepalived.conf");
    std::fs::write(&conf, keepalived_conf(priority)).unwrap();
    // Fresh pid files each start: a killed child may linger as a zombie where nothing
    // reaps orphans, and keepalived would take it for a running daemon.
    let d = lab.dir.display().to_string();
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (pid, vrrp_pid) = (
        format!("{d}/keepalived-{n}.pid"),
        format!("{d}/vrrp-{n}.pid"),
    );
    let conf = conf.display().to_string();
    lab.spawn(
        "keepalived",
        "ka",
        &[
            "keepalived",
            "-n",
            "-l",
            "-D",
            "-P",
            "-f",
            &conf,
            "-p",
            &pid,
            "-r",
            &vrrp_pid,
        ],
    );
}

fn start_webfarm(lab: &mut Lab) {
    let farm = lab.dir.join("farm.toml").display().to_string();
    lab.spawn(
        "webfarm",
        "lb",
        &[common::bin(), "run", "--node", "lb-1", "--config", &farm],
    );
}

#[test]
fn keepalived_and_webfarm_share_a_vip_both_ways() {
    use nix::sys::signal::Signal::{SIGKILL, SIGTERM};
    let tmp = TempDir::new("vrrp-keepalived");
    let mut lab = Lab::new(tmp.path(), "");
    for (dir, who) in [("ka-www", "keepalived"), ("lb-www", "webfarm")] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        std::fs::write(tmp.path().join(dir).join("who.txt"), who).unwrap();
    }
    std::fs::write(tmp.path().join("farm.toml"), FARM).unwrap();
    lab.spawn(
        "ka-http",
        "ka",
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--directory",
            "ka-www",
        ],
    );
    lab.spawn(
        "lb-http",
        "lb",
        &[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            "127.0.0.1",
            "--directory",
            "lb-www",
        ],
    );

    // keepalived (priority 100) alone: master.
    start_keepalived(&mut lab, 100);
    lab.until_vip_at("ka", true, "keepalived alone");
    // webfarm (200) preempts it; keepalived removes the VIP.
    start_webfarm(&mut lab);
    lab.until_vip_at("lb", true, "webfarm preempts keepalived");
    // webfarm killed: keepalived takes over (the dead lb's address stays behind).
    lab.stop("webfarm", SIGKILL);
    lab.until_vip_at("ka", false, "webfarm killed");
    // webfarm back: it removes the stale VIP, then preempts again.
    start_webfarm(&mut lab);
    lab.until_vip_at("lb", true, "webfarm recovers and preempts");
    // A graceful stop: priority 0, VIP removed, keepalived takes over.
    lab.stop("webfarm", SIGTERM);
    lab.until_vip_at("ka", true, "webfarm stopped gracefully");
    start_webfarm(&mut lab);
    lab.until_vip_at("lb", true, "webfarm back");

    // keepalived now with the higher priority (250): webfarm yields as backup.
    lab.stop("keepalived", SIGTERM);
    start_keepalived(&mut lab, 250);
    lab.until_vip_at("ka", true, "keepalived (250) preempts webfarm");
    // keepalived killed: webfarm takes over after the master down interval.
    lab.stop("keepalived", SIGKILL);
    lab.until_vip_at("lb", false, "keepalived killed");
    // keepalived back: preempts webfarm again, which removes its VIP.
    start_keepalived(&mut lab, 250);
    lab.until_vip_at("ka", true, "keepalived recovers and preempts");
    let log = lab.log("webfarm");
    assert!(log.contains("Entering BACKUP STATE"), "{}", tail(&log));
}

/// Without CAP_NET_RAW (an unprivileged user) an lb with `[[vrrp]]` on a real interface does
/// not start, and says which capability it lacks.
#[test]
fn without_the_capability_the_lb_refuses_to_start_and_names_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("vrrp-nocap");
    let lab = Lab::new(tmp.path(), "c");
    which(
        "setpriv",
        "util-linux",
        "runs the lb as an unprivileged user",
    );
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let farm = tmp.path().join("farm.toml");
    std::fs::write(&farm, FARM).unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("lb"),
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
        .args([
            "--clear-groups",
            common::bin(),
            "run",
            "--node",
            "lb-1",
            "--config",
        ])
        .arg(&farm)
        .current_dir(tmp.path())
        .output()
        .expect("run the lb");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started without privileges: {stderr}"
    );
    assert!(
        stderr.contains("CAP_NET_RAW") && stderr.contains("protocol 112"),
        "the error does not name the capability: {stderr}"
    );
}
