//! Stage two for a frontend's access rules: the stick table read and bounded, the lines
//! parsed, and what depends on the frontend (its mode, TLS) checked, every problem with
//! its key path.

use std::time::Duration;

use serde::Deserialize;

use super::parse::{parse_rules, RuleText};
use super::{AccessRules, Counter, Fetch, StickTableSpec, MAX_TABLE_SIZE};
use crate::raw::RawFrontend;
use crate::Mode;

/// `stick_table = { type = "ip", size = "100k", expire = "30s", store = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStickTable {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub size: RawSize,
    #[serde(with = "humantime_serde")]
    pub expire: Duration,
    #[serde(default)]
    pub store: Vec<String>,
}

/// A number of entries: `100000` or HAProxy's `"100k"` (k, m: ×1024, ×1024²).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSize {
    Number(u64),
    Text(String),
}

/// The access rules of frontend `f` at `key` (`frontends[i]`), of `mode`, with TLS or not.
pub(crate) fn resolve_rules(
    f: &RawFrontend,
    mode: Mode,
    tls: bool,
    key: &str,
    problems: &mut Vec<String>,
) -> AccessRules {
    let table = f
        .stick_table
        .as_ref()
        .and_then(|t| stick_table(t, &format!("{key}.stick_table"), problems));
    let none = Vec::new();
    let text = RuleText {
        acl: f.acl.as_ref().unwrap_or(&none),
        tcp_request_connection: f.tcp_request_connection.as_ref().unwrap_or(&none),
        http_request: f.http_request.as_ref().unwrap_or(&none),
        stick_table: table.as_ref(),
    };
    let rules = match parse_rules(&text) {
        Ok(rules) => rules,
        Err(found) => {
            problems.extend(found.into_iter().map(|p| format!("{key}.{p}")));
            return AccessRules::default();
        }
    };
    if mode == Mode::Tcp && !rules.http_request.is_empty() {
        problems.push(format!(
            "{key}.http_request: a mode = \"tcp\" frontend reads no HTTP request; use \
             tcp_request_connection"
        ));
    }
    let uses_sni = rules
        .acls
        .iter()
        .flat_map(|a| &a.tests)
        .any(|t| t.fetch == Fetch::Sni);
    if uses_sni && !tls {
        problems.push(format!(
            "{key}.acl: ssl_fc_sni is the name a client sent in its TLS handshake; this \
             frontend has no tls = {{...}}"
        ));
    }
    if f.timeout.tarpit.is_some() && !rules.http_request.iter().any(is_tarpit) {
        problems.push(format!(
            "{key}.timeout.tarpit: only applies to http_request tarpit rules; remove it"
        ));
    }
    rules
}

fn is_tarpit(r: &super::HttpRule) -> bool {
    matches!(r.action, super::HttpAction::Tarpit { .. })
}

/// `stick_table` at `key`.
fn stick_table(
    raw: &RawStickTable,
    key: &str,
    problems: &mut Vec<String>,
) -> Option<StickTableSpec> {
    let before = problems.len();
    match raw.kind.as_deref() {
        None | Some("ip" | "ipv6") => {}
        Some(other) => problems.push(format!(
            "{key}.type: {other:?}: webfarm's tables are keyed by the client's address; \
             expected \"ip\" (IPv4 and IPv6 alike)"
        )),
    }
    let size = match &raw.size {
        RawSize::Number(n) => Some(*n),
        RawSize::Text(t) => parse_size(t),
    };
    let size = match size.and_then(|n| usize::try_from(n).ok()) {
        Some(n) if (1..=MAX_TABLE_SIZE).contains(&n) => n,
        _ => {
            problems.push(format!(
                "{key}.size: expected a number of entries from 1 to {MAX_TABLE_SIZE} \
                 (e.g. 100000 or \"100k\")"
            ));
            1
        }
    };
    if raw.expire.is_zero() {
        problems.push(format!(
            "{key}.expire: must be greater than 0 (how long an unused entry is kept)"
        ));
    }
    let mut spec = StickTableSpec {
        size,
        expire: raw.expire,
        http_req_rate: None,
        conn_rate: None,
        store: Vec::new(),
    };
    for (j, item) in raw.store.iter().enumerate() {
        if let Err(e) = store_item(&mut spec, item) {
            problems.push(format!("{key}.store[{j}]: {e}"));
        }
    }
    (problems.len() == before).then_some(spec)
}

/// `100k` → 102400, `2m` → 2097152, `500` → 500.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "" => 1,
        "k" | "K" => 1024,
        "m" | "M" => 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// One `store` item: `http_req_rate(10s)`, `conn_rate(10s)`, `conn_cur`, `conn_cnt`,
/// `http_req_cnt`.
fn store_item(spec: &mut StickTableSpec, item: &str) -> Result<(), String> {
    let (name, arg) = match item.split_once('(') {
        Some((n, rest)) => (n.trim(), rest.strip_suffix(')').map(str::trim)),
        None => (item.trim(), None),
    };
    let period = || -> Result<Duration, String> {
        let text = arg.ok_or_else(|| format!("{name} needs a period: {name}(10s)"))?;
        match humantime::parse_duration(text) {
            Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(86_400) => Ok(d),
            _ => Err(format!(
                "{item:?}: the period must be a duration from 1ms to 24h, such as \"10s\""
            )),
        }
    };
    let counter = match name {
        "http_req_rate" => {
            spec.http_req_rate = Some(period()?);
            return Ok(());
        }
        "conn_rate" => {
            spec.conn_rate = Some(period()?);
            return Ok(());
        }
        "conn_cur" => Counter::ConnCur,
        "conn_cnt" => Counter::ConnCnt,
        "http_req_cnt" => Counter::HttpReqCnt,
        other => {
            return Err(format!(
                "{other:?} is not stored by webfarm's tables; expected http_req_rate(<period>), \
                 conn_rate(<period>), conn_cur, conn_cnt or http_req_cnt"
            ))
        }
    };
    if arg.is_some() {
        return Err(format!("{name} takes no period"));
    }
    if !spec.store.contains(&counter) {
        spec.store.push(counter);
    }
    Ok(())
}
