//! Defaults and errors of the load balancers' tables.

use std::path::Path;
use std::time::Duration;

use crate::{
    AccessLog, Balance, CheckType, ConfigError, Farm, HashType, Mode, Observe, OnError, RetryOn,
    SniPattern, DEFAULT_INSPECT_DELAY,
};

const NODES: &str = r#"
[[nodes]]
name = "lb-1"
role = "lb"
address = "127.0.0.1"
[[nodes]]
name = "web-1"
role = "web"
address = "127.0.0.2"
[[nodes]]
name = "db-1"
role = "db"
address = "127.0.0.3"
"#;

fn parse(text: &str) -> Result<Farm, ConfigError> {
    Farm::parse(text, Some(Path::new("lb.toml")), Path::new("/base"))
}

/// A farm with frontend `www` → backend `web` whose tables end with `backend` and whose
/// frontend ends with `frontend`.
fn farm(frontend: &str, backend: &str) -> String {
    format!(
        "{NODES}\n[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n{frontend}\n\
         [[backends]]\nname = \"web\"\n{backend}\n[[backends.servers]]\nname = \"web-1\"\n"
    )
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn defaults_follow_haproxy_or_say_why_not() {
    let f = parse(&farm("", "")).unwrap();
    let b = &f.backends[0];
    assert_eq!(b.mode, Mode::Http);
    assert_eq!(b.balance, Balance::Roundrobin);
    assert_eq!(b.hash_type, HashType::MapBased);
    assert_eq!(b.retries, 3);
    assert!(b.redispatch);
    assert_eq!(b.retry_on, [RetryOn::ConnFailure, RetryOn::EmptyResponse]);
    assert!(!b.allbackups);
    assert_eq!(b.timeout.connect, Duration::from_secs(3));
    assert_eq!(b.timeout.server, Duration::from_secs(30));
    assert_eq!(b.timeout.queue, b.timeout.connect);
    assert_eq!(b.cookie, None);
    let c = &b.check;
    assert_eq!(
        (c.kind, c.method.as_str(), c.path.as_str()),
        (CheckType::Http, "GET", "/healthz")
    );
    assert_eq!(c.host, None);
    assert!(c.expect_status.is_empty());
    assert_eq!(c.inter, Duration::from_secs(2));
    assert_eq!((c.fastinter, c.downinter), (c.inter, c.inter));
    assert_eq!((c.rise, c.fall, c.error_limit), (2, 3, 10));
    assert_eq!(
        (c.observe, c.on_error),
        (Observe::Layer4, OnError::FailCheck)
    );
    let s = &b.servers[0];
    assert_eq!(
        (s.weight, s.backup, s.maxconn, s.slowstart, s.disabled),
        (1, false, 0, None, false)
    );
    let fe = &f.frontends[0];
    assert_eq!(
        (fe.mode, fe.maxconn, fe.max_header_size, fe.max_body_size),
        (Mode::Http, 0, 16384, 0)
    );
    assert_eq!(fe.timeout.client, Duration::from_secs(30));
    assert_eq!(fe.timeout.http_request, Duration::from_secs(10));
    assert_eq!(fe.timeout.http_keep_alive, Duration::from_secs(10));
    assert_eq!(f.lb.maxconn, 10_000);
    assert_eq!(f.lb.access_log, AccessLog::Text);
    assert_eq!(f.lb.threads, 0, "one per CPU");
}

#[test]
fn every_key_is_read() {
    let f = parse(&format!(
        "{}\n[lb]\nmaxconn = 500\naccess_log = \"json\"\nthreads = 3\n",
        farm(
            "mode = \"http\"\nmaxconn = 50\ntimeout = { client = \"5s\", http_request = \"2s\", \
             http_keep_alive = \"1s\" }\nmax_header_size = 9000\nmax_body_size = 1048576\n",
            "balance = \"hdr(X-User)\"\nhash_type = \"consistent\"\nretries = 2\nredispatch = false\n\
             retry_on = [\"conn-failure\", \"503\", \"response-timeout\"]\nallbackups = true\n\
             timeout = { connect = \"1s\", server = \"5s\", queue = \"2s\" }\n\
             cookie = { name = \"SERVERID\" }\n\
             [backends.check]\ntype = \"http\"\nmethod = \"HEAD\"\npath = \"/up\"\nhost = \"check.local\"\n\
             expect_status = [200, 204]\ninter = \"1s\"\nfastinter = \"100ms\"\ndowninter = \"5s\"\n\
             rise = 1\nfall = 2\ntimeout = \"500ms\"\nobserve = \"layer7\"\nerror_limit = 3\n\
             on_error = \"sudden-death\"\n\
             [[backends.servers]]\naddress = \"127.0.0.9:80\"\nname = \"spare\"\nweight = 0\nbackup = true\n\
             maxconn = 5\nslowstart = \"10s\"\ndisabled = true\n"
        )
    ))
    .unwrap();
    assert_eq!(f.lb.maxconn, 500);
    assert_eq!(f.lb.access_log, AccessLog::Json);
    assert_eq!(f.lb.threads, 3);
    let fe = &f.frontends[0];
    assert_eq!(
        (fe.maxconn, fe.max_header_size, fe.max_body_size),
        (50, 9000, 1_048_576)
    );
    assert_eq!(fe.timeout.http_keep_alive, Duration::from_secs(1));
    let b = &f.backends[0];
    assert_eq!(b.balance, Balance::Hdr("x-user".into()));
    assert_eq!(b.hash_type, HashType::Consistent);
    assert_eq!((b.retries, b.redispatch, b.allbackups), (2, false, true));
    assert_eq!(
        b.retry_on,
        [
            RetryOn::ConnFailure,
            RetryOn::Status(503),
            RetryOn::ResponseTimeout
        ]
    );
    assert_eq!(b.timeout.queue, Duration::from_secs(2));
    let cookie = b.cookie.as_ref().unwrap();
    assert_eq!((cookie.name.as_str(), cookie.insert), ("SERVERID", true));
    let c = &b.check;
    assert_eq!(
        (c.method.as_str(), c.path.as_str(), c.host.as_deref()),
        ("HEAD", "/up", Some("check.local"))
    );
    assert_eq!(c.expect_status, [200, 204]);
    assert_eq!(
        (c.fastinter, c.downinter),
        (Duration::from_millis(100), Duration::from_secs(5))
    );
    assert_eq!(
        (c.observe, c.error_limit, c.on_error),
        (Observe::Layer7, 3, OnError::SuddenDeath)
    );
    let spare = &b.servers[0];
    assert_eq!(spare.name, "spare");
    assert_eq!(
        (spare.weight, spare.backup, spare.maxconn, spare.disabled),
        (0, true, 5, true)
    );
    assert_eq!(spare.slowstart, Some(Duration::from_secs(10)));
}

#[test]
fn tcp_mode_and_tcp_checks() {
    let text = format!(
        "{NODES}\n[[frontends]]\nname = \"sql\"\nport = 5000\nmode = \"tcp\"\ndefault_backend = \"db\"\n\
         [[backends]]\nname = \"db\"\nmode = \"tcp\"\nbalance = \"leastconn\"\n\
         [backends.check]\ntype = \"tcp\"\n[[backends.servers]]\naddress = \"127.0.0.3:4001\"\n"
    );
    let f = parse(&text).unwrap();
    assert_eq!(f.frontends[0].mode, Mode::Tcp);
    assert_eq!(f.backends[0].check.kind, CheckType::Tcp);
}

#[test]
fn bad_values_name_their_keys() {
    let e = err(&farm(
        "",
        "balance = \"fastest\"\nretry_on = [\"503\", \"sometimes\"]\n",
    ));
    assert!(
        e.contains("backends[0].balance: unknown algorithm \"fastest\""),
        "{e}"
    );
    assert!(e.contains("leastconn"), "{e}");
    assert!(
        e.contains("backends[0].retry_on[1]: unknown condition \"sometimes\""),
        "{e}"
    );

    let e = err(&farm("", "hash_type = \"consistent\"\n"));
    assert!(e.contains("backends[0].hash_type: only applies"), "{e}");

    let e = err(&farm(
        "max_header_size = 100\ntimeout = { client = \"0s\" }\n",
        "timeout = { server = \"0s\" }\ncookie = { name = \"a b\" }\n\
         [backends.check]\nmethod = \"GE T\"\npath = \"up\"\nexpect_status = [700]\nerror_limit = 0\nfastinter = \"0s\"\n",
    ));
    for needle in [
        "frontends[0].max_header_size: 100 is too small",
        "frontends[0].timeout.client: must be greater than 0",
        "backends[0].timeout.server: must be greater than 0",
        "backends[0].cookie.name: \"a b\"",
        "backends[0].check.method: \"GE T\"",
        "backends[0].check.path: \"up\"",
        "backends[0].check.expect_status[0]: 700",
        "backends[0].check.error_limit: must be at least 1",
        "backends[0].check.fastinter: must be greater than 0",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from {e}");
    }

    let e = err(&farm(
        "",
        "[backends.check]\ntype = \"tcp\"\npath = \"/x\"\n",
    ));
    assert!(e.contains("type = \"tcp\" only connects"), "{e}");

    let e = err(&farm("", "[backends.check]\nobserve = \"layer9\"\n"));
    assert!(e.contains("backends[0].check.observe"), "{e}");
    assert!(e.contains("layer7"), "{e}");

    let e = err(&format!("{}\n[lb]\naccess_log = \"xml\"\n", farm("", "")));
    assert!(e.contains("lb.access_log") && e.contains("json"), "{e}");
    let e = err(&format!("{}\n[lb]\nmaxconn = 0\n", farm("", "")));
    assert!(e.contains("lb.maxconn: must be at least 1"), "{e}");
    let e = err(&format!("{}\n[lb]\nthreads = 65\n", farm("", "")));
    assert!(e.contains("lb.threads: 65 is more than 64"), "{e}");
}

#[test]
fn servers_are_checked() {
    let e = err(&farm(
        "",
        "[[backends.servers]]\nname = \"web-1\"\nweight = 257\nslowstart = \"0s\"\n",
    ));
    assert!(
        e.contains("backends[0].servers[0].weight: 257 is out of range; expected 0..=256"),
        "{e}"
    );
    assert!(
        e.contains("backends[0].servers[0].slowstart: must be greater than 0"),
        "{e}"
    );
    assert!(
        e.contains("backends[0].servers[1].name: duplicate server name \"web-1\""),
        "{e}"
    );
}

#[test]
fn modes_must_match_and_tcp_cannot_hash_requests() {
    let e = err(&farm(
        "mode = \"tcp\"\n",
        "balance = \"uri\"\ncookie = { name = \"S\" }\n",
    ));
    assert!(
        e.contains(
            "frontends[0].mode: frontend \"www\" is mode tcp but its backend \"web\" is mode http"
        ),
        "{e}"
    );
    let e = err(&farm(
        "mode = \"tcp\"\n",
        "mode = \"tcp\"\nbalance = \"uri\"\ncookie = { name = \"S\" }\n",
    ));
    assert!(
        e.contains("backends[0].balance: uri needs HTTP requests"),
        "{e}"
    );
    assert!(
        e.contains("backends[0].cookie: sticky cookies need HTTP"),
        "{e}"
    );
}

#[test]
fn duplicate_frontend_names_are_refused() {
    let e = err(&format!(
        "{}\n[[frontends]]\nname = \"www\"\nport = 8081\ndefault_backend = \"web\"\n",
        farm("", "")
    ));
    assert!(
        e.contains("frontends[1].name: duplicate frontend name \"www\""),
        "{e}"
    );
}

#[test]
fn tls_certificates_resolve_against_the_file_and_hsts_parses() {
    let text = format!(
        "{}\n[[frontends]]\nname = \"plain\"\nport = 8081\ndefault_backend = \"web\"\nredirect_https = true\n",
        farm(
            "tls = { certs = [\"site.pem\", { cert = \"/abs/a.crt\", key = \"a.key\" }], hsts = \"180d\" }\n",
            ""
        )
    );
    let f = Farm::parse(&text, None, std::path::Path::new("/base")).unwrap();
    let tls = f.frontends[0].tls.as_ref().unwrap();
    let pairs: Vec<(&str, &str)> = tls
        .certs
        .iter()
        .map(|c| (c.cert.to_str().unwrap(), c.key.to_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("/base/site.pem", "/base/site.pem"),
            ("/abs/a.crt", "/base/a.key")
        ]
    );
    assert_eq!(tls.hsts, Some(Duration::from_secs(180 * 86_400)));
    assert_eq!(f.frontends[1].redirect_https, Some(f.frontends[0].port));
    let off = parse(&farm("tls = { hsts = \"off\" }\n", "")).unwrap();
    assert_eq!(off.frontends[0].tls.as_ref().unwrap().hsts, None);
}

#[test]
fn tls_mistakes_name_their_keys() {
    let e = err(&farm("mode = \"tcp\"\ntls = {}\n", "mode = \"tcp\"\n"));
    assert!(
        e.contains("frontends[0].tls: TLS termination needs mode = \"http\""),
        "{e}"
    );
    let e = err(&farm("tls = { certs = [] }\n", ""));
    assert!(e.contains("frontends[0].tls.certs: empty"), "{e}");
    let e = err(&farm("tls = { hsts = \"a year\" }\n", ""));
    assert!(
        e.contains("frontends[0].tls.hsts: \"a year\" is not a duration"),
        "{e}"
    );
    let e = err(&farm("redirect_https = true\n", ""));
    assert!(
        e.contains("frontends[0].redirect_https: no frontend has `tls`"),
        "{e}"
    );
    let e = err(&farm("redirect_https = true\ntls = {}\n", ""));
    assert!(e.contains("only a plain (no tls) frontend"), "{e}");
    let e = err(&farm("tls = { cert = \"x\" }\n", ""));
    assert!(e.contains("unknown field `cert`"), "{e}");
}

/// A tcp frontend `tls-in` (default backend `web-tls`) with `lines`, over tcp backends
/// `web-tls`, `db-api` and `other` and an http backend `web`.
fn sni_farm(lines: &str) -> String {
    let tcp = |name: &str| {
        format!(
            "[[backends]]\nname = \"{name}\"\nmode = \"tcp\"\n[[backends.servers]]\n\
             address = \"127.0.0.9:443\"\n"
        )
    };
    format!(
        "{NODES}\n[[frontends]]\nname = \"tls-in\"\nport = 4443\nmode = \"tcp\"\n\
         default_backend = \"web-tls\"\n{lines}\n{}{}{}\
         [[backends]]\nname = \"web\"\n[[backends.servers]]\nname = \"web-1\"\n",
        tcp("web-tls"),
        tcp("db-api"),
        tcp("other"),
    )
}

#[test]
fn sni_routes_choose_backends_first_match_wins() {
    let f = parse(&sni_farm(
        "sni_routes = [ { sni = \"DB.foobar.com\", backend = \"db-api\" }, \
         { sni = \"*.foobar.com\", backend = \"other\" } ]\ninspect_delay = \"2s\"\n",
    ))
    .unwrap();
    let fe = &f.frontends[0];
    assert_eq!(fe.inspect_delay, Duration::from_secs(2));
    let name_of = |sni: Option<&str>| f.backends[fe.backend_for_sni(sni)].name.as_str();
    assert_eq!(name_of(Some("db.foobar.com")), "db-api");
    assert_eq!(
        name_of(Some("Db.FOOBAR.com.")),
        "db-api",
        "case and a final dot"
    );
    assert_eq!(name_of(Some("shop.foobar.com")), "other");
    assert_eq!(
        name_of(Some("a.b.foobar.com")),
        "web-tls",
        "a wildcard is one label"
    );
    assert_eq!(name_of(Some("foobar.com")), "web-tls");
    assert_eq!(name_of(Some("xfoobar.com")), "web-tls");
    assert_eq!(name_of(None), "web-tls");
    assert_eq!(
        fe.sni_routes[0].sni,
        SniPattern::Exact("db.foobar.com".into())
    );
    assert_eq!(fe.sni_routes[1].sni.to_string(), "*.foobar.com");
}

#[test]
fn without_sni_routes_nothing_is_inspected() {
    let f = parse(&sni_farm("")).unwrap();
    let fe = &f.frontends[0];
    assert!(fe.sni_routes.is_empty());
    assert_eq!(fe.inspect_delay, DEFAULT_INSPECT_DELAY);
    assert_eq!(
        fe.backend_for_sni(Some("db.foobar.com")),
        fe.default_backend
    );
}

#[test]
fn sni_routes_are_checked_with_their_keys() {
    let e = err(&sni_farm(
        "sni_routes = [ { sni = \"db.foobar.com\", backend = \"db-api\" }, \
         { sni = \"x.foobar.com\", backend = \"nope\" }, { sni = \"y.foobar.com\", backend = \"web\" }, \
         { sni = \"bad..name\", backend = \"other\" }, { sni = \"*.*.foobar.com\", backend = \"other\" }, \
         { sni = \"10.0.0.1\", backend = \"other\" }, { sni = \"DB.foobar.com\", backend = \"other\" }, \
         { sni = \"*.foobar.com\", backend = \"other\" }, { sni = \"z.foobar.com\", backend = \"other\" } ]\n\
         inspect_delay = \"0s\"\n",
    ));
    for needle in [
        "frontends[0].sni_routes[1].backend: no backend named \"nope\"; expected one of [web-tls, db-api, other, web]",
        "frontends[0].sni_routes[2].backend: backend \"web\" is mode http",
        "frontends[0].sni_routes[3].sni: \"bad..name\" is not a DNS name",
        "frontends[0].sni_routes[4].sni: \"*.*.foobar.com\" is not a DNS name",
        "a wildcard is `*.` followed by a name",
        "frontends[0].sni_routes[5].sni: \"10.0.0.1\" is an IP address",
        "frontends[0].sni_routes[6].sni: duplicate name \"db.foobar.com\" (also sni_routes[0])",
        "frontends[0].sni_routes[8].sni: \"z.foobar.com\" is never reached: sni_routes[7] (\"*.foobar.com\") matches it first",
        "frontends[0].inspect_delay: must be greater than 0",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from {e}");
    }
    assert!(
        !e.contains("sni_routes[7]."),
        "the wildcard itself is fine: {e}"
    );
}

#[test]
fn sni_routes_need_tcp_and_inspect_delay_needs_routes() {
    let e = err(&farm(
        "sni_routes = [ { sni = \"a.foobar.com\", backend = \"web\" } ]\n",
        "",
    ));
    assert!(
        e.contains(
            "frontends[0].sni_routes: routing by SNI without decrypting needs mode = \"tcp\""
        ),
        "{e}"
    );
    let e = err(&sni_farm("inspect_delay = \"5s\"\n"));
    assert!(
        e.contains("frontends[0].inspect_delay: only applies with sni_routes"),
        "{e}"
    );
    let e = err(&sni_farm("sni_routes = []\n"));
    assert!(e.contains("frontends[0].sni_routes: empty"), "{e}");
    let e = err(&sni_farm(
        "sni_routes = [ { sni = \"a.foobar.com\", backend = \"other\", weight = 2 } ]\n",
    ));
    assert!(
        e.contains("frontends[0].sni_routes[0]") && e.contains("weight"),
        "{e}"
    );
}
