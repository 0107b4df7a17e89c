//! The running virtual routers of one lb node: a receive task that demultiplexes
//! advertisements by VRID, and one task per instance that feeds its [`Router`] events and
//! carries out its actions (send, take or release the VIPs, timers).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::link::Link;
use crate::packet::{self, Advert};
use crate::router::{Action, Event, Params, Router, State, Timer};
use crate::{netif, VrrpError};

/// What the lb does when its router takes or releases an instance's VIPs: bind or close
/// its frontends on them. Called from the instance's task; must not block for long.
pub trait VipHolder: Send + Sync + 'static {
    /// Start serving `vips` (bind every frontend on them).
    ///
    /// # Errors
    ///
    /// A line for the log (the router stays master and keeps advertising).
    fn take(&self, instance: &str, vips: &[IpAddr]) -> Result<(), String>;
    /// Stop accepting on `vips` (connections already accepted go on).
    fn release(&self, instance: &str, vips: &[IpAddr]);
}

/// One virtual router to run.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Its name (`VI_1`).
    pub name: String,
    /// Its VRID.
    pub vrid: u8,
    /// Its VIPs.
    pub vips: Vec<IpAddr>,
    /// The protocol parameters (this node's priority, interval, preemption).
    pub params: Params,
    /// The other routers' addresses (unicast and loopback destinations).
    pub peers: Vec<IpAddr>,
    /// Advertise to `peers` rather than to the multicast group (real interfaces).
    pub unicast: bool,
}

/// Where and how the node speaks VRRP.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The lb node's address: the advertisements' source.
    pub address: IpAddr,
    /// The interface (real interfaces); default: the one holding `address`.
    pub interface: Option<String>,
    /// The instances this node takes part in.
    pub instances: Vec<InstanceSpec>,
}

/// What `/status` shows of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Its name.
    pub name: String,
    /// Its VRID.
    pub vrid: u8,
    /// Its state.
    pub state: State,
    /// This node's priority.
    pub priority: u8,
    /// The current master's address, when known.
    pub master: Option<IpAddr>,
    /// The VIPs.
    pub vips: Vec<IpAddr>,
    /// Whether this node holds (serves) the VIPs now.
    pub holding: bool,
    /// State changes since start, by the state entered: init, backup, master.
    pub transitions: [u64; 3],
}

type Shared = Arc<Mutex<InstanceStatus>>;

enum Input {
    Advert(Advert, IpAddr),
    Shutdown(oneshot::Sender<()>),
}

/// The node's running virtual routers.
#[derive(Debug)]
pub struct Vrrp {
    statuses: Vec<Shared>,
    inputs: Vec<mpsc::Sender<Input>>,
    tasks: Vec<JoinHandle<()>>,
    receiver: JoinHandle<()>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

impl Vrrp {
    /// Opens the transport and starts every instance (each enters Backup, or Master at
    /// once with priority 255). Loopback node addresses use the UDP transport, others the
    /// raw one on the interface.
    ///
    /// # Errors
    ///
    /// [`VrrpError`]: the socket (CAP_NET_RAW), the interface, or the UDP port.
    pub async fn start(spec: NodeSpec, holder: Arc<dyn VipHolder>) -> Result<Vrrp, VrrpError> {
        let (link, interface) = if spec.address.is_loopback() {
            (Link::udp(spec.address).await?, None)
        } else {
            let interface = match &spec.interface {
                Some(i) => i.clone(),
                None => netif::interface_of(spec.address)?,
            };
            let link = Link::raw(spec.address, &interface)?;
            // A VIP left by a crash of this node would answer beside the real master: remove
            // it before starting as backup (this also finds a missing CAP_NET_ADMIN now).
            // The owner's own address (priority 255) is never touched.
            let vips = spec.instances.iter().flat_map(|i| &i.vips);
            for vip in vips.filter(|v| **v != spec.address) {
                netif::del_vip(&interface, *vip)?;
            }
            (link, Some(interface))
        };
        tracing::info!(
            "VRRP: {} instance(s) on {} ({})",
            spec.instances.len(),
            spec.address,
            match &interface {
                None => format!("loopback transport: UDP port {}", crate::UDP_PORT),
                Some(i) => format!("IP protocol 112 on interface {i}"),
            }
        );
        // The advertisements' source is the tie-break address (§6.4.3): on IPv6 the
        // interface's link-local address.
        let link = Arc::new(link);
        let mut spec = spec;
        for inst in &mut spec.instances {
            inst.params.primary = link.local();
        }
        let mut vrrp = Vrrp {
            statuses: Vec::new(),
            inputs: Vec::new(),
            tasks: Vec::new(),
            receiver: tokio::spawn(async {}),
        };
        let mut routes = HashMap::new();
        for inst in spec.instances {
            let (tx, rx) = mpsc::channel(64);
            routes.insert(inst.vrid, tx.clone());
            let status = Arc::new(Mutex::new(initial_status(&inst)));
            let task = Task {
                router: Router::new(inst.params.clone()),
                spec: inst,
                link: link.clone(),
                holder: holder.clone(),
                interface: interface.clone(),
                status: status.clone(),
                timers: HashMap::new(),
                last_announce: None,
            };
            vrrp.tasks.push(tokio::spawn(task.run(rx)));
            vrrp.statuses.push(status);
            vrrp.inputs.push(tx);
        }
        vrrp.receiver = tokio::spawn(receive(link, routes));
        Ok(vrrp)
    }

    /// Every instance's status, in configuration order.
    pub fn status(&self) -> Vec<InstanceStatus> {
        self.view().get()
    }

    /// A handle that reads the statuses after the routers are moved away (to shut down).
    pub fn view(&self) -> StatusView {
        StatusView(self.statuses.clone())
    }

    /// Leaves every virtual router (RFC 5798 §6.4.3): a master sends a priority-0
    /// advertisement, so its backup takes over after its skew time, and releases its VIPs.
    /// Returns once every instance is in Initialize.
    pub async fn shutdown(self) {
        for input in &self.inputs {
            let (done, wait) = oneshot::channel();
            if input.send(Input::Shutdown(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
        self.receiver.abort();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Reads every instance's status ([`Vrrp::view`]).
#[derive(Debug, Clone)]
pub struct StatusView(Vec<Shared>);

impl StatusView {
    /// Every instance's status now, in configuration order.
    pub fn get(&self) -> Vec<InstanceStatus> {
        self.0.iter().map(|s| lock(s).clone()).collect()
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, InstanceStatus> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

fn initial_status(inst: &InstanceSpec) -> InstanceStatus {
    InstanceStatus {
        name: inst.name.clone(),
        vrid: inst.vrid,
        state: State::Initialize,
        priority: inst.params.priority,
        master: None,
        vips: inst.vips.clone(),
        holding: false,
        transitions: [0; 3],
    }
}

/// Reads advertisements and hands each valid one to its instance (RFC 5798 §7.1).
async fn receive(link: Arc<Link>, routes: HashMap<u8, mpsc::Sender<Input>>) {
    let local = link.local();
    loop {
        let got = match link.recv().await {
            Ok(Ok(got)) => got,
            Ok(Err(e)) => {
                tracing::debug!("VRRP: packet dropped: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!("VRRP: receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if got.src == local {
            continue;
        }
        match Advert::decode(&got.bytes, got.src, got.dst, |v| routes.contains_key(&v)) {
            Ok(ad) => {
                if let Some(tx) = routes.get(&ad.vrid) {
                    let _ = tx.try_send(Input::Advert(ad, got.src));
                }
            }
            Err(packet::PacketError::NotOurs(_)) => {}
            Err(e) => tracing::debug!("VRRP: advertisement from {} dropped: {e}", got.src),
        }
    }
}

/// One instance's task.
struct Task {
    router: Router,
    spec: InstanceSpec,
    link: Arc<Link>,
    holder: Arc<dyn VipHolder>,
    interface: Option<String>,
    status: Shared,
    timers: HashMap<Timer, Instant>,
    /// When the VIPs were last announced for a lower-priority advertisement.
    last_announce: Option<Instant>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        self.apply(Event::Startup).await;
        loop {
            let next = self
                .timers
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, at)| (*t, *at));
            let far = Instant::now() + Duration::from_secs(3600);
            let sleep = tokio::time::sleep_until(next.map_or(far, |(_, at)| at));
            tokio::select! {
                input = rx.recv() => match input {
                    Some(Input::Advert(ad, src)) => {
                        self.on_advert(ad, src).await;
                    }
                    Some(Input::Shutdown(done)) => {
                        self.apply(Event::Shutdown).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.apply(Event::Shutdown).await;
                        return;
                    }
                },
                _ = sleep, if next.is_some() => {
                    if let Some((timer, _)) = next {
                        self.timers.remove(&timer);
                        self.apply(Event::Timer(timer)).await;
                    }
                }
            }
        }
    }

    async fn on_advert(&mut self, ad: Advert, src: IpAddr) {
        // §7.1: the addresses must match ours (a misconfiguration is logged, then used
        // anyway, as keepalived does unless strict).
        if ad.addrs != self.spec.vips && ad.priority != 255 {
            tracing::debug!(
                "VRRP_Instance({}) advertisement from {src} lists {:?}, ours are {:?}",
                self.spec.name,
                ad.addrs,
                self.spec.vips
            );
        }
        self.apply(Event::Advert {
            priority: ad.priority,
            max_adver_int: ad.max_adver_int,
            source: src,
        })
        .await;
    }

    async fn apply(&mut self, event: Event) {
        for action in self.router.handle(event) {
            self.act(action).await;
        }
        let mut s = lock(&self.status);
        s.state = self.router.state();
        s.master = self.router.master();
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Send { priority } => self.send(priority).await,
            Action::TakeVips => self.take().await,
            Action::ReleaseVips => self.release().await,
            Action::Announce => self.announce_again(),
            Action::SetTimer(t, after) => {
                self.timers.insert(t, Instant::now() + after);
            }
            Action::CancelTimer(t) => {
                self.timers.remove(&t);
            }
            Action::Transition { from, to, reason } => {
                tracing::info!(
                    "VRRP_Instance({}) Entering {} STATE (was {}: {}), priority {}",
                    self.spec.name,
                    to.as_str().to_uppercase(),
                    from.as_str(),
                    reason.as_str(),
                    self.spec.params.priority
                );
                lock(&self.status).transitions[to.index()] += 1;
            }
        }
    }

    /// Sends one advertisement to each destination.
    async fn send(&self, priority: u8) {
        let ad = Advert {
            vrid: self.spec.vrid,
            priority,
            max_adver_int: self.spec.params.advert_int,
            addrs: self.spec.vips.clone(),
        };
        let local = self.link.local();
        let dests: Vec<IpAddr> = if self.link.is_udp() || self.spec.unicast {
            self.spec.peers.clone()
        } else if local.is_ipv4() {
            vec![IpAddr::V4(packet::MULTICAST_V4)]
        } else {
            vec![IpAddr::V6(packet::MULTICAST_V6)]
        };
        for dst in dests {
            if let Err(e) = self.link.send(&ad.encode(local, dst), dst).await {
                tracing::debug!(
                    "VRRP_Instance({}) advertisement to {dst}: {e}",
                    self.spec.name
                );
            }
        }
    }

    async fn take(&mut self) {
        self.change_addresses(netif::add_vip, "add").await;
        let name = &self.spec.name;
        match self.holder.take(name, &self.spec.vips) {
            Ok(()) => lock(&self.status).holding = true,
            Err(e) => tracing::error!("VRRP_Instance({name}) cannot serve its VIPs: {e}"),
        }
        self.announce();
    }

    /// Gratuitous ARP / unsolicited NA for the VIPs, on real interfaces, in the background.
    fn announce(&mut self) {
        if let Some(interface) = self.interface.clone() {
            let (vips, name) = (self.spec.vips.clone(), self.spec.name.clone());
            tokio::spawn(announce(interface, vips, name, self.status.clone()));
        }
    }

    /// [`Action::Announce`]: again, while holding, at most once per
    /// [`netif::ANNOUNCE_MIN_GAP`] (a router that keeps advertising a lower priority, e.g.
    /// one that cannot hear us, must not make us flood the link).
    fn announce_again(&mut self) {
        let recent = self
            .last_announce
            .is_some_and(|at| at.elapsed() < netif::ANNOUNCE_MIN_GAP);
        if lock(&self.status).holding && !recent {
            tracing::info!(
                "VRRP_Instance({}) received a lower priority advertisement: announcing the VIPs \
                 again",
                self.spec.name
            );
            self.last_announce = Some(Instant::now());
            self.announce();
        }
    }

    /// The VIPs other than this node's own address (an owner's, priority 255, stays).
    fn foreign_vips(&self) -> Vec<IpAddr> {
        let local = self.link.local();
        self.spec
            .vips
            .iter()
            .copied()
            .filter(|v| *v != local)
            .collect()
    }

    async fn release(&mut self) {
        self.holder.release(&self.spec.name, &self.spec.vips);
        lock(&self.status).holding = false;
        self.change_addresses(netif::del_vip, "remove").await;
    }

    /// Adds or removes the VIPs on the interface (real interfaces only), running `ip` off
    /// the event loop.
    async fn change_addresses(
        &self,
        change: fn(&str, IpAddr) -> Result<(), VrrpError>,
        verb: &'static str,
    ) {
        let Some(interface) = self.interface.clone() else {
            return;
        };
        let (vips, name) = (self.foreign_vips(), self.spec.name.clone());
        let done = tokio::task::spawn_blocking(move || {
            for vip in vips {
                if let Err(e) = change(&interface, vip) {
                    tracing::error!("VRRP_Instance({name}) cannot {verb} VIP {vip}: {e}");
                }
            }
        });
        let _ = done.await;
    }
}

/// Gratuitous ARP for every IPv4 VIP, an unsolicited neighbour advertisement for every IPv6
/// one (RFC 5798 §8.1.2, §8.2.2), [`netif::GARP_REPEAT`] times; then a second set after
/// [`netif::GARP_SECOND_SET`] if the VIPs are still held (`status`).
async fn announce(interface: String, vips: Vec<IpAddr>, name: String, status: Shared) {
    announce_set(&interface, &vips, &name).await;
    tokio::time::sleep(netif::GARP_SECOND_SET).await;
    let holding = lock(&status).holding;
    if holding {
        announce_set(&interface, &vips, &name).await;
    }
}

async fn announce_set(interface: &str, vips: &[IpAddr], name: &str) {
    for round in 0..netif::GARP_REPEAT {
        for vip in vips {
            let sent = match vip {
                IpAddr::V4(v4) => netif::gratuitous_arp(interface, *v4),
                IpAddr::V6(v6) => netif::unsolicited_na(interface, *v6),
            };
            if let Err(e) = sent {
                if round == 0 {
                    tracing::warn!("VRRP_Instance({name}) gratuitous ARP for {vip}: {e}");
                }
            }
        }
        tokio::time::sleep(netif::GARP_SPACING).await;
    }
}
