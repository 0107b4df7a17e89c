//! Hot reload of the live configuration (SIGHUP, `POST /lb/reload`): the topology file is
//! read again and, if valid and applicable without a restart, a new snapshot replaces the
//! current one with the next reload generation.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use http::HeaderValue;
use webfarm_config::{ConfigError, Farm, Role};

use super::live::{build, thread_count, LiveConfig, Snapshot};
use crate::backend::server::ServerState;

/// Why a reload was refused; the running configuration stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The node runs the built-in farm, which cannot change.
    #[error(
        "this node runs the built-in farm, which cannot change; start it with --config FILE \
         to reload from a file"
    )]
    BuiltIn,
    /// The file is invalid.
    #[error("the new configuration is invalid, keeping the running one: {0}")]
    Config(#[from] ConfigError),
    /// A certificate of the new configuration cannot be used (the error names the file).
    #[error("a certificate cannot be used, keeping the running configuration: {0}")]
    Tls(#[from] webfarm_tls::TlsError),
    /// The file is valid but cannot be applied without a restart.
    #[error("cannot apply {file} without a restart, keeping the running configuration: {reason}")]
    NeedsRestart {
        /// The file.
        file: PathBuf,
        /// What changed.
        reason: String,
    },
}

/// What a reload changed, for logs and the admin answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The file read.
    pub file: PathBuf,
    /// Backends that did not exist before.
    pub backends_added: Vec<String>,
    /// Backends that are gone.
    pub backends_removed: Vec<String>,
    /// `backend/server` of servers that are new or whose options changed.
    pub servers_added: Vec<String>,
    /// `backend/server` of servers that are gone (or replaced).
    pub servers_removed: Vec<String>,
    /// The reload generation now in force: 0 as started, one more with each applied reload.
    pub generation: u64,
    /// TLS frontends whose certificates were read again (and swapped in).
    pub certificates_reloaded: usize,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "reloaded {} (generation {}): backends added: {}; removed: {}; servers added: {}; \
             removed: {}; certificates of {} TLS frontend(s) reloaded",
            self.file.display(),
            self.generation,
            list(&self.backends_added),
            list(&self.backends_removed),
            list(&self.servers_added),
            list(&self.servers_removed),
            self.certificates_reloaded
        )
    }
}

impl LiveConfig {
    /// Re-reads the topology file the node was started with and applies it: new and changed
    /// backends, servers, weights and settings take effect for the next request; requests
    /// in flight and idle keep-alive connections are kept. Frontends (names, ports, modes),
    /// this node's own address and the number of `[lb] threads` cannot change without a
    /// restart.
    ///
    /// # Errors
    ///
    /// [`ReloadError`]; the running configuration is then unchanged, and the count of
    /// refused reloads ([`LiveConfig::reloads_refused`]) one more.
    pub fn reload(self: &Arc<Self>) -> Result<ReloadSummary, ReloadError> {
        let _serial = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let applied = self.apply_file();
        if applied.is_err() {
            self.reloads_refused.fetch_add(1, Ordering::AcqRel);
        }
        applied
    }

    /// The reload itself (called with the reload lock held).
    fn apply_file(self: &Arc<Self>) -> Result<ReloadSummary, ReloadError> {
        let old = self.snapshot();
        let Some(file) = old.farm.source.clone() else {
            // The built-in farm cannot change, but its certificate files can.
            if !self.tls.by_index.iter().any(Option::is_some) {
                return Err(ReloadError::BuiltIn);
            }
            let certificates_reloaded = self.tls.reload(&old.farm)?;
            return Ok(ReloadSummary {
                file: PathBuf::from("<built-in farm>"),
                generation: old.generation,
                certificates_reloaded,
                ..ReloadSummary::default()
            });
        };
        let mut farm = Farm::load(&file)?;
        // The node keeps the data directory it was started with (`--data-dir`).
        farm.data_dir.clone_from(&old.farm.data_dir);
        self.check_restartable(&farm, &old.farm)
            .map_err(|reason| ReloadError::NeedsRestart {
                file: file.clone(),
                reason,
            })?;
        let site = HeaderValue::from_str(&farm.site).map_err(|_| ReloadError::NeedsRestart {
            file: file.clone(),
            reason: format!("site {:?} is not a valid Host", farm.site),
        })?;
        // Certificates first: if one cannot be used, nothing has changed yet.
        let certificates_reloaded = self.tls.reload(&farm)?;
        let upstream = (self.limits, self.upstream_tls.as_ref());
        let snapshot = build(Arc::new(farm), site, upstream, Some(&old));
        let mut summary = summarize(file, &old, &snapshot);
        summary.certificates_reloaded = certificates_reloaded;
        self.snapshot.store(Arc::new(snapshot));
        self.sync_checks();
        tracing::info!("{summary}");
        Ok(summary)
    }

    /// `Err(reason)` when `farm` changes what needs a restart, compared with `old`: this
    /// node's role or address, the number of `[lb] threads`, the frontends, `[acme]`,
    /// `[[vrrp]]`.
    fn check_restartable(&self, farm: &Farm, old: &Farm) -> Result<(), String> {
        match farm.node(&self.node.name) {
            Some(n) if n.role == Role::Lb && n.address == self.node.address => {}
            Some(_) => {
                return Err(format!(
                    "node {:?} changed its role or address",
                    self.node.name
                ))
            }
            None => {
                return Err(format!(
                    "node {:?} is no longer in the file",
                    self.node.name
                ))
            }
        }
        let shape = |f: &Farm| -> Vec<(String, u16, &'static str, bool)> {
            f.frontends
                .iter()
                .map(|fe| (fe.name.clone(), fe.port, fe.mode.as_str(), fe.tls.is_some()))
                .collect()
        };
        if thread_count(farm.lb.threads) != self.limits.shards {
            return Err(
                "[lb] threads changed; restart the node to run the new number of threads".into(),
            );
        }
        if shape(farm) != shape(old) {
            return Err(
                "the frontends changed (added, removed, a new port or mode, TLS turned on or \
                 off); restart the node to listen on the new set"
                    .into(),
            );
        }
        if farm.acme != old.acme {
            return Err(
                "[acme] changed; restart the node to order with the new settings (the ACME \
                 client starts with the node)"
                    .into(),
            );
        }
        if farm.vrrp != old.vrrp {
            return Err(
                "[[vrrp]] changed; restart the lb nodes one at a time (the backup takes the                  VIPs meanwhile) to run the new virtual routers"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What changed from `old` to `new`.
fn summarize(file: PathBuf, old: &Snapshot, new: &Snapshot) -> ReloadSummary {
    let names =
        |s: &Snapshot| -> Vec<String> { s.backends.iter().map(|b| b.name().into()).collect() };
    let (old_b, new_b) = (names(old), names(new));
    let mut summary = ReloadSummary {
        file,
        generation: new.generation,
        backends_added: new_b
            .iter()
            .filter(|n| !old_b.contains(n))
            .cloned()
            .collect(),
        backends_removed: old_b
            .iter()
            .filter(|n| !new_b.contains(n))
            .cloned()
            .collect(),
        ..ReloadSummary::default()
    };
    let servers = |s: &Snapshot| -> Vec<Arc<ServerState>> {
        s.backends
            .iter()
            .flat_map(|b| b.servers.iter().map(|srv| srv.state.clone()))
            .collect()
    };
    let (old_s, new_s) = (servers(old), servers(new));
    let kept =
        |s: &Arc<ServerState>, other: &[Arc<ServerState>]| other.iter().any(|o| Arc::ptr_eq(o, s));
    summary.servers_added = new_s
        .iter()
        .filter(|s| !kept(s, &old_s))
        .map(|s| s.id.clone())
        .collect();
    summary.servers_removed = old_s
        .iter()
        .filter(|s| !kept(s, &new_s))
        .map(|s| s.id.clone())
        .collect();
    summary
}
