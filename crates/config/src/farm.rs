//! The validated farm: every default applied, every reference checked.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::acme::{acme_warnings, check_acme_farm, resolve_acme, AcmeSettings};
use crate::dns::{check_dns_farm, resolve_dns, DnsSettings, DEFAULT_DNS_PORT};
use crate::firewall::{resolve_firewall, FirewallSettings};
use crate::lb::{resolve_backends, resolve_frontends, resolve_lb};
use crate::monitor::{resolve_monitor, MonitorSettings};
use crate::raw::{RawFarm, RawNode};
use crate::vrrp::resolve_vrrp;
use crate::ConfigError;
use crate::{Backend, Frontend, LbSettings, VrrpInstance};

/// What a node does. One node is one OS process running one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Load balancer: listens on every frontend and proxies to a backend's servers.
    Lb,
    /// Web server + application server + the code base (`site/`).
    Web,
    /// One member of the replicated SQL database cluster.
    Db,
    /// Monitoring: scrapes every node, serves the farm's live dashboard, evaluates alerts.
    Monitor,
    /// Authoritative DNS for the site's zone: answers the site with the healthy lb addresses.
    Dns,
}

impl Role {
    /// The role's name as written in the topology file: `lb`, `web`, `db`, `monitor` or `dns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lb => "lb",
            Role::Web => "web",
            Role::Db => "db",
            Role::Monitor => "monitor",
            Role::Dns => "dns",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What kind of replica a db node is (`replica = "voter" | "learner"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replica {
    /// A Raft voter: counts in the quorum and can become the leader (primary).
    #[default]
    Voter,
    /// A Raft learner: a read-only replica that receives the log but never votes, never
    /// counts in the quorum and never leads.
    Learner,
}

impl Replica {
    /// `voter` or `learner`, as written in the topology file.
    pub fn as_str(self) -> &'static str {
        match self {
            Replica::Voter => "voter",
            Replica::Learner => "learner",
        }
    }
}

/// One node of the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique name, such as `web-2`; also the `X-Served-By` value of a web node.
    pub name: String,
    /// What the node runs.
    pub role: Role,
    /// The address every port of the node binds (a loopback address on one machine).
    pub address: IpAddr,
    /// Port of `/healthz`, `/readyz`, `/status`. Default 9000.
    pub admin_port: u16,
    /// The role's main port: web HTTP (default 8000) or db SQL API (default 4001).
    /// Load balancers take their ports from the frontends; for them this is 0.
    pub port: u16,
    /// Raft port of a db node (default 4002); 0 for other roles.
    pub raft_port: u16,
    /// The kind of replica a db node is when the cluster forms (default voter); always
    /// `Voter` for other roles. After formation the cluster's own membership decides.
    pub replica: Replica,
}

impl Node {
    /// `address:admin_port`.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.admin_port)
    }
    /// `address:port`: the web node's HTTP address, or the db node's SQL API address.
    pub fn main_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
    /// `address:raft_port` of a db node.
    pub fn raft_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.raft_port)
    }
}

/// Settings shared by every web node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// The code base: static files served under `/`.
    pub root: PathBuf,
    /// How long the application retries the database (through a failover) before it answers
    /// 503. Default 10s.
    pub db_timeout: Duration,
    /// The user of the db's auth file the web tier calls the db API as, with the file that
    /// holds its password in clear (`[web] db_user`, `db_password_file`, both or neither).
    /// `None`: the `web` user `webfarm up` generates, its password in
    /// `<data_dir>/secrets/web.password`.
    pub db_credentials: Option<(String, PathBuf)>,
}

/// Settings shared by every db node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSettings {
    /// Leader heartbeat period. Default 100ms.
    pub heartbeat_interval: Duration,
    /// Minimum election timeout `t`; the maximum is `1.5 t`. After the last heartbeat, a
    /// follower waits out the leader's lease (openraft 0.9: the maximum election timeout)
    /// plus a random election timeout before it campaigns, so a dead leader is replaced after
    /// about `1.5 t + [t, 1.5 t)` plus one vote round: 0.75–0.9s with the default 300ms.
    pub election_timeout: Duration,
    /// Applied log entries between two snapshots. Default 8192, rqlite's default: a snapshot
    /// copies the whole database (`VACUUM INTO` + fsync), so taking one every 1000 entries
    /// put that I/O beside the log's fsyncs every few seconds under load (the p99 write
    /// latency doubled; BENCHMARKS.md).
    pub snapshot_threshold: u64,
    /// rqlite's auth file (`[db] auth`, resolved as the file's other paths): the users of
    /// the db API, their passwords (clear or bcrypt) and permissions. `None`: the farm's own,
    /// made by `webfarm up` in `<data_dir>/secrets/db-auth.json`.
    pub auth: Option<PathBuf>,
}

/// The `[tls]` table: TLS between the farm's own nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// Mutual TLS on every internal hop (lb → web, web → db, db ↔ db, admin ports,
    /// `webfarm` commands), with the certificates of the farm CA (`<data_dir>/ca/`). Default
    /// true; false (for debugging) warns at start.
    pub internal: bool,
}

impl TlsSettings {
    /// `https` with internal TLS, else `http`: the scheme of node-to-node URLs.
    pub fn scheme(self) -> &'static str {
        if self.internal {
            "https"
        } else {
            "http"
        }
    }
}

/// A whole farm, validated: the result of reading a topology file or the built-in default.
#[derive(Debug, Clone, PartialEq)]
pub struct Farm {
    /// The site's DNS name, `www.foobar.com` by default.
    pub site: String,
    /// Where the nodes keep their data: `<data_dir>/<node name>/`.
    pub data_dir: PathBuf,
    /// Every node, in file order.
    pub nodes: Vec<Node>,
    /// The load balancers' listeners.
    pub frontends: Vec<Frontend>,
    /// The backends the frontends send requests to.
    pub backends: Vec<Backend>,
    /// Settings of every lb node (`[lb]`).
    pub lb: LbSettings,
    /// Web role settings.
    pub web: WebSettings,
    /// Db role settings.
    pub db: DbSettings,
    /// The farm's own TLS (`[tls]`).
    pub tls: TlsSettings,
    /// Monitor role settings (`[monitor]`).
    pub monitor: MonitorSettings,
    /// Dns role settings (`[dns]`).
    pub dns: DnsSettings,
    /// `[acme]`: the site certificate from an ACME CA; `None` when the table is absent (the
    /// farm CA's site certificate is served).
    pub acme: Option<AcmeSettings>,
    /// The file this farm was read from; `None` for the built-in default.
    pub source: Option<PathBuf>,
    /// The lb nodes' virtual routers (`[[vrrp]]`, VRRPv3); empty without.
    pub vrrp: Vec<VrrpInstance>,
    /// `[firewall]`: operators' networks and extra rules of the host firewalls.
    pub firewall: FirewallSettings,
}

/// The built-in default farm: the text of the repository's `farm.toml`.
pub const DEFAULT_FARM_TOML: &str = include_str!("../../../farm.toml");

const DEFAULT_ADMIN_PORT: u16 = 9000;
const DEFAULT_WEB_PORT: u16 = 8000;
const DEFAULT_DB_PORT: u16 = 4001;
const DEFAULT_RAFT_PORT: u16 = 4002;
const DEFAULT_DASHBOARD_PORT: u16 = 3000;

impl Farm {
    /// The built-in default farm (the seed design), with relative paths resolved against the
    /// current directory.
    ///
    /// # Panics
    ///
    /// Never in a released binary: a test checks that the embedded file is valid.
    pub fn builtin() -> Farm {
        Farm::parse(DEFAULT_FARM_TOML, None, Path::new("."))
            .expect("the built-in default farm is valid")
    }

    /// Reads and validates the topology file at `path`. Relative paths inside it resolve
    /// against the file's directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Parse`] for TOML or
    /// type errors, [`ConfigError::Invalid`] for a farm that cannot run.
    pub fn load(path: &Path) -> Result<Farm, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        Farm::parse(&text, Some(path), base)
    }

    /// Parses and validates topology `text`. `source` names the file in errors; `base` is the
    /// directory relative paths resolve against.
    ///
    /// # Errors
    ///
    /// As [`Farm::load`], without `Read`.
    pub fn parse(text: &str, source: Option<&Path>, base: &Path) -> Result<Farm, ConfigError> {
        let file = match source {
            Some(p) => p.display().to_string(),
            None => "<built-in default farm>".to_string(),
        };
        let raw = parse_raw(text, &file)?;
        // `base_dir` (set in derived files, e.g. `webfarm up --netns`'s) moves where
        // relative paths resolve; a relative one resolves against `base`.
        let base = match &raw.base_dir {
            Some(dir) => base.join(dir),
            None => base.to_path_buf(),
        };
        let mut farm = Farm::from_raw(raw, &base)
            .map_err(|problems| ConfigError::Invalid { file, problems })?;
        farm.source = source.map(Path::to_path_buf);
        Ok(farm)
    }

    /// Stage two: applies defaults and checks every rule; returns every problem found.
    fn from_raw(raw: RawFarm, base: &Path) -> Result<Farm, Vec<String>> {
        let mut problems = Vec::new();
        let nodes = resolve_nodes(&raw.nodes, &mut problems);
        let backends = resolve_backends(&raw.backends, &nodes, &mut problems);
        let frontends = resolve_frontends(&raw, &backends, &nodes, base, &mut problems);
        let lb = resolve_lb(&raw.lb, &mut problems);
        let vrrp = resolve_vrrp(&raw.vrrp, &nodes, &mut problems);
        let firewall = resolve_firewall(&raw.firewall, &nodes, &mut problems);

        let has = |role| nodes.iter().any(|n: &Node| n.role == role);
        if has(Role::Web) && !has(Role::Db) {
            problems.push(
                "nodes: the farm has web nodes but no db node; add a [[nodes]] with role = \"db\""
                    .into(),
            );
        }
        if has(Role::Db)
            && !nodes
                .iter()
                .any(|n| n.role == Role::Db && n.replica == Replica::Voter)
        {
            problems.push(
                "nodes: every db node is a learner; a cluster needs at least one voter (replica \
                 = \"voter\", the default)"
                    .into(),
            );
        }
        if has(Role::Lb) && frontends.is_empty() {
            problems.push(
                "frontends: the farm has lb nodes but no frontend; add a [[frontends]] table"
                    .into(),
            );
        }

        let web = WebSettings {
            root: base.join(raw.web.root.as_deref().unwrap_or("site")),
            db_timeout: raw.web.db_timeout.unwrap_or(Duration::from_secs(10)),
            db_credentials: web_db_credentials(&raw, base, has(Role::Web), &mut problems),
        };
        if web.db_timeout.is_zero() {
            problems.push("web.db_timeout: must be greater than 0".into());
        }
        let db = DbSettings {
            heartbeat_interval: raw
                .db
                .heartbeat_interval
                .unwrap_or(Duration::from_millis(100)),
            election_timeout: raw
                .db
                .election_timeout
                .unwrap_or(Duration::from_millis(300)),
            snapshot_threshold: raw.db.snapshot_threshold.unwrap_or(8192),
            auth: raw.db.auth.as_deref().map(|p| base.join(p)),
        };
        if db.heartbeat_interval.is_zero() || db.heartbeat_interval >= db.election_timeout {
            problems.push(format!(
                "db.heartbeat_interval: {:?} must be greater than 0 and less than \
                 db.election_timeout ({:?})",
                db.heartbeat_interval, db.election_timeout
            ));
        }
        if db.snapshot_threshold == 0 {
            problems.push("db.snapshot_threshold: must be at least 1".into());
        }
        if let Some(site) = &raw.site {
            if let Err(why) = check_dns_name(site) {
                problems.push(format!("site: {site:?} {why}"));
            }
        }
        let site = raw.site.clone().unwrap_or_else(|| "www.foobar.com".into());
        let acme = resolve_acme(raw.acme.as_ref(), &site, base, &mut problems);
        let monitor = resolve_monitor(&raw.monitor, &mut problems);
        let dns = resolve_dns(&raw.dns, &site, &mut problems);
        check_dns_farm(has, &dns, &frontends, &mut problems);
        if acme.is_some() {
            check_acme_farm(&nodes, &frontends, &mut problems);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Farm {
            site,
            data_dir: base.join(raw.data_dir.as_deref().unwrap_or("farm-data")),
            nodes,
            frontends,
            backends,
            lb,
            web,
            db,
            tls: TlsSettings {
                internal: raw.tls.internal.unwrap_or(true),
            },
            acme,
            monitor,
            dns,
            source: None,
            vrrp,
            firewall,
        })
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every node of `role`, in file order.
    pub fn nodes_with_role(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// Every virtual IP of every `[[vrrp]]` instance, in file order.
    pub fn vips(&self) -> Vec<IpAddr> {
        self.vrrp
            .iter()
            .flat_map(|v| v.vips.iter().copied())
            .collect()
    }

    /// The addresses the site's name resolves to: the VIPs when `[[vrrp]]` is configured,
    /// else every lb node's address, in file order. Every dns node health-checks exactly
    /// these and answers the site's A/AAAA with those that pass.
    pub fn site_addresses(&self) -> Vec<IpAddr> {
        match self.vips() {
            vips if !vips.is_empty() => vips,
            _ => self.nodes_with_role(Role::Lb).map(|n| n.address).collect(),
        }
    }

    /// The data directory of node `name`: `<data_dir>/<name>`.
    pub fn node_data_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    /// Warnings about a farm that runs but is fragile, one line each.
    ///
    /// Today: a db cluster with an even number of voters, which survives no more failures
    /// than the next smaller odd cluster (Raft needs a majority: `n/2 + 1`). Learners do not
    /// count: they never vote. With `[acme]`: no plain HTTP frontend on port 80 (where ACME
    /// servers validate http-01), or no HTTPS frontend serving the site certificate.
    pub fn warnings(&self) -> Vec<String> {
        let voters = self
            .nodes_with_role(Role::Db)
            .filter(|n| n.replica == Replica::Voter)
            .count();
        let mut out = Vec::new();
        if !self.tls.internal {
            out.push(
                "[tls] internal = false: traffic between the farm's nodes (lb → web, web → db, \
                 db ↔ db, admin ports) is plain text and unauthenticated; use it for debugging \
                 only"
                    .to_string(),
            );
        }
        if voters > 0 && voters.is_multiple_of(2) {
            let survives = (voters - 1) / 2;
            out.push(format!(
                "the db cluster has {voters} voters: a majority is {}, so it survives {survives} \
                 failure{}, no more than {} voter{} would; add one db node (or remove one) for \
                 an odd count",
                voters / 2 + 1,
                if survives == 1 { "" } else { "s" },
                voters - 1,
                if voters - 1 == 1 { "" } else { "s" },
            ));
        }
        if self.acme.is_some() {
            acme_warnings(&self.frontends, &mut out);
        }
        out
    }
}

/// Stage one: TOML to [`RawFarm`], with the key path of the first error.
fn parse_raw(text: &str, file: &str) -> Result<RawFarm, ConfigError> {
    let located = |e: &toml::de::Error| match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" (line {line}, column {col})")
        }
        None => String::new(),
    };
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
        file: file.into(),
        key: ".".into(),
        message: e.message().trim().to_string(),
        location: located(&e),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::Parse {
            file: file.into(),
            key,
            message: inner.message().trim().to_string(),
            location: located(&inner),
        }
    })
}

/// `[web] db_user` and `db_password_file`: both or neither, and both when `[db] auth` names
/// the user's own auth file (the generated `web` user is not in it).
fn web_db_credentials(
    raw: &RawFarm,
    base: &Path,
    has_web: bool,
    problems: &mut Vec<String>,
) -> Option<(String, PathBuf)> {
    match (&raw.web.db_user, &raw.web.db_password_file) {
        (Some(user), Some(file)) if !user.is_empty() && !user.contains(':') => {
            Some((user.clone(), base.join(file)))
        }
        (Some(_), Some(_)) => {
            problems
                .push("web.db_user: a user name, not empty and without ':' (HTTP Basic)".into());
            None
        }
        (Some(_), None) | (None, Some(_)) => {
            problems.push(
                "web.db_user and web.db_password_file: set both (the user of the db's auth \
                 file the web tier calls as, and the file with its password) or neither"
                    .into(),
            );
            None
        }
        (None, None) => {
            if has_web && raw.db.auth.is_some() {
                problems.push(
                    "db.auth names your own auth file: say which of its users the web tier \
                     calls as, with [web] db_user and db_password_file (it needs execute and \
                     query)"
                        .into(),
                );
            }
            None
        }
    }
}

fn resolve_nodes(raw: &[RawNode], problems: &mut Vec<String>) -> Vec<Node> {
    let mut names = HashSet::new();
    let mut bound: HashMap<SocketAddr, String> = HashMap::new();
    let mut nodes = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("nodes[{i}]");
        if !valid_name(&r.name) {
            problems.push(format!(
                "{key}.name: {:?} is not a valid node name; use letters, digits, '-' and '_'",
                r.name
            ));
        } else if !names.insert(r.name.clone()) {
            problems.push(format!(
                "{key}.name: duplicate node name {:?}; node names must be unique",
                r.name
            ));
        }
        let address: IpAddr = match r.address.parse() {
            Ok(a) => a,
            Err(_) => {
                problems.push(format!(
                    "{key}.address: {:?} is not an IP address; expected e.g. \"127.0.1.21\"",
                    r.address
                ));
                continue;
            }
        };
        let (port, raft_port) = role_ports(r, &key, problems);
        let node = Node {
            name: r.name.clone(),
            role: r.role,
            address,
            admin_port: r.admin_port.unwrap_or(DEFAULT_ADMIN_PORT),
            port,
            raft_port,
            replica: r.replica.unwrap_or_default(),
        };
        if r.replica.is_some() && r.role != Role::Db {
            problems.push(format!(
                "{key}.replica: only db nodes are replicas (voter or learner); remove it"
            ));
        }
        check_unique_ports(&node, &key, &mut bound, problems);
        nodes.push(node);
    }
    nodes
}

/// A node's service ports by role: an lb's come from `[[frontends]]` (0 here), a web node has
/// its HTTP port, a db node its SQL API and Raft ports, a monitor its dashboard's port, a
/// dns node its DNS port (UDP and TCP).
fn role_ports(r: &RawNode, key: &str, problems: &mut Vec<String>) -> (u16, u16) {
    match r.role {
        Role::Lb => {
            if r.port.is_some() || r.raft_port.is_some() {
                problems.push(format!(
                    "{key}.port: an lb node takes its ports from [[frontends]]; remove it"
                ));
            }
            (0, 0)
        }
        Role::Web | Role::Monitor | Role::Dns => {
            if r.raft_port.is_some() {
                problems.push(format!(
                    "{key}.raft_port: only db nodes have a raft port; remove it"
                ));
            }
            let default = match r.role {
                Role::Web => DEFAULT_WEB_PORT,
                Role::Dns => DEFAULT_DNS_PORT,
                _ => DEFAULT_DASHBOARD_PORT,
            };
            (r.port.unwrap_or(default), 0)
        }
        Role::Db => (
            r.port.unwrap_or(DEFAULT_DB_PORT),
            r.raft_port.unwrap_or(DEFAULT_RAFT_PORT),
        ),
    }
}

/// Records `node`'s `address:port`s in `bound` (what holds each so far), with a problem for
/// port 0 and for an `address:port` another node or port already holds.
fn check_unique_ports(
    node: &Node,
    key: &str,
    bound: &mut HashMap<SocketAddr, String>,
    problems: &mut Vec<String>,
) {
    let mut ports = vec![("admin_port", node.admin_port)];
    if node.port != 0 {
        ports.push(("port", node.port));
    }
    if node.raft_port != 0 {
        ports.push(("raft_port", node.raft_port));
    }
    for (field, p) in ports {
        if p == 0 {
            problems.push(format!("{key}.{field}: port 0 is not allowed"));
            continue;
        }
        let sa = SocketAddr::new(node.address, p);
        let who = format!("{key}.{field} ({})", node.name);
        if let Some(other) = bound.insert(sa, who) {
            problems.push(format!(
                "{key}.{field}: {sa} is already used by {other}; every address:port must \
                 be unique"
            ));
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks that `site` is a DNS name (RFC 1123 §2.1: labels of ASCII letters, digits and `-`,
/// not starting or ending with `-`, at most 63 bytes each, 253 in all): the site travels as
/// the `Host` header and names the farm in every Raft request; an SNI route's name is
/// checked the same way. Internationalised names go in their ASCII (punycode) form.
pub(crate) fn check_dns_name(site: &str) -> Result<(), String> {
    if site.is_empty() || site.len() > 253 {
        return Err("must be a DNS name of 1 to 253 characters".into());
    }
    for label in site.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "is not a DNS name: label {label:?} must be 1 to 63 ASCII letters, digits or \
                 '-', not starting or ending with '-' (write internationalised names in \
                 punycode)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod replica_tests {
    use super::*;

    fn farm(nodes: &str) -> Result<Farm, ConfigError> {
        Farm::parse(nodes, None, Path::new("."))
    }

    const DB: &str = "[[nodes]]\nrole = \"db\"\naddress = \"127.0.0.1\"\n";

    #[test]
    fn db_nodes_are_voters_unless_declared_learners() {
        let text = format!(
            "{DB}name = \"db-1\"\nport = 1\nraft_port = 2\nadmin_port = 3\n\
             {DB}name = \"db-2\"\nport = 4\nraft_port = 5\nadmin_port = 6\nreplica = \"voter\"\n\
             {DB}name = \"db-3\"\nport = 7\nraft_port = 8\nadmin_port = 9\nreplica = \"learner\"\n"
        );
        let f = farm(&text).expect("valid");
        let kinds: Vec<Replica> = f.nodes.iter().map(|n| n.replica).collect();
        assert_eq!(kinds, [Replica::Voter, Replica::Voter, Replica::Learner]);
        // Two voters and a learner: the learner does not make the count odd.
        assert_eq!(f.warnings().len(), 1, "{:?}", f.warnings());
        assert!(f.warnings()[0].contains("2 voters"), "{:?}", f.warnings());
    }

    #[test]
    fn replica_is_refused_on_other_roles_and_learners_alone() {
        let text = "[[nodes]]\nname = \"web-1\"\nrole = \"web\"\naddress = \"127.0.0.1\"\n\
                    replica = \"learner\"\n[[nodes]]\nname = \"db-1\"\nrole = \"db\"\n\
                    address = \"127.0.0.2\"\nreplica = \"learner\"\n";
        let e = farm(text).expect_err("invalid").to_string();
        assert!(e.contains("nodes[0].replica: only db nodes"), "{e}");
        assert!(e.contains("every db node is a learner"), "{e}");
        let e = farm(&format!("{DB}name = \"db-1\"\nreplica = \"observer\"\n"))
            .expect_err("unknown kind")
            .to_string();
        assert!(e.contains("replica"), "{e}");
    }
}
