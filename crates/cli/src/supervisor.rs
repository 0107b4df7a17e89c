//! `webfarm up`: the supervisor of a whole farm on one machine.
//!
//! It re-executes its own binary once per node (`webfarm run --node NAME --supervised`),
//! starts the db nodes first, then the web nodes, then the load balancers, waiting for each
//! group to answer `/readyz`; it forwards every node's log lines prefixed with the node's
//! name, records pids in `<data_dir>/run/`, takes `stop|start|kill NODE` commands on
//! `<data_dir>/run/control.sock`, and on Ctrl-C / SIGTERM stops every node gracefully (load
//! balancers first, db nodes last). A node that dies is reported and left down: the
//! supervisor never restarts a node by itself.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::future::join_all;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::ChildStdin;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use webfarm_config::{Node, Role};
use webfarm_node::http::HttpClient;

use crate::args::{FarmArgs, NetnsArgs};
use crate::control;
use crate::farm_file::{self, Resolved};

/// A farm that must not start: a file the topology names is missing, or a farm already runs
/// from the data directory. Exit code 2, like an invalid topology file.
#[derive(Debug)]
pub struct Preflight(pub String);

impl std::fmt::Display for Preflight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Preflight {}

/// How long a node may take to answer `/readyz` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a node may take to stop after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The last lines a node wrote, kept to explain why it failed.
const KEPT_LINES: usize = 8;

/// One node process and what the supervisor knows of it.
struct Proc {
    pid: u32,
    /// Signals for the node, delivered by the task that owns (and reaps) the child, so a
    /// signal can never reach a recycled pid.
    signals: mpsc::UnboundedSender<Signal>,
    /// Held open: the node shuts down when its stdin closes (the supervisor died).
    _stdin: Option<ChildStdin>,
    /// `None` while running; then how it exited (`exit status: 0`, `signal: 9 (SIGKILL)`).
    exited: watch::Receiver<Option<String>>,
    last_lines: Arc<Mutex<VecDeque<String>>>,
}

/// The running farm.
pub struct Supervisor {
    exe: PathBuf,
    resolved: Resolved,
    procs: Mutex<HashMap<String, Proc>>,
    http: HttpClient,
    /// Serializes control commands, so two `start web-1` cannot both spawn it.
    commands: tokio::sync::Mutex<()>,
    /// With `--netns`: each node runs in namespace `<prefix>-<node>`.
    netns: Option<webfarm_netns::Spec>,
}

/// Runs `webfarm up`.
///
/// # Errors
///
/// An invalid topology file or [`Preflight`] problem before anything starts; a node that
/// could not start (the farm is stopped first).
pub async fn up(args: &FarmArgs, netns: &NetnsArgs) -> anyhow::Result<ExitCode> {
    // With --netns: the derived farm file, and the network to create once preflight passed.
    let netns = crate::netns_up::prepare(args, netns)?;
    let args = netns.as_ref().map_or(args, |p| &p.args);
    let resolved = farm_file::resolve(args)?;
    farm_file::preflight(&resolved.farm).map_err(Preflight)?;
    for w in resolved.farm.warnings() {
        say(&format!("warning: {w}"));
    }
    let run_dir = resolved.run_dir();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    if let Some(pid) = running_supervisor(&run_dir) {
        return Err(Preflight(format!(
            "a farm is already running from {} (supervisor pid {pid}); stop it first",
            resolved.farm.data_dir.display()
        ))
        .into());
    }
    // The farm's own certificates, then every certificate the lbs will load.
    crate::ca_cmd::ensure(&resolved.farm).map_err(|e| Preflight(format!("{e:#}")))?;
    // The farm's secrets: the admin token, the db's auth file, the web tier's password.
    crate::secrets::ensure(&resolved.farm).map_err(|e| Preflight(format!("{e:#}")))?;
    if resolved.farm.nodes_with_role(Role::Lb).next().is_some() {
        webfarm_lb::check_certificates(&resolved.farm).map_err(|e| Preflight(e.to_string()))?;
    }
    // Every `[dns] records` line parsed before any node starts.
    if resolved.farm.nodes_with_role(Role::Dns).next().is_some() {
        webfarm_dns::check_zone(&resolved.farm).map_err(|e| Preflight(e.to_string()))?;
    }
    // Held until the farm stopped: dropping it removes the namespaces, veths and bridge.
    let network = netns.map(crate::netns_up::Prepared::create).transpose()?;
    std::fs::write(
        run_dir.join("supervisor.pid"),
        std::process::id().to_string(),
    )?;
    let config = resolved
        .config
        .as_ref()
        .map_or(String::new(), |p| p.display().to_string());
    std::fs::write(run_dir.join("config"), config)?;

    let http = farm_file::operator_http(&resolved.farm).map_err(|e| Preflight(format!("{e:#}")))?;
    let sup = Arc::new(Supervisor {
        netns: network.as_ref().map(|n| n.spec().clone()),
        exe: std::env::current_exe().context("cannot find the webfarm binary")?,
        resolved,
        procs: Mutex::new(HashMap::new()),
        http,
        commands: tokio::sync::Mutex::new(()),
    });
    let token = crate::secrets::admin_token(&sup.resolved.farm)
        .context("the farm's admin token, made at start, cannot be read")?;
    let control = control::serve(sup.clone(), run_dir.join("control.sock"), token)?;

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let started = tokio::select! {
        r = sup.start_all() => r,
        _ = term.recv() => Err(anyhow!("SIGTERM during start")),
        _ = int.recv() => Err(anyhow!("SIGINT during start")),
    };
    if let Err(e) = started {
        say("stopping the farm");
        sup.stop_all().await;
        control.abort();
        cleanup(&run_dir);
        crate::netns_up::remove(network);
        return Err(e);
    }
    sup.print_endpoints();
    say("farm is up; Ctrl-C stops it");
    tokio::select! {
        _ = term.recv() => say("SIGTERM: stopping the farm"),
        _ = int.recv() => say("SIGINT: stopping the farm"),
    }
    sup.stop_all().await;
    control.abort();
    cleanup(&run_dir);
    crate::netns_up::remove(network);
    say("farm stopped");
    Ok(ExitCode::SUCCESS)
}

impl Supervisor {
    fn farm(&self) -> &webfarm_config::Farm {
        &self.resolved.farm
    }

    /// Starts db nodes, then web nodes, then load balancers, then dns nodes, then the
    /// monitor; each group must be ready before the next starts.
    async fn start_all(self: &Arc<Self>) -> anyhow::Result<()> {
        for role in [Role::Db, Role::Web, Role::Lb, Role::Dns, Role::Monitor] {
            let nodes: Vec<Node> = self.farm().nodes_with_role(role).cloned().collect();
            for node in &nodes {
                self.spawn(node)?;
            }
            let waits = nodes.iter().map(|n| self.wait_ready(n));
            for r in join_all(waits).await {
                r?;
            }
            if role == Role::Lb && !self.farm().vrrp.is_empty() {
                self.wait_vip_masters().await?;
            }
        }
        Ok(())
    }

    /// Waits until every `[[vrrp]]` instance has a master (an lb whose `/status` says so),
    /// so that the VIPs answer once the farm is said to be up: a backup lb is ready at once,
    /// but the first master is elected a master down interval later.
    async fn wait_vip_masters(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let lbs = self.farm().nodes_with_role(Role::Lb);
            let reports = join_all(lbs.map(|n| crate::status::node_status(&self.http, n))).await;
            let mut missing: Vec<String> = crate::status::vip_masters(self.farm(), &reports)
                .into_iter()
                .filter(|v| v.master.is_none())
                .map(|v| v.instance)
                .collect();
            missing.dedup();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "no lb became the VRRP master of {} within {READY_TIMEOUT:?}",
                    missing.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts node `name` again (control command).
    pub async fn start_node(self: &Arc<Self>, name: &str) -> anyhow::Result<String> {
        let _one_at_a_time = self.commands.lock().await;
        let node = self.node(name)?;
        if self.pid_if_running(name).is_some() {
            bail!("{name} is already running");
        }
        self.spawn(&node)?;
        self.wait_ready(&node).await?;
        Ok(format!("{name} started and ready"))
    }

    /// Stops node `name` gracefully, or SIGKILLs it (control command).
    pub async fn stop_node(&self, name: &str, hard: bool) -> anyhow::Result<String> {
        let _one_at_a_time = self.commands.lock().await;
        self.node(name)?;
        if self.pid_if_running(name).is_none() {
            bail!("{name} is not running");
        }
        let how = if hard {
            self.signal(name, Signal::SIGKILL);
            self.wait_exit(name, STOP_TIMEOUT).await
        } else {
            self.stop_gracefully(name).await
        };
        Ok(format!("{name} stopped ({how})"))
    }

    fn node(&self, name: &str) -> anyhow::Result<Node> {
        farm_file::node(self.farm(), name).cloned()
    }

    fn pid_if_running(&self, name: &str) -> Option<u32> {
        let procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        procs
            .get(name)
            .filter(|p| p.exited.borrow().is_none())
            .map(|p| p.pid)
    }

    fn spawn(self: &Arc<Self>, node: &Node) -> anyhow::Result<()> {
        let farm = self.farm();
        let mut cmd = crate::netns_up::command(self.netns.as_ref(), &self.exe, &node.name);
        cmd.arg("run")
            .arg("--node")
            .arg(&node.name)
            .arg("--data-dir")
            .arg(&farm.data_dir)
            .arg("--supervised");
        if let Some(c) = &self.resolved.config {
            cmd.arg("--config").arg(c);
        }
        // Its own process group: a Ctrl-C in the terminal reaches the supervisor only, which
        // then stops the nodes in order (load balancers first, db nodes last).
        cmd.process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {}", node.name))?;
        let pid = child.id().context("node exited at once")?;
        let pid_file = self.resolved.run_dir().join(format!("{}.pid", node.name));
        std::fs::write(&pid_file, pid.to_string())?;

        let last_lines = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(node.name.clone(), out, last_lines.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(node.name.clone(), err, last_lines.clone()));
        }
        let stdin = child.stdin.take();
        let (tx, rx) = watch::channel(None);
        let (signals, mut signal_rx) = mpsc::unbounded_channel::<Signal>();
        let name = node.name.clone();
        tokio::spawn(async move {
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    Some(sig) = signal_rx.recv() => {
                        // `id()` is `None` once the child was reaped, which only this task does.
                        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                            let _ = kill(Pid::from_raw(pid), sig);
                        }
                    }
                }
            };
            let how = match status {
                Ok(status) => describe(status),
                Err(e) => format!("lost: {e}"),
            };
            say(&format!("{name} exited ({how})"));
            let _ = std::fs::remove_file(&pid_file);
            let _ = tx.send(Some(how));
        });
        let proc = Proc {
            pid,
            signals,
            _stdin: stdin,
            exited: rx,
            last_lines,
        };
        self.procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.name.clone(), proc);
        say(&format!("started {} ({}, pid {pid})", node.name, node.role));
        Ok(())
    }

    /// Polls the node's `/readyz` until 200; fails if it exits or takes too long.
    async fn wait_ready(&self, node: &Node) -> anyhow::Result<()> {
        let url = self.http.url(node.admin_addr(), "/readyz");
        let mut exited = self.exited_rx(&node.name)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(how) = exited.borrow_and_update().clone() {
                bail!(
                    "node {} failed to start ({how}):\n{}",
                    node.name,
                    self.last_lines(&node.name)
                );
            }
            let last = match self.http.get(&url, Duration::from_secs(2)).await {
                Ok(r) if r.status.is_success() => return Ok(()),
                Ok(r) => String::from_utf8_lossy(&r.body).trim().to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "node {} was not ready after {READY_TIMEOUT:?}: {last}",
                    node.name
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = exited.changed() => {}
            }
        }
    }

    fn exited_rx(&self, name: &str) -> anyhow::Result<watch::Receiver<Option<String>>> {
        let procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        procs
            .get(name)
            .map(|p| p.exited.clone())
            .ok_or_else(|| anyhow!("{name} was never started"))
    }

    fn last_lines(&self, name: &str) -> String {
        let procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        procs.get(name).map_or(String::new(), |p| {
            let lines = p.last_lines.lock().unwrap_or_else(|p| p.into_inner());
            lines
                .iter()
                .map(|l| format!("  {name} | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// Waits until node `name` exited; returns how, or `still running` after `timeout`.
    async fn wait_exit(&self, name: &str, timeout: Duration) -> String {
        let Ok(mut rx) = self.exited_rx(name) else {
            return "not started".into();
        };
        let wait = async move {
            match rx.wait_for(|e| e.is_some()).await {
                Ok(how) => how.clone().unwrap_or_default(),
                Err(_) => "exited".to_string(),
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| "still running".into())
    }

    /// Sends `sig` to node `name` if it still runs.
    fn signal(&self, name: &str, sig: Signal) {
        let procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = procs.get(name) {
            let _ = p.signals.send(sig);
        }
    }

    async fn stop_gracefully(&self, name: &str) -> String {
        self.signal(name, Signal::SIGTERM);
        let how = self.wait_exit(name, STOP_TIMEOUT).await;
        if how != "still running" {
            return how;
        }
        say(&format!(
            "{name} did not stop within {STOP_TIMEOUT:?}: SIGKILL"
        ));
        self.signal(name, Signal::SIGKILL);
        self.wait_exit(name, STOP_TIMEOUT).await
    }

    /// Stops every running node: the monitor, dns nodes, load balancers, then web nodes, then
    /// db nodes.
    async fn stop_all(&self) {
        for role in [Role::Monitor, Role::Dns, Role::Lb, Role::Web, Role::Db] {
            let running: Vec<String> = self
                .farm()
                .nodes_with_role(role)
                .filter(|n| self.pid_if_running(&n.name).is_some())
                .map(|n| n.name.clone())
                .collect();
            let stops = running.iter().map(|name| self.stop_gracefully(name));
            join_all(stops).await;
        }
    }

    fn print_endpoints(&self) {
        let farm = self.farm();
        println!();
        println!("{:<10} {:<7} {:<16} URL", "NODE", "ROLE", "ADDRESS");
        for n in &farm.nodes {
            let urls = match n.role {
                Role::Lb => farm
                    .frontends
                    .iter()
                    .map(|f| {
                        let scheme = if f.tls.is_some() { "https" } else { "http" };
                        format!("{scheme}://{}:{}/ (frontend {})", n.address, f.port, f.name)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Role::Web => format!("{}://{}/", farm.tls.scheme(), n.main_addr()),
                Role::Db => format!(
                    "{}://{}/db/query (SQL API)",
                    farm.tls.scheme(),
                    n.main_addr()
                ),
                Role::Monitor => format!("http://{}/ (the live dashboard)", n.main_addr()),
                Role::Dns => format!(
                    "dig @{} -p {} {} (UDP and TCP)",
                    n.address, n.port, farm.site
                ),
            };
            println!("{:<10} {:<7} {:<16} {urls}", n.name, n.role, n.address);
        }
        println!(
            "every node: {}://<address>:<admin_port>/status, /readyz, /healthz",
            farm.tls.scheme()
        );
        if farm.tls.internal {
            let ca = webfarm_tls::ca::Layout::of_data_dir(&farm.data_dir);
            println!(
                "internal ports need the operator's certificate: curl --cacert {} --cert {} \
                 --key {} https://<address>:<port>/...",
                ca.ca().cert.display(),
                ca.operator().cert.display(),
                ca.operator().key.display()
            );
        }
        print_vips(farm);
        // The site's first address: a VIP with [[vrrp]], else the first lb's.
        let lb = farm.site_addresses().first().copied();
        let https = farm.frontends.iter().find(|f| f.tls.is_some());
        if let (Some(lb), Some(f)) = (lb, https) {
            let ca = webfarm_tls::ca::Layout::of_data_dir(&farm.data_dir)
                .ca()
                .cert;
            println!(
                "try: curl --cacert {} --resolve {site}:{port}:{} https://{site}:{port}/",
                ca.display(),
                lb,
                site = farm.site,
                port = f.port
            );
        } else if let (Some(lb), Some(f)) = (lb, farm.frontends.first()) {
            println!(
                "try: curl -H 'Host: {}' http://{}:{}/",
                farm.site, lb, f.port
            );
        }
        println!();
    }
}

/// One line per VRRP instance: its VIPs (the site's addresses) and who should be master.
fn print_vips(farm: &webfarm_config::Farm) {
    for v in &farm.vrrp {
        let vips: Vec<String> = v.vips.iter().map(ToString::to_string).collect();
        let mut by_priority: Vec<_> = v.priority.iter().collect();
        by_priority.sort_by(|a, b| b.1.cmp(a.1));
        let order: Vec<String> = by_priority
            .iter()
            .map(|(n, p)| format!("{n} ({p})"))
            .collect();
        println!(
            "VIP {} (VRRP {}, vrid {}): master by priority {}; `webfarm status` shows the \
             master now",
            vips.join(", "),
            v.name,
            v.vrid,
            order.join(" > ")
        );
    }
}

async fn forward(name: String, stream: impl AsyncRead + Unpin, last: Arc<Mutex<VecDeque<String>>>) {
    // Bytes, not `lines()`: a line that is not UTF-8 must not stop the draining, or the
    // node would block on a full pipe.
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        println!("{name:<7}| {line}");
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() == KEPT_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({s})"),
            Err(_) => format!("signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// The pid of a live supervisor recorded in `run_dir`, if any.
fn running_supervisor(run_dir: &std::path::Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(run_dir.join("supervisor.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid != std::process::id() as i32 && kill(Pid::from_raw(pid), None).is_ok()).then_some(pid)
}

fn cleanup(run_dir: &std::path::Path) {
    for f in ["supervisor.pid", "control.sock"] {
        let _ = std::fs::remove_file(run_dir.join(f));
    }
}

/// Prints one line of the supervisor's own, prefixed like the nodes' lines.
pub fn say(msg: &str) {
    println!("{:<7}| {msg}", "webfarm");
}
