//! A frontend's access rules, in HAProxy's words and syntax (its configuration manual,
//! section 7 "Using ACLs and fetching samples", and the `http-request`, `tcp-request
//! connection` and `stick-table` keywords): named ACLs, the rules that use them, and the
//! stick table that rate limits read.
//!
//! In the farm file, per `[[frontends]]` entry, each line written as in HAProxy:
//!
//! ```toml
//! acl = [
//!   "blocked src 10.0.0.0/8 192.168.0.0/16",
//!   "admin path_beg /admin",
//!   "too_fast sc0_http_req_rate gt 100",
//! ]
//! tcp_request_connection = ["reject if blocked", "track-sc0 src"]
//! http_request = [
//!   "deny deny_status 429 if too_fast",
//!   "tarpit if admin !{ src 127.0.0.0/8 }",
//! ]
//! stick_table = { type = "ip", size = "100k", expire = "30s",
//!                 store = ["http_req_rate(10s)", "conn_rate(10s)", "conn_cur"] }
//! timeout.tarpit = "5s"
//! ```
//!
//! This module holds the parsed form and the pure pattern matching; the load balancer
//! fetches the samples (source address, path, headers, counters) and applies the rules.

mod parse;
pub(crate) mod resolve;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

pub use parse::{parse_rules, RuleText};

/// Everything a frontend's access control needs: its ACLs, its rules in order, its stick
/// table. Empty (the default) when the frontend has none: every connection and request
/// passes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AccessRules {
    /// Named ACLs, then the anonymous ones (`{ ... }` in a condition), referred to by
    /// index from conditions.
    pub acls: Vec<Acl>,
    /// `tcp-request connection` rules, evaluated in order when a connection is accepted,
    /// before any TLS handshake.
    pub tcp_request_connection: Vec<TcpRule>,
    /// `http-request` rules, evaluated in order on each request before a server is chosen.
    pub http_request: Vec<HttpRule>,
    /// The frontend's stick table (`stick-table type ip ...`), which `track-sc0 src`
    /// fills and `sc0_*` / `src_*` read.
    pub stick_table: Option<StickTableSpec>,
}

impl AccessRules {
    /// Whether there is nothing to evaluate (no rule at all).
    pub fn is_empty(&self) -> bool {
        self.tcp_request_connection.is_empty() && self.http_request.is_empty()
    }
}

/// A named ACL: one or more tests, true when any of them matches (HAProxy ORs the lines
/// that declare the same name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acl {
    /// Its name (`blocked`), or the text of an anonymous ACL (`{ src 10.0.0.0/8 }`).
    pub name: String,
    /// Its tests.
    pub tests: Vec<AclTest>,
}

/// One ACL line: a sample fetch and the patterns its value is matched against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclTest {
    /// What is looked at.
    pub fetch: Fetch,
    /// How it matches.
    pub pattern: Pattern,
}

impl AclTest {
    /// Whether the test needs the HTTP request (a `tcp-request connection` rule cannot use
    /// it: nothing of the request has been read when it runs).
    pub fn is_layer7(&self) -> bool {
        matches!(
            self.fetch,
            Fetch::Path | Fetch::Method | Fetch::Hdr(_) | Fetch::HdrCnt(_) | Fetch::Sni
        )
    }
}

/// A sample fetch (HAProxy's names).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fetch {
    /// `src`: the client's address (IPv4-mapped IPv6 addresses as IPv4).
    Src,
    /// `path`: the request's path, without the query string.
    Path,
    /// `method`: the request's method.
    Method,
    /// `hdr(name)`: each comma-separated value of every `name` header (lower case).
    Hdr(String),
    /// `hdr_cnt(name)`: how many values of `name` the request has.
    HdrCnt(String),
    /// `ssl_fc_sni`: the server name the client sent in its TLS ClientHello (a TLS frontend).
    Sni,
    /// `sc0_<counter>` / `sc_<counter>(0)`: the counter of the entry this connection or
    /// request tracks with `track-sc0`; no entry tracked: the fetch fails (no match).
    Sc0(Counter),
    /// `src_<counter>`: the counter of the source address's entry, looked up without
    /// tracking it; no entry: 0.
    SrcCounter(Counter),
    /// `always_true` (`TRUE`).
    AlwaysTrue,
    /// `always_false` (`FALSE`).
    AlwaysFalse,
}

/// A stick-table counter (HAProxy's data types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `http_req_rate`: HTTP requests over the table's `http_req_rate(<period>)`.
    HttpReqRate,
    /// `http_req_cnt`: HTTP requests since the entry was made.
    HttpReqCnt,
    /// `conn_rate`: tracked connections over the table's `conn_rate(<period>)`.
    ConnRate,
    /// `conn_cnt`: tracked connections since the entry was made.
    ConnCnt,
    /// `conn_cur`: connections (and requests) tracking the entry now.
    ConnCur,
}

impl Counter {
    /// HAProxy's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::HttpReqRate => "http_req_rate",
            Counter::HttpReqCnt => "http_req_cnt",
            Counter::ConnRate => "conn_rate",
            Counter::ConnCnt => "conn_cnt",
            Counter::ConnCur => "conn_cur",
        }
    }

    /// All of them, for parsing.
    pub const ALL: [Counter; 5] = [
        Counter::HttpReqRate,
        Counter::HttpReqCnt,
        Counter::ConnRate,
        Counter::ConnCnt,
        Counter::ConnCur,
    ];
}

/// How a sample is matched (HAProxy's `-m` methods and derived fetches such as `path_beg`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `-m ip`: the address is in one of the networks (a bare address is a /32 or /128).
    Ip(Vec<IpNet>),
    /// A string match.
    Str(StrPattern),
    /// `-m found`: the sample exists (a header is present).
    Found,
    /// `-m int`: an integer compared with each test; any passing matches.
    Int(Vec<IntTest>),
    /// `-m len`: the string's length compared as an integer.
    Len(Vec<IntTest>),
    /// No pattern: the fetch decides (`always_true`, `always_false`).
    Bool,
}

/// A string match: how, with or without case, against which values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StrPattern {
    /// Exact, prefix, suffix...
    pub how: StrMatch,
    /// `-i`: ASCII case is ignored (the values are held in lower case).
    pub ignore_case: bool,
    /// The values; any may match.
    pub values: Vec<String>,
}

/// HAProxy's string match methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrMatch {
    /// `-m str`: equal.
    Exact,
    /// `-m beg`: the sample begins with the value.
    Beg,
    /// `-m end`: the sample ends with the value.
    End,
    /// `-m sub`: the sample contains the value.
    Sub,
    /// `-m dir`: the value (`/` and `?` stripped off its ends) is a run of whole
    /// `/`- or `?`-delimited words of the sample (`api/v1` matches `/api/v1/x`).
    Dir,
    /// `-m dom`: the value (delimiters stripped off its ends) is a run of whole words of
    /// the sample delimited by `/`, `?`, `.` or `:` (`foobar.com` matches
    /// `www.foobar.com`, `example` matches `example:8080`).
    Dom,
}

impl StrPattern {
    /// Whether `sample` matches one of the values.
    pub fn matches(&self, sample: &str) -> bool {
        self.values.iter().any(|v| self.matches_one(sample, v))
    }

    fn matches_one(&self, sample: &str, value: &str) -> bool {
        let ic = self.ignore_case;
        let eq = |a: &[u8], b: &[u8]| {
            if ic {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let (s, v) = (sample.as_bytes(), value.as_bytes());
        match self.how {
            StrMatch::Exact => eq(s, v),
            StrMatch::Beg => s.len() >= v.len() && eq(&s[..v.len()], v),
            StrMatch::End => s.len() >= v.len() && eq(&s[s.len() - v.len()..], v),
            StrMatch::Sub => contains(s, v, ic),
            StrMatch::Dir => match_word(s, v, ic, |b| matches!(b, b'/' | b'?')),
            StrMatch::Dom => match_word(s, v, ic, |b| matches!(b, b'/' | b'?' | b'.' | b':')),
        }
    }
}

/// HAProxy's `match_word`: the pattern, delimiters stripped off its ends, is found in
/// the sample starting at its beginning or just after a delimiter, and ending at its end
/// or just before a delimiter (so it is a run of whole words of the sample).
fn match_word(s: &[u8], v: &[u8], ignore_case: bool, delim: impl Fn(u8) -> bool) -> bool {
    let start = v.iter().position(|&b| !delim(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !delim(b)).map_or(start, |i| i + 1);
    let v = &v[start..end];
    if v.is_empty() || v.len() > s.len() {
        return false;
    }
    (0..=s.len() - v.len()).any(|i| {
        let w = &s[i..i + v.len()];
        (i == 0 || delim(s[i - 1]))
            && (i + v.len() == s.len() || delim(s[i + v.len()]))
            && if ignore_case {
                w.eq_ignore_ascii_case(v)
            } else {
                w == v
            }
    })
}

/// `haystack` contains `needle`, ASCII case ignored or not.
fn contains(h: &[u8], n: &[u8], ignore_case: bool) -> bool {
    n.is_empty()
        || h.windows(n.len()).any(|w| {
            if ignore_case {
                w.eq_ignore_ascii_case(n)
            } else {
                w == n
            }
        })
}

/// One integer test (HAProxy's `eq|ge|gt|le|lt <n>`, `<n>` or `<min>:<max>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntTest {
    /// `eq N` or `N`.
    Eq(u64),
    /// `gt N`.
    Gt(u64),
    /// `ge N`.
    Ge(u64),
    /// `lt N`.
    Lt(u64),
    /// `le N`.
    Le(u64),
    /// `min:max`, both included.
    Range(u64, u64),
}

impl IntTest {
    /// Whether `n` passes.
    pub fn matches(self, n: u64) -> bool {
        match self {
            IntTest::Eq(v) => n == v,
            IntTest::Gt(v) => n > v,
            IntTest::Ge(v) => n >= v,
            IntTest::Lt(v) => n < v,
            IntTest::Le(v) => n <= v,
            IntTest::Range(a, b) => (a..=b).contains(&n),
        }
    }
}

/// Whether `ip` (an IPv4-mapped IPv6 address counts as IPv4) is in one of `nets`.
pub fn ip_matches(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// A rule's condition: `if` or `unless`, then ACLs ANDed by juxtaposition, each maybe
/// negated with `!`, in groups ORed by `||` or `or` (HAProxy's syntax).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Condition {
    /// `unless`: the rule applies when the expression is false.
    pub unless: bool,
    /// OR of ANDs: the expression is true when every term of one group is.
    pub any_of: Vec<Vec<Term>>,
}

/// One ACL in a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Term {
    /// `!name`.
    pub negated: bool,
    /// Index into [`AccessRules::acls`].
    pub acl: usize,
}

/// An `http-request` rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpRule {
    /// What it does.
    pub action: HttpAction,
    /// When (`None`: always).
    pub cond: Option<Condition>,
    /// The line as written, for logs.
    pub text: String,
}

/// An `http-request` action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HttpAction {
    /// `allow`: stop evaluating the rules; the request goes on.
    Allow,
    /// `deny [deny_status N]`: answered `N` (default 403) by the lb; `429` carries
    /// `Retry-After`.
    Deny {
        /// The status.
        status: u16,
    },
    /// `tarpit [deny_status N]`: held for `timeout tarpit`, then answered `N` (default 500,
    /// so the client cannot tell it was tarpitted).
    Tarpit {
        /// The status.
        status: u16,
    },
    /// `redirect location|prefix|scheme <x> [code N] [drop-query] [append-slash]`.
    Redirect(Redirect),
    /// `track-sc0 src`: the request counts in the source address's stick-table entry
    /// (unless the connection already tracks one); not final.
    TrackSc0,
}

/// A redirect rule's target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// What the `Location` is built from.
    pub kind: RedirectKind,
    /// The value after the keyword (a URL, a prefix or a scheme).
    pub value: String,
    /// 301, 302 (default), 303, 307 or 308.
    pub code: u16,
    /// `drop-query`: the query string is not carried over (prefix, scheme).
    pub drop_query: bool,
    /// `append-slash`: a `/` is added to a path that does not end with one (prefix,
    /// scheme).
    pub append_slash: bool,
}

/// HAProxy's redirect kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedirectKind {
    /// `location <url>`: exactly that.
    Location,
    /// `prefix <p>`: `<p>` followed by the request's path (and query).
    Prefix,
    /// `scheme <s>`: `<s>://` + the request's Host + its path (and query).
    Scheme,
}

/// A `tcp-request connection` rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpRule {
    /// What it does.
    pub action: TcpAction,
    /// When (`None`: always).
    pub cond: Option<Condition>,
    /// The line as written, for logs.
    pub text: String,
}

/// A `tcp-request connection` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpAction {
    /// `accept`: stop evaluating; the connection is served.
    Accept,
    /// `reject`: closed at once, before any byte is read (no TLS handshake, no log line;
    /// counted in `haproxy_frontend_denied_connections_total`).
    Reject,
    /// `track-sc0 src`: the connection counts in its source address's entry (`conn_cnt`,
    /// `conn_rate`, `conn_cur` while open; each of its HTTP requests in `http_req_*`).
    TrackSc0,
}

/// A frontend's stick table: `stick-table type ip size N expire T store ...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StickTableSpec {
    /// Most entries; a new address in a full table evicts the least recently used unused
    /// entry.
    pub size: usize,
    /// An entry unused (no tracking connection) for this long is dropped.
    pub expire: Duration,
    /// `http_req_rate(<period>)`, if stored.
    pub http_req_rate: Option<Duration>,
    /// `conn_rate(<period>)`, if stored.
    pub conn_rate: Option<Duration>,
    /// The other counters stored (`conn_cur`, `conn_cnt`, `http_req_cnt`).
    pub store: Vec<Counter>,
}

impl StickTableSpec {
    /// Whether `counter` is stored (HAProxy fetches nothing for a counter the table does
    /// not store; webfarm refuses such an ACL at load).
    pub fn stores(&self, counter: Counter) -> bool {
        match counter {
            Counter::HttpReqRate => self.http_req_rate.is_some(),
            Counter::ConnRate => self.conn_rate.is_some(),
            other => self.store.contains(&other),
        }
    }
}

/// The `deny_status` values HAProxy accepts (its list of error codes it can answer).
pub const DENY_STATUSES: [u16; 21] = [
    200, 400, 401, 403, 404, 405, 407, 408, 410, 413, 414, 421, 422, 425, 429, 431, 500, 501, 502,
    503, 504,
];

/// Largest stick table `size` (entries): about 1.5 GiB of memory at most (about 150 bytes an
/// entry).
pub const MAX_TABLE_SIZE: usize = 10_000_000;
