//! `GET /metrics` of every node: Prometheus text exposition (format 0.0.4) written by
//! prometheus-client from an explicit [`Registry`] per admin server, so several nodes in one
//! process (as tests run them) never share a global recorder.
//!
//! Every node exposes:
//! - the `process_*` families of Prometheus's client libraries (CPU seconds, resident and
//!   virtual memory, open and maximum file descriptors, start time), read from `/proc/self`
//!   at scrape time ([`ProcessStats`]);
//! - `webfarm_build_info{version,git_commit} 1` ([`BuildInfo`], set once by the binary);
//! - `webfarm_data_dir_{size,available}_bytes`: the data directory's filesystem
//!   ([`set_data_dir`], set once by the binary);
//! - the role's own families, written at scrape time by [`crate::Health::metrics`] from
//!   the counters the role keeps anyway (the lb's atomics, openraft's metrics...).
//!
//! Roles write families through [`Scrape`]; a latency or size distribution that is
//! observed on a hot path is an atomic-bucket [`Histogram`].

mod disk;
mod histogram;
mod process;
mod scrape;

use std::fmt;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

pub use disk::set_data_dir;
pub use histogram::{Histogram, HistogramSnapshot, FSYNC_SECONDS, LATENCY_SECONDS, SIZES};
pub use process::ProcessStats;
pub use scrape::Scrape;

use crate::access::Refusals;
use crate::Health;

/// The `Content-Type` of `/metrics`: Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What `webfarm_build_info` says: the version and the git commit the binary was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The crate version, e.g. `0.1.0`.
    pub version: String,
    /// The commit's hash (12 hex digits), or `unknown` when built outside a git checkout.
    pub git_commit: String,
}

static BUILD_INFO: OnceLock<BuildInfo> = OnceLock::new();

/// Sets the build information of this process (the binary does, at start; later calls are
/// ignored). Without it, nodes report this crate's version and commit `unknown`.
pub fn set_build_info(info: BuildInfo) {
    let _ = BUILD_INFO.set(info);
}

/// The build information of this process.
pub fn build_info() -> &'static BuildInfo {
    BUILD_INFO.get_or_init(|| BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: "unknown".to_string(),
    })
}

/// The registry of one admin server: process, build and the role's metrics.
pub(crate) fn registry(health: Arc<dyn Health>, refusals: Option<Arc<Refusals>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector(health, refusals)));
    registry
}

/// The `/metrics` text of a node whose role reports through `health`: what its admin server
/// answers, for a caller that has the node at hand (a test, an in-process farm).
///
/// # Errors
/// A collector's error (none of ours fails but on a writer error).
pub fn text(health: Arc<dyn Health>) -> Result<String, fmt::Error> {
    render(&registry(health, None))
}

/// Writes `registry` in the Prometheus text format.
///
/// # Errors
/// A collector's error (none of ours fails but on a writer error).
pub(crate) fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

/// Reads everything at scrape time: `/proc/self`, the build, the role.
struct NodeCollector(Arc<dyn Health>, Option<Arc<Refusals>>);

impl fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeCollector")
    }
}

impl Collector for NodeCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut s = Scrape::new(encoder);
        match ProcessStats::read() {
            Ok(stats) => stats.write(&mut s)?,
            Err(e) => tracing::debug!("no process metrics: {e}"),
        }
        let build = build_info();
        s.info(
            "webfarm_build_info",
            "The version and git commit webfarm was built from.",
            &[
                ("version", build.version.as_str()),
                ("git_commit", build.git_commit.as_str()),
            ],
        )?;
        disk::write(&mut s)?;
        if let Some(refusals) = &self.1 {
            s.counters(
                "webfarm_admin_auth_refusals_total",
                "Calls refused by an operator-only route, by reason: no_credentials, bad_token (without internal TLS), wrong_peer (a farm certificate not allowed there).",
                refusals.counts().map(|(reason, n)| ([("reason", reason)], n)),
            )?;
        }
        self.0.metrics(&mut s)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::status::{LbStatus, RoleStatus};

    struct Fake(Histogram);

    impl Health for Fake {
        fn ready(&self) -> Result<(), String> {
            Ok(())
        }
        fn status(&self) -> RoleStatus {
            RoleStatus::Lb(LbStatus {
                frontends: vec![],
                backends: vec![],
                conns: 0,
                threads: 1,
                generation: 0,
                reloads_refused: 0,
                vrrp: vec![],
            })
        }
        fn metrics(&self, s: &mut Scrape<'_>) -> fmt::Result {
            s.counters(
                "haproxy_backend_http_responses_total",
                "Responses by class.",
                [([("proxy", "web"), ("code", "2xx")], 7u64)],
            )?;
            s.counters(
                "empty_total",
                "Left out.",
                Vec::<([(&str, &str); 0], u64)>::new(),
            )?;
            s.histograms(
                "haproxy_backend_total_time_seconds",
                "Total time.",
                [([("proxy", "web")], &self.0)],
            )
        }
    }

    #[test]
    fn renders_process_build_and_role_families_in_prometheus_text() {
        let h = Histogram::seconds(&[0.01, 0.1]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        let text = render(&registry(Arc::new(Fake(h)), None)).unwrap();
        for line in [
            "# TYPE haproxy_backend_http_responses_total counter",
            "haproxy_backend_http_responses_total{proxy=\"web\",code=\"2xx\"} 7",
            "# TYPE haproxy_backend_total_time_seconds histogram",
            "haproxy_backend_total_time_seconds_bucket{proxy=\"web\",le=\"0.01\"} 1",
            "haproxy_backend_total_time_seconds_bucket{proxy=\"web\",le=\"0.1\"} 2",
            "haproxy_backend_total_time_seconds_bucket{proxy=\"web\",le=\"+Inf\"} 2",
            "haproxy_backend_total_time_seconds_count{proxy=\"web\"} 2",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE webfarm_build_info gauge",
            "webfarm_build_info{version=\"0.1.0\",git_commit=\"unknown\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("empty"), "{text}");
    }
}
