//! Access control at the load balancer, with HAProxy's semantics: a frontend's
//! `tcp-request connection` rules when a connection is accepted ([`connection`]) and its
//! `http-request` rules on each request before a server is chosen ([`http_request`]),
//! with ACLs on the source address, path, method, headers, SNI and stick-table counters.
//!
//! Rules are evaluated in order; `track-sc0 src` is not final and goes on; the first
//! final action (`accept`/`reject`, `allow`/`deny`/`tarpit`/`redirect`) ends the
//! evaluation; no final action means the connection or request goes on. The rules come
//! parsed from the farm file ([`webfarm_config::acl`]); both functions are plain functions
//! of the rules, the request head, the source address, the SNI and the stick table, so
//! a fuzz target can call them (with `table: None` they touch no state at all).

mod rate;
mod stick;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use http::header::HOST;
use http::request::Parts;
use webfarm_config::acl::{
    ip_matches, AccessRules, Acl, AclTest, Condition, Counter, Fetch, HttpAction, IntTest, Pattern,
    Redirect, RedirectKind, TcpAction,
};

pub use stick::{EntryAt, StickTable};

/// A tracked stick-table entry: counted in `conn_cur` while this lives (a connection, or a
/// request tracked by `http-request track-sc0`), and never evicted meanwhile.
#[derive(Debug)]
pub struct Tracked {
    table: Arc<StickTable>,
    at: EntryAt,
    /// When the tracking began, on the table's clock.
    since: u64,
    /// When the connection was counted (`conn_cnt`, `conn_rate`), if it was.
    counted: Option<u64>,
}

impl Tracked {
    /// Tracks `src` in `table` at `now`; `None` when the table is full of entries in use.
    fn new(table: &Arc<StickTable>, src: IpAddr, now: u64) -> Option<Tracked> {
        Some(Tracked {
            at: table.hold(src, now)?,
            since: now,
            counted: None,
            table: table.clone(),
        })
    }

    /// The connection was refused (`maxconn`) after its rules ran: its count in
    /// `conn_cnt` and `conn_rate` is taken back, as HAProxy counts only the connections
    /// it accepts.
    pub fn refused(mut self) {
        if let Some(at) = self.counted.take() {
            self.table.uncount_connection(self.at, at);
        }
    }

    /// The entry with the table it belongs to (to count and read it with after a reload
    /// swapped the frontend's table).
    pub fn entry_ref(&self) -> EntryRef {
        EntryRef {
            table: self.table.clone(),
            at: self.at,
        }
    }
}

/// A stick-table entry and the table it belongs to: an entry is always counted and read
/// with its own table's periods (a reload may have given the frontend another table since
/// the entry was tracked). Valid while the [`Tracked`] it came from lives.
#[derive(Debug, Clone)]
pub struct EntryRef {
    /// The table.
    pub table: Arc<StickTable>,
    /// Where the entry is in it.
    pub at: EntryAt,
}

impl EntryRef {
    /// The entry's `counter` now.
    pub fn read(&self, counter: Counter) -> u64 {
        self.table.read(self.at, counter, self.table.now())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.table.release(self.at, self.since);
    }
}

/// What the `tcp-request connection` rules decided.
#[derive(Debug)]
pub enum ConnVerdict {
    /// Serve it; `Some` when a rule tracked it (held until the connection closes).
    Accept(Option<Tracked>),
    /// Close it at once.
    Reject,
}

/// Runs a frontend's `tcp-request connection` rules for a connection from `src`, with
/// the frontend's stick table (`None`: no tracking; counters read as absent).
pub fn connection(
    rules: &AccessRules,
    src: IpAddr,
    table: Option<&Arc<StickTable>>,
) -> ConnVerdict {
    let mut tracked: Option<Tracked> = None;
    for rule in &rules.tcp_request_connection {
        let ctx = Ctx {
            src,
            head: None,
            sni: None,
            sc0: tracked.as_ref().map(|t| (&*t.table, t.at)),
            table: table.map(|t| &**t),
        };
        if !holds(rule.cond.as_ref(), &rules.acls, &ctx) {
            continue;
        }
        match rule.action {
            TcpAction::Accept => break,
            TcpAction::Reject => return ConnVerdict::Reject,
            TcpAction::TrackSc0 => {
                if let (None, Some(table)) = (&tracked, table) {
                    let now = table.now();
                    tracked = Tracked::new(table, src, now);
                    if let Some(t) = &mut tracked {
                        table.count_connection(t.at, now);
                        t.counted = Some(now);
                    }
                }
            }
        }
    }
    ConnVerdict::Accept(tracked)
}

/// What the `http-request` rules decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The request goes on to a server.
    Pass,
    /// Answered `status` by the lb; `retry_after` (seconds) on a 429, the table's rate
    /// period.
    Deny {
        /// The status.
        status: u16,
        /// `Retry-After`, seconds.
        retry_after: Option<u64>,
    },
    /// Held for `timeout tarpit`, then answered `status`.
    Tarpit {
        /// The status.
        status: u16,
    },
    /// Answered `code` with `Location: location`.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        code: u16,
        /// The target.
        location: String,
    },
}

/// The `http-request` rules' decision, and the request's own tracking (`http-request
/// track-sc0` on a connection that tracks nothing), to hold until the response ends.
#[derive(Debug)]
pub struct HttpOutcome {
    /// What to do with the request.
    pub verdict: Verdict,
    /// The entry the request tracks, if a rule tracked it.
    pub tracked: Option<Tracked>,
}

/// Runs a frontend's `http-request` rules for request `head` from `src` (`sni`: the TLS
/// server name of its connection), counting it first in the entry its connection tracks
/// (`conn_sc0`, from `tcp-request connection track-sc0`), as HAProxy counts a request in
/// the counters its session tracks.
pub fn http_request(
    rules: &AccessRules,
    head: &Parts,
    (src, sni): (IpAddr, Option<&str>),
    table: Option<&Arc<StickTable>>,
    conn_sc0: Option<&EntryRef>,
) -> HttpOutcome {
    if let Some(r) = conn_sc0 {
        r.table.count_request(r.at, r.table.now());
    }
    let mut tracked: Option<Tracked> = None;
    let mut verdict = Verdict::Pass;
    for rule in &rules.http_request {
        let ctx = Ctx {
            src,
            head: Some(head),
            sni,
            sc0: conn_sc0
                .map(|r| (&*r.table, r.at))
                .or_else(|| tracked.as_ref().map(|t| (&*t.table, t.at))),
            table: table.map(|t| &**t),
        };
        if !holds(rule.cond.as_ref(), &rules.acls, &ctx) {
            continue;
        }
        verdict = match &rule.action {
            HttpAction::Allow => break,
            HttpAction::Deny { status } => Verdict::Deny {
                status: *status,
                retry_after: (*status == 429).then(|| retry_after(rules)),
            },
            HttpAction::Tarpit { status } => Verdict::Tarpit { status: *status },
            HttpAction::Redirect(r) => Verdict::Redirect {
                code: r.code,
                location: location(r, head),
            },
            HttpAction::TrackSc0 => {
                if let (None, None, Some(table)) = (conn_sc0, &tracked, table) {
                    let now = table.now();
                    tracked = Tracked::new(table, src, now);
                    if let Some(t) = &tracked {
                        table.count_request(t.at, now);
                    }
                }
                continue;
            }
        };
        break;
    }
    HttpOutcome { verdict, tracked }
}

/// `Retry-After` of a 429: the table's request (or connection) rate period in seconds,
/// rounded up, at least 1: after it, what the client sent before has left the window.
fn retry_after(rules: &AccessRules) -> u64 {
    let period = rules
        .stick_table
        .as_ref()
        .and_then(|t| t.http_req_rate.or(t.conn_rate));
    period
        .map_or(1, |p| p.as_secs() + u64::from(p.subsec_nanos() > 0))
        .max(1)
}

/// The `Location` of redirect `r` for request `head`, as HAProxy builds it: `location`
/// as written; `prefix` + the path (a prefix of `/` adds nothing); `scheme` + `://` + the
/// Host + the path; the query kept unless `drop-query`; `append-slash` adds `/` to a path
/// without a trailing one.
pub fn location(r: &Redirect, head: &Parts) -> String {
    let mut path = head.uri.path().to_string();
    if r.append_slash && !path.ends_with('/') {
        path.push('/');
    }
    let query = match head.uri.query() {
        Some(q) if !r.drop_query => format!("?{q}"),
        _ => String::new(),
    };
    match r.kind {
        RedirectKind::Location => r.value.clone(),
        RedirectKind::Prefix => {
            let prefix = if r.value == "/" { "" } else { r.value.as_str() };
            format!("{prefix}{path}{query}")
        }
        RedirectKind::Scheme => {
            let host = head
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| {
                    head.headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                })
                .unwrap_or("");
            format!("{}://{host}{path}{query}", r.value)
        }
    }
}

/// What a test can look at.
struct Ctx<'a> {
    src: IpAddr,
    head: Option<&'a Parts>,
    sni: Option<&'a str>,
    /// The tracked entry, with the table it belongs to.
    sc0: Option<(&'a StickTable, EntryAt)>,
    table: Option<&'a StickTable>,
}

/// Whether a rule with condition `cond` applies (no condition: always).
fn holds(cond: Option<&Condition>, acls: &[Acl], ctx: &Ctx<'_>) -> bool {
    let Some(cond) = cond else { return true };
    let value = cond.any_of.iter().any(|group| {
        group
            .iter()
            .all(|t| acls.get(t.acl).is_some_and(|a| acl_matches(a, ctx)) != t.negated)
    });
    value != cond.unless
}

/// An ACL matches when one of its tests does.
fn acl_matches(acl: &Acl, ctx: &Ctx<'_>) -> bool {
    acl.tests.iter().any(|t| test_matches(t, ctx))
}

/// One test: fetch the sample (a failed fetch matches nothing), then match it.
fn test_matches(t: &AclTest, ctx: &Ctx<'_>) -> bool {
    match &t.fetch {
        Fetch::AlwaysTrue => true,
        Fetch::AlwaysFalse => false,
        Fetch::Src => match &t.pattern {
            Pattern::Ip(nets) => ip_matches(nets, ctx.src),
            _ => false,
        },
        Fetch::Path => ctx.head.is_some_and(|h| str_test(&t.pattern, h.uri.path())),
        Fetch::Method => ctx
            .head
            .is_some_and(|h| str_test(&t.pattern, h.method.as_str())),
        Fetch::Sni => ctx.sni.is_some_and(|s| str_test(&t.pattern, s)),
        Fetch::Hdr(name) => ctx.head.is_some_and(|h| {
            if t.pattern == Pattern::Found {
                return h.headers.contains_key(name.as_str())
                    || header_values(h, name).next().is_some();
            }
            header_values(h, name).any(|v| str_test(&t.pattern, v))
        }),
        Fetch::HdrCnt(name) => ctx.head.is_some_and(|h| {
            let n = header_values(h, name).count() as u64;
            int_test(&t.pattern, n)
        }),
        Fetch::Sc0(c) => ctx
            .sc0
            .is_some_and(|(table, at)| int_test(&t.pattern, table.read(at, *c, table.now()))),
        Fetch::SrcCounter(c) => ctx
            .table
            .is_some_and(|table| int_test(&t.pattern, table.read_src(ctx.src, *c))),
    }
}

/// Each comma-separated value of every `name` header, trimmed (HAProxy's `hdr()`); values
/// that are not visible ASCII are skipped. Without a Host header, `host` is the request
/// URI's authority: HAProxy builds Host from an HTTP/2 request's `:authority` (and an
/// absolute-form request's authority) before any rule runs, while webfarm does it later,
/// in `prepare_head`.
fn header_values<'a>(h: &'a Parts, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let authority = (name.eq_ignore_ascii_case("host") && !h.headers.contains_key(HOST))
        .then(|| h.uri.authority().map(|a| a.as_str()))
        .flatten();
    h.headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .chain(authority)
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn str_test(p: &Pattern, sample: &str) -> bool {
    match p {
        Pattern::Str(s) => s.matches(sample),
        Pattern::Found => true,
        Pattern::Len(tests) => any_int(tests, sample.len() as u64),
        _ => false,
    }
}

fn int_test(p: &Pattern, n: u64) -> bool {
    match p {
        Pattern::Int(tests) => any_int(tests, n),
        Pattern::Found => true,
        _ => false,
    }
}

fn any_int(tests: &[IntTest], n: u64) -> bool {
    tests.iter().any(|t| t.matches(n))
}
