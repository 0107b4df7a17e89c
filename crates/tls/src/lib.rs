//! webfarm's TLS, shared by every role and the binary.
//!
//! - [`files`]: PEM certificate chains and private keys from disk (rustls-pki-types), and
//!   private files written with mode 0600;
//! - [`cert`]: a certificate/key pair loaded and checked (the key matches, the names it
//!   covers, its validity period), the errors naming the file;
//! - [`resolver`]: the server certificate chosen by the client's SNI, swappable at run time
//!   (HAProxy's `bind ... ssl crt` with several certificates, and its hot update);
//! - [`server`]: the crypto provider (rustls with *ring*, Mozilla's "intermediate" suites)
//!   and a server configuration with ALPN and session resumption;
//! - [`ca`]: the farm's own certificate authority (rcgen), which issues the site's and each
//!   node's certificate on first start;
//! - [`revoke`]: its revocation list and CRL;
//! - [`internal`]: mutual TLS between the farm's nodes, which picks up a new CRL or a
//!   renewed certificate of its own within a second of the file changing.

pub mod ca;
pub mod cert;
mod error;
pub mod farm;
pub mod files;
pub mod internal;
mod reloading;
pub mod resolver;
pub mod revoke;
pub mod server;

pub use error::TlsError;
pub use rustls;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_revoke;
