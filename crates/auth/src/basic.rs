//! HTTP Basic authentication (RFC 7617): `Authorization: Basic base64(user ":" password)`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;

/// The `Authorization` header value for `user` and `password`.
///
/// # Panics
///
/// Never: base64 text is always a valid header value.
pub fn header(user: &str, password: &str) -> HeaderValue {
    let value = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    let mut value = HeaderValue::from_str(&value).expect("base64 is a valid header value");
    // Kept out of HPACK tables and of `Debug`.
    value.set_sensitive(true);
    value
}

/// The user and password of a Basic `Authorization` header; `None` for another scheme or a
/// malformed value. The scheme is matched case-insensitively (RFC 7235 §2.1); the password
/// is everything after the first `:` (RFC 7617 §2: a user name holds no colon).
pub fn parse(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The token of a `Bearer` `Authorization` header (RFC 6750); `None` for another scheme.
pub fn bearer(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_with_colons_in_the_password() {
        let h = header("web", "a:b c");
        assert_eq!(parse(&h), Some(("web".into(), "a:b c".into())));
    }

    #[test]
    fn other_schemes_and_garbage_are_not_basic() {
        assert_eq!(parse(&HeaderValue::from_static("Bearer abc")), None);
        assert_eq!(parse(&HeaderValue::from_static("Basic !!!")), None);
        assert_eq!(parse(&HeaderValue::from_static("Basic")), None);
        assert_eq!(
            bearer(&HeaderValue::from_static("bearer  tok ")),
            Some("tok")
        );
        assert_eq!(bearer(&HeaderValue::from_static("Basic dTpw")), None);
    }
}
