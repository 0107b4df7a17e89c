//! The string forms of `balance` and `retry_on`, which carry arguments (`hdr(Name)`,
//! `random(N)`, status codes) and so are parsed by hand.

use super::{Balance, RetryOn};

/// The `balance` choices, for error messages.
pub(crate) const BALANCE_CHOICES: &str =
    "roundrobin, static-rr, leastconn, first, source, uri, hdr(<header name>), random, random(<draws>)";

/// Status codes `retry_on` accepts (HAProxy's list).
const RETRY_STATUSES: [u16; 8] = [404, 408, 425, 500, 501, 502, 503, 504];

/// Parses a `balance` value.
///
/// # Errors
///
/// A message saying what is wrong and what is expected.
pub(crate) fn parse_balance(text: &str) -> Result<Balance, String> {
    let t = text.trim();
    let simple = match t {
        "roundrobin" => Some(Balance::Roundrobin),
        "static-rr" => Some(Balance::StaticRr),
        "leastconn" => Some(Balance::Leastconn),
        "first" => Some(Balance::First),
        "source" => Some(Balance::Source),
        "uri" => Some(Balance::Uri),
        "random" => Some(Balance::Random { draws: 2 }),
        _ => None,
    };
    if let Some(b) = simple {
        return Ok(b);
    }
    if let Some(arg) = argument(t, "hdr") {
        let valid = !arg.is_empty()
            && arg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        return if valid {
            Ok(Balance::Hdr(arg.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{text:?}: {arg:?} is not a header name; expected e.g. \"hdr(X-User)\""
            ))
        };
    }
    if let Some(arg) = argument(t, "random") {
        return match arg.parse::<u32>() {
            Ok(draws) if (1..=16).contains(&draws) => Ok(Balance::Random { draws }),
            _ => Err(format!(
                "{text:?}: the number of draws must be 1..=16; expected e.g. \"random(2)\""
            )),
        };
    }
    Err(format!(
        "unknown algorithm {text:?}; expected one of {BALANCE_CHOICES}"
    ))
}

/// `name(arg)` → `Some(arg)`.
fn argument<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
        .map(str::trim)
}

/// Parses one `retry_on` keyword; `all-retryable-errors` expands to every condition.
///
/// # Errors
///
/// A message naming the keyword and the choices.
pub(crate) fn parse_retry_on(text: &str) -> Result<Vec<RetryOn>, String> {
    Ok(match text.trim() {
        "conn-failure" => vec![RetryOn::ConnFailure],
        "empty-response" => vec![RetryOn::EmptyResponse],
        "junk-response" => vec![RetryOn::JunkResponse],
        "response-timeout" => vec![RetryOn::ResponseTimeout],
        "all-retryable-errors" => {
            let mut all = vec![
                RetryOn::ConnFailure,
                RetryOn::EmptyResponse,
                RetryOn::JunkResponse,
                RetryOn::ResponseTimeout,
            ];
            all.extend([500, 502, 503, 504].map(RetryOn::Status));
            all
        }
        other => match other.parse::<u16>() {
            Ok(code) if RETRY_STATUSES.contains(&code) => vec![RetryOn::Status(code)],
            _ => {
                return Err(format!(
                    "unknown condition {text:?}; expected conn-failure, empty-response, \
                     junk-response, response-timeout, all-retryable-errors or a status among \
                     {RETRY_STATUSES:?}"
                ))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_balance_form_parses() {
        assert_eq!(parse_balance("roundrobin"), Ok(Balance::Roundrobin));
        assert_eq!(parse_balance("static-rr"), Ok(Balance::StaticRr));
        assert_eq!(parse_balance("leastconn"), Ok(Balance::Leastconn));
        assert_eq!(parse_balance("first"), Ok(Balance::First));
        assert_eq!(parse_balance("source"), Ok(Balance::Source));
        assert_eq!(parse_balance("uri"), Ok(Balance::Uri));
        assert_eq!(
            parse_balance("hdr(X-User)"),
            Ok(Balance::Hdr("x-user".into()))
        );
        assert_eq!(parse_balance("random"), Ok(Balance::Random { draws: 2 }));
        assert_eq!(parse_balance("random(3)"), Ok(Balance::Random { draws: 3 }));
        for bad in ["rr", "hdr()", "hdr(a b)", "random(0)", "random(x)", "hdr(x"] {
            assert!(parse_balance(bad).is_err(), "{bad}");
        }
        assert!(parse_balance("nope").unwrap_err().contains("leastconn"));
        for b in ["roundrobin", "hdr(x-user)", "random(2)", "static-rr"] {
            assert_eq!(parse_balance(b).unwrap().to_string(), b);
        }
    }

    #[test]
    fn retry_on_keywords() {
        assert_eq!(parse_retry_on("503"), Ok(vec![RetryOn::Status(503)]));
        assert_eq!(parse_retry_on("all-retryable-errors").unwrap().len(), 8);
        assert!(parse_retry_on("200").is_err());
        assert!(parse_retry_on("conn-fail")
            .unwrap_err()
            .contains("conn-failure"));
    }
}
