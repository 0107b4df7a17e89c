//! `webfarm systemd NODE`: a systemd service unit for one node of a multi-host farm, and the
//! readiness notifications (`sd_notify(3)`) a node sends when systemd runs it.
//!
//! The unit is `Type=notify`: systemd counts the node started when it says `READY=1`, which it
//! does once its admin port and its role's listeners are serving. It does not wait for
//! `/readyz`: a db node is not ready until the cluster has a leader, which needs the other db
//! hosts, and a `systemctl start` that blocked on them would turn a rolling start into a
//! deadlock. What `/readyz` says is kept in the unit's `STATUS=` line instead
//! (`systemctl status` shows it), refreshed every second.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use webfarm_config::{Farm, Node, Role};
use webfarm_node::{Health, Shutdown};

/// Where the unit expects things on the node's host (`webfarm systemd` flags).
#[derive(Debug, Clone)]
pub struct Paths<'a> {
    /// The webfarm binary (`ExecStart`).
    pub exec: &'a Path,
    /// The unprivileged user and group the node runs as.
    pub user: &'a str,
}

/// The farm file on every host: systemd's `ConfigurationDirectory=webfarm`.
const CONFIG: &str = "/etc/webfarm/farm.toml";
/// The node's data (and the farm CA's files): systemd's `StateDirectory=webfarm`.
const DATA_DIR: &str = "/var/lib/webfarm";

/// The systemd unit (INI text, one trailing newline) that runs `node` of `farm` on its host.
///
/// Capabilities are only those the role needs with this farm file: `CAP_NET_BIND_SERVICE`
/// when one of the node's ports is below 1024 (DNS on 53, HTTPS on 443); `CAP_NET_ADMIN` and
/// `CAP_NET_RAW` for an lb that is a VRRP router on a real interface.
pub fn unit(farm: &Farm, node: &Node, paths: &Paths) -> String {
    let caps = capabilities(farm, node);
    let mut u = String::new();
    let role = node.role.as_str();
    let _ = write!(
        u,
        "# webfarm node {name} ({role}) of {site}: `webfarm systemd {name}` wrote this.\n\
         # Install as /etc/systemd/system/webfarm-{name}.service, then\n\
         #   systemctl daemon-reload && systemctl enable --now webfarm-{name}\n\
         [Unit]\n\
         Description=webfarm {role} node {name} of {site}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n\
         ExecStart={exec} run --node {name} --config {CONFIG} --data-dir {DATA_DIR}\n",
        name = node.name,
        site = farm.site,
        exec = paths.exec.display(),
    );
    if node.role == Role::Lb {
        u.push_str("ExecReload=/bin/kill -HUP $MAINPID\n");
    }
    let _ = write!(
        u,
        "Restart=on-failure\n\
         RestartSec=1s\n\
         TimeoutStopSec=30s\n\
         WatchdogSec=30s\n\
         User={user}\n\
         Group={user}\n\
         ConfigurationDirectory=webfarm\n\
         StateDirectory=webfarm\n\
         StateDirectoryMode=0700\n\
         UMask=0077\n\
         LimitNOFILE={nofile}\n",
        user = paths.user,
        nofile = if node.role == Role::Lb {
            1_048_576
        } else {
            65_536
        },
    );
    let caps = caps.join(" ");
    let families = if vrrp_on_interface(farm, node) {
        // Netlink for ip(8) adding the VIP, packet sockets for gratuitous ARP.
        "AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET"
    } else {
        "AF_UNIX AF_INET AF_INET6"
    };
    let _ = write!(
        u,
        "CapabilityBoundingSet={caps}\nAmbientCapabilities={caps}\n\
         RestrictAddressFamilies={families}\n{HARDENING}"
    );
    u
}

/// systemd's sandboxing options (`systemd.exec(5)`), the same for every role: nothing a
/// node does needs more (it reads its config, writes its state directory, and uses
/// sockets).
const HARDENING: &str = "NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
PrivateMounts=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
";

/// The Linux capabilities `node` needs (names as `capabilities(7)` spells them); empty when
/// it needs none.
pub fn capabilities(farm: &Farm, node: &Node) -> Vec<&'static str> {
    let mut ports = vec![node.admin_port];
    match node.role {
        Role::Lb => ports.extend(farm.frontends.iter().map(|f| f.port)),
        Role::Db => ports.extend([node.port, node.raft_port]),
        Role::Web | Role::Monitor | Role::Dns => ports.push(node.port),
    }
    let mut caps = Vec::new();
    if ports.iter().any(|&p| p < 1024) {
        caps.push("CAP_NET_BIND_SERVICE");
    }
    if vrrp_on_interface(farm, node) {
        // IP protocol 112 and gratuitous ARP (raw sockets), VIPs added to the interface.
        caps.extend(["CAP_NET_ADMIN", "CAP_NET_RAW"]);
    }
    caps
}

/// Whether `node` is a router of a `[[vrrp]]` instance on a real interface (on loopback, the
/// advertisements travel in UDP and the VIP is only bound: no privilege needed).
fn vrrp_on_interface(farm: &Farm, node: &Node) -> bool {
    !node.address.is_loopback()
        && farm
            .vrrp
            .iter()
            .any(|v| v.priority.contains_key(&node.name))
}

/// Tells systemd (when it started this process with `NOTIFY_SOCKET`) that the node is up,
/// then keeps its status line and watchdog fed until `shutdown`, and says `STOPPING=1` then.
/// Without `NOTIFY_SOCKET` it does nothing.
pub async fn notify(health: Arc<dyn Health>, shutdown: Shutdown) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    send(&[NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let tick = watchdog.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1)));
    let mut last = String::new();
    loop {
        let status = match health.ready() {
            Ok(()) => "ready".to_string(),
            Err(reason) => format!("not ready: {reason}"),
        };
        if status != last {
            send(&[NotifyState::Status(&status)]);
            last = status;
        }
        if watchdog.is_some() {
            send(&[NotifyState::Watchdog]);
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(tick) => {}
        }
    }
    send(&[NotifyState::Stopping]);
}

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("sd_notify to systemd failed: {e}");
    }
}
