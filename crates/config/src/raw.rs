//! The topology file as written: every field optional, nothing resolved.
//!
//! Parsing is stage one (this module, serde); validation and defaults are stage two
//! ([`crate::Farm::from_raw`]).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFarm {
    pub site: Option<String>,
    pub data_dir: Option<String>,
    /// The directory relative paths resolve against (default: the file's).
    pub base_dir: Option<String>,
    #[serde(default)]
    pub nodes: Vec<RawNode>,
    #[serde(default)]
    pub frontends: Vec<RawFrontend>,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
    #[serde(default)]
    pub web: RawWeb,
    #[serde(default)]
    pub db: RawDb,
    #[serde(default)]
    pub lb: RawLb,
    #[serde(default)]
    pub tls: RawTls,
    pub acme: Option<RawAcme>,
    #[serde(default)]
    pub monitor: RawMonitor,
    #[serde(default)]
    pub dns: crate::dns::RawDns,
    #[serde(default)]
    pub vrrp: Vec<crate::vrrp::RawVrrp>,
    #[serde(default)]
    pub firewall: crate::firewall::RawFirewall,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMonitor {
    #[serde(default, with = "humantime_serde")]
    pub scrape_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub scrape_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub history: Option<Duration>,
    #[serde(default)]
    pub alerts: RawAlerts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerts {
    pub server_down: Option<RawRule>,
    pub backend_servers_up: Option<RawRule>,
    pub no_db_leader: Option<RawRule>,
    pub replication_lag: Option<RawRule>,
    pub error_rate: Option<RawRule>,
    pub latency_p99: Option<RawRule>,
    pub certificate_expiry: Option<RawRule>,
    pub disk_free: Option<RawRule>,
    pub webhooks: Option<Vec<String>>,
}

/// `{ threshold = 2, for = "10s", enabled = true }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub threshold: Option<f64>,
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Option<Duration>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub internal: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub directory: Option<String>,
    pub contact: Option<Vec<String>>,
    pub names: Option<Vec<String>>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub name: String,
    pub role: crate::Role,
    pub address: String,
    pub admin_port: Option<u16>,
    pub port: Option<u16>,
    pub raft_port: Option<u16>,
    pub replica: Option<crate::Replica>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrontend {
    pub name: String,
    pub port: u16,
    pub default_backend: String,
    pub mode: Option<crate::Mode>,
    pub maxconn: Option<u32>,
    #[serde(default)]
    pub timeout: RawFrontendTimeouts,
    pub max_header_size: Option<usize>,
    pub max_body_size: Option<u64>,
    pub tls: Option<RawFrontendTls>,
    pub redirect_https: Option<bool>,
    pub sni_routes: Option<Vec<RawSniRoute>>,
    #[serde(default, with = "humantime_serde")]
    pub inspect_delay: Option<Duration>,
    /// Access control (crates/config/src/lb/acl/): HAProxy's `acl`, `tcp-request
    /// connection`, `http-request` lines and `stick-table`.
    pub acl: Option<Vec<String>>,
    pub tcp_request_connection: Option<Vec<String>>,
    pub http_request: Option<Vec<String>>,
    pub stick_table: Option<crate::lb::RawStickTable>,
}

/// `{ sni = "db.foobar.com", backend = "db-api" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSniRoute {
    pub sni: String,
    pub backend: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrontendTls {
    pub certs: Option<Vec<RawCert>>,
    /// A duration (`"1y"`), or `"off"`.
    pub hsts: Option<String>,
}

/// A certificate: one combined PEM file (chain and key, HAProxy's `crt`), or two files.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawCert {
    Combined(String),
    Pair { cert: String, key: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrontendTimeouts {
    #[serde(default, with = "humantime_serde")]
    pub client: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub http_request: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub http_keep_alive: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub tarpit: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub name: String,
    pub mode: Option<crate::Mode>,
    pub balance: Option<String>,
    pub hash_type: Option<crate::HashType>,
    pub retries: Option<u32>,
    pub redispatch: Option<bool>,
    pub retry_on: Option<Vec<String>>,
    pub allbackups: Option<bool>,
    #[serde(default)]
    pub timeout: RawBackendTimeouts,
    pub cookie: Option<RawCookie>,
    #[serde(default)]
    pub check: RawCheck,
    #[serde(default)]
    pub servers: Vec<RawServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackendTimeouts {
    #[serde(default, with = "humantime_serde")]
    pub connect: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub server: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub queue: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCookie {
    pub name: String,
    pub insert: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    #[serde(rename = "type")]
    pub kind: Option<crate::CheckType>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    #[serde(default, with = "humantime_serde")]
    pub inter: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub fastinter: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub downinter: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub observe: Option<crate::Observe>,
    pub error_limit: Option<u32>,
    pub on_error: Option<crate::OnError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub name: Option<String>,
    pub address: Option<String>,
    pub weight: Option<u32>,
    pub backup: Option<bool>,
    pub maxconn: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub slowstart: Option<Duration>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLb {
    pub maxconn: Option<u32>,
    pub access_log: Option<crate::AccessLog>,
    pub threads: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeb {
    pub root: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub db_timeout: Option<Duration>,
    pub db_user: Option<String>,
    pub db_password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDb {
    #[serde(default, with = "humantime_serde")]
    pub heartbeat_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub election_timeout: Option<Duration>,
    pub snapshot_threshold: Option<u64>,
    pub auth: Option<String>,
}
