//! TLS termination on HTTP frontends (HAProxy's `bind ... ssl crt`): each TLS frontend's
//! certificates, loaded and checked before the node starts, the rustls acceptor that picks
//! one by SNI, and their replacement without a restart.
//!
//! Certificates are swapped (new handshakes get the new ones; open connections keep
//! theirs) on a reload (SIGHUP, `webfarm reload`, `POST /lb/reload`), and when a
//! certificate or key file changes on disk: [`watch`] compares the files' modification
//! time, size and inode every [`WATCH_PERIOD`] (polling: a handful of `stat` calls, and it
//! sees a file replaced by rename as ACME clients and `webfarm ca` write them). A set that
//! fails to load is refused whole and the running certificates stay.
//!
//! Handshake failures (scanners, clients that distrust the certificate, TLS 1.0) are
//! counted; they are logged at debug level each, and summed at warn level at most once per
//! [`FAILURE_LOG_PERIOD`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio_rustls::TlsAcceptor;
use webfarm_config::{CertFiles, Farm};
use webfarm_node::Shutdown;
use webfarm_tls::cert::LoadedCert;
use webfarm_tls::resolver::{CertSet, SniResolver};
use webfarm_tls::{server, TlsError};

/// How often certificate files are checked for changes.
pub(crate) const WATCH_PERIOD: Duration = Duration::from_secs(1);
/// Handshake failures are summed in one warning at most this often.
pub(crate) const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(10);

/// One loaded certificate, as `/status` shows it.
#[derive(Debug, Clone)]
pub(crate) struct CertSummary {
    /// Its file.
    pub file: PathBuf,
    /// The names it covers.
    pub names: String,
    /// `notAfter`.
    pub not_after: SystemTime,
}

/// A TLS frontend's live state.
pub(crate) struct TlsFrontend {
    /// The frontend's name.
    pub name: String,
    /// Accepts connections with the current certificates.
    pub acceptor: TlsAcceptor,
    resolver: Arc<SniResolver>,
    /// The certificates in force.
    pub certs: Mutex<Vec<CertSummary>>,
    /// Failed handshakes since the start.
    pub failures: AtomicU64,
    last_warning: Mutex<(Instant, u64)>,
}

impl std::fmt::Debug for TlsFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFrontend")
            .field("name", &self.name)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// Every frontend's TLS state, by frontend index (`None`: plain TCP).
#[derive(Debug, Default)]
pub(crate) struct TlsFrontends {
    pub by_index: Vec<Option<Arc<TlsFrontend>>>,
}

/// The certificate files of a frontend: its own, or the farm's site certificate when it
/// lists none — the ACME one (`<data_dir>/acme/site.pem`) once `[acme]` obtained it, else
/// the farm CA's.
pub(crate) fn files_of(certs: &[CertFiles], farm: &Farm) -> Vec<CertFiles> {
    if !certs.is_empty() {
        return certs.to_vec();
    }
    if let Some(pem) = crate::acme::site_certificate(farm) {
        return vec![CertFiles {
            cert: pem.clone(),
            key: pem,
        }];
    }
    let site = webfarm_tls::ca::Layout::of_data_dir(&farm.data_dir).site();
    vec![CertFiles {
        cert: site.cert,
        key: site.key,
    }]
}

/// Loads `files` and checks that one of them covers `site`; warns for each expired one (it
/// is still served, as HAProxy does).
///
/// # Errors
///
/// The first file that cannot be used, named.
pub(crate) fn load(files: &[CertFiles], site: &str) -> Result<Vec<LoadedCert>, TlsError> {
    let provider = server::provider();
    let certs = files
        .iter()
        .map(|f| LoadedCert::load(&f.cert, &f.key, &provider))
        .collect::<Result<Vec<_>, _>>()?;
    match certs.first() {
        Some(first) if !certs.iter().any(|c| c.covers(site)) => first.require_name(site)?,
        _ => {}
    }
    let now = SystemTime::now();
    for c in certs.iter().filter(|c| c.expired_at(now)) {
        tracing::warn!(
            "{}: the certificate expired at {} (UTC); it is served anyway, clients will \
             refuse it",
            c.path.display(),
            humantime::format_rfc3339_seconds(c.not_after)
        );
    }
    Ok(certs)
}

fn summaries(certs: &[LoadedCert]) -> Vec<CertSummary> {
    certs
        .iter()
        .map(|c| CertSummary {
            file: c.path.clone(),
            names: c.names_list(),
            not_after: c.not_after,
        })
        .collect()
}

/// A TLS frontend's certificates (`tls` of `farm`), loaded and checked: the set to serve
/// and what `/status` shows of it.
fn load_frontend(
    tls: &webfarm_config::FrontendTls,
    farm: &Farm,
) -> Result<(CertSet, Vec<CertSummary>), TlsError> {
    let certs = load(&files_of(&tls.certs, farm), &farm.site)?;
    let set = CertSet::new(&certs).expect("load returns at least one certificate");
    Ok((set, summaries(&certs)))
}

impl TlsFrontends {
    /// Loads every TLS frontend of `farm`.
    ///
    /// # Errors
    ///
    /// A certificate that cannot be used, naming its file.
    pub fn load(farm: &Farm) -> Result<TlsFrontends, TlsError> {
        let mut by_index = Vec::with_capacity(farm.frontends.len());
        for f in &farm.frontends {
            let Some(tls) = &f.tls else {
                by_index.push(None);
                continue;
            };
            let (set, summaries) = load_frontend(tls, farm)?;
            let resolver = SniResolver::new(set);
            let config = server::server_config(resolver.clone(), server::ALPN_HTTP)?;
            by_index.push(Some(Arc::new(TlsFrontend {
                name: f.name.clone(),
                acceptor: TlsAcceptor::from(config),
                resolver,
                certs: Mutex::new(summaries),
                failures: AtomicU64::new(0),
                last_warning: Mutex::new((Instant::now(), 0)),
            })));
        }
        Ok(TlsFrontends { by_index })
    }

    /// Loads the certificates `farm` names for every TLS frontend and, only if all load,
    /// swaps them in. Returns how many frontends got new certificates.
    ///
    /// # Errors
    ///
    /// The first certificate that cannot be used; nothing is swapped then.
    pub fn reload(&self, farm: &Farm) -> Result<usize, TlsError> {
        let mut loaded = Vec::new();
        for (f, state) in farm.frontends.iter().zip(&self.by_index) {
            if let (Some(tls), Some(state)) = (&f.tls, state) {
                loaded.push((state, load_frontend(tls, farm)?));
            }
        }
        let count = loaded.len();
        for (state, (set, summaries)) in loaded {
            let listing: Vec<String> = summaries
                .iter()
                .map(|c| format!("{} ({})", c.file.display(), c.names))
                .collect();
            tracing::info!(
                "frontend {}: certificates reloaded: {}",
                state.name,
                listing.join("; ")
            );
            state.resolver.replace(set);
            *state.certs.lock().unwrap_or_else(PoisonError::into_inner) = summaries;
        }
        Ok(count)
    }
}

impl TlsFrontend {
    /// What `/status` shows of it.
    pub fn status(&self) -> webfarm_node::status::FrontendTlsStatus {
        let now = SystemTime::now();
        let certs = self.certs.lock().unwrap_or_else(PoisonError::into_inner);
        webfarm_node::status::FrontendTlsStatus {
            certificates: certs
                .iter()
                .map(|c| webfarm_node::status::CertificateStatus {
                    file: c.file.display().to_string(),
                    names: c.names.clone(),
                    not_after: humantime::format_rfc3339_seconds(c.not_after).to_string(),
                    expired: now > c.not_after,
                })
                .collect(),
            handshake_failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Counts a failed handshake from `peer`; logs it at debug level, and the sum at warn
    /// level at most once per [`FAILURE_LOG_PERIOD`].
    pub fn handshake_failed(&self, peer: std::net::SocketAddr, error: &std::io::Error) {
        let total = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            "frontend {}: TLS handshake from {peer} failed: {error}",
            self.name
        );
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.0.elapsed() >= FAILURE_LOG_PERIOD || last.1 == 0 {
            tracing::warn!(
                "frontend {}: {} TLS handshake(s) failed since the last report (last: {peer}: \
                 {error}); {total} in all",
                self.name,
                total - last.1
            );
            *last = (Instant::now(), total);
        }
    }
}

/// What identifies a file's version: modification time, size, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Reloads certificates when one of their files changes, until `shutdown`. `farm` gives
/// the current farm (a reload may have changed the file list).
pub(crate) async fn watch(
    tls: Arc<TlsFrontends>,
    farm: impl Fn() -> Arc<Farm> + Send + 'static,
    shutdown: Shutdown,
) {
    let paths = |farm: &Farm| -> Vec<PathBuf> {
        farm.frontends
            .iter()
            .filter_map(|f| f.tls.as_ref())
            .flat_map(|t| files_of(&t.certs, farm))
            .flat_map(|f| [f.cert, f.key])
            .collect()
    };
    let stamps = |paths: Vec<PathBuf>| -> Vec<(PathBuf, Stamp)> {
        paths
            .into_iter()
            .map(|p| (stamp(&p), p))
            .map(|(s, p)| (p, s))
            .collect()
    };
    let mut seen = stamps(paths(&farm()));
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(WATCH_PERIOD) => {}
        }
        let current = farm();
        let now = stamps(paths(&current));
        if now == seen {
            continue;
        }
        let (tls, changed) = (tls.clone(), current.clone());
        match tokio::task::spawn_blocking(move || tls.reload(&changed)).await {
            Ok(Ok(_)) => seen = now,
            Ok(Err(e)) => {
                tracing::error!(
                    "certificate files changed but cannot be used, keeping the running ones: {e}"
                );
                // Retried when the files change again.
                seen = now;
            }
            Err(e) => tracing::error!("certificate reload task failed: {e}"),
        }
    }
}
