//! rqlite's auth file (`rqlited -auth FILE`), read unchanged.
//!
//! The file is a JSON list of `{"username", "password", "perms"}`. A password is in clear or
//! a bcrypt hash (`$2a$`, `$2b$`, `$2y$`; rqlite accepts either). `perms` lists [`Perm`]s by
//! rqlite's names. The entry with username `"*"` gives its permissions to every caller, even
//! one without credentials (rqlite's `AllUsers`), and has no password.
//!
//! [`Users::authorize`] decides as rqlite's `CredentialsStore.AA`: a permission `"*"` holds
//! (or `all` for `"*"`) needs no credentials; otherwise the request must carry HTTP Basic
//! credentials of a user of the file, whose password matches and who holds the permission or
//! `all`. Unknown permission names are kept out with a warning (a newer rqlite's file still
//! loads); a file that is not such a list, or names a user twice, is refused.
//!
//! bcrypt is slow on purpose (about 50–100 ms at cost 10–12). A password bcrypt verified is
//! remembered as the SHA-256 of what the caller sent, per user, and later requests compare
//! that digest in constant time ([`subtle`]), so a client that sends the same credentials on
//! every request (the web tier, pyrqlite) pays bcrypt once per process. A wrong password is
//! never remembered: each guess pays bcrypt again. So do an unknown user and a wrong
//! clear password when the file holds bcrypt hashes: the password is checked against the
//! file's costliest hash and the answer thrown away, so that, in a file whose hashes share
//! one cost (the farm's own), the time of a refusal does not tell which user names exist
//! (rqlite answers an unknown user at once). A user whose hash is cheaper than the
//! costliest is still refused faster. The caller bounds how many bcrypt checks run at once
//! (the db API: `crates/db/src/http/auth.rs`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use http::HeaderValue;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Most passwords remembered per user once bcrypt verified them (bcrypt reads only a
/// password's first 72 bytes, so several can verify); more are verified each time.
const REMEMBERED_PER_USER: usize = 4;

/// The username whose permissions every caller has (rqlite's `AllUsers`).
pub const ALL_USERS: &str = "*";

/// A permission of rqlite's auth file, by the endpoint it opens (rqlite's security
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    /// `all`: every permission.
    All,
    /// `execute`: `/db/execute` (and the writes of `/db/request`).
    Execute,
    /// `query`: `/db/query` (and the reads of `/db/request`).
    Query,
    /// `load`: `/db/load`.
    Load,
    /// `backup`: `/db/backup`.
    Backup,
    /// `status`: `/status`, `/nodes`.
    Status,
    /// `ready`: `/readyz`.
    Ready,
    /// `join`: `/join` as a voter.
    Join,
    /// `join-read-only`: `/join` as a read-only replica (a learner).
    JoinReadOnly,
    /// `remove`: `/remove`.
    Remove,
    /// `snapshot`: a snapshot on demand.
    Snapshot,
    /// `leader-ops`: leadership operations (webfarm's `/cluster/step-down`).
    LeaderOps,
}

impl Perm {
    /// Every permission, in rqlite's order.
    pub const EVERY: [Perm; 12] = [
        Perm::All,
        Perm::Execute,
        Perm::Query,
        Perm::Load,
        Perm::Backup,
        Perm::Status,
        Perm::Ready,
        Perm::Join,
        Perm::JoinReadOnly,
        Perm::Remove,
        Perm::Snapshot,
        Perm::LeaderOps,
    ];

    /// The name in the auth file.
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::All => "all",
            Perm::Execute => "execute",
            Perm::Query => "query",
            Perm::Load => "load",
            Perm::Backup => "backup",
            Perm::Status => "status",
            Perm::Ready => "ready",
            Perm::Join => "join",
            Perm::JoinReadOnly => "join-read-only",
            Perm::Remove => "remove",
            Perm::Snapshot => "snapshot",
            Perm::LeaderOps => "leader-ops",
        }
    }

    /// The permission named `name` in the auth file.
    pub fn from_name(name: &str) -> Option<Perm> {
        Perm::EVERY.into_iter().find(|p| p.as_str() == name)
    }
}

/// Why a request was refused; [`Refusal::reason`] labels the failure metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization` header, or not HTTP Basic.
    #[error("credentials required (HTTP Basic)")]
    NoCredentials,
    /// The user is not in the auth file. Reads as [`Refusal::BadPassword`]: the answer does
    /// not tell whether a user exists (the user is in the log and the metric's reason).
    #[error("invalid credentials")]
    UnknownUser(String),
    /// The password does not match the user's.
    #[error("invalid credentials")]
    BadPassword(String),
    /// The user is authenticated but lacks the permission.
    #[error("user {user:?} lacks the {perm:?} permission")]
    Forbidden {
        /// The user.
        user: String,
        /// The permission's name in the auth file.
        perm: &'static str,
    },
}

impl Refusal {
    /// A short label for metrics: `no_credentials`, `unknown_user`, `bad_password`,
    /// `forbidden`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoCredentials => "no_credentials",
            Refusal::UnknownUser(_) => "unknown_user",
            Refusal::BadPassword(_) => "bad_password",
            Refusal::Forbidden { .. } => "forbidden",
        }
    }

    /// The user the refused credentials named, if any (for the log; the answer does not
    /// tell an unknown user from a wrong password).
    pub fn user(&self) -> Option<&str> {
        match self {
            Refusal::NoCredentials => None,
            Refusal::UnknownUser(u) | Refusal::BadPassword(u) => Some(u),
            Refusal::Forbidden { user, .. } => Some(user),
        }
    }

    /// Whether the caller should be asked for (other) credentials: every refusal but
    /// [`Refusal::Forbidden`], whose credentials are good.
    pub fn challenge(&self) -> bool {
        !matches!(self, Refusal::Forbidden { .. })
    }
}

/// Who a request was authorized as: the user of its credentials, `None` when the permission
/// is given to every caller (`"*"`) and the request carried none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated user.
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    perms: Vec<String>,
}

#[derive(Debug)]
struct User {
    password: String,
    perms: HashSet<Perm>,
}

/// The users of an rqlite auth file, and the passwords bcrypt already verified.
#[derive(Debug)]
pub struct Users {
    users: HashMap<String, User>,
    anyone: HashSet<Perm>,
    /// SHA-256 of the passwords bcrypt verified, per user: at most
    /// [`REMEMBERED_PER_USER`], never forgotten, so that once [`Users::needs_bcrypt`] says
    /// no for some credentials it keeps saying no.
    verified: Mutex<HashMap<String, Vec<[u8; 32]>>>,
    /// The costliest bcrypt hash of the file, which an unknown user's password is checked
    /// against (and the answer ignored); `None` when no password is a bcrypt hash.
    decoy: Option<String>,
}

impl Users {
    /// Reads rqlite's auth file at `path`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Io`] when the file cannot be read, [`AuthError::Invalid`] when it is not a
    /// JSON list of users (the message names the line and column, or the user named twice).
    pub fn load(path: &Path) -> Result<Users, AuthError> {
        let text = std::fs::read(path).map_err(|source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text).map_err(|message| AuthError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the text of an auth file.
    ///
    /// # Errors
    ///
    /// As [`Users::load`], with `<text>` as the path.
    pub fn from_json(text: &[u8]) -> Result<Users, AuthError> {
        Users::parse(text).map_err(|message| AuthError::Invalid {
            path: "<text>".into(),
            message,
        })
    }

    fn parse(text: &[u8]) -> Result<Users, String> {
        let entries: Vec<Entry> = serde_json::from_slice(text).map_err(|e| {
            format!("{e}; expected a JSON list like [{{\"username\": \"u\", \"password\": \"p\", \"perms\": [\"query\"]}}]")
        })?;
        let mut users = HashMap::new();
        let mut anyone = HashSet::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let perms = perms_of(&entry.username, &entry.perms);
            if entry.username == ALL_USERS {
                anyone.extend(perms);
                continue;
            }
            if entry.username.is_empty() {
                return Err(format!("entry {i}: empty username"));
            }
            let password = entry.password.unwrap_or_default();
            if users.contains_key(&entry.username) {
                return Err(format!("user {:?} is listed twice", entry.username));
            }
            users.insert(entry.username, User { password, perms });
        }
        let decoy = users
            .values()
            .filter(|u| is_bcrypt(&u.password))
            .max_by_key(|u| bcrypt_cost(&u.password))
            .map(|u| u.password.clone());
        Ok(Users {
            users,
            anyone,
            verified: Mutex::default(),
            decoy,
        })
    }

    /// Whether the file names `user`.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether every caller holds `perm` (through `"*"`), credentials or not.
    pub fn open_to_all(&self, perm: Perm) -> bool {
        self.anyone.contains(&perm) || self.anyone.contains(&Perm::All)
    }

    /// Whether checking `header` would run bcrypt (a bcrypt password not verified yet with
    /// these credentials): the caller then runs [`Users::authorize`] off the async runtime.
    pub fn needs_bcrypt(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(crate::basic::parse) else {
            return false;
        };
        match self.users.get(&user) {
            Some(u) if is_bcrypt(&u.password) => !self.remembered(&user, &password),
            Some(u) => self.decoy.is_some() && !clear_matches(&u.password, &password),
            None => self.decoy.is_some(),
        }
    }

    /// Authorizes a request with `header` (its `Authorization`, if any) for `perm`, as
    /// rqlite's `AA`.
    ///
    /// # Errors
    ///
    /// The [`Refusal`]: no credentials where the permission is not open to all, an unknown
    /// user, a wrong password, or a missing permission.
    pub fn authorize(&self, header: Option<&HeaderValue>, perm: Perm) -> Result<Caller, Refusal> {
        if self.open_to_all(perm) {
            return Ok(Caller {
                user: header.and_then(crate::basic::parse).map(|(u, _)| u),
            });
        }
        self.authorize_user(header, perm)
    }

    /// As [`Users::authorize`], but only a user named in the file, whose password `header`
    /// carries and who holds `perm` (or `all`), passes: what `"*"` gives every caller does
    /// not count. For routes whose own check comes first (the farm's membership routes), so
    /// that any `Authorization` header cannot borrow `"*"`'s permissions.
    ///
    /// # Errors
    ///
    /// As [`Users::authorize`].
    pub fn authorize_user(
        &self,
        header: Option<&HeaderValue>,
        perm: Perm,
    ) -> Result<Caller, Refusal> {
        let creds = header.and_then(crate::basic::parse);
        let (user, password) = creds.ok_or(Refusal::NoCredentials)?;
        let Some(entry) = self.users.get(&user) else {
            self.as_slow_as_bcrypt(&password);
            return Err(Refusal::UnknownUser(user));
        };
        if !self.password_matches(&user, entry, &password) {
            return Err(Refusal::BadPassword(user));
        }
        if entry.perms.contains(&perm) || entry.perms.contains(&Perm::All) {
            Ok(Caller { user: Some(user) })
        } else {
            Err(Refusal::Forbidden {
                user,
                perm: perm.as_str(),
            })
        }
    }

    fn password_matches(&self, user: &str, entry: &User, password: &str) -> bool {
        // A bcrypt hash is only ever verified by bcrypt: the hash itself is no password.
        if !is_bcrypt(&entry.password) {
            let ok = clear_matches(&entry.password, password);
            if !ok {
                self.as_slow_as_bcrypt(password);
            }
            return ok;
        }
        if self.remembered(user, password) {
            return true;
        }
        if bcrypt::verify(password, &entry.password).unwrap_or(false) {
            if let Ok(mut v) = self.verified.lock() {
                let digests = v.entry(user.to_string()).or_default();
                if digests.len() < REMEMBERED_PER_USER {
                    digests.push(sha256(password));
                }
            }
            return true;
        }
        false
    }

    /// A refusal that ran no bcrypt (an unknown user, a wrong clear password) runs one
    /// against the file's costliest hash, the answer ignored, so that it takes as long as
    /// a wrong bcrypt password; nothing when the file holds no hash.
    fn as_slow_as_bcrypt(&self, password: &str) {
        if let Some(decoy) = &self.decoy {
            let _ = bcrypt::verify(password, decoy);
        }
    }

    fn remembered(&self, user: &str, password: &str) -> bool {
        let Ok(v) = self.verified.lock() else {
            return false;
        };
        let digest = sha256(password);
        v.get(user).is_some_and(|known| {
            known
                .iter()
                .fold(subtle::Choice::from(0), |any, d| any | d.ct_eq(&digest))
                .into()
        })
    }
}

fn perms_of(user: &str, names: &[String]) -> HashSet<Perm> {
    names
        .iter()
        .filter_map(|name| {
            let perm = Perm::from_name(name);
            if perm.is_none() {
                tracing::warn!(user, perm = %name, "auth file: unknown permission ignored");
            }
            perm
        })
        .collect()
}

/// Whether `stored` is a bcrypt hash (modular crypt format `$2a$`, `$2b$`, `$2x$`, `$2y$`).
pub fn is_bcrypt(stored: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
        && stored.len() == 60
}

/// The cost of a bcrypt hash (`$2b$12$...` → 12); 0 when it cannot be read.
fn bcrypt_cost(hash: &str) -> u32 {
    hash.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A clear password compared as SHA-256 digests of equal length, in constant time: the
/// comparison's time says nothing of either length.
fn clear_matches(stored: &str, sent: &str) -> bool {
    bool::from(sha256(stored).ct_eq(&sha256(sent)))
}

fn sha256(text: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests;
