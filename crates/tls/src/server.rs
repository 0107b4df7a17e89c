//! The crypto provider and server configurations.
//!
//! The provider is rustls's *ring* backend limited to Mozilla's "intermediate"
//! configuration (version 5.7): TLS 1.3 with AES-128-GCM, AES-256-GCM and
//! ChaCha20-Poly1305; TLS 1.2 with ECDHE and the same AEADs (rustls has no CBC, no RSA key
//! exchange and no DHE suites); key exchange over X25519, P-256 and P-384.

use std::sync::Arc;

use rustls::crypto::ring as provider_ring;
use rustls::crypto::CryptoProvider;
use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::ServerConfig;

use crate::TlsError;

/// Sessions kept for resumption by session id (TLS 1.2) and by stateful ticket, per
/// listener: HAProxy's `tune.ssl.cachesize` default (20,000 entries).
pub const SESSION_CACHE_SIZE: usize = 20_000;

/// ALPN protocols offered by an HTTPS frontend, in order of preference: HTTP/2, then
/// HTTP/1.1 (RFC 7301; the ids are RFC 9113's and RFC 9112's).
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// rustls with *ring* and Mozilla's intermediate suites and groups.
pub fn provider() -> Arc<CryptoProvider> {
    use provider_ring::cipher_suite as cs;
    use provider_ring::kx_group;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..provider_ring::default_provider()
    })
}

/// A server configuration: TLS 1.2 and 1.3, the certificate chosen by `resolver`, ALPN
/// `alpn` (the server's preference order), the suites in [`provider`]'s order (the
/// server's), resumption by session id and by tickets (TLS 1.2 and 1.3; ticket keys rotate
/// every 6 hours, rustls's default for *ring*).
///
/// # Errors
///
/// rustls refusing the versions or the ticketer failing to get randomness.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // The server's order of suites, not the client's: every suite offered is an AEAD with
    // forward secrecy, so this costs nothing, and scanners (testssl.sh) flag a server
    // without an order. Mozilla's intermediate profile lets the client choose.
    config.ignore_client_order = true;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = provider_ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// The protocol and cipher suite of a connection for the access log (HAProxy's `%sslv` and
/// `%sslc`): the version as OpenSSL names it (`TLSv1.3`, `TLSv1.2`) and the suite's IANA
/// name (`TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`); `"-"` before
/// the handshake.
pub fn describe(conn: &rustls::CommonState) -> (&'static str, &'static str) {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(_) => "TLS",
        None => "-",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("-");
    (version, cipher)
}
