//! The farm's admin token: the operator's credential on admin ports when internal TLS is off.
//!
//! With internal TLS on, the operator is known by the certificate (`operator.crt`); without
//! TLS nothing on the wire says who calls, so the admin routes (`/metrics`, `/lb/...`,
//! `/cluster/...`) and the supervisor's control socket ask for this token instead: 32 random
//! bytes from the system's CSPRNG, hex-encoded, in a 0600 file ([`crate::Secrets`]). It is
//! sent as `Authorization: Bearer <token>` (RFC 6750; what Prometheus's `authorization:
//! credentials_file` sends), or as the password of HTTP Basic with any user name (what a
//! browser prompts for). Compared in constant time.

use http::HeaderValue;
use subtle::ConstantTimeEq;

/// The admin token. Its `Debug` does not show it.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token of `text` (surrounding whitespace removed, as read from a file).
    pub fn new(text: &str) -> AdminToken {
        AdminToken(text.trim().to_string())
    }

    /// The token's text (to send it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the token, compared in constant time: the SHA-256 digests of
    /// both are compared, so that not even the candidate's length shortens the comparison.
    pub fn matches(&self, candidate: &str) -> bool {
        let digest = |t: &str| ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
        !self.0.is_empty() && bool::from(digest(&self.0).as_ref().ct_eq(digest(candidate).as_ref()))
    }

    /// Whether an `Authorization` header carries the token: `Bearer <token>`, or Basic with
    /// the token as the password.
    pub fn accepts(&self, header: &HeaderValue) -> bool {
        if let Some(token) = crate::basic::bearer(header) {
            return self.matches(token);
        }
        crate::basic::parse(header).is_some_and(|(_, password)| self.matches(&password))
    }

    /// `Authorization: Bearer <token>`.
    ///
    /// # Panics
    ///
    /// Never for a token made by [`crate::Secrets`] (hex); a token read from a file with
    /// control characters would not be a valid header: the secrets module refuses those.
    pub fn bearer(&self) -> HeaderValue {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", self.0)).expect("a token is header-safe");
        // Kept out of HPACK tables and of `Debug`.
        value.set_sensitive(true);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_password_carry_the_token() {
        let t = AdminToken::new(" abc123\n");
        assert!(t.accepts(&t.bearer()));
        assert!(t.accepts(&crate::basic::header("anyone", "abc123")));
        assert!(!t.accepts(&crate::basic::header("abc123", "x")));
        assert!(!t.accepts(&HeaderValue::from_static("Bearer abc124")));
        assert!(!AdminToken::new("").matches(""));
        assert_eq!(format!("{t:?}"), "AdminToken(..)");
        assert!(t.bearer().is_sensitive());
        assert!(crate::basic::header("u", "p").is_sensitive());
    }
}
