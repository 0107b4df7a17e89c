//! The farm's own certificate authority (rcgen, ECDSA P-256), which makes a farm secure
//! with no setup: on first start it is created, then issues the site's certificate and one
//! per node, and afterwards the same files are reused (and renewed when due).
//!
//! Files, under `<data_dir>/ca/` ([`Layout`]):
//!
//! ```text
//! ca.crt  ca.key (0600)            the CA (10 years)
//! site.crt  site.key               the site's certificate (the site name; 397 days)
//! nodes/<node>.crt  <node>.key     each node's (its name and address; server and client)
//! operator.crt  operator.key       the operator's client certificate (`webfarm` commands)
//! ```
//!
//! A leaf is issued again when it is missing, unusable, signed by another CA, does not
//! cover its names any more, names another CRL address, was revoked ([`crate::revoke`]),
//! or has less than a third of its lifetime left (the point
//! where ACME clients such as certbot renew).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;

use crate::cert::LoadedCert;
use crate::{files, server, TlsError};

/// How long the farm CA is valid: 10 years.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long a leaf certificate is valid: 397 days, the longest browsers accept.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(397 * 86_400);

/// Where the farm's certificate files live: `<data_dir>/ca/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The directory (`<data_dir>/ca`).
    pub dir: PathBuf,
}

/// A certificate file and its key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPaths {
    /// The PEM certificate chain.
    pub cert: PathBuf,
    /// The PEM private key (mode 0600).
    pub key: PathBuf,
}

impl Layout {
    /// The layout under `data_dir`.
    pub fn of_data_dir(data_dir: &Path) -> Layout {
        Layout {
            dir: data_dir.join("ca"),
        }
    }

    /// The CA's certificate and key.
    pub fn ca(&self) -> PairPaths {
        self.pair("ca")
    }

    /// The site's certificate and key.
    pub fn site(&self) -> PairPaths {
        self.pair("site")
    }

    /// Node `name`'s certificate and key.
    pub fn node(&self, name: &str) -> PairPaths {
        self.pair(&format!("nodes/{name}"))
    }

    /// The operator's client certificate and key.
    pub fn operator(&self) -> PairPaths {
        self.pair("operator")
    }

    fn pair(&self, stem: &str) -> PairPaths {
        PairPaths {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }
}

/// What a leaf certificate is for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (`serverAuth`).
    Server,
    /// A TLS client (`clientAuth`).
    Client,
    /// Both: a node serves its ports and calls the other nodes'.
    ServerAndClient,
}

/// A leaf certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The subject's common name.
    pub common_name: String,
    /// subjectAltNames: DNS names and IP addresses (as text).
    pub names: Vec<String>,
    /// What it is for.
    pub usage: Usage,
    /// Where the CA's CRL is published ([`crate::revoke::crl_url`]), written into the
    /// certificate as its cRLDistributionPoints; `None` for none.
    pub crl_url: Option<String>,
}

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PEM, PKCS#8).
    pub key_pem: String,
}

impl Issued {
    /// Writes the certificate (mode 0644) and the key (mode 0600) to `paths`, key first,
    /// each replaced atomically.
    ///
    /// # Errors
    ///
    /// [`TlsError::Write`] naming the file.
    pub fn write(&self, paths: &PairPaths) -> Result<(), TlsError> {
        files::write_private(&paths.key, self.key_pem.as_bytes())?;
        files::write_public(&paths.cert, self.cert_pem.as_bytes())
    }
}

/// What [`FarmCa::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The files were valid and kept.
    Kept,
    /// A certificate was issued, for this reason.
    Issued(&'static str),
}

/// The farm's CA, loaded with its key.
pub struct FarmCa {
    layout: Layout,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for FarmCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarmCa")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl FarmCa {
    /// The CA of `layout`, or `None` if its certificate file does not exist.
    ///
    /// # Errors
    ///
    /// The files exist but cannot be read or do not form a CA and its key.
    pub fn open(layout: &Layout) -> Result<Option<FarmCa>, TlsError> {
        let paths = layout.ca();
        if !paths.cert.exists() {
            return Ok(None);
        }
        let cert_pem = String::from_utf8_lossy(&files::read(&paths.cert)?).into_owned();
        let key_pem = String::from_utf8_lossy(&files::read(&paths.key)?).into_owned();
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::BadKey {
            path: paths.key.clone(),
            reason: e.to_string(),
        })?;
        let loaded = LoadedCert::load(&paths.cert, &paths.key, &server::provider())?;
        let cert_der = loaded.key.cert[0].clone();
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| TlsError::BadCertificate {
                path: paths.cert.clone(),
                reason: e.to_string(),
            })?;
        Ok(Some(FarmCa {
            layout: layout.clone(),
            cert_der,
            issuer,
        }))
    }

    /// Creates a new CA named after `site` in `layout`, replacing any CA there.
    ///
    /// # Errors
    ///
    /// Key generation or writing the files failed.
    pub fn create(layout: &Layout, site: &str) -> Result<FarmCa, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("webfarm CA for {site}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_LIFETIME);
        let cert = params.self_signed(&key)?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        issued.write(&layout.ca())?;
        Ok(FarmCa {
            layout: layout.clone(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA of `layout`, created (for `site`) if it does not exist yet; `true` if it was.
    ///
    /// # Errors
    ///
    /// As [`FarmCa::open`] and [`FarmCa::create`].
    pub fn open_or_create(layout: &Layout, site: &str) -> Result<(FarmCa, bool), TlsError> {
        match Self::open(layout)? {
            Some(ca) => Ok((ca, false)),
            None => Ok((Self::create(layout, site)?, true)),
        }
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Where its files are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The CA as rcgen signs with it.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// Issues a certificate for `leaf`, valid [`LEAF_LIFETIME`] from now.
    ///
    /// # Errors
    ///
    /// A name rcgen refuses, or key generation failed.
    pub fn issue(&self, leaf: &Leaf) -> Result<Issued, TlsError> {
        let now = SystemTime::now();
        self.issue_valid(leaf, now - Duration::from_secs(3600), now + LEAF_LIFETIME)
    }

    /// Issues a certificate for `leaf` valid from `not_before` to `not_after` (an hour of
    /// clock skew is allowed for by [`FarmCa::issue`]; this one takes the times as given:
    /// short-lived or already expired certificates, as tests of renewal and expiry need).
    ///
    /// # Errors
    ///
    /// A name rcgen refuses, or key generation failed.
    pub fn issue_valid(
        &self,
        leaf: &Leaf,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&leaf.common_name);
        params.subject_alt_names = leaf
            .names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match leaf.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = leaf
            .crl_url
            .iter()
            .map(|url| CrlDistributionPoint {
                uris: vec![url.clone()],
            })
            .collect();
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Keeps the certificate at `paths` if it is usable for `leaf`, else issues and writes a
    /// new one (reasons in the module doc).
    ///
    /// # Errors
    ///
    /// Issuing or writing failed.
    pub fn ensure(&self, leaf: &Leaf, paths: &PairPaths) -> Result<Ensured, TlsError> {
        match self.why_reissue(leaf, paths) {
            None => Ok(Ensured::Kept),
            Some(reason) => {
                self.issue(leaf)?.write(paths)?;
                Ok(Ensured::Issued(reason))
            }
        }
    }

    /// Why the certificate at `paths` must be issued again for `leaf`, if it must.
    fn why_reissue(&self, leaf: &Leaf, paths: &PairPaths) -> Option<&'static str> {
        if !paths.cert.exists() || !paths.key.exists() {
            return Some("missing");
        }
        let Ok(loaded) = LoadedCert::load(&paths.cert, &paths.key, &server::provider()) else {
            return Some("unusable");
        };
        if loaded
            .require_issuer(&self.cert_der, &self.layout.ca().cert)
            .is_err()
        {
            return Some("signed by another CA");
        }
        if !leaf.names.iter().all(|n| loaded.covers(n)) {
            return Some("names changed");
        }
        if loaded.crl_urls != Vec::from_iter(leaf.crl_url.clone()) {
            return Some("CRL address changed");
        }
        if self.is_revoked(&loaded).unwrap_or(false) {
            return Some("revoked");
        }
        if loaded.remaining(SystemTime::now()) < loaded.lifetime() / 3 {
            return Some("renewal due");
        }
        None
    }
}

/// A distinguished name with only a common name.
fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from an hour ago (clock skew between hosts) for `lifetime`, with a random
/// 128-bit serial number (RFC 5280 allows up to 20 octets).
fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + lifetime;
    params.serial_number = Some(serial());
}

/// A random positive 128-bit serial number (RFC 5280 allows up to 20 octets).
fn serial() -> SerialNumber {
    let mut serial = [0u8; 16];
    // The system's randomness failing leaves zeros and a warning: unique serials then rest
    // on the CA issuing each certificate once.
    if server::provider().secure_random.fill(&mut serial).is_err() {
        tracing::warn!("no randomness for a certificate serial number");
    }
    serial[0] &= 0x7f;
    SerialNumber::from_slice(&serial)
}
