//! Who may call what in a farm.
//!
//! - [`users`]: rqlite's auth file (`-auth`), unchanged: users with passwords in clear or as
//!   bcrypt hashes, per-user permissions ([`Perm`]), the `"*"` entry for every caller (even
//!   anonymous ones). [`Users::authorize`] checks an HTTP request's `Authorization: Basic`
//!   header for one permission, as rqlite's `CredentialsStore.AA` does; a password verified
//!   once by bcrypt is remembered as its SHA-256, so the web tier's every call does not pay
//!   bcrypt's cost again.
//! - [`token`]: the farm's admin token ([`AdminToken`]), the credential of the operator on
//!   admin ports when internal TLS is off (`Authorization: Bearer ...`, or as the password of
//!   HTTP Basic, which a browser prompts for).
//! - [`secrets`]: the farm's own secrets, created by `webfarm up` on first start beside the
//!   CA (`<data_dir>/secrets/`): the admin token, an rqlite auth file with a `web` user
//!   (`execute`, `query`) and an `operator` user (`all`), the clear passwords in 0600 files.
//! - [`basic`]: HTTP Basic (RFC 7617) headers, read and written.
//!
//! ```
//! use webfarm_auth::{Perm, Users};
//! let users = Users::from_json(
//!     br#"[{"username": "web", "password": "s3cret", "perms": ["execute", "query"]}]"#,
//! )
//! .unwrap();
//! let header = webfarm_auth::basic::header("web", "s3cret");
//! assert!(users.authorize(Some(&header), Perm::Query).is_ok());
//! assert!(users.authorize(Some(&header), Perm::Backup).is_err());
//! ```

pub mod basic;
pub mod secrets;
pub mod token;
pub mod users;

pub use secrets::Secrets;
pub use token::AdminToken;
pub use users::{Perm, Refusal, Users};

/// A secret file that cannot be read, written or understood.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The auth file is not rqlite's JSON.
    #[error("{path}: not an rqlite auth file: {message}")]
    Invalid {
        /// The file (`<text>` for text given directly).
        path: std::path::PathBuf,
        /// What is wrong, with the line and column.
        message: String,
    },
    /// No system randomness, or bcrypt failed to hash.
    #[error("cannot make a secret: {0}")]
    Random(String),
}
