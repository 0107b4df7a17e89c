//! ACL evaluation (table-driven, from the farm file's syntax), and the stick table's
//! counting, expiry and eviction.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::Request;
use webfarm_config::acl::{parse_rules, AccessRules, Counter, RuleText, StickTableSpec};

use super::*;

fn spec(size: usize) -> StickTableSpec {
    StickTableSpec {
        size,
        expire: Duration::from_secs(30),
        http_req_rate: Some(Duration::from_secs(10)),
        conn_rate: Some(Duration::from_secs(10)),
        store: vec![Counter::ConnCur, Counter::ConnCnt, Counter::HttpReqCnt],
    }
}

fn rules(acl: &[&str], tcp: &[&str], http: &[&str]) -> AccessRules {
    let v = |l: &[&str]| l.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    let (acl, tcp, http) = (v(acl), v(tcp), v(http));
    let table = spec(100);
    parse_rules(&RuleText {
        acl: &acl,
        tcp_request_connection: &tcp,
        http_request: &http,
        stick_table: Some(&table),
    })
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const ACLS: [&str; 9] = [
    "blocked src 10.0.0.0/8 2001:db8::/32",
    "admin path_beg /admin",
    "php path_end -i .php",
    "post method POST",
    "bot hdr_sub(user-agent) -i bot",
    "has_debug hdr(x-debug) -m found",
    "beta hdr(x-flags) beta",
    "api_sni ssl_fc_sni -i api.foobar.com",
    "many_cookies hdr_cnt(cookie) gt 2",
];

#[test]
fn http_rules_decide_in_order() {
    let r = rules(
        &ACLS,
        &[],
        &[
            "allow if { src 10.9.9.9 }",
            "deny if blocked",
            "deny deny_status 404 if php",
            "tarpit if bot",
            "redirect prefix /v2 code 301 if beta",
            "deny deny_status 405 if post admin",
            "deny deny_status 400 if has_debug || many_cookies",
            "deny deny_status 410 unless api_sni",
        ],
    );
    let deny = |status| Verdict::Deny {
        status,
        retry_after: None,
    };
    let sni = Some("API.foobar.com");
    let cases: Vec<(&str, Parts, Option<&str>, Verdict)> = vec![
        ("plain", head("GET", "/", &[]), sni, Verdict::Pass),
        ("blocked v4", head("GET", "/", &[]), sni, deny(403)),
        ("blocked v6", head("GET", "/", &[]), sni, deny(403)),
        (
            "allow wins over later deny",
            head("GET", "/x.php", &[]),
            sni,
            Verdict::Pass,
        ),
        ("php any case", head("GET", "/X.PHP", &[]), sni, deny(404)),
        (
            "bot",
            head("GET", "/", &[("user-agent", "GoogleBot/2")]),
            sni,
            Verdict::Tarpit { status: 500 },
        ),
        (
            "beta among values",
            head("GET", "/a?q=1", &[("x-flags", "alpha, beta")]),
            sni,
            Verdict::Redirect {
                code: 301,
                location: "/v2/a?q=1".into(),
            },
        ),
        (
            "post to admin",
            head("POST", "/admin/x", &[]),
            sni,
            deny(405),
        ),
        (
            "get to admin",
            head("GET", "/admin/x", &[]),
            sni,
            Verdict::Pass,
        ),
        (
            "post elsewhere",
            head("POST", "/x", &[]),
            sni,
            Verdict::Pass,
        ),
        (
            "debug header",
            head("GET", "/", &[("x-debug", "")]),
            sni,
            deny(400),
        ),
        (
            "three cookies",
            head("GET", "/", &[("cookie", "a=1"), ("cookie", "b=2, c=3")]),
            sni,
            deny(400),
        ),
        (
            "two cookies",
            head("GET", "/", &[("cookie", "a=1; b=2"), ("cookie", "c")]),
            sni,
            Verdict::Pass,
        ),
        (
            "other sni",
            head("GET", "/", &[]),
            Some("www.foobar.com"),
            deny(410),
        ),
        ("no sni", head("GET", "/", &[]), None, deny(410)),
    ];
    for (name, h, sni, want) in cases {
        let src = match name {
            "blocked v4" => ip("10.1.2.3"),
            "blocked v6" => ip("2001:db8::7"),
            "allow wins over later deny" => ip("10.9.9.9"),
            _ => ip("192.0.2.1"),
        };
        let got = http_request(&r, &h, (src, sni), None, None).verdict;
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn host_comes_from_the_authority_without_a_host_header() {
    let r = rules(
        &[
            "www hdr(host) -i www.foobar.com",
            "dom hdr_dom(host) -i foobar.com",
            "has_host hdr(host) -m found",
            "one_host hdr_cnt(host) eq 1",
        ],
        &[],
        &[
            "deny deny_status 401 if www",
            "deny deny_status 403 if dom",
            "deny deny_status 404 if has_host one_host",
        ],
    );
    let deny = |status| Verdict::Deny {
        status,
        retry_after: None,
    };
    let cases = [
        // HTTP/2 (`:authority`) and HTTP/1.1 absolute-form: the authority is the URI's.
        (
            "h2 www",
            head("GET", "https://WWW.foobar.com/x", &[]),
            deny(401),
        ),
        (
            "h2 dom",
            head("GET", "https://api.foobar.com:8443/", &[]),
            deny(403),
        ),
        (
            "h2 other",
            head("GET", "https://example.com/", &[]),
            deny(404),
        ),
        // The Host header wins when there is one.
        (
            "host header",
            head("GET", "https://x.example/", &[("host", "www.foobar.com")]),
            deny(401),
        ),
        ("origin form", head("GET", "/", &[]), Verdict::Pass),
    ];
    for (name, h, want) in cases {
        let got = http_request(&r, &h, (ip("192.0.2.1"), None), None, None).verdict;
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn tcp_rules_reject_accept_and_track() {
    let table = Arc::new(StickTable::new(spec(100)));
    let r = rules(
        &["blocked src 10.0.0.0/8", "office src 10.1.0.0/16"],
        &[
            "accept if office",
            "reject if blocked",
            "track-sc0 src",
            "reject if { sc0_conn_rate gt 2 }",
        ],
        &[],
    );
    let verdict = |src: &str| connection(&r, ip(src), Some(&table));
    assert!(matches!(verdict("10.1.0.5"), ConnVerdict::Accept(None)));
    assert!(matches!(verdict("10.2.0.5"), ConnVerdict::Reject));
    // Tracked: the connection rate of 192.0.2.1 counts every connection, rejected or not.
    let held: Vec<_> = (0..2)
        .map(|_| match verdict("192.0.2.1") {
            ConnVerdict::Accept(Some(t)) => t,
            other => panic!("{other:?}"),
        })
        .collect();
    let e = held[0].entry_ref();
    assert_eq!(e.read(Counter::ConnCur), 2);
    assert!(matches!(verdict("192.0.2.1"), ConnVerdict::Reject));
    assert_eq!(e.read(Counter::ConnCnt), 3);
    assert_eq!(e.read(Counter::ConnRate), 3);
    drop(held);
    assert_eq!(e.read(Counter::ConnCur), 0);
    // Another address has its own counters.
    assert!(matches!(verdict("192.0.2.2"), ConnVerdict::Accept(Some(_))));
}

#[test]
fn a_connection_refused_after_its_rules_is_not_counted() {
    let table = Arc::new(StickTable::new(spec(100)));
    let r = rules(&[], &["track-sc0 src"], &[]);
    let track = || match connection(&r, ip("192.0.2.1"), Some(&table)) {
        ConnVerdict::Accept(Some(t)) => t,
        other => panic!("{other:?}"),
    };
    let kept = track();
    let e = kept.entry_ref();
    let read = |c| e.read(c);
    assert_eq!((read(Counter::ConnCnt), read(Counter::ConnRate)), (1, 1));
    // Refused by maxconn: its count is taken back.
    track().refused();
    assert_eq!((read(Counter::ConnCnt), read(Counter::ConnRate)), (1, 1));
    // Also once its window has become the previous one.
    let t = track();
    table.advance(10_000);
    assert_eq!(read(Counter::ConnRate), 2);
    t.refused();
    assert_eq!((read(Counter::ConnCnt), read(Counter::ConnRate)), (1, 1));
}

#[test]
fn request_rate_limit_denies_with_retry_after() {
    let table = Arc::new(StickTable::new(spec(100)));
    let r = rules(
        &["fast sc0_http_req_rate gt 3"],
        &[],
        &["track-sc0 src", "deny deny_status 429 if fast"],
    );
    let h = head("GET", "/", &[]);
    let run = |src: &str| http_request(&r, &h, (ip(src), None), Some(&table), None);
    for i in 1..=3 {
        let out = run("192.0.2.1");
        assert_eq!(out.verdict, Verdict::Pass, "request {i}");
        assert!(out.tracked.is_some());
    }
    let out = run("192.0.2.1");
    assert_eq!(
        out.verdict,
        Verdict::Deny {
            status: 429,
            retry_after: Some(10)
        }
    );
    assert_eq!(run("192.0.2.2").verdict, Verdict::Pass);
    // Two periods later nothing of the flood is left in the window.
    table.advance(19_000);
    assert_eq!(run("192.0.2.1").verdict, Verdict::Pass);
}

#[test]
fn a_connection_s_tracking_counts_its_requests() {
    let table = Arc::new(StickTable::new(spec(100)));
    let r = rules(
        &["busy sc0_http_req_cnt ge 2", "conns sc0_conn_cur gt 1"],
        &["track-sc0 src"],
        &[
            "track-sc0 src",
            "deny deny_status 429 if busy",
            "deny deny_status 503 if conns",
        ],
    );
    let ConnVerdict::Accept(Some(conn)) = connection(&r, ip("192.0.2.9"), Some(&table)) else {
        panic!("not tracked");
    };
    let h = head("GET", "/", &[]);
    let run = || {
        http_request(
            &r,
            &h,
            (ip("192.0.2.9"), None),
            Some(&table),
            Some(&conn.entry_ref()),
        )
    };
    let first = run();
    // The connection already tracks sc0: the rule's track-sc0 is ignored, as in HAProxy.
    assert!(first.tracked.is_none());
    assert_eq!(first.verdict, Verdict::Pass);
    assert!(matches!(run().verdict, Verdict::Deny { status: 429, .. }));
    let Ok(ConnVerdict::Accept(Some(second))) =
        Ok::<_, ()>(connection(&r, ip("192.0.2.9"), Some(&table)))
    else {
        panic!("not tracked");
    };
    assert_eq!(second.entry_ref().read(Counter::ConnCur), 2);
}

#[test]
fn an_entry_tracked_before_a_table_swap_is_read_with_its_own_table() {
    let r = rules(
        &["fast sc0_http_req_rate gt 2"],
        &["track-sc0 src"],
        &["deny deny_status 429 if fast"],
    );
    let old = Arc::new(StickTable::new(spec(100)));
    // The old table has been up for a while.
    old.advance(600_000);
    let ConnVerdict::Accept(Some(conn)) = connection(&r, ip("192.0.2.9"), Some(&old)) else {
        panic!("not tracked");
    };
    let sc0 = conn.entry_ref();
    let h = head("GET", "/", &[]);
    let run = |table| http_request(&r, &h, (ip("192.0.2.9"), None), Some(table), Some(&sc0));
    for _ in 0..2 {
        assert_eq!(run(&old).verdict, Verdict::Pass);
    }
    // A reload gives the frontend a new table; the connection keeps its entry.
    let new = Arc::new(StickTable::new(spec(100)));
    assert!(matches!(
        run(&new).verdict,
        Verdict::Deny { status: 429, .. }
    ));
    // Two periods later the burst has left the entry's window.
    old.advance(20_000);
    new.advance(20_000);
    assert_eq!(run(&new).verdict, Verdict::Pass);
    assert_eq!(sc0.read(Counter::HttpReqRate), 1);
}

#[test]
fn src_counters_read_without_tracking() {
    let table = Arc::new(StickTable::new(spec(100)));
    let r = rules(&["seen src_conn_cnt gt 0"], &[], &["deny if seen"]);
    let h = head("GET", "/", &[]);
    assert_eq!(
        http_request(&r, &h, (ip("192.0.2.3"), None), Some(&table), None).verdict,
        Verdict::Pass
    );
    assert!(
        table.peek(ip("192.0.2.3")).is_none(),
        "a src_ fetch makes no entry"
    );
    let t = Tracked::new(&table, ip("192.0.2.3"), table.now()).unwrap();
    table.count_connection(t.at, table.now());
    assert!(matches!(
        http_request(&r, &h, (ip("192.0.2.3"), None), Some(&table), None).verdict,
        Verdict::Deny { status: 403, .. }
    ));
}

#[test]
fn without_a_table_counter_acls_do_not_match() {
    let r = rules(
        &["fast sc0_http_req_rate gt 0"],
        &[],
        &["track-sc0 src", "deny if fast", "deny if !fast"],
    );
    let h = head("GET", "/", &[]);
    let out = http_request(&r, &h, (ip("192.0.2.1"), None), None, None);
    // No table: nothing tracked, `fast` fails to fetch (false), `!fast` holds.
    assert!(out.tracked.is_none());
    assert!(matches!(out.verdict, Verdict::Deny { status: 403, .. }));
}

#[test]
fn redirect_locations_follow_haproxy() {
    use webfarm_config::acl::{Redirect, RedirectKind};
    let r = |kind, value: &str, drop_query, append_slash| Redirect {
        kind,
        value: value.into(),
        code: 302,
        drop_query,
        append_slash,
    };
    let h = head("GET", "/a/b?x=1", &[("host", "www.foobar.com:8080")]);
    let cases = [
        (
            r(RedirectKind::Location, "https://x/", false, false),
            "https://x/",
        ),
        (
            r(RedirectKind::Prefix, "/new", false, false),
            "/new/a/b?x=1",
        ),
        (r(RedirectKind::Prefix, "/", false, false), "/a/b?x=1"),
        (
            r(RedirectKind::Prefix, "https://y", true, true),
            "https://y/a/b/",
        ),
        (
            r(RedirectKind::Scheme, "https", false, false),
            "https://www.foobar.com:8080/a/b?x=1",
        ),
    ];
    for (redirect, want) in cases {
        assert_eq!(location(&redirect, &h), want);
    }
}

#[test]
fn entries_expire_after_their_last_use() {
    let table = StickTable::new(spec(100));
    let e = table.track(ip("192.0.2.1")).unwrap();
    table.count_request(e, table.now());
    table.advance(29_000);
    assert!(table.peek(ip("192.0.2.1")).is_some());
    table.advance(1_000);
    assert!(
        table.peek(ip("192.0.2.1")).is_none(),
        "expired after 30s unused"
    );
    assert_eq!(table.len(), 1, "dropped by purge, not by peek");
    table.purge();
    assert_eq!(table.len(), 0);
    // Tracked again: a new entry, counting from zero.
    let e = table.track(ip("192.0.2.1")).unwrap();
    assert_eq!(table.read(e, Counter::HttpReqCnt, table.now()), 0);
}

#[test]
fn an_entry_in_use_never_expires() {
    let table = Arc::new(StickTable::new(spec(100)));
    let t = Tracked::new(&table, ip("192.0.2.1"), table.now()).unwrap();
    table.advance(60_000);
    table.purge();
    assert_eq!(table.len(), 1);
    drop(t);
    // The connection's end counts as a use: 30 s from now.
    table.advance(29_000);
    table.purge();
    assert_eq!(table.len(), 1);
    table.advance(1_000);
    table.purge();
    assert_eq!(table.len(), 0);
}

#[test]
fn a_full_table_evicts_the_least_recently_used() {
    let table = Arc::new(StickTable::new(spec(3)));
    assert_eq!(table.capacity(), 3);
    for a in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        table.track(ip(a)).unwrap();
    }
    // .1 is used again: .2 is now the least recently used.
    table.track(ip("192.0.2.1")).unwrap();
    table.track(ip("192.0.2.4")).unwrap();
    assert_eq!(table.len(), 3);
    assert!(table.peek(ip("192.0.2.2")).is_none(), "LRU evicted");
    for a in ["192.0.2.1", "192.0.2.3", "192.0.2.4"] {
        assert!(table.peek(ip(a)).is_some(), "{a} kept");
    }
    // Entries in use are never evicted; a table full of them refuses new addresses.
    let held: Vec<_> = ["192.0.2.1", "192.0.2.3", "192.0.2.4"]
        .iter()
        .map(|a| Tracked::new(&table, ip(a), table.now()).unwrap())
        .collect();
    assert!(table.track(ip("192.0.2.5")).is_none());
    assert_eq!(table.refused(), 1);
    drop(held);
    assert!(table.track(ip("192.0.2.5")).is_some());
    assert_eq!(table.len(), 3);
}

#[test]
fn purged_entries_give_their_memory_back() {
    let table = Arc::new(StickTable::new(spec(1000)));
    for i in 0..1000u32 {
        table
            .track(std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
            .unwrap();
    }
    let (slots, map) = table.held();
    assert_eq!(
        slots, 1000,
        "the slab grows to the shard's share of size, not past it"
    );
    assert!(map >= 1000);
    table.advance(31_000);
    table.track(ip("192.0.2.1")).unwrap();
    table.purge();
    assert_eq!(table.len(), 1);
    let (slots, map) = table.held();
    // The new entry took the lowest free slot, so nearly the whole slab went back.
    assert!(slots <= 4, "the slab shrank: {slots}");
    assert!(map < 100, "the map shrank: {map}");
}

#[test]
fn a_full_shard_whose_cold_end_is_in_use_still_tracks_new_addresses() {
    // One shard of 20; the 17 oldest entries are tracked by long-lived connections,
    // more than an insertion used to look at from the cold end.
    let table = Arc::new(StickTable::new(spec(20)));
    let addr = |i: usize| ip(&format!("192.0.2.{}", i + 1));
    let mut held: Vec<_> = (0..20)
        .map(|i| Tracked::new(&table, addr(i), table.now()).unwrap())
        .collect();
    held.truncate(17);
    for round in 0..3 {
        let new = addr(20 + round);
        assert!(table.track(new).is_some(), "round {round}");
        assert_eq!(table.len(), 20);
        assert!(
            table.peek(addr(17 + round)).is_none(),
            "the unused LRU entry went"
        );
    }
    for i in 0..17 {
        assert!(table.peek(addr(i)).is_some(), "tracked {i} kept");
    }
    assert_eq!(table.refused(), 0);
}

#[test]
fn a_large_table_is_sharded_and_bounded() {
    let table = StickTable::new(spec(100_000));
    assert!(table.capacity() >= 100_000 && table.capacity() < 100_100);
    for i in 0..120_000u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        table.track(a);
    }
    assert!(table.len() <= table.capacity());
    assert!(table.len() > 99_000, "{}", table.len());
    // The most recent addresses are all there.
    for i in 119_000..120_000u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        assert!(table.peek(a).is_some());
    }
}

#[test]
fn ipv4_mapped_addresses_are_ipv4() {
    let table = StickTable::new(spec(10));
    let a = table.track(ip("::ffff:192.0.2.1")).unwrap();
    let b = table.track(ip("192.0.2.1")).unwrap();
    assert_eq!(a, b);
    assert_eq!(table.len(), 1);
}

#[test]
fn a_long_tracking_s_end_makes_its_entry_recent_again() {
    let table = Arc::new(StickTable::new(spec(2)));
    let long = Tracked::new(&table, ip("192.0.2.1"), table.now()).unwrap();
    table.track(ip("192.0.2.2")).unwrap();
    table.advance(super::stick::PROMOTE_AFTER_MS);
    // The connection tracking .1 ends after a second: .1 is now more recent than .2.
    drop(long);
    table.track(ip("192.0.2.3")).unwrap();
    assert!(table.peek(ip("192.0.2.1")).is_some(), "kept");
    assert!(
        table.peek(ip("192.0.2.2")).is_none(),
        "the least recently used went"
    );
}

#[test]
fn a_position_whose_slot_went_to_another_address_reads_nothing() {
    let table = StickTable::new(spec(1));
    let old = table.track(ip("192.0.2.1")).unwrap();
    table.count_request(old, table.now());
    assert_eq!(table.read(old, Counter::HttpReqCnt, table.now()), 1);
    // The only slot is evicted and given to another address.
    let new = table.track(ip("192.0.2.2")).unwrap();
    assert!(table.peek(ip("192.0.2.1")).is_none());
    table.count_request(old, table.now());
    assert_eq!(table.read(old, Counter::HttpReqCnt, table.now()), 0);
    assert_eq!(table.read(new, Counter::HttpReqCnt, table.now()), 0);
}

#[test]
fn an_entry_held_is_never_evicted_and_keeps_its_position() {
    let table = Arc::new(StickTable::new(spec(2)));
    let held = Tracked::new(&table, ip("192.0.2.1"), table.now()).unwrap();
    for i in 2..50 {
        table.track(ip(&format!("192.0.2.{i}"))).unwrap();
    }
    let r = held.entry_ref();
    table.count_request(r.at, table.now());
    assert_eq!(r.read(Counter::HttpReqCnt), 1);
    assert_eq!(r.read(Counter::ConnCur), 1);
    assert_eq!(table.peek(ip("192.0.2.1")), Some(r.at));
}
