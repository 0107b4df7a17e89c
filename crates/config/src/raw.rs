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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrontend {
    pub name: String,
    pub port: u16,
    pub default_backend: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub name: String,
    #[serde(default)]
    pub balance: crate::Balance,
    pub retries: Option<u32>,
    #[serde(default)]
    pub check: RawCheck,
    #[serde(default)]
    pub servers: Vec<RawServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    pub path: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub inter: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub name: Option<String>,
    pub address: Option<String>,
    pub weight: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeb {
    pub root: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub db_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDb {
    #[serde(default, with = "humantime_serde")]
    pub heartbeat_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub election_timeout: Option<Duration>,
    pub snapshot_threshold: Option<u64>,
}
