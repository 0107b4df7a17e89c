//! keepalived (Debian's 2.2.7) and a webfarm lb as the two VRRPv3 routers of one VIP, on real
//! interfaces: network namespaces on a bridge (webfarm-netns, as `webfarm up --netns`),
//! addresses in 10.79.B.0/24 only (B: 0 and 1, one per test), created here and removed at the
//! end (also on a panic: [`Lab`]'s Drop).
//!
//! ```text
//!   wfvB-lb   webfarm lb-1     10.79.B.2  (its backend answers "webfarm")
//!   wfvB-cl   client (curl)    10.79.B.3
//!   wfvB-ka   keepalived       10.79.B.4  (+ an HTTP server answering "keepalived")
//!   wfvB-br0  the bridge, 10.79.B.1 (the test's own host); the VIP is 10.79.B.100
//! ```
//!
//! Needs root (namespaces, raw sockets, addresses), `ip` (iproute2), `keepalived`, `curl`
//! and `python3` (the HTTP servers); without them it fails with the reason.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use webfarm_netns::{Block, Host, Network, Spec};
use webfarm_testkit::{eventually_blocking, which, TempDir};

/// The lb's host number in the block.
const LB_HOST: u8 = 2;
/// Failovers in this test take 3 × 100 ms plus skew; generous for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// The hosts and processes of the test; everything removed on drop.
struct Lab {
    dir: PathBuf,
    /// Hosts `ka` (keepalived), `lb` (webfarm) and `cl` (the client) on a bridge
    /// (webfarm-netns), `10.79.<block>.0/24`; dropped after the children.
    net: Network,
    children: Vec<(String, Child)>,
}

impl Lab {
    /// `block`: the third octet of the test's /24 (each test of the file its own, as the
    /// bridges of two tests live in the root namespace at once).
    fn new(dir: &Path, block: u8) -> Lab {
        common::netns::require_root("the keepalived interop test (raw sockets, addresses)");
        which("ip", "iproute2", "network namespaces and addresses");
        which("keepalived", "keepalived", "the VRRP peer");
        which("curl", "curl", "HTTP to the VIP from the client namespace");
        which("python3", "python3", "the routers' small HTTP servers");
        let block = Block::new([10, 79, block]);
        let spec =
            Spec::new(&format!("wfv{}", block.addr(0).octets()[2]), block).expect("a valid prefix");
        let hosts = [("lb", LB_HOST), ("cl", 3), ("ka", 4)]
            .map(|(name, n)| Host::new(name, block.addr(n)))
            .to_vec();
        let net = Network::create(spec, hosts).unwrap_or_else(|e| panic!("the lab network: {e}"));
        Lab {
            dir: dir.to_path_buf(),
            net,
            children: Vec::new(),
        }
    }

    fn ns(&self, role: &str) -> String {
        self.net.namespace(role)
    }

    /// The VIP the routers share: `.100` of the block.
    fn vip(&self) -> String {
        self.net.spec().block.addr(100).to_string()
    }

    /// The lb's farm file for this block.
    fn farm_toml(&self) -> String {
        farm_toml(
            &self.net.spec().block.addr(LB_HOST).to_string(),
            &self.vip(),
        )
    }

    /// Starts `cmd` in namespace `role`, in its own process group, output to `<name>.log`.
    fn spawn(&mut self, name: &str, role: &str, cmd: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = self
            .net
            .command(role, cmd[0])
            .args(&cmd[1..])
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

    /// Sends `signal` to `name`'s process group; it keeps running (SIGSTOP, SIGCONT).
    fn signal(&self, name: &str, signal: nix::sys::signal::Signal) {
        let (_, child) = self.children.iter().find(|(n, _)| n == name).expect(name);
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::killpg(pgid, signal).expect("signal");
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
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/", self.vip()))
    }

    /// What answers `GET http://VIP:8080/who.txt` from the client namespace.
    fn who_answers(&self) -> Option<String> {
        let out = self
            .net
            .command("cl", "curl")
            .args(["-s", "-m", "1"])
            .arg(format!("http://{}:8080/who.txt", self.vip()))
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
        let what = format!(
            "{why}: VIP in {} only, answered by {answer}",
            self.ns(holder)
        );
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
        // Then `net` drops: namespaces, veths and the bridge removed.
    }
}

fn keepalived_conf(priority: u8, vip: &str) -> String {
    format!(
        "global_defs {{\n  vrrp_version 3\n  router_id wfv_ka\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 79\n  \
         priority {priority}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {vip}/32\n  }}\n}}\n"
    )
}

/// lb-1 at `lb` sharing `vip` by VRRP (priority 200, 100 ms).
fn farm_toml(lb: &str, vip: &str) -> String {
    FARM.replace("LB_ADDR", lb).replace("VIP_ADDR", vip)
}

const FARM: &str = r#"site = "www.foobar.com"
data_dir = "data"
[[nodes]]
name = "lb-1"
role = "lb"
address = "LB_ADDR"
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
vip = "VIP_ADDR"
priority = { "lb-1" = 200 }
advert_int = "100ms"
"#;

fn start_keepalived(lab: &mut Lab, priority: u8) {
    let conf = lab.dir.join("keepalived.conf");
    std::fs::write(&conf, keepalived_conf(priority, &lab.vip())).unwrap();
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
    common::make_secrets(&lab.dir.join("data"));
    let farm = lab.dir.join("farm.toml").display().to_string();
    lab.spawn(
        "webfarm",
        "lb",
        &[common::bin(), "run", "--node", "lb-1", "--config", &farm],
    );
}

#[test]
fn keepalived_and_webfarm_share_a_vip_both_ways() {
    use nix::sys::signal::Signal::{SIGCONT, SIGKILL, SIGSTOP, SIGTERM};
    let tmp = TempDir::new("vrrp-keepalived");
    let mut lab = Lab::new(tmp.path(), 0);
    for (dir, who) in [("ka-www", "keepalived"), ("lb-www", "webfarm")] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        std::fs::write(tmp.path().join(dir).join("who.txt"), who).unwrap();
    }
    std::fs::write(tmp.path().join("farm.toml"), lab.farm_toml()).unwrap();
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
    // Paused: keepalived takes over (webfarm still has the address). Resumed: webfarm, master
    // in its own eyes, hears a lower priority: it advertises and announces the VIP again, so
    // keepalived yields and the client's ARP cache points at webfarm again.
    lab.signal("webfarm", SIGSTOP);
    lab.until_vip_at("ka", false, "webfarm paused");
    lab.signal("webfarm", SIGCONT);
    lab.until_vip_at("lb", true, "webfarm resumed");
    eventually_blocking(DEADLINE, "webfarm announcing the VIP again", || {
        lab.log("webfarm")
            .contains("received a lower priority advertisement: announcing the VIPs again")
            .then_some(())
    });

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
    let lab = Lab::new(tmp.path(), 1);
    which(
        "setpriv",
        "util-linux",
        "runs the lb as an unprivileged user",
    );
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let farm = tmp.path().join("farm.toml");
    std::fs::write(&farm, lab.farm_toml()).unwrap();
    common::make_secrets_for_nobody(&tmp.path().join("data"));
    let out = lab
        .net
        .command("lb", "setpriv")
        .args(["--reuid=65534", "--regid=65534"])
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
