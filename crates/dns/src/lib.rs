//! The dns role (`role = "dns"`, `dns-1` and `dns-2` in the built-in farm): an authoritative
//! DNS server for the site's zone (`[dns] zone`, `foobar.com` for `www.foobar.com`), built on
//! hickory-server.
//!
//! - The zone ([`zone`]): SOA, one NS per dns node (`ns1.<zone>`...) with its A glue, the
//!   site's A/AAAA records, and `[dns] records`. Every record has the TTL `[dns] ttl` (5 s)
//!   unless its line names one.
//! - The site's A/AAAA records list the addresses of [`Farm::site_addresses`] that pass the
//!   health check ([`check`]: a TCP connect to the first frontend's port, or an HTTP `GET /`
//!   on the first plain HTTP frontend, every `inter`, with `rise` and `fall`); when none
//!   passes, all are listed, as Route 53 does.
//! - Whenever that list changes, a new version of the zone is built with a higher SOA serial
//!   (the Unix time, or one more than the last serial, persisted in the data directory), swapped
//!   in whole ([`arc_swap`]), and every secondary is sent NOTIFY ([`notify`], RFC 1996).
//! - Queries arrive over UDP and TCP on the node's `address:port` (5353; 53 in a real
//!   deployment); hickory's server parses them (a malformed one gets FORMERR, or is dropped
//!   when it has no header), handles EDNS0 (RFC 6891), and calls [`handler::Handler`]: zone
//!   transfers (AXFR, RFC 5936) for `[dns] secondaries` only, everything else by hickory's
//!   catalog, which answers authoritatively (AA), with NXDOMAIN for names of the zone that do
//!   not exist and REFUSED for names outside it (RFC 1034 §4.3.2).
//!
//! ```no_run
//! # async fn run(ctx: webfarm_node::NodeContext) -> Result<(), webfarm_dns::DnsError> {
//! let node = webfarm_dns::DnsNode::start(ctx).await?;
//! println!("answering on {}", node.addr());
//! node.wait().await
//! # }
//! ```

pub mod check;
pub mod handler;
pub mod notify;
mod packet;
mod serial;
mod status;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio::task::JoinHandle;
use webfarm_config::{Farm, Role};
use webfarm_node::{BindError, Health, NodeContext, Shutdown};

use check::HealthTable;
use handler::{Counters, Handler};
use zone::{Zone, ZoneSpec};

/// Why a dns node cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The node is not a dns node.
    #[error("node {node:?} has role {role}; only a dns node serves the zone")]
    NotADnsNode {
        /// The node.
        node: String,
        /// Its role.
        role: Role,
    },
    /// The zone cannot be built: a bad `[dns] records` line (named by index and text), or a
    /// set of records hickory refuses.
    #[error("zone: {0}")]
    Zone(String),
    /// The TCP listener cannot be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A port below 1024 (53 in a real deployment) without the privilege to bind it.
    #[error(
        "cannot listen on {addr} (dns): ports below 1024 need root or the CAP_NET_BIND_SERVICE \
         capability (e.g. systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE); or use a port \
         above 1024, as the built-in farm's 5353"
    )]
    Privileged {
        /// The address.
        addr: SocketAddr,
    },
    /// The UDP socket cannot be bound.
    #[error("cannot listen on {addr} (dns, UDP): {source}")]
    BindUdp {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The serial file of the data directory cannot be read or written.
    #[error("SOA serial file {file}: {source}")]
    Serial {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("dns server on {addr} failed: {message}")]
    Serve {
        /// Its address.
        addr: SocketAddr,
        /// hickory's error, in words.
        message: String,
    },
}

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A running dns node.
#[derive(Debug)]
pub struct DnsNode {
    addr: SocketAddr,
    health: Arc<status::DnsHealth>,
    server: JoinHandle<Result<(), DnsError>>,
}

impl DnsNode {
    /// Builds the zone, binds UDP and TCP on the node's `address:port`, and starts the health
    /// checks, the server, and the task that swaps in new zone versions.
    ///
    /// # Errors
    ///
    /// Not a dns node, a bad `[dns] records` line, the serial file, or a port that cannot be
    /// bound.
    pub async fn start(ctx: NodeContext) -> Result<DnsNode, DnsError> {
        let node = &ctx.node;
        if node.role != Role::Dns {
            return Err(DnsError::NotADnsNode {
                node: node.name.clone(),
                role: node.role,
            });
        }
        let spec = ZoneSpec::from_farm(&ctx.farm)?;
        let table = HealthTable::new(&ctx.farm.site_addresses());
        let serials = serial::SerialFile::new(&ctx.data_dir);
        let first = spec.build(&table.answering(), serials.next()?)?;
        let zone = Arc::new(ArcSwap::from_pointee(first));
        let counters = Arc::new(Counters::default());
        let (udp, tcp) = bind(node.main_addr()).await?;
        let addr = tcp.local_addr().unwrap_or_else(|_| node.main_addr());
        let mut server = Server::new(Handler {
            zone: zone.clone(),
            secondaries: ctx
                .farm
                .dns
                .secondaries
                .iter()
                .map(SocketAddr::ip)
                .collect(),
            counters: counters.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, 64);
        let farm = &ctx.farm;
        let checker = check::Checker {
            port: farm.site_check_port(),
            check: farm.dns.check,
            site: farm.site.clone(),
        };
        check::spawn_checks(&table, checker, &ctx.shutdown);
        let updater = Updater {
            spec,
            table: table.clone(),
            zone: zone.clone(),
            serials,
            secondaries: farm.dns.secondaries.clone(),
            from: node.address,
        };
        updater.notify(&zone.load());
        tokio::spawn(updater.run(ctx.shutdown.clone()));
        let server = tokio::spawn(serve(server, addr, ctx.shutdown.clone()));
        tracing::info!(node = %node.name, %addr, zone = %farm.dns.zone, "dns serving");
        Ok(DnsNode {
            addr,
            health: Arc::new(status::DnsHealth {
                addr,
                farm: ctx.farm.clone(),
                zone,
                table,
                counters,
            }),
            server,
        })
    }

    /// The node's health, for the admin server.
    pub fn health(&self) -> Arc<dyn Health> {
        self.health.clone()
    }

    /// The address it answers on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the node has shut down.
    ///
    /// # Errors
    ///
    /// The server failed.
    pub async fn wait(self) -> Result<(), DnsError> {
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(DnsError::Serve {
                addr: self.addr,
                message: e.to_string(),
            }),
        }
    }
}

/// The UDP socket and TCP listener of `addr`.
async fn bind(
    addr: SocketAddr,
) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener), DnsError> {
    let tcp = webfarm_node::bind(addr, "dns").await.map_err(|e| {
        if e.source.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 {
            DnsError::Privileged { addr }
        } else {
            DnsError::Bind(e)
        }
    })?;
    // With port 0 (tests), UDP takes the port TCP got.
    let addr = tcp.local_addr().unwrap_or(addr);
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|source| DnsError::BindUdp { addr, source })?;
    Ok((udp, tcp))
}

/// Runs the server until shutdown, then stops it gracefully.
async fn serve(
    mut server: Server<Handler>,
    addr: SocketAddr,
    shutdown: Shutdown,
) -> Result<(), DnsError> {
    shutdown.wait().await;
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsError::Serve {
            addr,
            message: e.to_string(),
        })
}

/// Swaps in a new zone version whenever the site's answer set changes.
struct Updater {
    spec: ZoneSpec,
    table: HealthTable,
    zone: Arc<ArcSwap<Zone>>,
    serials: serial::SerialFile,
    secondaries: Vec<SocketAddr>,
    from: IpAddr,
}

impl Updater {
    async fn run(self, shutdown: Shutdown) {
        let mut changes = self.table.subscribe();
        let mut answering = self.table.answering();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            let now = self.table.answering();
            if now == answering {
                continue;
            }
            match self.swap(&now) {
                Ok(()) => answering = now,
                Err(e) => tracing::error!("the zone keeps its previous version: {e}"),
            }
        }
    }

    fn swap(&self, answering: &[IpAddr]) -> Result<(), DnsError> {
        let zone = self.spec.build(answering, self.serials.next()?)?;
        tracing::info!(serial = zone.serial, site = ?answering, "new zone version");
        self.notify(&zone);
        self.zone.store(Arc::new(zone));
        Ok(())
    }

    fn notify(&self, zone: &Zone) {
        notify::notify_all(&zone.records[0], &self.secondaries, self.from);
    }
}

/// Checks the farm's dns part without starting anything (`webfarm up` does, before any node
/// starts): the zone can be built and every `[dns] records` line parses.
///
/// # Errors
///
/// As [`ZoneSpec::from_farm`].
pub fn check_zone(farm: &Farm) -> Result<(), DnsError> {
    ZoneSpec::from_farm(farm).map(|_| ())
}

#[cfg(test)]
mod tests;
