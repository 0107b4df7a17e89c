//! Certificate chains and private keys in PEM files (read with rustls-pki-types), and the
//! writing of key material: private files are created with mode 0600 and replaced
//! atomically (written beside, then renamed), so a reader never sees half a key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Reads `path` whole.
///
/// # Errors
///
/// [`TlsError::Read`] naming the file.
pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every `CERTIFICATE` section of the PEM file at `path`, in order: the end-entity
/// certificate first, then its intermediates (the order a TLS server sends them in).
///
/// # Errors
///
/// The file cannot be read, a section is damaged, or it holds no certificate.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// The first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of the PEM file at `path`; the
/// file may also hold certificates (HAProxy's combined `crt` file).
///
/// # Errors
///
/// The file cannot be read, a section is damaged, or it holds no private key.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(pem_error(path, &e)),
    }
}

fn pem_error(path: &Path, e: &pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `contents` to `path` readable by its owner only (mode 0600), replacing any file
/// there atomically. The parent directory is created if missing.
///
/// # Errors
///
/// [`TlsError::Write`] naming the file.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_mode(path, contents, 0o600)
}

/// Writes `contents` to `path` readable by everyone (mode 0644: certificates), replacing
/// any file there atomically.
///
/// # Errors
///
/// [`TlsError::Write`] naming the file.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_mode(path, contents, 0o644)
}

fn write_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let tmp = sibling(path, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(failed)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            failed(e)
        })
}

/// `path` with `suffix` appended to its file name (`site.pem` → `site.pem.new`): where a
/// file is staged before it replaces `path` by rename.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}
