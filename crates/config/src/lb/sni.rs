//! A tcp frontend's `sni_routes` and `inspect_delay`: TLS passthrough routed by the server
//! name of the client's ClientHello, HAProxy's
//!
//! ```text
//! tcp-request inspect-delay 5s
//! tcp-request content reject unless { req.ssl_hello_type 1 }
//! use_backend db-api if { req.ssl_sni -i db.foobar.com }
//! use_backend other  if { req.ssl_sni -m reg -i ^[^.]+\.foobar\.com$ }
//! default_backend web-tls
//! ```
//!
//! written `sni_routes = [{ sni = "db.foobar.com", backend = "db-api" }, { sni =
//! "*.foobar.com", backend = "other" }]` and `inspect_delay = "5s"`.

use std::fmt;
use std::time::Duration;

use super::{Backend, Mode};
use crate::farm::check_dns_name;
use crate::raw::RawFrontend;

/// `inspect_delay`'s default: HAProxy's documented example, `tcp-request inspect-delay 5s`.
pub const DEFAULT_INSPECT_DELAY: Duration = Duration::from_secs(5);

/// The server name an SNI route matches, in lower case; matching ignores ASCII case
/// (HAProxy's `req.ssl_sni -i`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SniPattern {
    /// `db.foobar.com`: that name only.
    Exact(String),
    /// `*.foobar.com`, held as `foobar.com`: any name of exactly one more label
    /// (`db.foobar.com`, not `foobar.com` nor `a.db.foobar.com`), as in certificates
    /// (RFC 6125 §6.4.3).
    Wildcard(String),
}

impl SniPattern {
    /// Parses `db.foobar.com` or `*.foobar.com`: a DNS name (ASCII letters, digits and `-`,
    /// any case; punycode for internationalised names), optionally behind `*.`, that is not
    /// an IP address (SNI carries host names only, RFC 6066 §3).
    ///
    /// # Errors
    ///
    /// What is wrong with `text`, for the configuration's message.
    pub fn parse(text: &str) -> Result<SniPattern, String> {
        let lower = text.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if let Err(why) = check_dns_name(name) {
            let hint = if text.contains('*') {
                "; a wildcard is `*.` followed by a name (\"*.foobar.com\")"
            } else {
                ""
            };
            return Err(format!("{text:?} {why}{hint}"));
        }
        let last = name.rsplit('.').next().unwrap_or(name);
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{text:?} is an IP address (or ends in a numeric label); a ClientHello's \
                 server name is a DNS name (RFC 6066 §3)"
            ));
        }
        Ok(if wildcard {
            SniPattern::Wildcard(name.to_string())
        } else {
            SniPattern::Exact(lower)
        })
    }

    /// Whether `name`, a ClientHello's server name, matches, ignoring ASCII case and one
    /// trailing dot.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        match self {
            SniPattern::Exact(exact) => exact.eq_ignore_ascii_case(name),
            SniPattern::Wildcard(parent) => name.split_once('.').is_some_and(|(label, rest)| {
                !label.is_empty() && rest.eq_ignore_ascii_case(parent)
            }),
        }
    }
}

impl fmt::Display for SniPattern {
    /// As written in the file, in lower case: `db.foobar.com`, `*.foobar.com`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniPattern::Exact(name) => f.write_str(name),
            SniPattern::Wildcard(parent) => write!(f, "*.{parent}"),
        }
    }
}

/// One entry of `sni_routes`: connections whose ClientHello names a matching server go to
/// `backend` (HAProxy's `use_backend B if { req.ssl_sni -i NAME }`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SniRoute {
    /// The names it matches.
    pub sni: SniPattern,
    /// Index into [`crate::Farm::backends`]; a `mode = "tcp"` backend.
    pub backend: usize,
}

/// `frontends[i].sni_routes` and `inspect_delay`, at `key`: the routes (empty when none)
/// and the delay ([`DEFAULT_INSPECT_DELAY`] unless given).
pub(super) fn resolve_sni(
    f: &RawFrontend,
    mode: Mode,
    backends: &[Backend],
    key: &str,
    problems: &mut Vec<String>,
) -> (Vec<SniRoute>, Duration) {
    let delay = f.inspect_delay.unwrap_or(DEFAULT_INSPECT_DELAY);
    if delay.is_zero() {
        problems.push(format!(
            "{key}.inspect_delay: must be greater than 0 (the time a client has to send its \
             ClientHello)"
        ));
    }
    let Some(raw) = &f.sni_routes else {
        if f.inspect_delay.is_some() {
            problems.push(format!(
                "{key}.inspect_delay: only applies with sni_routes (it bounds the wait for a \
                 TLS ClientHello); remove it"
            ));
        }
        return (Vec::new(), delay);
    };
    if mode != Mode::Tcp {
        problems.push(format!(
            "{key}.sni_routes: routing by SNI without decrypting needs mode = \"tcp\"; an \
             http frontend terminates TLS with `tls` instead"
        ));
    }
    if raw.is_empty() {
        problems.push(format!(
            "{key}.sni_routes: empty; list at least one {{ sni = \"name\", backend = \"b\" }} \
             or remove it"
        ));
    }
    let mut routes = Vec::new();
    // Every name parsed so far, with its index in the file.
    let mut earlier: Vec<(usize, SniPattern)> = Vec::new();
    for (j, r) in raw.iter().enumerate() {
        let rkey = format!("{key}.sni_routes[{j}]");
        let backend = route_backend(&r.backend, backends, &rkey, problems);
        let sni = match SniPattern::parse(&r.sni) {
            Ok(sni) => sni,
            Err(why) => {
                problems.push(format!("{rkey}.sni: {why}"));
                continue;
            }
        };
        if let Some(why) = unreachable(&sni, &earlier) {
            problems.push(format!("{rkey}.sni: {why}"));
        }
        earlier.push((j, sni.clone()));
        if let Some(backend) = backend {
            routes.push(SniRoute { sni, backend });
        }
    }
    (routes, delay)
}

/// Why a route for `sni` would never be taken after the `earlier` ones (index in the file,
/// name): the same name, or an exact name under a wildcard listed before (the first match
/// wins, as HAProxy's `use_backend` rules).
fn unreachable(sni: &SniPattern, earlier: &[(usize, SniPattern)]) -> Option<String> {
    if let Some((i, _)) = earlier.iter().find(|(_, e)| e == sni) {
        return Some(format!("duplicate name \"{sni}\" (also sni_routes[{i}])"));
    }
    let SniPattern::Exact(name) = sni else {
        return None;
    };
    let (i, wildcard) = earlier.iter().find(|(_, e)| e.matches(name))?;
    Some(format!(
        "\"{sni}\" is never reached: sni_routes[{i}] (\"{wildcard}\") matches it first; list \
         it before sni_routes[{i}]"
    ))
}

/// The backend a route names, if it exists and is a tcp backend.
fn route_backend(
    name: &str,
    backends: &[Backend],
    rkey: &str,
    problems: &mut Vec<String>,
) -> Option<usize> {
    let Some(index) = backends.iter().position(|b| b.name == name) else {
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        problems.push(format!(
            "{rkey}.backend: no backend named {name:?}; expected one of [{}]",
            names.join(", ")
        ));
        return None;
    };
    if backends[index].mode != Mode::Tcp {
        problems.push(format!(
            "{rkey}.backend: backend {name:?} is mode {}; TLS passed through by SNI needs a \
             mode = \"tcp\" backend",
            backends[index].mode.as_str()
        ));
    }
    Some(index)
}
