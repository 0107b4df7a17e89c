//! Two routers over IPv6 on a real link: a veth pair between two network namespaces
//! (`wfv6a-PID`, `wfv6b-PID`, removed at the end, also on a panic), each router on a thread
//! that entered its namespace. Only link-local addresses are used: each interface's own, and
//! the VIP fe80::79:100 (RFC 5798 §5.2.9: an IPv6 virtual router's first address is
//! link-local). Needs root and `ip`; fails with the reason without them.

use std::net::IpAddr;
use std::process::Command;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use webfarm_vrrp::{InstanceSpec, InstanceStatus, NodeSpec, Params, State, VipHolder, Vrrp};

const VIP: &str = "fe80::79:100";

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect(args[0]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn setup() -> Namespaces {
    let id = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        "0",
        "the IPv6 VRRP test needs root (namespaces, raw sockets, addresses)"
    );
    let pid = std::process::id() % 100_000;
    let names = Namespaces(vec![format!("wfv6a-{pid}"), format!("wfv6b-{pid}")]);
    for ns in &names.0 {
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
        run(&["ip", "netns", "add", ns]);
        // No duplicate address detection: link-local addresses usable at once.
        for conf in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad");
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                &format!("echo 0 > {path}"),
            ]);
        }
    }
    let (a, b) = (&names.0[0], &names.0[1]);
    run(&[
        "ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b,
    ]);
    for ns in &names.0 {
        run(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    }
    for ns in &names.0 {
        until("a link-local address on eth0", || {
            let out = Command::new("ip")
                .args([
                    "-n", ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("fe80::")
        });
    }
    names
}

struct Nothing;

impl VipHolder for Nothing {
    fn take(&self, _: &str, _: &[IpAddr]) -> Result<(), String> {
        Ok(())
    }
    fn release(&self, _: &str, _: &[IpAddr]) {}
}

enum Cmd {
    Status(std_mpsc::Sender<InstanceStatus>),
    Stop,
}

/// A router of priority `priority` on a thread inside namespace `ns`.
fn router(
    ns: &str,
    priority: u8,
) -> (
    tokio::sync::mpsc::UnboundedSender<Cmd>,
    std::thread::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ns = ns.to_string();
    let thread = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("namespace file");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let spec = NodeSpec {
                address: "fe80::1".parse().unwrap(), // replaced by the link-local address
                interface: Some("eth0".into()),
                instances: vec![InstanceSpec {
                    name: "VI_6".into(),
                    vrid: 79,
                    vips: vec![VIP.parse().unwrap()],
                    params: Params {
                        priority,
                        advert_int: 10,
                        preempt: true,
                        preempt_delay: None,
                        primary: "fe80::1".parse().unwrap(),
                    },
                    peers: vec![],
                    unicast: false,
                }],
            };
            let v = Vrrp::start(spec, Arc::new(Nothing))
                .await
                .expect("VRRP over IPv6 starts");
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Cmd::Status(reply) => {
                        let _ = reply.send(v.status()[0].clone());
                    }
                    Cmd::Stop => break,
                }
            }
            v.shutdown().await;
        });
    });
    (tx, thread)
}

fn status(r: &tokio::sync::mpsc::UnboundedSender<Cmd>) -> InstanceStatus {
    let (tx, rx) = std_mpsc::channel();
    r.send(Cmd::Status(tx)).expect("router alive");
    rx.recv().expect("router answers")
}

fn holds(ns: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-6", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/128"))
}

fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ipv6_routers_elect_one_master_and_fail_over() {
    let ns = setup();
    let (a, b) = (&ns.0[0], &ns.0[1]);
    let (high, high_thread) = router(a, 200);
    let (low, low_thread) = router(b, 100);
    until("the higher priority is master and holds the VIP", || {
        status(&high).state == State::Master && status(&low).state == State::Backup && holds(a)
    });
    assert!(!holds(b));
    let master = status(&low).master.expect("the backup knows the master");
    assert!(
        matches!(master, IpAddr::V6(m) if m.is_unicast_link_local()),
        "{master}"
    );

    // The announcement the master sends when it takes an IPv6 VIP goes out.
    let ns_a = a.clone();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns_a}")).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        webfarm_vrrp::netif::unsolicited_na("eth0", VIP.parse().unwrap())
    })
    .join()
    .unwrap()
    .expect("an unsolicited neighbour advertisement is sent");

    // The master leaves (priority 0, VIP removed): the backup takes the VIP.
    high.send(Cmd::Stop).unwrap();
    high_thread.join().unwrap();
    assert!(!holds(a), "the leaving master removed its VIP");
    until("the backup takes over", || {
        status(&low).state == State::Master && holds(b)
    });
    low.send(Cmd::Stop).unwrap();
    low_thread.join().unwrap();
    assert!(!holds(b));
}
