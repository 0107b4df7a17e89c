//! Target `acl`: a frontend's access rules and one client's requests → what the rules
//! decide ([`webfarm_config::acl::parse_rules`], then [`webfarm_lb::acl::connection`] and
//! [`webfarm_lb::acl::http_request`], with and without a stick table).
//!
//! The input is text, one directive per line:
//!
//! | line | meaning |
//! |---|---|
//! | `acl <line>` | an `acl` line of the frontend |
//! | `tcp-request connection <line>` | a `tcp-request connection` rule |
//! | `http-request <line>` | an `http-request` rule |
//! | `src <address>` | a client address (each one opens a connection; default `192.0.2.1`) |
//! | `sni <name>` | the TLS server name of every connection |
//! | `req <method> <target>` | the request line (default `GET /`) |
//! | `hdr <name>: <value>` | a request header |
//! | `repeat <n>` | requests per connection (1 to 8; default 2) |
//!
//! Other lines are ignored. The stick table is fixed and small ([`table_spec`]), so that a
//! few addresses fill it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use webfarm_config::acl::{
    parse_rules, AccessRules, Counter, Fetch, HttpAction, RuleText, StickTableSpec, DENY_STATUSES,
};
use webfarm_lb::acl::{connection, http_request, ConnVerdict, StickTable, Verdict};

/// Most requests per connection.
const MAX_REPEAT: usize = 8;
/// Most client addresses (connections held open together).
const MAX_SOURCES: usize = 6;
/// Most named ACLs whose conditions are checked against each other.
const MAX_ALGEBRA: usize = 4;

/// The input, read.
#[derive(Debug)]
struct Input {
    acl: Vec<String>,
    tcp: Vec<String>,
    http: Vec<String>,
    sources: Vec<IpAddr>,
    sni: Option<String>,
    head: Parts,
    repeat: usize,
}

/// The stick table every input's rules use: every counter stored, two entries.
pub fn table_spec() -> StickTableSpec {
    StickTableSpec {
        size: 2,
        expire: Duration::from_secs(30),
        http_req_rate: Some(Duration::from_secs(10)),
        conn_rate: Some(Duration::from_secs(3)),
        store: vec![Counter::ConnCur, Counter::ConnCnt, Counter::HttpReqCnt],
    }
}

/// Checks one input.
///
/// # Panics
///
/// When parsing or evaluating panics, or a property fails: a parse error that does not
/// name its line; parsed rules that name a missing ACL, use a request fetch in a
/// `tcp-request connection` rule or a counter the table does not store, or carry a status
/// HAProxy does not answer with; a verdict that differs between two evaluations of the
/// same request; a `Retry-After` on anything but a 429, or none on a 429; a `Location`
/// that is not a header value; `deny if A` and `deny unless A` both, or neither, denying;
/// `!A`, `A B` and `A || B` not agreeing with `A` and `B`; a stick table holding more
/// entries than its size; `http_req_cnt` not counting every request of a tracked
/// connection; `conn_cur` not back at 0 once every connection and request has ended.
pub fn check(data: &[u8]) {
    let input = read(&String::from_utf8_lossy(data));
    let spec = table_spec();
    let text = RuleText {
        acl: &input.acl,
        tcp_request_connection: &input.tcp,
        http_request: &input.http,
        stick_table: Some(&spec),
    };
    let rules = match parse_rules(&text) {
        Ok(rules) => rules,
        Err(problems) => return check_problems(&input, &problems),
    };
    check_parsed(&rules);
    let src = input.sources.first().copied().unwrap_or(DEFAULT_SRC);
    check_stateless(&rules, &input, src);
    check_algebra(&input, &spec, src);
    check_table(&rules, &input);
}

const DEFAULT_SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn read(text: &str) -> Input {
    let (mut head, ()) = Request::new(()).into_parts();
    let mut input = Input {
        acl: Vec::new(),
        tcp: Vec::new(),
        http: Vec::new(),
        sources: Vec::new(),
        sni: None,
        head: head.clone(),
        repeat: 2,
    };
    let (mut method, mut target) = (Method::GET, Uri::from_static("/"));
    let mut headers = Vec::new();
    for line in text.lines() {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "acl" => input.acl.push(rest.to_string()),
            "http-request" => input.http.push(rest.to_string()),
            "tcp-request" => {
                if let Some(r) = rest.strip_prefix("connection ") {
                    input.tcp.push(r.to_string());
                }
            }
            "src" if input.sources.len() < MAX_SOURCES => {
                input.sources.extend(rest.trim().parse::<IpAddr>().ok());
            }
            "sni" => input.sni = Some(rest.to_string()),
            "repeat" => input.repeat = rest.trim().parse().unwrap_or(2).clamp(1, MAX_REPEAT),
            "req" => {
                let (m, t) = rest.split_once(' ').unwrap_or((rest, "/"));
                method = Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET);
                target = t.parse().unwrap_or(target);
            }
            "hdr" => headers.extend(header(rest)),
            _ => {}
        }
    }
    head.method = method;
    head.uri = target;
    for (name, value) in headers {
        head.headers.append(name, value);
    }
    input.head = head;
    input
}

fn header(line: &str) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = line.split_once(':')?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
    Some((name, HeaderValue::from_str(value.trim()).ok()?))
}

/// Every problem names the list and the index of a line that exists.
fn check_problems(input: &Input, problems: &[String]) {
    assert!(!problems.is_empty(), "an error without a problem");
    for p in problems {
        let (list, lines) = if p.starts_with("acl[") {
            ("acl", input.acl.len())
        } else if p.starts_with("tcp_request_connection[") {
            ("tcp_request_connection", input.tcp.len())
        } else if p.starts_with("http_request[") {
            ("http_request", input.http.len())
        } else {
            panic!("{p:?} does not name its line");
        };
        let index: usize = p[list.len() + 1..]
            .split(']')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{p:?}: no line index"));
        assert!(index < lines, "{p:?}: {list} has {lines} lines");
    }
}

/// What [`parse_rules`] promises of the rules it returns.
fn check_parsed(rules: &AccessRules) {
    let spec = rules.stick_table.as_ref();
    for acl in &rules.acls {
        for t in &acl.tests {
            if let Fetch::Sc0(c) | Fetch::SrcCounter(c) = &t.fetch {
                assert!(spec.is_some_and(|s| s.stores(*c)), "{}: {c:?}", acl.name);
            }
        }
    }
    let conds = rules
        .tcp_request_connection
        .iter()
        .map(|r| (&r.cond, true))
        .chain(rules.http_request.iter().map(|r| (&r.cond, false)));
    for (cond, at_connection) in conds {
        for term in cond.iter().flat_map(|c| c.any_of.iter().flatten()) {
            let acl = rules.acls.get(term.acl).expect("a term names an ACL");
            if at_connection {
                assert!(
                    acl.tests.iter().all(|t| !t.is_layer7()),
                    "{}: a request fetch in a tcp-request connection rule",
                    acl.name
                );
            }
        }
    }
    for rule in &rules.http_request {
        match &rule.action {
            HttpAction::Deny { status } | HttpAction::Tarpit { status } => {
                assert!(DENY_STATUSES.contains(status), "{}", rule.text);
            }
            HttpAction::Redirect(r) => {
                assert!([301, 302, 303, 307, 308].contains(&r.code), "{}", rule.text);
            }
            HttpAction::Allow | HttpAction::TrackSc0 => {}
        }
    }
}

/// Without a table the rules are a pure function of the request: the same verdict twice,
/// and a valid one.
fn check_stateless(rules: &AccessRules, input: &Input, src: IpAddr) {
    let sni = input.sni.as_deref();
    let first = http_request(rules, &input.head, (src, sni), None, None);
    let again = http_request(rules, &input.head, (src, sni), None, None);
    assert_eq!(first.verdict, again.verdict, "one request, two verdicts");
    assert!(first.tracked.is_none(), "tracked without a table");
    check_verdict(&first.verdict, rules);
    let conn = connection(rules, src, None);
    assert!(
        matches!(conn, ConnVerdict::Reject | ConnVerdict::Accept(None)),
        "tracked without a table"
    );
}

fn check_verdict(v: &Verdict, rules: &AccessRules) {
    match v {
        Verdict::Pass => {}
        Verdict::Deny {
            status,
            retry_after,
        } => {
            assert!(DENY_STATUSES.contains(status));
            assert_eq!(retry_after.is_some(), *status == 429, "{v:?}");
            assert!(retry_after.is_none_or(|s| s >= 1), "{v:?}");
        }
        Verdict::Tarpit { status } => assert!(DENY_STATUSES.contains(status)),
        Verdict::Redirect { code, location } => {
            assert!([301, 302, 303, 307, 308].contains(code));
            assert!(
                HeaderValue::from_str(location).is_ok(),
                "Location {location:?} is not a header value ({:?})",
                rules.http_request
            );
        }
    }
}

/// Whether `deny if <cond>` (or whatever `cond` holds) denies the input's request.
fn denies(input: &Input, spec: &StickTableSpec, src: IpAddr, cond: &str) -> bool {
    let http = [format!("deny {cond}")];
    let text = RuleText {
        acl: &input.acl,
        tcp_request_connection: &[],
        http_request: &http,
        stick_table: Some(spec),
    };
    let rules = parse_rules(&text).unwrap_or_else(|e| panic!("{cond}: {e:?}"));
    let sni = input.sni.as_deref();
    let v = http_request(&rules, &input.head, (src, sni), None, None).verdict;
    v != Verdict::Pass
}

/// The condition operators against each other, on the input's named ACLs (names that are
/// plain words, so they can be written back into a condition).
fn check_algebra(input: &Input, spec: &StickTableSpec, src: IpAddr) {
    let names: Vec<&str> = {
        let mut n: Vec<&str> = input
            .acl
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .filter(|n| !matches!(*n, "or" | "if" | "unless" | "TRUE" | "FALSE"))
            .collect();
        let mut seen = std::collections::HashSet::new();
        n.retain(|name| seen.insert(*name));
        n.truncate(MAX_ALGEBRA);
        n
    };
    let value: Vec<bool> = names
        .iter()
        .map(|a| denies(input, spec, src, &format!("if {a}")))
        .collect();
    for (a, &va) in names.iter().zip(&value) {
        assert_eq!(
            denies(input, spec, src, &format!("unless {a}")),
            !va,
            "unless {a}"
        );
        assert_eq!(
            denies(input, spec, src, &format!("if !{a}")),
            !va,
            "if !{a}"
        );
    }
    for (i, (a, &va)) in names.iter().zip(&value).enumerate() {
        for (b, &vb) in names.iter().zip(&value).skip(i + 1) {
            let and = denies(input, spec, src, &format!("if {a} {b}"));
            assert_eq!(and, va && vb, "if {a} {b}");
            let or = denies(input, spec, src, &format!("if {a} || {b}"));
            assert_eq!(or, va || vb, "if {a} || {b}");
        }
    }
}

/// With the table: every source opens a connection (held open together, so the small
/// table fills), each sends `repeat` requests.
fn check_table(rules: &AccessRules, input: &Input) {
    let table = Arc::new(StickTable::new(rules.stick_table.clone().expect("a table")));
    let spec = table.spec().clone();
    let sources = if input.sources.is_empty() {
        vec![DEFAULT_SRC]
    } else {
        input.sources.clone()
    };
    let sni = input.sni.as_deref();
    let mut open = Vec::new();
    for &src in &sources {
        let ConnVerdict::Accept(tracked) = connection(rules, src, Some(&table)) else {
            continue;
        };
        let sc0 = tracked.as_ref().map(|t| t.entry_ref());
        // An address met before shares its entry (and its count) with its open connections.
        let before = sc0.as_ref().map_or(0, |r| r.read(Counter::HttpReqCnt));
        for n in 1..=input.repeat {
            let out = http_request(rules, &input.head, (src, sni), Some(&table), sc0.as_ref());
            check_verdict(&out.verdict, rules);
            if let Some(r) = &sc0 {
                let cnt = r.read(Counter::HttpReqCnt);
                assert_eq!(
                    cnt,
                    before + n as u64,
                    "http_req_cnt of a tracked connection"
                );
            }
            if let Some(t) = &out.tracked {
                assert!(sc0.is_none(), "a request tracked on a tracked connection");
                assert!(t.entry_ref().read(Counter::ConnCur) >= 1);
            }
            assert!(table.len() <= spec.size, "{} entries", table.len());
        }
        open.push(tracked);
    }
    drop(open);
    for src in sources {
        if let Some(at) = table.peek(src) {
            let cur = table.read(at, Counter::ConnCur, table.now());
            assert_eq!(cur, 0, "conn_cur of {src} after every connection ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness reads what it is given: rules, sources, the request; so the properties
    /// run on the inputs' rules, not on an empty rule set.
    #[test]
    fn inputs_are_read_into_rules_and_a_request() {
        let text = "acl admin path_beg /admin\nacl local src 10.0.0.0/8\n\
                    tcp-request connection track-sc0 src\n\
                    http-request deny deny_status 404 if admin !local\n\
                    src 192.0.2.9\nsrc 10.1.1.1\nreq POST /admin/x?y\nhdr Host: a.b\nrepeat 3\n";
        let input = read(text);
        assert_eq!(
            (input.acl.len(), input.tcp.len(), input.http.len()),
            (2, 1, 1)
        );
        assert_eq!(input.sources.len(), 2);
        assert_eq!((input.head.method.as_str(), input.repeat), ("POST", 3));
        assert_eq!(input.head.uri.path(), "/admin/x");
        assert_eq!(input.head.headers["host"], "a.b");
        let spec = table_spec();
        let rules = parse_rules(&RuleText {
            acl: &input.acl,
            tcp_request_connection: &input.tcp,
            http_request: &input.http,
            stick_table: Some(&spec),
        })
        .expect("valid rules");
        let deny = |src| http_request(&rules, &input.head, (src, None), None, None).verdict;
        assert_eq!(
            deny(input.sources[0]),
            Verdict::Deny {
                status: 404,
                retry_after: None
            }
        );
        assert_eq!(deny(input.sources[1]), Verdict::Pass);
        check(text.as_bytes());
    }

    #[test]
    fn a_problem_must_name_an_existing_line() {
        let input = read("acl a nosuchfetch x\n");
        check_problems(&input, &["acl[0]: unknown fetch".into()]);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_problems(&input, &["acl[1]: unknown fetch".into()]);
        }));
        assert!(caught.is_err(), "acl[1] does not exist");
    }
}
