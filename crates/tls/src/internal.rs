//! Mutual TLS between the farm's own nodes (`[tls] internal = true`): every node serves its
//! ports with its certificate and refuses, at the handshake, a client without a
//! certificate of the farm CA; every node, and the operator's `webfarm` commands, call the
//! others with their own certificate and accept only servers the farm CA vouches for,
//! under the name or address they dialled.
//!
//! Internal hops speak TLS 1.3 only (every node is webfarm), HTTP/1.1 (ALPN `http/1.1`).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;

use crate::ca::{Layout, PairPaths};
use crate::cert::LoadedCert;
use crate::{files, server, TlsError};

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

/// Loads `paths` and checks it chains to the farm CA `ca`.
fn own(
    paths: &PairPaths,
    ca: &CertificateDer<'_>,
    layout: &Layout,
) -> Result<LoadedCert, TlsError> {
    let cert = LoadedCert::load(&paths.cert, &paths.key, &server::provider())?;
    cert.require_issuer(ca, &layout.ca().cert)?;
    Ok(cert)
}

fn client_config(
    roots: Arc<RootCertStore>,
    me: &LoadedCert,
) -> Result<Arc<ClientConfig>, TlsError> {
    // No ALPN here: HTTP clients (hyper-rustls) set it for the protocols they speak.
    let config = ClientConfig::builder_with_provider(server::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(me.key.clone())));
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
    let me = own(&layout.node(name), &ca, layout)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), server::provider())
        .build()
        .map_err(|e| TlsError::BadCertificate {
            path: layout.ca().cert,
            reason: e.to_string(),
        })?;
    let mut srv = ServerConfig::builder_with_provider(server::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(me.key.clone())));
    srv.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Identity {
        server: Some(Arc::new(srv)),
        client: client_config(roots, &me)?,
    })
}

/// The operator's identity (`webfarm status`, `sql`, `db`, `lb`): `<data_dir>/ca/operator.crt`.
///
/// # Errors
///
/// As [`node`].
pub fn operator(layout: &Layout) -> Result<Identity, TlsError> {
    let (roots, ca) = roots(layout)?;
    let me = own(&layout.operator(), &ca, layout)?;
    Ok(Identity {
        server: None,
        client: client_config(roots, &me)?,
    })
}
