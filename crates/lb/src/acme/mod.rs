//! ACME (RFC 8555): the site certificate obtained and renewed from a certificate authority
//! such as Let's Encrypt, with the http-01 challenge answered by the load balancer itself.
//!
//! - [`challenge`]: the pending challenges (token → key authorization), which the HTTP path
//!   answers (`GET /.well-known/acme-challenge/<token>`, RFC 8555 §8.3) on every HTTP
//!   frontend, before any redirect and without a backend;
//! - [`client`]: the ACME server's HTTPS client (the system's roots plus `[acme] ca_file`)
//!   and the account, kept in `<data_dir>/acme/account.json`;
//! - [`order`]: one order (RFC 8555 §7.4): authorizations, http-01, finalization with a new
//!   P-256 key, the chain written to `<data_dir>/acme/site.pem`;
//! - [`renew`]: the loop that orders when the certificate is missing, covers other names, or
//!   has passed two thirds of its lifetime, and retries failures with backoff.
//!
//! Files, under `<data_dir>/acme/` ([`AcmeFiles`]):
//!
//! ```text
//! account.json (0600)   the ACME account: its URL and private key, and the directory URL
//! site.pem (0600)       the certificate chain and its private key in one file, replaced
//!                       atomically (one rename), so no reader sees a key with another chain
//! site.json             the directory site.pem was ordered from: a certificate of another
//!                       directory (Let's Encrypt's staging before production) is replaced
//! ```
//!
//! The HTTPS frontends that list no `certs` of their own serve `site.pem` once it exists
//! (before that, the farm CA's `<data_dir>/ca/site.crt`): see [`site_certificate`]. The lb's
//! certificate watcher (`frontend::tls::watch`) sees the new file within a second and swaps
//! it in; no restart, open connections keep their certificate.
//!
//! Only the first lb node of the farm file orders ([`orders_here`]); the others serve the
//! files it writes when they share its data directory. Its challenges are in its memory, so
//! the names must resolve to that node while it orders.
//!
//! This module uses no other module of the crate: the HTTP path reads [`challenge`], the TLS
//! frontends read [`site_certificate`].

pub(crate) mod challenge;
pub(crate) mod client;
pub(crate) mod order;
pub(crate) mod renew;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;
use webfarm_config::{AcmeSettings, Farm, Role};
use webfarm_node::Shutdown;
use webfarm_tls::rustls::ClientConfig;

pub(crate) use challenge::Challenges;

/// Why the ACME client could not start, or an order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// `[acme] ca_file` cannot be read or holds no usable certificate.
    #[error("acme.ca_file: {0}")]
    CaFile(#[source] webfarm_tls::TlsError),
    /// No root certificate to check the ACME server's HTTPS with.
    #[error(
        "no trusted root certificates for the ACME server's HTTPS: install the system's CA \
         certificates (Debian: ca-certificates) or set [acme] ca_file"
    )]
    NoRoots,
    /// The TLS client configuration was refused.
    #[error("TLS client configuration: {0}")]
    Tls(#[from] webfarm_tls::rustls::Error),
    /// The ACME server refused a request or could not be reached; `what` says which step.
    #[error("{what}: {source}")]
    Protocol {
        /// The step: `creating the account at <directory>`, `new order`...
        what: String,
        /// instant-acme's error (an RFC 8555 §6.7 problem document for refusals).
        source: instant_acme::Error,
    },
    /// The account file cannot be read, parsed or written.
    #[error("{}: {reason}", .path.display())]
    AccountFile {
        /// `<data_dir>/acme/account.json`.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An authorization failed or offers no http-01 challenge (RFC 8555 §7.5.1).
    #[error("authorization for {name} failed: {reason}")]
    Authorization {
        /// The name it was for.
        name: String,
        /// The server's reason (the challenge's error), or what is missing.
        reason: String,
    },
    /// The certificate the server issued cannot be used (names, key, format).
    #[error("the issued certificate cannot be used: {0}")]
    Certificate(#[source] webfarm_tls::TlsError),
    /// The certificate could not be written.
    #[error("cannot write the certificate: {0}")]
    Write(#[source] webfarm_tls::TlsError),
    /// The order (account, challenges, certificate) did not finish in time (5 minutes).
    #[error("the order did not finish within {0:?}")]
    Timeout(std::time::Duration),
}

impl AcmeError {
    /// `what` failed with instant-acme's `source`.
    pub(crate) fn protocol(what: impl Into<String>) -> impl FnOnce(instant_acme::Error) -> Self {
        let what = what.into();
        move |source| AcmeError::Protocol { what, source }
    }
}

/// Where the ACME files live: `<data_dir>/acme/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcmeFiles {
    /// The directory.
    pub dir: PathBuf,
}

impl AcmeFiles {
    /// The files of the farm whose data directory is `data_dir`.
    pub fn of_data_dir(data_dir: &Path) -> AcmeFiles {
        AcmeFiles {
            dir: data_dir.join("acme"),
        }
    }

    /// The account (JSON, mode 0600).
    pub fn account(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// The certificate chain and its key (PEM, mode 0600).
    pub fn site(&self) -> PathBuf {
        self.dir.join("site.pem")
    }

    /// Where `site.pem` comes from (JSON: `{"directory": URL}`).
    pub fn origin(&self) -> PathBuf {
        self.dir.join("site.json")
    }
}

/// The ACME certificate (chain and key in one file) that the HTTPS frontends without
/// `certs` of their own serve: `Some` when `[acme]` is set and the file exists.
pub(crate) fn site_certificate(farm: &Farm) -> Option<PathBuf> {
    farm.acme.as_ref()?;
    let path = AcmeFiles::of_data_dir(&farm.data_dir).site();
    path.exists().then_some(path)
}

/// Whether node `name` is the one that orders: the first lb node of the farm file.
pub(crate) fn orders_here(farm: &Farm, name: &str) -> bool {
    farm.nodes_with_role(Role::Lb)
        .next()
        .is_some_and(|n| n.name == name)
}

/// The ACME client of the ordering node, ready to run.
pub(crate) struct Prepared {
    settings: AcmeSettings,
    files: AcmeFiles,
    tls: Arc<ClientConfig>,
}

/// The ACME client of node `node` if `[acme]` is set and it is the ordering node
/// ([`orders_here`]), its HTTPS client configuration built now, so that a bad `ca_file`
/// stops the node before it binds anything.
///
/// # Errors
///
/// [`AcmeError::CaFile`], [`AcmeError::NoRoots`] or [`AcmeError::Tls`].
pub(crate) fn prepare(farm: &Farm, node: &str) -> Result<Option<Prepared>, AcmeError> {
    let Some(settings) = farm.acme.clone() else {
        return Ok(None);
    };
    let files = AcmeFiles::of_data_dir(&farm.data_dir);
    if !orders_here(farm, node) {
        let first = farm
            .nodes_with_role(Role::Lb)
            .next()
            .map(|n| n.name.clone());
        tracing::info!(
            "acme: {} orders the site certificate; this node serves the files it writes \
             under {}",
            first.unwrap_or_default(),
            files.dir.display()
        );
        return Ok(None);
    }
    let tls = client::tls_config(settings.ca_file.as_deref())?;
    Ok(Some(Prepared {
        settings,
        files,
        tls,
    }))
}

impl Prepared {
    /// Starts the renewal loop, answering challenges through `challenges` (the store the
    /// HTTP path reads), until `shutdown`.
    pub fn spawn(self, challenges: Arc<Challenges>, shutdown: Shutdown) -> JoinHandle<()> {
        let renewal = renew::Renewal {
            settings: self.settings,
            files: self.files,
            tls: self.tls,
            challenges,
        };
        tokio::spawn(renew::run(renewal, shutdown))
    }
}
