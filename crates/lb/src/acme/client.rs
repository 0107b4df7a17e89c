//! The ACME server's HTTPS client and the account.
//!
//! instant-acme sends its requests through any [`HttpClient`]; this one is hyper-util's
//! pooled client over hyper-rustls, with rustls's *ring* provider (the same as the TLS
//! frontends', `webfarm_tls::server::provider`) and a root store of the system's roots
//! (rustls-native-certs: `/etc/ssl/certs` on Debian) plus `[acme] ca_file`, so a private
//! ACME server or Pebble's self-signed API certificate can be trusted without trusting it
//! for anything else the node does.
//!
//! The account (RFC 8555 §7.3) is created once and kept in `account.json` (mode 0600) with
//! the directory it belongs to; a file of another directory is replaced by a new account.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{Account, AccountCredentials, BodyWrapper, HttpClient, NewAccount};
use serde::{Deserialize, Serialize};
use webfarm_config::AcmeSettings;
use webfarm_tls::rustls::{ClientConfig, RootCertStore};

use super::{AcmeError, AcmeFiles};

/// How long connecting to the ACME server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS client configuration for the ACME server: the system's roots and `ca_file`'s
/// certificates.
///
/// # Errors
///
/// `ca_file` unreadable or holding no usable certificate, or no root at all.
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, AcmeError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("acme: system root certificates: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!("acme: {added} system root certificate(s) ({ignored} unusable)");
    if let Some(path) = ca_file {
        let chain = webfarm_tls::files::read_chain(path).map_err(AcmeError::CaFile)?;
        for cert in chain {
            roots.add(cert).map_err(|e| {
                AcmeError::CaFile(webfarm_tls::TlsError::BadCertificate {
                    path: path.to_path_buf(),
                    reason: format!("not a usable root certificate: {e}"),
                })
            })?;
        }
    }
    if roots.is_empty() {
        return Err(AcmeError::NoRoots);
    }
    let config = ClientConfig::builder_with_provider(webfarm_tls::server::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A new HTTPS-only client (HTTP/1.1 or h2) with `tls`, for instant-acme.
pub(crate) fn http_client(tls: &ClientConfig) -> Box<dyn HttpClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client: Client<_, BodyWrapper<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    Box::new(client)
}

/// `account.json`: the account's credentials and the directory they belong to.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The account of `settings.directory`: the one in `files` if it belongs to that directory,
/// else a new one (RFC 8555 §7.3, agreeing to the CA's terms of service), written to
/// `files` before it is used.
///
/// # Errors
///
/// The ACME server cannot be reached or refuses, or the account file cannot be read or
/// written.
pub(crate) async fn account(
    settings: &AcmeSettings,
    files: &AcmeFiles,
    tls: &ClientConfig,
) -> Result<Account, AcmeError> {
    let path = files.account();
    if let Some(stored) = read_account(&path)? {
        if stored.directory == settings.directory {
            return Account::builder_with_http(http_client(tls))
                .from_credentials(stored.credentials)
                .await
                .map_err(AcmeError::protocol(format!(
                    "restoring the account of {} from {}",
                    settings.directory,
                    path.display()
                )));
        }
        tracing::info!(
            "acme: {} belongs to {}, not {}: creating a new account",
            path.display(),
            stored.directory,
            settings.directory
        );
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = Account::builder_with_http(http_client(tls))
        .create(&new, settings.directory.clone(), None)
        .await
        .map_err(AcmeError::protocol(format!(
            "creating an account at {}",
            settings.directory
        )))?;
    let stored = StoredAccount {
        directory: settings.directory.clone(),
        credentials,
    };
    write_account(&path, &stored)?;
    tracing::info!(
        "acme: account {} created at {} (contact: {}), kept in {}",
        account.id(),
        settings.directory,
        if contact.is_empty() {
            "none".to_string()
        } else {
            contact.join(", ")
        },
        path.display()
    );
    Ok(account)
}

/// Forgets the stored account (the server no longer knows it): the next order makes a new
/// one.
pub(crate) fn forget_account(files: &AcmeFiles) {
    let path = files.account();
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::warn!(
            "acme: the server does not know the account of {}; it is removed, a new one will \
             be created",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!("acme: cannot remove {}: {e}", path.display()),
    }
}

fn read_account(path: &Path) -> Result<Option<StoredAccount>, AcmeError> {
    let failed = |reason: String| AcmeError::AccountFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(format!("cannot read: {e}"))),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        failed(format!(
            "not an account file: {e}; remove it to create a new account"
        ))
    })
}

fn write_account(path: &Path, stored: &StoredAccount) -> Result<(), AcmeError> {
    let json = serde_json::to_vec_pretty(stored).map_err(|e| AcmeError::AccountFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    webfarm_tls::files::write_private(path, &json).map_err(|e| AcmeError::AccountFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
