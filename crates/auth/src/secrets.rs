//! The farm's own secrets, made by `webfarm up` on first start and reused after, as the farm
//! CA is (`<data_dir>/secrets/`, mode 0700):
//!
//! | file | what |
//! |---|---|
//! | `admin.token` | the admin token ([`AdminToken`]); also the `operator` user's db password |
//! | `web.password` | the `web` user's db password (the web tier's) |
//! | `db-auth.json` | rqlite's auth file: `web` (`execute`, `query`), `operator` (`all`), `"*"` (`ready`), bcrypt hashes |
//!
//! Every file is mode 0600 and replaced atomically. The secrets are 32 bytes of the system's
//! CSPRNG (*ring*'s `SystemRandom`: `getrandom(2)`), hex-encoded. The operator's db password
//! is the admin token so that one `Authorization: Basic operator:<token>` opens both the db
//! API (as rqlite's `operator` user) and the admin routes (the token as Basic password) when
//! internal TLS is off; one secret for the operator, one for the web tier.
//!
//! A password file made again (deleted by hand) rewrites `db-auth.json` with its new hash;
//! otherwise nothing existing is touched.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ring::rand::SecureRandom;

use crate::{AdminToken, AuthError};

/// The user the web tier calls the db as, in the generated auth file.
pub const WEB_USER: &str = "web";
/// The operator's user in the generated auth file.
pub const OPERATOR_USER: &str = "operator";
/// bcrypt's cost for the generated hashes: 2^10 rounds, about 50–100 ms per verification on
/// one core (rqlite's documentation uses the Go default, also 10).
pub const BCRYPT_COST: u32 = 10;

/// Where a farm's secrets live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// `<data_dir>/secrets`.
    pub dir: PathBuf,
}

/// What [`Secrets::ensure`] made (file names), empty when everything existed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Made {
    /// The files created or rewritten.
    pub files: Vec<String>,
}

impl Secrets {
    /// The secrets of the farm whose data directory is `data_dir`.
    pub fn of_data_dir(data_dir: &Path) -> Secrets {
        Secrets {
            dir: data_dir.join("secrets"),
        }
    }

    /// `admin.token`.
    pub fn token_path(&self) -> PathBuf {
        self.dir.join("admin.token")
    }

    /// `db-auth.json`: the generated rqlite auth file.
    pub fn auth_path(&self) -> PathBuf {
        self.dir.join("db-auth.json")
    }

    /// `web.password`.
    pub fn web_password_path(&self) -> PathBuf {
        self.dir.join("web.password")
    }

    /// Creates what is missing (see the module's table); reuses what exists.
    ///
    /// # Errors
    ///
    /// A file that cannot be written (named), or no system randomness.
    pub fn ensure(&self) -> Result<Made, AuthError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| AuthError::Io {
                path: self.dir.clone(),
                source,
            })?;
        let mut made = Made::default();
        let token = self.ensure_secret(&self.token_path(), &mut made)?;
        let web = self.ensure_secret(&self.web_password_path(), &mut made)?;
        if !made.files.is_empty() || !self.auth_path().exists() {
            let text = auth_file(&web, &token)?;
            write_private(&self.auth_path(), text.as_bytes())?;
            made.files.push("db-auth.json".into());
        }
        Ok(made)
    }

    fn ensure_secret(&self, path: &Path, made: &mut Made) -> Result<String, AuthError> {
        if path.exists() {
            return read_secret(path);
        }
        let secret = random_hex()?;
        write_private(path, format!("{secret}\n").as_bytes())?;
        made.files.push(file_name(path));
        Ok(secret)
    }

    /// The admin token.
    ///
    /// # Errors
    ///
    /// The file is missing or unreadable ([`read_secret`]).
    pub fn admin_token(&self) -> Result<AdminToken, AuthError> {
        read_secret(&self.token_path()).map(|t| AdminToken::new(&t))
    }
}

/// The generated rqlite auth file for these passwords.
fn auth_file(web: &str, operator: &str) -> Result<String, AuthError> {
    let hash =
        |pw: &str| bcrypt::hash(pw, BCRYPT_COST).map_err(|e| AuthError::Random(e.to_string()));
    let entries = serde_json::json!([
        {"username": WEB_USER, "password": hash(web)?, "perms": ["execute", "query"]},
        {"username": OPERATOR_USER, "password": hash(operator)?, "perms": ["all"]},
        {"username": "*", "perms": ["ready"]},
    ]);
    Ok(format!("{entries:#}\n"))
}

/// A secret read from a file: its text without surrounding whitespace.
///
/// # Errors
///
/// [`AuthError::Io`] when unreadable, [`AuthError::Invalid`] when empty or holding control
/// characters (it could not be sent in a header).
pub fn read_secret(path: &Path) -> Result<String, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text.trim();
    if secret.is_empty() || secret.chars().any(char::is_control) {
        return Err(AuthError::Invalid {
            path: path.to_path_buf(),
            message: "a secret file must hold one line of printable text".into(),
        });
    }
    Ok(secret.to_string())
}

fn random_hex() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthError::Random("the system's randomness failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `contents` to `path` with mode 0600, replacing any file there atomically
/// (webfarm-tls's writer of private keys).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    webfarm_tls::files::write_private(path, contents).map_err(|e| match e {
        webfarm_tls::TlsError::Write { path, source } => AuthError::Io { path, source },
        other => AuthError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{Perm, Users};

    #[test]
    fn made_once_then_reused_and_the_passwords_open_the_generated_file() {
        let tmp = webfarm_testkit::TempDir::new("auth-secrets");
        let s = Secrets::of_data_dir(tmp.path());
        let made = s.ensure().unwrap();
        assert_eq!(made.files.len(), 3, "{made:?}");
        for f in ["admin.token", "web.password", "db-auth.json"] {
            let mode = std::fs::metadata(s.dir.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let token = s.admin_token().unwrap();
        assert_eq!(token.expose().len(), 64);
        assert!(s.ensure().unwrap().files.is_empty(), "reused");
        assert_eq!(s.admin_token().unwrap().expose(), token.expose());

        let users = Users::load(&s.auth_path()).unwrap();
        let web = read_secret(&s.web_password_path()).unwrap();
        let web_h = crate::basic::header(WEB_USER, &web);
        assert!(users.authorize(Some(&web_h), Perm::Execute).is_ok());
        assert!(users.authorize(Some(&web_h), Perm::Backup).is_err());
        let op = crate::basic::header(OPERATOR_USER, token.expose());
        assert!(users.authorize(Some(&op), Perm::Remove).is_ok());
        assert!(users.authorize(None, Perm::Ready).is_ok());
        assert!(users.authorize(None, Perm::Query).is_err());

        // A password file deleted by hand is made again and the auth file follows it.
        std::fs::remove_file(s.web_password_path()).unwrap();
        let made = s.ensure().unwrap();
        assert_eq!(made.files, vec!["web.password", "db-auth.json"]);
        let web2 = read_secret(&s.web_password_path()).unwrap();
        assert_ne!(web, web2);
        let users = Users::load(&s.auth_path()).unwrap();
        let h = crate::basic::header(WEB_USER, &web2);
        assert!(users.authorize(Some(&h), Perm::Query).is_ok());
    }

    #[test]
    fn an_empty_secret_file_is_refused_with_its_name() {
        let tmp = webfarm_testkit::TempDir::new("auth-empty");
        let p = tmp.path().join("x.password");
        std::fs::write(&p, "\n").unwrap();
        let e = read_secret(&p).unwrap_err().to_string();
        assert!(e.contains("x.password") && e.contains("one line"), "{e}");
    }
}
