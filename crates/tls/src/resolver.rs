//! The server certificate chosen by the client's SNI (RFC 6066 `server_name`), as HAProxy
//! does for `bind ... ssl crt` given several certificates: an exact name first, then a
//! wildcard covering it, else the default (the first certificate), which also answers
//! clients that send no SNI or an IP address.
//!
//! The set lives behind an [`ArcSwap`]: [`SniResolver::replace`] swaps a new set in for the
//! next handshakes, while handshakes under way and open connections keep what they have.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::cert::{CertName, LoadedCert};

/// The certificates of one listener, indexed by the DNS names they cover.
#[derive(Debug)]
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`, e.g. `foobar.com` for `*.foobar.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertSet {
    /// The set of `certs`; the first is the default. When two certificates cover one name,
    /// the earlier wins (HAProxy's order of `crt` arguments). `None` for an empty list.
    pub fn new(certs: &[LoadedCert]) -> Option<CertSet> {
        let default = certs.first()?.key.clone();
        let mut set = CertSet {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        };
        for cert in certs {
            for name in &cert.names {
                let CertName::Dns(dns) = name else { continue };
                let (map, key) = match dns.strip_prefix("*.") {
                    Some(suffix) => (&mut set.wildcard, suffix),
                    None => (&mut set.exact, dns.as_str()),
                };
                map.entry(key.to_string())
                    .or_insert_with(|| cert.key.clone());
            }
        }
        Some(set)
    }

    /// The certificate for SNI `name` (any case); the default for `None` or a name no
    /// certificate covers.
    pub fn pick(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

/// rustls's certificate resolver over a swappable [`CertSet`].
#[derive(Debug)]
pub struct SniResolver {
    set: ArcSwap<CertSet>,
}

impl SniResolver {
    /// A resolver serving `set`.
    pub fn new(set: CertSet) -> Arc<SniResolver> {
        Arc::new(SniResolver {
            set: ArcSwap::from_pointee(set),
        })
    }

    /// Serves `set` from the next handshake on.
    pub fn replace(&self, set: CertSet) {
        self.set.store(Arc::new(set));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.set.load().pick(hello.server_name()).clone())
    }
}
