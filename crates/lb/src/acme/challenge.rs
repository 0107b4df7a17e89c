//! The pending http-01 challenges (RFC 8555 §8.3), shared by the order that publishes them
//! and the HTTP path that answers `GET /.well-known/acme-challenge/<token>` with the key
//! authorization.
//!
//! A map behind a mutex, touched only by challenge requests and by orders (a few entries, a
//! few times a quarter), never held across an `.await`. Ordinary requests do not look at
//! it: the path prefix is compared first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The path prefix of http-01 challenges (RFC 8555 §8.3).
pub(crate) const PREFIX: &str = "/.well-known/acme-challenge/";

/// What the store says of a challenge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A pending challenge: answer with this key authorization (`token.thumbprint`).
    Known(String),
    /// No pending challenge has this token (an old or foreign one).
    Unknown,
}

/// The challenges this node answers now.
#[derive(Debug, Default)]
pub(crate) struct Challenges {
    /// `[acme]` is set: the lb owns the challenge path (unknown tokens get its 404).
    enabled: bool,
    tokens: Mutex<HashMap<String, String>>,
}

impl Challenges {
    /// An empty store; `enabled` when the farm has `[acme]`.
    pub fn new(enabled: bool) -> Challenges {
        Challenges {
            enabled,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for a request of `path`: `None` when it is not a challenge path or the
    /// farm has no `[acme]` (the request goes on as any other, to a backend).
    pub fn lookup(&self, path: &str) -> Option<Lookup> {
        let token = path.strip_prefix(PREFIX)?;
        if !self.enabled {
            return None;
        }
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        Some(match tokens.get(token) {
            Some(key_authorization) => Lookup::Known(key_authorization.clone()),
            None => Lookup::Unknown,
        })
    }

    /// Answers `token` with `key_authorization` until the returned guard is dropped.
    pub fn publish(self: &Arc<Self>, token: &str, key_authorization: &str) -> Published {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_string(), key_authorization.to_string());
        Published {
            store: self.clone(),
            token: token.to_string(),
        }
    }

    /// How many challenges are pending.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A published challenge; dropping it (the order finished, failed or was cancelled)
/// withdraws it.
#[derive(Debug)]
pub(crate) struct Published {
    store: Arc<Challenges>,
    token: String,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.store
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_tokens_are_answered_until_dropped() {
        let store = Arc::new(Challenges::new(true));
        assert_eq!(store.lookup("/index.html"), None);
        assert_eq!(
            store.lookup("/.well-known/acme-challenge/abc"),
            Some(Lookup::Unknown)
        );
        let guard = store.publish("abc", "abc.thumb");
        assert_eq!(
            store.lookup("/.well-known/acme-challenge/abc"),
            Some(Lookup::Known("abc.thumb".into()))
        );
        assert_eq!(
            store.lookup("/.well-known/acme-challenge/abcd"),
            Some(Lookup::Unknown)
        );
        assert_eq!(
            store.lookup("/.well-known/acme-challenge/"),
            Some(Lookup::Unknown)
        );
        drop(guard);
        assert_eq!(store.len(), 0);
        assert_eq!(
            store.lookup("/.well-known/acme-challenge/abc"),
            Some(Lookup::Unknown)
        );
    }

    #[test]
    fn without_acme_the_path_is_not_the_lbs() {
        let store = Arc::new(Challenges::new(false));
        let _guard = store.publish("abc", "abc.thumb");
        assert_eq!(store.lookup("/.well-known/acme-challenge/abc"), None);
    }
}
