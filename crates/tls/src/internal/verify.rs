//! The rustls verifiers and certificate resolver of internal TLS: rustls-webpki's own
//! verifiers, built again when the CRL changes, and the node's key, read again when its
//! files change ([`Reloading`]). Every check is webpki's; these only choose which instance
//! answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::ca::Layout;
use crate::reloading::Reloading;
use crate::{revoke, server, TlsError};

/// The CRL at `path` as the verifiers take it: none, or one.
fn crls(
    path: &Path,
) -> Result<Vec<rustls_pki_types::CertificateRevocationListDer<'static>>, TlsError> {
    Ok(revoke::read_crl(path)?.into_iter().collect())
}

fn bad_crl(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::BadCertificate {
        path: path.to_path_buf(),
        reason: format!("the CRL: {e}"),
    }
}

/// Checks client certificates (on a node's listeners): the farm CA, and the CRL.
#[derive(Debug)]
pub(super) struct ClientVerifier {
    hints: Vec<DistinguishedName>,
    inner: Reloading<dyn ClientCertVerifier>,
}

impl ClientVerifier {
    pub(super) fn new(roots: Arc<RootCertStore>, layout: &Layout) -> Result<Self, TlsError> {
        let hints = roots.subjects();
        let crl: PathBuf = layout.crl();
        let path = crl.clone();
        let inner = Reloading::new("the farm CRL (client checks)", vec![crl], move || {
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), server::provider());
            let crls = crls(&path)?;
            if !crls.is_empty() {
                builder = builder
                    .with_crls(crls)
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
            }
            builder.build().map_err(|e| bad_crl(&path, e))
        })?;
        Ok(ClientVerifier { hints, inner })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.get().supported_verify_schemes()
    }
}

/// Checks server certificates (when a node or the operator calls a node): the farm CA, the
/// name dialled, and the CRL.
#[derive(Debug)]
pub(super) struct ServerVerifier {
    inner: Reloading<WebPkiServerVerifier>,
}

impl ServerVerifier {
    pub(super) fn new(roots: Arc<RootCertStore>, layout: &Layout) -> Result<Self, TlsError> {
        let crl = layout.crl();
        let path = crl.clone();
        let inner = Reloading::new("the farm CRL (server checks)", vec![crl], move || {
            let mut builder =
                WebPkiServerVerifier::builder_with_provider(roots.clone(), server::provider());
            let crls = crls(&path)?;
            if !crls.is_empty() {
                builder = builder
                    .with_crls(crls)
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
            }
            builder.build().map_err(|e| bad_crl(&path, e))
        })?;
        Ok(ServerVerifier { inner })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.get().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.get().supported_verify_schemes()
    }
}

/// The node's own certificate, for its listeners and its calls.
#[derive(Debug)]
pub(super) struct OwnKey(pub(super) Reloading<CertifiedKey>);

impl ResolvesServerCert for OwnKey {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

impl ResolvesClientCert for OwnKey {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
