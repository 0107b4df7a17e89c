//! Revocation: the farm CA's list of revoked certificates and the certificate revocation
//! list (CRL, RFC 5280 §5) it signs from it.
//!
//! Files, under `<data_dir>/ca/` ([`Layout`]):
//!
//! ```text
//! revoked   one line per revoked certificate: SERIAL (hex) UNIX-SECONDS WHAT
//! ca.crl    the CRL (DER), signed by the CA, valid CRL_LIFETIME, listing every line above
//! ```
//!
//! Every leaf the CA issues names where its CRL is published (cRLDistributionPoints,
//! [`crl_url`]): the lb answers `GET` [`CRL_PATH`] on its HTTP frontends with `ca.crl`, over
//! plain HTTP as RFC 5280 §4.2.1.13 expects (a CRL is signed; fetching it over HTTPS would
//! need the very certificate it may revoke). Nodes read `ca.crl` from disk
//! ([`crate::internal`]) and refuse a revoked peer within a second of the file changing.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls_pki_types::CertificateRevocationListDer;

use crate::ca::{Ensured, FarmCa, Layout};
use crate::cert::LoadedCert;
use crate::{files, TlsError};

/// The path the lb publishes the farm CA's CRL at, on every HTTP frontend.
pub const CRL_PATH: &str = "/.well-known/webfarm/ca.crl";

/// How long a CRL is valid (`nextUpdate - thisUpdate`): 30 days. `webfarm up` signs a new
/// one when a third of that is left.
pub const CRL_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// The CRL's URL for a site published by an lb's plain HTTP frontend on `port`:
/// `http://SITE[:PORT]/.well-known/webfarm/ca.crl`.
pub fn crl_url(site: &str, port: u16) -> String {
    if port == 80 {
        format!("http://{site}{CRL_PATH}")
    } else {
        format!("http://{site}:{port}{CRL_PATH}")
    }
}

/// A revoked certificate, one line of `<data_dir>/ca/revoked`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Its serial number (big-endian bytes, as encoded).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub at: SystemTime,
    /// What it was (`site`, `operator`, a node's name).
    pub what: String,
}

impl Revoked {
    /// The serial number in upper-case hex.
    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02X}")).collect()
    }
}

/// The revoked certificates listed in `path`; none if the file does not exist.
///
/// # Errors
///
/// An unreadable file, or a line that is not `SERIAL UNIX-SECONDS WHAT`
/// ([`TlsError::BadRevocationList`] naming the file and line).
pub fn read_list(path: &Path) -> Result<Vec<Revoked>, TlsError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = String::from_utf8_lossy(&files::read(path)?).into_owned();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            parse_line(line).ok_or_else(|| TlsError::BadRevocationList {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Option<Revoked> {
    let mut fields = line.split_whitespace();
    let hex = fields.next()?;
    if hex.len() % 2 != 0 || hex.is_empty() {
        return None;
    }
    let serial = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let secs: u64 = fields.next()?.parse().ok()?;
    let what = fields.next()?.to_string();
    Some(Revoked {
        serial,
        at: UNIX_EPOCH + Duration::from_secs(secs),
        what,
    })
}

fn write_list(path: &Path, list: &[Revoked]) -> Result<(), TlsError> {
    let mut text = Vec::new();
    for r in list {
        let secs =
            r.at.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
        // Writing to a Vec cannot fail.
        let _ = writeln!(text, "{} {secs} {}", r.serial_hex(), r.what);
    }
    files::write_public(path, &text)
}

/// The CRL at `path`, if the file exists.
///
/// # Errors
///
/// The file exists but cannot be read.
pub fn read_crl(path: &Path) -> Result<Option<CertificateRevocationListDer<'static>>, TlsError> {
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(CertificateRevocationListDer::from(files::read(path)?)))
}

impl FarmCa {
    /// Revokes `cert` (known as `what`): adds it to the list and signs a new CRL. Revoking
    /// a certificate twice lists it once.
    ///
    /// # Errors
    ///
    /// The list cannot be read or written, or signing failed.
    pub fn revoke(&self, cert: &LoadedCert, what: &str) -> Result<(), TlsError> {
        let layout = self.layout();
        let mut list = read_list(&layout.revoked())?;
        if !list.iter().any(|r| r.serial == cert.serial) {
            list.push(Revoked {
                serial: cert.serial.clone(),
                at: SystemTime::now(),
                what: what.to_string(),
            });
            write_list(&layout.revoked(), &list)?;
        }
        self.write_crl(&list)
    }

    /// Whether `cert`'s serial number is on the revocation list.
    ///
    /// # Errors
    ///
    /// As [`read_list`].
    pub fn is_revoked(&self, cert: &LoadedCert) -> Result<bool, TlsError> {
        Ok(read_list(&self.layout().revoked())?
            .iter()
            .any(|r| r.serial == cert.serial))
    }

    /// Empties the revocation list and signs an empty CRL (after [`FarmCa::create`] replaced
    /// the CA: the old CA's certificates are refused anyway, by their issuer).
    ///
    /// # Errors
    ///
    /// Writing or signing failed.
    pub fn reset_revocations(&self) -> Result<(), TlsError> {
        write_list(&self.layout().revoked(), &[])?;
        self.write_crl(&[])
    }

    /// Signs a new CRL if there is none or a third of its validity is left.
    ///
    /// # Errors
    ///
    /// The list or the CRL cannot be read, or writing or signing failed.
    pub fn ensure_crl(&self) -> Result<Ensured, TlsError> {
        let layout = self.layout();
        let reason = match read_crl(&layout.crl())? {
            None => "missing",
            Some(der) => match next_update(&der) {
                Some(next) if remaining(next) > CRL_LIFETIME / 3 => return Ok(Ensured::Kept),
                Some(_) => "renewal due",
                None => "unreadable",
            },
        };
        self.write_crl(&read_list(&layout.revoked())?)?;
        Ok(Ensured::Issued(reason))
    }

    fn write_crl(&self, list: &[Revoked]) -> Result<(), TlsError> {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + CRL_LIFETIME,
            // Seconds since the epoch: increases with every CRL this CA signs (RFC 5280
            // §5.2.3 wants a monotonically increasing number).
            crl_number: SerialNumber::from(now.unix_timestamp().unsigned_abs()),
            issuing_distribution_point: None,
            revoked_certs: list
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: r.at.into(),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(self.issuer())?;
        files::write_public(&self.layout().crl(), crl.der().as_ref())
    }
}

/// The CRL's `nextUpdate`, if it parses.
fn next_update(der: &CertificateRevocationListDer<'_>) -> Option<SystemTime> {
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).ok()?;
    let next = crl.next_update()?.timestamp();
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(next).ok()?))
}

fn remaining(until: SystemTime) -> Duration {
    until.duration_since(SystemTime::now()).unwrap_or_default()
}

impl Layout {
    /// The revocation list (`revoked`).
    pub fn revoked(&self) -> std::path::PathBuf {
        self.dir.join("revoked")
    }

    /// The CRL (`ca.crl`, DER).
    pub fn crl(&self) -> std::path::PathBuf {
        self.dir.join("ca.crl")
    }
}
