//! A certificate and its private key, loaded and checked: the key must be the
//! certificate's, and what the certificate covers and when it is valid are read once, for
//! SNI selection, for the checks made before a node starts, and for `webfarm status`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{files, TlsError};

/// A name a certificate covers (its subjectAltName entries).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertName {
    /// A DNS name, lower case; may start with `*.` (a wildcard for one label).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertName::Dns(d) => f.write_str(d),
            CertName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A loaded certificate chain with its key, ready for a TLS server or client.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// The chain and the signing key, as rustls uses them.
    pub key: Arc<CertifiedKey>,
    /// The certificate's file.
    pub path: PathBuf,
    /// The names the end-entity certificate covers (subjectAltName).
    pub names: Vec<CertName>,
    /// Start of the validity period (`notBefore`).
    pub not_before: SystemTime,
    /// End of the validity period (`notAfter`).
    pub not_after: SystemTime,
    /// The serial number, as encoded (big-endian bytes), which a CRL lists.
    pub serial: Vec<u8>,
    /// Where the certificate says its CA's CRL is (cRLDistributionPoints URIs, RFC 5280
    /// §4.2.1.13).
    pub crl_urls: Vec<String>,
}

impl LoadedCert {
    /// Loads the chain of `cert` and the key of `key` (the same path for a combined file),
    /// and checks that the key is the certificate's.
    ///
    /// # Errors
    ///
    /// Unreadable or malformed files, an unusable key, or a key of another certificate;
    /// every error names the file.
    pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Self, TlsError> {
        let chain = files::read_chain(cert)?;
        let key_der = files::read_key(key)?;
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| TlsError::BadKey {
                path: key.to_path_buf(),
                reason: e.to_string(),
            })?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::KeyMismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                })
            }
            // A key whose public half rustls cannot compute: nothing to compare.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(TlsError::BadCertificate {
                    path: cert.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        }
        Self::from_key(Arc::new(certified), cert)
    }

    /// Reads the names and validity of `key`'s end-entity certificate (from file `path`).
    ///
    /// # Errors
    ///
    /// [`TlsError::BadCertificate`] if it is not X.509.
    pub fn from_key(key: Arc<CertifiedKey>, path: &Path) -> Result<Self, TlsError> {
        let d = describe(&key.cert[0]).map_err(|reason| TlsError::BadCertificate {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(LoadedCert {
            key,
            path: path.to_path_buf(),
            names: d.names,
            not_before: d.not_before,
            not_after: d.not_after,
            serial: d.serial,
            crl_urls: d.crl_urls,
        })
    }

    /// Whether the certificate is valid for `name` (a DNS name or an IP address), by the
    /// rules a TLS client applies (RFC 6125 as rustls-webpki implements it: wildcards
    /// cover one label).
    pub fn covers(&self, name: &str) -> bool {
        let Ok(server) = ServerName::try_from(name) else {
            return false;
        };
        webpki::EndEntityCert::try_from(&self.key.cert[0])
            .and_then(|ee| ee.verify_is_valid_for_subject_name(&server))
            .is_ok()
    }

    /// Checks that the certificate covers `name`.
    ///
    /// # Errors
    ///
    /// [`TlsError::NameNotCovered`] naming the file and what it covers.
    pub fn require_name(&self, name: &str) -> Result<(), TlsError> {
        if self.covers(name) {
            return Ok(());
        }
        Err(TlsError::NameNotCovered {
            path: self.path.clone(),
            name: name.to_string(),
            covers: self.names_list(),
        })
    }

    /// Checks that the certificate chains to the CA certificate `ca` (read from `ca_path`),
    /// whatever the date: expiry is reported on its own ([`LoadedCert::expired_at`]).
    ///
    /// # Errors
    ///
    /// [`TlsError::UnknownCa`] naming both files and the verifier's reason.
    pub fn require_issuer(&self, ca: &CertificateDer<'_>, ca_path: &Path) -> Result<(), TlsError> {
        let unknown = |reason: String| TlsError::UnknownCa {
            path: self.path.clone(),
            ca: ca_path.to_path_buf(),
            reason,
        };
        let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|e| unknown(e.to_string()))?;
        let ee = webpki::EndEntityCert::try_from(&self.key.cert[0])
            .map_err(|e| unknown(e.to_string()))?;
        // A moment inside the certificate's own validity period.
        let inside = self.not_before + self.lifetime() / 2;
        let time =
            UnixTime::since_unix_epoch(inside.duration_since(UNIX_EPOCH).unwrap_or_default());
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &self.key.cert[1..],
            time,
            AnyUsage,
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| unknown(e.to_string()))
    }

    /// The serial number in hex, as `openssl x509 -serial` prints it (upper case).
    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02X}")).collect()
    }

    /// The covered names, comma-separated (for messages).
    pub fn names_list(&self) -> String {
        let names: Vec<String> = self.names.iter().map(ToString::to_string).collect();
        if names.is_empty() {
            "no subjectAltName".into()
        } else {
            names.join(", ")
        }
    }

    /// Whether the validity period is over at `now`.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        now > self.not_after
    }

    /// Time left until `notAfter` from `now` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }

    /// The whole validity period (`notAfter - notBefore`).
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

/// The SHA-256 fingerprint of a DER certificate as browsers and `openssl x509 -fingerprint
/// -sha256` print it: 32 upper-case hex bytes separated by `:`.
pub fn fingerprint(der: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The names (subjectAltName) of a DER certificate; empty if it cannot be parsed.
pub fn names_of(der: &CertificateDer<'_>) -> Vec<CertName> {
    describe(der).map(|d| d.names).unwrap_or_default()
}

/// What [`describe`] reads from a certificate.
struct Described {
    names: Vec<CertName>,
    not_before: SystemTime,
    not_after: SystemTime,
    serial: Vec<u8>,
    crl_urls: Vec<String>,
}

/// Names, validity, serial and CRL distribution points of a DER certificate.
fn describe(der: &CertificateDer<'_>) -> Result<Described, String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut crl_urls = Vec::new();
    for ext in x509.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for point in points.iter() {
            if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                for name in names {
                    if let GeneralName::URI(uri) = name {
                        crl_urls.push((*uri).to_string());
                    }
                }
            }
        }
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for general in &san.value.general_names {
            match general {
                GeneralName::DNSName(d) => {
                    names.push(CertName::Dns(d.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_of(bytes) {
                        names.push(CertName::Ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    let validity = x509.validity();
    Ok(Described {
        names,
        not_before: at(validity.not_before.timestamp()),
        not_after: at(validity.not_after.timestamp()),
        serial: x509.raw_serial().to_vec(),
        crl_urls,
    })
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A Unix timestamp as a `SystemTime` (times before 1970 clamp to the epoch).
fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

/// Accepts any extended key usage: [`LoadedCert::require_issuer`] checks the signature
/// chain only; usages are checked by the handshakes themselves.
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}
