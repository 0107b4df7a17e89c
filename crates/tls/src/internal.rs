//! Mutual TLS between the farm's own nodes (`[tls] internal = true`): every node serves its
//! ports with its certificate and refuses, at the handshake, a client without a
//! certificate of the farm CA; every node, and the operator's `webfarm` commands, call the
//! others with their own certificate and accept only servers the farm CA vouches for,
//! under the name or address they dialled.
//!
//! Internal hops speak TLS 1.3 only (every node is webfarm), HTTP/1.1 (ALPN `http/1.1`).
//!
//! Revocation: both sides check the peer's certificate against the farm CA's CRL
//! (`<data_dir>/ca/ca.crl`, [`crate::revoke`]) when there is one, and read it again within
//! a second of it changing, as they do their own certificate and key; a revoked peer is
//! refused at its next handshake (connections already open live on until they close).
//! Internal servers offer no session resumption, which would skip that check.
//! The CA itself is read once: after `webfarm ca rotate` nodes are restarted.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;

use crate::ca::{Layout, PairPaths};
use crate::cert::LoadedCert;
use crate::reloading::Reloading;
use crate::{files, server, TlsError};

mod verify;

use verify::{ClientVerifier, OwnKey, ServerVerifier};

/// A node's (or the operator's) side of internal TLS.
#[derive(Clone)]
pub struct Identity {
    /// What its listeners serve with (client certificate required), `None` for the
    /// operator, who serves nothing.
    pub server: Option<Arc<ServerConfig>>,
    /// What it calls the other nodes with (its certificate as the client's).
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("serves", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

/// The farm CA as a root store, from `layout`.
///
/// # Errors
///
/// The CA certificate cannot be read.
fn roots(layout: &Layout) -> Result<(Arc<RootCertStore>, CertificateDer<'static>), TlsError> {
    let path = layout.ca().cert;
    let ca = files::read_chain(&path)?.remove(0);
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| TlsError::BadCertificate {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    Ok((Arc::new(roots), ca))
}

/// The node's own certificate and key at `paths`, checked to chain to the farm CA `ca`,
/// read again when the files change (a renewed or reissued certificate).
fn own(
    paths: &PairPaths,
    ca: CertificateDer<'static>,
    layout: &Layout,
) -> Result<Arc<OwnKey>, TlsError> {
    let files = vec![paths.cert.clone(), paths.key.clone()];
    let (paths, ca_path) = (paths.clone(), layout.ca().cert);
    let key = Reloading::new("this node's certificate", files, move || {
        let cert = LoadedCert::load(&paths.cert, &paths.key, &server::provider())?;
        cert.require_issuer(&ca, &ca_path)?;
        Ok(cert.key)
    })?;
    Ok(Arc::new(OwnKey(key)))
}

fn client_config(
    roots: Arc<RootCertStore>,
    me: Arc<OwnKey>,
    layout: &Layout,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = ServerVerifier::new(roots, layout)?;
    // No ALPN here: HTTP clients (hyper-rustls) set it for the protocols they speak.
    let config = ClientConfig::builder_with_provider(server::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(me);
    Ok(Arc::new(config))
}

/// Node `name`'s identity: its certificate `<data_dir>/ca/nodes/<name>.crt`, trusting
/// only the farm CA.
///
/// # Errors
///
/// A missing or unusable file, or a certificate of another CA; the error names the file.
pub fn node(layout: &Layout, name: &str) -> Result<Identity, TlsError> {
    let (roots, ca) = roots(layout)?;
    let me = own(&layout.node(name), ca, layout)?;
    let verifier = ClientVerifier::new(roots.clone(), layout)?;
    let mut srv = ServerConfig::builder_with_provider(server::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(me.clone());
    srv.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: a resumed handshake checks no certificate, so a revoked peer could go
    // on resuming its session. Internal connections are pooled; full handshakes are rare.
    srv.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Identity {
        server: Some(Arc::new(srv)),
        client: client_config(roots, me, layout)?,
    })
}

/// The operator's identity (`webfarm status`, `sql`, `db`, `lb`): `<data_dir>/ca/operator.crt`.
///
/// # Errors
///
/// As [`node`].
pub fn operator(layout: &Layout) -> Result<Identity, TlsError> {
    let (roots, ca) = roots(layout)?;
    let me = own(&layout.operator(), ca, layout)?;
    Ok(Identity {
        server: None,
        client: client_config(roots, me, layout)?,
    })
}
