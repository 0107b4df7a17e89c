//! Parsing of ACL lines, conditions and rules (table-driven), and their validation in a
//! farm file.

use std::time::Duration;

use super::parse::words;
use super::*;
use crate::Farm;

fn table() -> StickTableSpec {
    StickTableSpec {
        size: 100,
        expire: Duration::from_secs(30),
        http_req_rate: Some(Duration::from_secs(10)),
        conn_rate: None,
        store: vec![Counter::ConnCur],
    }
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

/// Parses `acl` and `http` lines with the test table.
fn parse(acl: &[&str], http: &[&str]) -> Result<AccessRules, Vec<String>> {
    let (acl, http) = (lines(acl), lines(http));
    let t = table();
    parse_rules(&RuleText {
        acl: &acl,
        http_request: &http,
        stick_table: Some(&t),
        ..RuleText::default()
    })
}

fn test_of(line: &str) -> AclTest {
    let rules = parse(&[&format!("x {line}")], &[]).unwrap_or_else(|e| panic!("{line}: {e:?}"));
    rules.acls[0].tests[0].clone()
}

#[test]
fn words_split_quote_and_escape() {
    assert_eq!(words("a  b\tc").unwrap(), ["a", "b", "c"]);
    assert_eq!(
        words(r#"hdr(x) "a b" 'c d' e\ f"#).unwrap()[1..],
        ["a b", "c d", "e f"]
    );
    assert_eq!(words(r#""""#).unwrap(), [""]);
    assert!(words("\"open").is_err());
    assert!(words("end\\").is_err());
}

#[test]
fn acl_lines_parse_to_fetch_and_pattern() {
    let str_p = |how, ignore_case, values: &[&str]| {
        Pattern::Str(StrPattern {
            how,
            ignore_case,
            values: lines(values),
        })
    };
    let cases: Vec<(&str, Fetch, Pattern)> = vec![
        (
            "src 10.0.0.0/8 192.168.1.7 ::1",
            Fetch::Src,
            Pattern::Ip(vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.1.7/32".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ]),
        ),
        (
            "src 10.0.0.0/8",
            Fetch::Src,
            Pattern::Ip(vec!["10.0.0.0/8".parse().unwrap()]),
        ),
        (
            "path /a /b",
            Fetch::Path,
            str_p(StrMatch::Exact, false, &["/a", "/b"]),
        ),
        (
            "path_beg /admin",
            Fetch::Path,
            str_p(StrMatch::Beg, false, &["/admin"]),
        ),
        (
            "path_end .php",
            Fetch::Path,
            str_p(StrMatch::End, false, &[".php"]),
        ),
        (
            "path_sub -i WP-",
            Fetch::Path,
            str_p(StrMatch::Sub, true, &["wp-"]),
        ),
        (
            "path -m dir api",
            Fetch::Path,
            str_p(StrMatch::Dir, false, &["api"]),
        ),
        (
            "method POST PUT",
            Fetch::Method,
            str_p(StrMatch::Exact, false, &["POST", "PUT"]),
        ),
        (
            "hdr(X-Bad) -m found",
            Fetch::Hdr("x-bad".into()),
            Pattern::Found,
        ),
        (
            "req.hdr(host) -i WWW.foobar.com",
            Fetch::Hdr("host".into()),
            str_p(StrMatch::Exact, true, &["www.foobar.com"]),
        ),
        (
            "hdr_beg(user-agent) curl",
            Fetch::Hdr("user-agent".into()),
            str_p(StrMatch::Beg, false, &["curl"]),
        ),
        (
            "hdr_cnt(cookie) gt 3",
            Fetch::HdrCnt("cookie".into()),
            Pattern::Int(vec![IntTest::Gt(3)]),
        ),
        (
            "ssl_fc_sni -i api.foobar.com",
            Fetch::Sni,
            str_p(StrMatch::Exact, true, &["api.foobar.com"]),
        ),
        (
            "sc0_http_req_rate gt 100",
            Fetch::Sc0(Counter::HttpReqRate),
            Pattern::Int(vec![IntTest::Gt(100)]),
        ),
        (
            "sc_conn_cur(0) ge 10",
            Fetch::Sc0(Counter::ConnCur),
            Pattern::Int(vec![IntTest::Ge(10)]),
        ),
        (
            "src_http_req_rate 5 10:20",
            Fetch::SrcCounter(Counter::HttpReqRate),
            Pattern::Int(vec![IntTest::Eq(5), IntTest::Range(10, 20)]),
        ),
        (
            "path -m len gt 100",
            Fetch::Path,
            Pattern::Len(vec![IntTest::Gt(100)]),
        ),
        ("always_true", Fetch::AlwaysTrue, Pattern::Bool),
    ];
    for (line, fetch, pattern) in cases {
        let t = test_of(line);
        assert_eq!((t.fetch, t.pattern), (fetch, pattern), "{line}");
    }
}

#[test]
fn bad_acl_lines_say_what_is_wrong() {
    let cases = [
        ("x src 10.0.0.0/33", "is not an address or network"),
        (
            "x src 10.0.0.1/8",
            "has host bits set; the network is 10.0.0.0/8",
        ),
        ("x src", "no value to match"),
        ("x path_beg", "no value to match"),
        ("x nope /a", "unknown sample fetch"),
        ("x path -m reg ^/a", "regular expressions are not supported"),
        ("x path_beg -m sub /a", "already says how it matches"),
        ("x src -m beg 1", "does not apply"),
        ("x hdr /a", "needs a header name"),
        ("x hdr(a b) v", "missing `)`"),
        ("x hdr(a/b) v", "not a header name"),
        ("x sc0_http_req_rate gt", "exactly one number"),
        ("x sc0_http_req_rate gt ten", "not a whole number"),
        ("x sc0_conn_rate gt 1", "does not store conn_rate"),
        ("x sc_http_req_rate(1) gt 1", "sc0 only"),
        ("x always_true yes", "takes none"),
        (
            "x path -f /etc/list",
            "-f (patterns from a file) is not supported",
        ),
        ("x path -z /a", "unknown flag"),
        ("x src_conn_cur 1:0", "above"),
        ("TRUE src 1.2.3.4", "predefined"),
        ("b@d src 1.2.3.4", "not an ACL name"),
        ("x req.ssl_sni a", "sni_routes"),
    ];
    for (line, want) in cases {
        let e = parse(&[line], &[]).unwrap_err();
        assert!(
            e[0].starts_with("acl[0]: ") && e[0].contains(want),
            "{line}: {e:?}"
        );
    }
}

#[test]
fn lines_with_one_name_are_ored() {
    let r = parse(
        &["bad src 10.0.0.0/8", "bad path_beg /admin"],
        &["deny if bad"],
    )
    .unwrap();
    assert_eq!(r.acls.len(), 1);
    assert_eq!(r.acls[0].tests.len(), 2);
}

#[test]
fn conditions_parse_haproxy_syntax() {
    let acl = ["a src 1.1.1.1", "b path /b", "c method GET"];
    let t = |negated, acl| Term { negated, acl };
    let cases: Vec<(&str, bool, Vec<Vec<Term>>)> = vec![
        ("deny if a", false, vec![vec![t(false, 0)]]),
        ("deny unless a", true, vec![vec![t(false, 0)]]),
        ("deny if a !b", false, vec![vec![t(false, 0), t(true, 1)]]),
        ("deny if a ! b", false, vec![vec![t(false, 0), t(true, 1)]]),
        (
            "deny if a || b c",
            false,
            vec![vec![t(false, 0)], vec![t(false, 1), t(false, 2)]],
        ),
        (
            "deny if a or !c",
            false,
            vec![vec![t(false, 0)], vec![t(true, 2)]],
        ),
        (
            "deny if { path /x } a",
            false,
            vec![vec![t(false, 3), t(false, 0)]],
        ),
        ("deny if !{ src 2.2.2.2 }", false, vec![vec![t(true, 3)]]),
        ("deny if METH_POST", false, vec![vec![t(false, 3)]]),
    ];
    for (line, unless, any_of) in cases {
        let r = parse(&acl, &[line]).unwrap_or_else(|e| panic!("{line}: {e:?}"));
        let cond = r.http_request[0].cond.clone().unwrap();
        assert_eq!((cond.unless, cond.any_of), (unless, any_of), "{line}");
    }
    let r = parse(&acl, &["deny if { path /x }"]).unwrap();
    assert_eq!(r.acls[3].name, "{ path /x }");
}

#[test]
fn bad_conditions_and_rules_are_refused() {
    let acl = ["a src 1.1.1.1"];
    let cases = [
        ("deny if nope", "no ACL named \"nope\""),
        ("deny if", "incomplete condition"),
        ("deny if a ||", "incomplete condition"),
        ("deny if || a", "with nothing before it"),
        ("deny if a !", "incomplete condition"),
        ("deny if { src 1.1.1.1", "not closed"),
        (
            "deny deny_status 299 if a",
            "not a status HAProxy answers with",
        ),
        ("deny deny_status if a", "unexpected"),
        ("tarpit deny_status x", "not a status"),
        ("allow now", "takes no argument"),
        ("redirect", "needs location, prefix or scheme"),
        ("redirect location", "missing its value"),
        ("redirect location /a code 200", "expected 301, 302"),
        ("redirect location /a keep", "unknown redirect option"),
        (
            "redirect location https://%[hdr(host)]/ if a",
            "redirect location \"https://%[hdr(host)]/\": log-format values",
        ),
        (
            "redirect prefix /%[path]",
            "log-format values (%[...]) are not supported",
        ),
        ("track-sc1 src", "use track-sc0"),
        ("track-sc0 hdr(x)", "only \"track-sc0 src\""),
        ("track-sc0 src table other", "no `table` argument"),
        ("set-header X y", "unknown http-request action"),
        ("if a", "no action"),
    ];
    for (line, want) in cases {
        let e = parse(&acl, &[line]).unwrap_err();
        assert!(
            e[0].starts_with("http_request[0]: ") && e[0].contains(want),
            "{line}: {e:?}"
        );
    }
}

#[test]
fn rules_parse_to_actions() {
    let r = parse(
        &["a src 1.1.1.1"],
        &[
            "allow if a",
            "deny",
            "deny deny_status 429 if a",
            "tarpit",
            "tarpit deny_status 403",
            "deny deny_status 401",
            "deny deny_status 414",
            "deny deny_status 421",
            "tarpit deny_status 422",
            "deny deny_status 431",
            "redirect location https://x/ code 301 if a",
            "redirect prefix /new drop-query append-slash",
            "redirect scheme https",
            "track-sc0 src",
        ],
    )
    .unwrap();
    let actions: Vec<HttpAction> = r.http_request.iter().map(|r| r.action.clone()).collect();
    let redirect = |kind, value: &str, code, drop_query, append_slash| {
        HttpAction::Redirect(Redirect {
            kind,
            value: value.into(),
            code,
            drop_query,
            append_slash,
        })
    };
    assert_eq!(
        actions,
        vec![
            HttpAction::Allow,
            HttpAction::Deny { status: 403 },
            HttpAction::Deny { status: 429 },
            HttpAction::Tarpit { status: 500 },
            HttpAction::Tarpit { status: 403 },
            HttpAction::Deny { status: 401 },
            HttpAction::Deny { status: 414 },
            HttpAction::Deny { status: 421 },
            HttpAction::Tarpit { status: 422 },
            HttpAction::Deny { status: 431 },
            redirect(RedirectKind::Location, "https://x/", 301, false, false),
            redirect(RedirectKind::Prefix, "/new", 302, true, true),
            redirect(RedirectKind::Scheme, "https", 302, false, false),
            HttpAction::TrackSc0,
        ]
    );
}

#[test]
fn tcp_rules_take_layer4_fetches_only() {
    let acl = lines(&["bad src 10.0.0.0/8", "adm path_beg /admin"]);
    let t = table();
    let parse_tcp = |line: &str| {
        let tcp = lines(&[line]);
        parse_rules(&RuleText {
            acl: &acl,
            tcp_request_connection: &tcp,
            stick_table: Some(&t),
            ..RuleText::default()
        })
    };
    let r = parse_tcp("reject if bad").unwrap();
    assert_eq!(r.tcp_request_connection[0].action, TcpAction::Reject);
    assert_eq!(
        parse_tcp("track-sc0 src").unwrap().tcp_request_connection[0].action,
        TcpAction::TrackSc0
    );
    assert_eq!(
        parse_tcp("accept if LOCALHOST")
            .unwrap()
            .tcp_request_connection[0]
            .action,
        TcpAction::Accept
    );
    let e = parse_tcp("reject if adm").unwrap_err();
    assert!(e[0].contains("looks at the HTTP request"), "{e:?}");
    let e = parse_tcp("reject if { hdr(x) -m found }").unwrap_err();
    assert!(e[0].contains("looks at the HTTP request"), "{e:?}");
    assert!(parse_tcp("deny").unwrap_err()[0].contains("unknown tcp-request connection action"));
}

#[test]
fn counters_and_tracking_need_a_table() {
    let acl = lines(&["fast sc0_http_req_rate gt 1"]);
    let e = parse_rules(&RuleText {
        acl: &acl,
        ..RuleText::default()
    })
    .unwrap_err();
    assert!(e[0].contains("needs a stick table"), "{e:?}");
    let http = lines(&["track-sc0 src"]);
    let e = parse_rules(&RuleText {
        http_request: &http,
        ..RuleText::default()
    })
    .unwrap_err();
    assert!(e[0].contains("needs a stick table"), "{e:?}");
}

#[test]
fn matchers_match() {
    let p = |how, ignore_case, v: &str| StrPattern {
        how,
        ignore_case,
        values: vec![v.into()],
    };
    let cases = [
        (p(StrMatch::Exact, false, "/a"), "/a", true),
        (p(StrMatch::Exact, false, "/a"), "/A", false),
        (p(StrMatch::Exact, true, "/a"), "/A", true),
        (p(StrMatch::Beg, false, "/admin"), "/admin/x", true),
        (p(StrMatch::Beg, false, "/admin"), "/adm", false),
        (p(StrMatch::End, false, ".php"), "/x.php", true),
        (p(StrMatch::End, true, ".php"), "/X.PHP", true),
        (p(StrMatch::End, false, "é"), "/aé", true),
        (p(StrMatch::Beg, false, "/é"), "/e", false),
        (p(StrMatch::Sub, false, "wp-"), "/x/wp-login", true),
        (p(StrMatch::Sub, true, "wp-"), "/x/WP-login", true),
        (p(StrMatch::Sub, false, "wp-"), "/x/WP-login", false),
        (p(StrMatch::Dir, false, "api"), "/v1/api/x", true),
        (p(StrMatch::Dir, false, "api"), "/v1/apix", false),
        (p(StrMatch::Dom, false, "foobar"), "www.foobar.com", true),
        // A pattern is a run of whole words; delimiters at its ends are ignored.
        (p(StrMatch::Dir, false, "/api"), "/api/v1/x", true),
        (p(StrMatch::Dir, false, "api/v1"), "/api/v1/x", true),
        (p(StrMatch::Dir, false, "/api/v1/"), "/api/v1", true),
        (p(StrMatch::Dir, false, "api/v"), "/api/v1/x", false),
        (p(StrMatch::Dir, false, "pi/v1"), "/api/v1/x", false),
        (p(StrMatch::Dir, false, "x"), "/a/b?x", true),
        (p(StrMatch::Dir, false, "b"), "/a/b.c", false),
        (p(StrMatch::Dir, true, "API"), "/v1/api", true),
        (p(StrMatch::Dir, false, "/"), "/a", false),
        (p(StrMatch::Dom, true, "foobar.com"), "www.FooBar.com", true),
        (
            p(StrMatch::Dom, false, "foobar.com"),
            "www.foobar.community",
            false,
        ),
        (p(StrMatch::Dom, false, "bar.com"), "www.foobar.com", false),
        (p(StrMatch::Dom, false, "example"), "example:8080", true),
        (
            p(StrMatch::Dom, false, ".example.com."),
            "a.example.com",
            true,
        ),
        (p(StrMatch::Dom, false, "com"), "a.example.com/x", true),
    ];
    for (pat, sample, want) in cases {
        assert_eq!(pat.matches(sample), want, "{pat:?} {sample}");
    }
    let nets = vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    assert!(ip_matches(&nets, "10.2.3.4".parse().unwrap()));
    assert!(ip_matches(&nets, "::ffff:10.2.3.4".parse().unwrap()));
    assert!(ip_matches(&nets, "2001:db8::1".parse().unwrap()));
    assert!(!ip_matches(&nets, "11.0.0.1".parse().unwrap()));
    assert!(IntTest::Range(1, 3).matches(3) && !IntTest::Gt(3).matches(3));
}

const FARM: &str = r#"
[[nodes]]
name = "lb-1"
role = "lb"
address = "127.0.1.10"
[[nodes]]
name = "web-1"
role = "web"
address = "127.0.1.21"
[[nodes]]
name = "db-1"
role = "db"
address = "127.0.1.31"
[[backends]]
name = "web"
timeout = { connect = "4s" }
[[backends.servers]]
name = "web-1"
"#;

fn farm(frontend: &str) -> Result<Farm, String> {
    let text = format!(
        "{FARM}\n[[frontends]]\nname = \"http\"\nport = 8080\ndefault_backend = \"web\"\n{frontend}"
    );
    Farm::parse(&text, None, std::path::Path::new(".")).map_err(|e| e.to_string())
}

#[test]
fn frontend_rules_load_from_the_farm_file() {
    let f = farm(
        r#"
acl = ["blocked src 10.0.0.0/8", "fast sc0_http_req_rate gt 100"]
tcp_request_connection = ["reject if blocked"]
http_request = ["track-sc0 src", "deny deny_status 429 if fast", "tarpit if { path_beg /wp- }"]
stick_table = { type = "ip", size = "100k", expire = "30s", store = ["http_req_rate(10s)", "conn_cur"] }
"#,
    )
    .unwrap();
    let fe = &f.frontends[0];
    let t = fe.rules.stick_table.as_ref().unwrap();
    assert_eq!((t.size, t.expire), (102_400, Duration::from_secs(30)));
    assert_eq!(t.http_req_rate, Some(Duration::from_secs(10)));
    assert_eq!(fe.rules.http_request.len(), 3);
    // `timeout tarpit` falls back to the backend's `timeout connect`, as in HAProxy.
    assert_eq!(fe.timeout.tarpit, Duration::from_secs(4));
    let f = farm("http_request = [\"tarpit\"]\ntimeout = { tarpit = \"2s\" }").unwrap();
    assert_eq!(f.frontends[0].timeout.tarpit, Duration::from_secs(2));
    assert!(farm("").unwrap().frontends[0].rules.is_empty());
}

#[test]
fn bad_frontend_rules_name_their_key() {
    let cases = [
        (
            "acl = [\"a src 300.1.1.1\"]",
            "frontends[0].acl[0]: \"300.1.1.1\" is not an address",
        ),
        (
            "acl = [\"a src 10.0.0.1/8\"]",
            "frontends[0].acl[0]: \"10.0.0.1/8\" has host bits set; the network is 10.0.0.0/8",
        ),
        (
            "http_request = [\"deny if nope\"]",
            "frontends[0].http_request[0]: no ACL named",
        ),
        (
            "http_request = [\"deny deny_status 999\"]",
            "frontends[0].http_request[0]: deny_status 999",
        ),
        (
            "acl = [\"s ssl_fc_sni x\"]\nhttp_request = [\"deny if s\"]",
            "frontends[0].acl: ssl_fc_sni",
        ),
        (
            "stick_table = { size = 0, expire = \"1s\" }",
            "frontends[0].stick_table.size",
        ),
        (
            "stick_table = { size = \"10q\", expire = \"1s\" }",
            "frontends[0].stick_table.size",
        ),
        (
            "stick_table = { size = 10, expire = \"0s\" }",
            "frontends[0].stick_table.expire",
        ),
        (
            "stick_table = { type = \"string\", size = 10, expire = \"1s\" }",
            "frontends[0].stick_table.type",
        ),
        (
            "stick_table = { size = 10, expire = \"1s\", store = [\"gpc0\"] }",
            "frontends[0].stick_table.store[0]",
        ),
        (
            "stick_table = { size = 10, expire = \"1s\", store = [\"http_req_rate\"] }",
            "needs a period",
        ),
        (
            "stick_table = { size = 10, expire = \"1s\", store = [\"conn_rate(0s)\"] }",
            "period must be",
        ),
        (
            "timeout = { tarpit = \"1s\" }",
            "frontends[0].timeout.tarpit: only applies",
        ),
        (
            "http_request = [\"tarpit\"]\ntimeout = { tarpit = \"0s\" }",
            "frontends[0].timeout.tarpit: must be greater than 0",
        ),
    ];
    for (toml, want) in cases {
        let e = farm(toml).unwrap_err();
        assert!(e.contains(want), "{toml}: {e}");
    }
}
