//! [`TlsError`]: what can go wrong with certificate files and TLS settings; every variant
//! that concerns a file names it.

use std::path::PathBuf;

/// A TLS setting or certificate file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read (missing, unreadable).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM, or a PEM section is damaged.
    #[error("{}: not valid PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("{}: no certificate (no PEM \"CERTIFICATE\" section)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key.
    #[error("{}: no private key (expected a PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" section)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The first certificate of the file cannot be parsed as X.509.
    #[error("{}: the certificate cannot be parsed: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The private key is of a kind the crypto provider cannot use.
    #[error("{}: the private key cannot be used: {reason}", path.display())]
    BadKey {
        /// The key's file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The private key is not the one of the certificate.
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
    },
    /// The certificate does not cover a name it must serve.
    #[error("{}: the certificate does not cover {name:?} (it covers: {covers})", path.display())]
    NameNotCovered {
        /// The certificate's file.
        path: PathBuf,
        /// The name it should cover.
        name: String,
        /// The names it covers, comma-separated.
        covers: String,
    },
    /// The certificate was not issued by the CA it must chain to.
    #[error("{}: the certificate is not signed by the CA in {}: {reason}", path.display(), ca.display())]
    UnknownCa {
        /// The certificate's file.
        path: PathBuf,
        /// The CA certificate's file.
        ca: PathBuf,
        /// What the verifier said.
        reason: String,
    },
    /// A line of the CA's revocation list is not `SERIAL UNIX-SECONDS WHAT`.
    #[error("{}:{line}: not a revoked certificate (SERIAL UNIX-SECONDS WHAT): {text:?}", path.display())]
    BadRevocationList {
        /// The list's file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// The line.
        text: String,
    },
    /// rcgen could not make a key or certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}
