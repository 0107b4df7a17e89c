//! Stage two for the load balancers' tables: defaults applied, every rule checked, every
//! problem reported with its key path.

use std::collections::HashSet;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

use super::parse::{parse_balance, parse_retry_on};
use super::{
    Backend, BackendTimeouts, Balance, Check, CheckType, Cookie, Frontend, FrontendTimeouts,
    LbSettings, Mode, RetryOn, Server, MAX_LB_THREADS,
};
use crate::raw::{RawBackend, RawCheck, RawFarm, RawFrontend, RawLb, RawServer};
use crate::{Node, Role};

/// Smallest `max_header_size`: hyper's smallest read buffer.
const MIN_HEADER_SIZE: usize = 8192;

/// The `[lb]` table.
pub(crate) fn resolve_lb(raw: &RawLb, problems: &mut Vec<String>) -> LbSettings {
    let d = LbSettings::default();
    let lb = LbSettings {
        maxconn: raw.maxconn.unwrap_or(d.maxconn),
        access_log: raw.access_log.unwrap_or(d.access_log),
        threads: raw.threads.unwrap_or(d.threads),
    };
    if lb.maxconn == 0 {
        problems.push("lb.maxconn: must be at least 1".into());
    }
    if lb.threads > MAX_LB_THREADS {
        problems.push(format!(
            "lb.threads: {} is more than {MAX_LB_THREADS}; 0 means one per CPU",
            lb.threads
        ));
    }
    lb
}

/// Every `[[backends]]` table.
pub(crate) fn resolve_backends(
    raw: &[RawBackend],
    nodes: &[Node],
    problems: &mut Vec<String>,
) -> Vec<Backend> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, b) in raw.iter().enumerate() {
        let key = format!("backends[{i}]");
        if !names.insert(b.name.clone()) {
            problems.push(format!("{key}.name: duplicate backend name {:?}", b.name));
        }
        out.push(resolve_backend(b, nodes, &key, problems));
    }
    out
}

/// One `[[backends]]` table, at `key`.
fn resolve_backend(
    b: &RawBackend,
    nodes: &[Node],
    key: &str,
    problems: &mut Vec<String>,
) -> Backend {
    if b.name.is_empty() || b.name.contains('/') {
        problems.push(format!(
            "{key}.name: {:?} must be non-empty and contain no '/'",
            b.name
        ));
    }
    let mode = b.mode.unwrap_or_default();
    let balance = resolve_balance(b, mode, key, problems);
    let retry_on = resolve_retry_on(b.retry_on.as_deref(), key, problems);
    let timeout = resolve_backend_timeouts(b, key, problems);
    let cookie = resolve_cookie(b, mode, key, problems);
    let check = resolve_check(&b.check, key, problems);
    let servers = resolve_servers(&b.servers, nodes, key, problems);
    if b.servers.is_empty() {
        problems.push(format!(
            "{key}.servers: backend {:?} has no server; add [[backends.servers]]",
            b.name
        ));
    }
    Backend {
        name: b.name.clone(),
        mode,
        balance,
        hash_type: b.hash_type.unwrap_or_default(),
        retries: b.retries.unwrap_or(3),
        redispatch: b.redispatch.unwrap_or(true),
        retry_on,
        allbackups: b.allbackups.unwrap_or(false),
        timeout,
        cookie,
        check,
        servers,
    }
}

/// `balance` and `hash_type`, checked against the backend's mode.
fn resolve_balance(b: &RawBackend, mode: Mode, key: &str, problems: &mut Vec<String>) -> Balance {
    let balance = match b.balance.as_deref().map(parse_balance) {
        None => Balance::default(),
        Some(Ok(balance)) => balance,
        Some(Err(e)) => {
            problems.push(format!("{key}.balance: {e}"));
            Balance::default()
        }
    };
    if mode == Mode::Tcp && matches!(balance, Balance::Uri | Balance::Hdr(_)) {
        problems.push(format!(
            "{key}.balance: {balance} needs HTTP requests; a mode = \"tcp\" backend can use \
             roundrobin, static-rr, leastconn, first, source or random"
        ));
    }
    if b.hash_type.is_some() && !balance.is_hash() {
        problems.push(format!(
            "{key}.hash_type: only applies to balance = \"source\", \"uri\" or \"hdr(..)\", \
             not {balance}; remove it"
        ));
    }
    balance
}

/// `[backends.timeout]`: HAProxy's defaults (connect 3 s, server 30 s, queue = connect), none
/// zero.
fn resolve_backend_timeouts(
    b: &RawBackend,
    key: &str,
    problems: &mut Vec<String>,
) -> BackendTimeouts {
    let connect = b.timeout.connect.unwrap_or(Duration::from_secs(3));
    let timeout = BackendTimeouts {
        connect,
        server: b.timeout.server.unwrap_or(Duration::from_secs(30)),
        queue: b.timeout.queue.unwrap_or(connect),
    };
    for (field, d) in [
        ("connect", timeout.connect),
        ("server", timeout.server),
        ("queue", timeout.queue),
    ] {
        if d.is_zero() {
            problems.push(format!("{key}.timeout.{field}: must be greater than 0"));
        }
    }
    timeout
}

/// `[backends.cookie]`: a valid cookie name, HTTP mode only.
fn resolve_cookie(
    b: &RawBackend,
    mode: Mode,
    key: &str,
    problems: &mut Vec<String>,
) -> Option<Cookie> {
    let c = b.cookie.as_ref()?;
    if !valid_token(&c.name) {
        problems.push(format!(
            "{key}.cookie.name: {:?} is not a valid cookie name; use letters, digits, \
             '-' and '_'",
            c.name
        ));
    }
    if mode == Mode::Tcp {
        problems.push(format!(
            "{key}.cookie: sticky cookies need HTTP; remove it from a tcp backend"
        ));
    }
    Some(Cookie {
        name: c.name.clone(),
        insert: c.insert.unwrap_or(true),
    })
}

fn resolve_retry_on(raw: Option<&[String]>, key: &str, problems: &mut Vec<String>) -> Vec<RetryOn> {
    let Some(raw) = raw else {
        return vec![RetryOn::ConnFailure, RetryOn::EmptyResponse];
    };
    let mut out = Vec::new();
    for (j, word) in raw.iter().enumerate() {
        match parse_retry_on(word) {
            Ok(conds) => {
                for c in conds {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
            Err(e) => problems.push(format!("{key}.retry_on[{j}]: {e}")),
        }
    }
    out
}

fn resolve_check(c: &RawCheck, key: &str, problems: &mut Vec<String>) -> Check {
    let inter = c.inter.unwrap_or(Duration::from_secs(2));
    let check = Check {
        kind: c.kind.unwrap_or_default(),
        method: c.method.clone().unwrap_or_else(|| "GET".into()),
        path: c.path.clone().unwrap_or_else(|| "/healthz".into()),
        host: c.host.clone(),
        expect_status: c.expect_status.clone().unwrap_or_default(),
        inter,
        fastinter: c.fastinter.unwrap_or(inter),
        downinter: c.downinter.unwrap_or(inter),
        rise: c.rise.unwrap_or(2),
        fall: c.fall.unwrap_or(3),
        timeout: c
            .timeout
            .unwrap_or_else(|| inter.min(Duration::from_secs(2))),
        observe: c.observe.unwrap_or_default(),
        error_limit: c.error_limit.unwrap_or(10),
        on_error: c.on_error.unwrap_or_default(),
    };
    if !check.path.starts_with('/') {
        problems.push(format!(
            "{key}.check.path: {:?} must start with '/'",
            check.path
        ));
    }
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if check.method.is_empty() || !check.method.bytes().all(tchar) {
        problems.push(format!(
            "{key}.check.method: {:?} is not an HTTP method; expected e.g. \"GET\" or \"HEAD\"",
            check.method
        ));
    }
    if let Some(host) = &check.host {
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            problems.push(format!(
                "{key}.check.host: {host:?} is not a valid Host header value"
            ));
        }
    }
    for (j, code) in check.expect_status.iter().enumerate() {
        if !(100..=599).contains(code) {
            problems.push(format!(
                "{key}.check.expect_status[{j}]: {code} is not an HTTP status (100..=599)"
            ));
        }
    }
    if check.kind == CheckType::Tcp
        && (c.method.is_some() || c.path.is_some() || c.host.is_some() || c.expect_status.is_some())
    {
        problems.push(format!(
            "{key}.check: type = \"tcp\" only connects; remove method, path, host and \
             expect_status (or use type = \"http\")"
        ));
    }
    for (field, d) in [
        ("inter", check.inter),
        ("fastinter", check.fastinter),
        ("downinter", check.downinter),
        ("timeout", check.timeout),
    ] {
        if d.is_zero() {
            problems.push(format!("{key}.check.{field}: must be greater than 0"));
        }
    }
    if check.rise == 0 || check.fall == 0 {
        problems.push(format!("{key}.check: rise and fall must be at least 1"));
    }
    if check.error_limit == 0 {
        problems.push(format!("{key}.check.error_limit: must be at least 1"));
    }
    check
}

fn resolve_servers(
    raw: &[RawServer],
    nodes: &[Node],
    key: &str,
    problems: &mut Vec<String>,
) -> Vec<Server> {
    let mut names = HashSet::new();
    let mut servers = Vec::new();
    for (j, s) in raw.iter().enumerate() {
        let skey = format!("{key}.servers[{j}]");
        let weight = s.weight.unwrap_or(1);
        if weight > 256 {
            problems.push(format!(
                "{skey}.weight: {weight} is out of range; expected 0..=256"
            ));
        }
        if s.slowstart.is_some_and(|d| d.is_zero()) {
            problems.push(format!(
                "{skey}.slowstart: must be greater than 0 (or remove it for no ramp)"
            ));
        }
        let node = s.address.is_none();
        let addr = match (&s.name, &s.address) {
            (_, Some(address)) => match address.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(addr)) => Some((s.name.clone().unwrap_or_else(|| address.clone()), addr)),
                _ => {
                    problems.push(format!(
                        "{skey}.address: {address:?} is not a reachable host:port; \
                         expected e.g. \"10.0.0.5:80\""
                    ));
                    None
                }
            },
            (Some(name), None) => match nodes.iter().find(|n| &n.name == name) {
                Some(n) if n.role == Role::Web => Some((name.clone(), n.main_addr())),
                Some(n) => {
                    problems.push(format!(
                        "{skey}.name: node {name:?} has role {}, a backend server must be \
                         a web node (or give address = \"host:port\")",
                        n.role
                    ));
                    None
                }
                None => {
                    problems.push(format!(
                        "{skey}.name: no node named {name:?} in this file; name a web node \
                         or give address = \"host:port\" for a server webfarm does not run"
                    ));
                    None
                }
            },
            (None, None) => {
                problems.push(format!(
                    "{skey}: a server needs name = \"<web node>\" or address = \"host:port\""
                ));
                None
            }
        };
        let Some((name, addr)) = addr else { continue };
        if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
            problems.push(format!(
                "{skey}.name: {name:?} must be non-empty, without '/' or spaces"
            ));
        } else if !names.insert(name.clone()) {
            problems.push(format!(
                "{skey}.name: duplicate server name {name:?} in this backend; give one a \
                 different name"
            ));
        }
        servers.push(Server {
            name,
            addr,
            weight,
            backup: s.backup.unwrap_or(false),
            maxconn: s.maxconn.unwrap_or(0),
            slowstart: s.slowstart,
            disabled: s.disabled.unwrap_or(false),
            node,
        });
    }
    servers
}

/// Every `[[frontends]]` table.
pub(crate) fn resolve_frontends(
    raw: &RawFarm,
    backends: &[Backend],
    nodes: &[Node],
    base: &Path,
    problems: &mut Vec<String>,
) -> Vec<Frontend> {
    let mut out = Vec::new();
    let mut ports = HashSet::new();
    let mut names = HashSet::new();
    for (i, f) in raw.frontends.iter().enumerate() {
        let key = format!("frontends[{i}]");
        if !names.insert(f.name.clone()) {
            problems.push(format!("{key}.name: duplicate frontend name {:?}", f.name));
        }
        if f.port == 0 {
            problems.push(format!("{key}.port: port 0 is not allowed"));
        } else if !ports.insert(f.port) {
            problems.push(format!(
                "{key}.port: port {} is used by another frontend",
                f.port
            ));
        }
        for n in nodes.iter().filter(|n| n.role == Role::Lb) {
            if n.admin_port == f.port {
                problems.push(format!(
                    "{key}.port: {} is also lb node {:?}'s admin_port",
                    f.port, n.name
                ));
            }
        }
        let mode = f.mode.unwrap_or_default();
        let mut timeout = resolve_frontend_timeouts(f, &key, problems);
        let max_header_size = f.max_header_size.unwrap_or(16 * 1024);
        if max_header_size < MIN_HEADER_SIZE {
            problems.push(format!(
                "{key}.max_header_size: {max_header_size} is too small; expected at least \
                 {MIN_HEADER_SIZE} bytes"
            ));
        }
        let (sni_routes, inspect_delay) =
            super::sni::resolve_sni(f, mode, backends, &key, problems);
        match backends.iter().position(|b| b.name == f.default_backend) {
            Some(idx) => {
                if f.timeout.tarpit.is_none() {
                    timeout.tarpit = backends[idx].timeout.connect;
                }
                if backends[idx].mode != mode {
                    problems.push(format!(
                        "{key}.mode: frontend {:?} is mode {} but its backend {:?} is mode {}; \
                         they must match",
                        f.name,
                        mode.as_str(),
                        backends[idx].name,
                        backends[idx].mode.as_str()
                    ));
                }
                out.push(Frontend {
                    name: f.name.clone(),
                    port: f.port,
                    default_backend: idx,
                    mode,
                    maxconn: f.maxconn.unwrap_or(0),
                    timeout,
                    max_header_size,
                    max_body_size: f.max_body_size.unwrap_or(0),
                    tls: super::tls::resolve_tls(f, mode, &key, base, problems),
                    redirect_https: None,
                    sni_routes,
                    inspect_delay,
                    rules: super::acl::resolve::resolve_rules(
                        f,
                        mode,
                        f.tls.is_some(),
                        &key,
                        problems,
                    ),
                })
            }
            None => problems.push(format!(
                "{key}.default_backend: no backend named {:?}; expected one of [{}]",
                f.default_backend,
                backends
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    super::tls::resolve_redirects(raw, &mut out, problems);
    out
}

/// `[frontends.timeout]`: HAProxy-like defaults (client 30 s, http-request 10 s,
/// http-keep-alive 10 s), none zero.
fn resolve_frontend_timeouts(
    f: &RawFrontend,
    key: &str,
    problems: &mut Vec<String>,
) -> FrontendTimeouts {
    let timeout = FrontendTimeouts {
        client: f.timeout.client.unwrap_or(Duration::from_secs(30)),
        http_request: f.timeout.http_request.unwrap_or(Duration::from_secs(10)),
        http_keep_alive: f.timeout.http_keep_alive.unwrap_or(Duration::from_secs(10)),
        // Set from the backend's `timeout.connect` by the caller when not given.
        tarpit: f.timeout.tarpit.unwrap_or(Duration::ZERO),
    };
    for (field, d) in [
        ("client", timeout.client),
        ("http_request", timeout.http_request),
        ("http_keep_alive", timeout.http_keep_alive),
        ("tarpit", f.timeout.tarpit.unwrap_or(Duration::MAX)),
    ] {
        if d.is_zero() {
            problems.push(format!("{key}.timeout.{field}: must be greater than 0"));
        }
    }
    timeout
}

/// A cookie name: letters, digits, `-` and `_`.
fn valid_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
