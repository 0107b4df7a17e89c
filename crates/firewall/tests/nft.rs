//! The scripts against the real nft, each case in a scratch network namespace of its own
//! thread (`unshare(CLONE_NEWNET)`), so the host's ruleset is never touched. Needs root and
//! nftables; fails saying so otherwise.

use std::path::Path;

use webfarm_config::Farm;
use webfarm_firewall::{apply, check, render, ruleset, Difference, Nft};

fn require_root_and_nft() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the firewall tests load rulesets with nft in scratch network namespaces: run them as root"
    );
    let nft = std::process::Command::new("nft").arg("--version").output();
    assert!(
        nft.is_ok_and(|o| o.status.success()),
        "the firewall tests need nft: apt-get install nftables"
    );
}

/// Runs `f` on a thread in a fresh network namespace of its own.
fn in_scratch_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        f()
    })
    .join()
    .expect("the namespace thread panicked")
}

fn farm() -> Farm {
    let text = webfarm_config::DEFAULT_FARM_TOML.replace(
        "operators = []",
        "operators = [\"192.0.2.0/24\", \"2001:db8::/48\"]",
    )
        + "[[firewall.rules]]\nport = \"60000-60010\"\nproto = \"udp\"\nfrom_roles = [\"lb\"]\n";
    Farm::parse(&text, None, Path::new(".")).unwrap()
}

fn script(node: &str) -> String {
    let farm = farm();
    render(&ruleset(&farm, farm.node(node).unwrap()), "the test's farm")
}

/// Runs nft commands (one per line or separated by `;`) as an operator would by hand.
fn nft(commands: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(commands.as_bytes()).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "nft {commands}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_node_s_script_loads_and_then_checks_clean() {
    require_root_and_nft();
    for node in farm().nodes.iter().map(|n| n.name.clone()) {
        let s = script(&node);
        let diffs = in_scratch_netns(move || {
            apply(&Nft::here(), &s).unwrap_or_else(|e| panic!("{e}\n{s}"));
            check(&Nft::here(), &s).unwrap()
        });
        assert!(diffs.is_empty(), "{node}: {diffs:?}");
    }
}

#[test]
fn check_names_what_changed_and_apply_replaces_only_its_table() {
    require_root_and_nft();
    let lb = script("lb-1");
    in_scratch_netns(move || {
        let here = Nft::here();
        assert_eq!(check(&here, &lb).unwrap(), [Difference::NoTable]);
        nft("add table inet other; add chain inet other c { type filter hook input priority 10; }");
        apply(&here, &lb).unwrap();
        // An operator's extra rule in our table is reported...
        nft("add rule inet webfarm input tcp dport 22 accept");
        let d = check(&here, &lb).unwrap();
        assert_eq!(
            d,
            [Difference::Unexpected("tcp dport 22 accept".into())],
            "{d:?}"
        );
        // ... applying again replaces the table whole, and leaves the other one alone.
        apply(&here, &lb).unwrap();
        assert!(check(&here, &lb).unwrap().is_empty());
        assert!(here.list_table().unwrap().is_some());
        let tables = std::process::Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&tables.stdout).contains("table inet other"));
        // A rule deleted by hand is missing; a changed policy is both.
        nft("flush chain inet webfarm input");
        let d = check(&here, &lb).unwrap();
        assert!(
            d.iter()
                .any(|x| matches!(x, Difference::Missing(l) if l.contains("vrrp"))),
            "{d:?}"
        );
        apply(&here, &lb).unwrap();
        nft("add chain inet webfarm input { policy accept; }");
        let d: Vec<String> = check(&here, &lb)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            d.iter()
                .any(|l| l.starts_with("missing:") && l.contains("policy drop")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|l| l.starts_with("unexpected:") && l.contains("policy accept")),
            "{d:?}"
        );
        // Another node's rules are told apart, rule by rule.
        apply(&here, &lb).unwrap();
        let web = script("web-1");
        let d = check(&here, &web).unwrap();
        assert!(
            d.iter()
                .any(|x| matches!(x, Difference::Missing(l) if l.contains("dport 8000"))),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|x| matches!(x, Difference::Unexpected(l) if l.contains("vrrp"))),
            "{d:?}"
        );
    });
}

#[test]
fn a_script_nft_refuses_changes_nothing() {
    require_root_and_nft();
    let lb = script("lb-1");
    in_scratch_netns(move || {
        let here = Nft::here();
        apply(&here, &lb).unwrap();
        let broken = lb.replace("policy drop;", "policy drop;\n\t\ttcp dport 99999 accept");
        let e = apply(&here, &broken).unwrap_err().to_string();
        assert!(e.contains("nft -f -") && e.contains("99999"), "{e}");
        assert!(
            check(&here, &lb).unwrap().is_empty(),
            "the old table must stay whole"
        );
    });
}
