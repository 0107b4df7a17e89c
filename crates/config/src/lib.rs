//! webfarm's topology file (`farm.toml`): types, parsing, defaults and validation.
//!
//! A farm is a list of nodes (one process each, with a role `lb`, `web` or `db` and its own
//! address), the load balancers' frontends and backends, and the settings of each role.
//! Reading is done in two stages: the TOML text is deserialized into a raw form where every
//! field is optional, then [`Farm`] applies the defaults and checks every rule, reporting all
//! problems at once with the key path of each.
//!
//! ```
//! use webfarm_config::{Farm, Role};
//!
//! let farm = Farm::builtin();
//! assert_eq!(farm.nodes_with_role(Role::Web).count(), 3);
//! assert_eq!(farm.node("lb-1").unwrap().address.to_string(), "127.0.1.10");
//!
//! let err = Farm::parse("[[nodes]]\nname='x'\nrole='dbx'\naddress='127.0.0.1'\n", None,
//!     std::path::Path::new(".")).unwrap_err();
//! assert!(err.to_string().contains("nodes[0].role"));
//! ```

mod acme;
mod dns;
mod error;
mod farm;
mod firewall;
mod lb;
mod monitor;
mod net;
mod raw;
mod vrrp;

pub use acme::AcmeSettings;
pub use dns::{DnsCheck, DnsCheckType, DnsSettings};
pub use error::ConfigError;
pub use farm::{
    DbSettings, Farm, Node, Replica, Role, TlsSettings, WebSettings, DEFAULT_FARM_TOML,
};
pub use firewall::{FirewallRule, FirewallSettings, PortRange, Proto, Source};
/// A frontend's access rules: ACLs, `tcp-request connection` and `http-request` rules,
/// stick tables (HAProxy's words).
pub use lb::acl;
pub use lb::{
    AccessLog, Backend, BackendTimeouts, Balance, CertFiles, Check, CheckType, Cookie, Frontend,
    FrontendTimeouts, FrontendTls, HashType, LbSettings, Mode, Observe, OnError, RetryOn, Server,
    SniPattern, SniRoute, DEFAULT_INSPECT_DELAY, MAX_LB_THREADS,
};
pub use monitor::{AlertSettings, MonitorSettings, Rule};
pub use vrrp::VrrpInstance;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Farm, ConfigError> {
        Farm::parse(text, Some(Path::new("test.toml")), Path::new("/base"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const MINIMAL: &str = r#"
[[nodes]]
name = "web-1"
role = "web"
address = "127.0.0.1"
[[nodes]]
name = "db-1"
role = "db"
address = "127.0.0.2"
"#;

    #[test]
    fn the_site_must_be_a_dns_name() {
        for bad in [
            "",
            "bücher.de",
            "www..foobar.com",
            "-www.foobar.com",
            "a b",
            "x ",
        ] {
            let e = err(&format!("site = {bad:?}\n{MINIMAL}"));
            assert!(e.contains("site: "), "{bad:?}: {e}");
        }
        for good in [
            "www.foobar.com",
            "xn--bcher-kva.de",
            "test-123-4",
            "localhost",
        ] {
            let farm = parse(&format!("site = {good:?}\n{MINIMAL}")).expect(good);
            assert_eq!(farm.site, good);
        }
    }

    #[test]
    fn builtin_is_the_seed_design() {
        let farm = Farm::builtin();
        assert_eq!(farm.site, "www.foobar.com");
        let names: Vec<_> = farm.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mon-1", "dns-1", "dns-2", "lb-1", "lb-2", "web-1", "web-2", "web-3", "db-1",
                "db-2", "db-3"
            ]
        );
        let mon = farm.node("mon-1").unwrap();
        assert_eq!(mon.main_addr().to_string(), "127.0.1.5:3000");
        assert_eq!(farm.monitor, crate::MonitorSettings::default());
        assert_eq!(
            farm.node("dns-2").unwrap().main_addr().to_string(),
            "127.0.1.3:5353"
        );
        assert_eq!(farm.dns.zone, "foobar.com");
        // The DNS answers the pair's VIPs, not the lbs' own addresses.
        assert_eq!(
            farm.site_addresses(),
            [
                "127.0.1.8".parse::<std::net::IpAddr>().unwrap(),
                "127.0.1.9".parse().unwrap()
            ]
        );
        let db1 = farm.node("db-1").unwrap();
        assert_eq!(db1.main_addr().to_string(), "127.0.1.31:4001");
        assert_eq!(db1.raft_addr().to_string(), "127.0.1.31:4002");
        assert_eq!(db1.admin_addr().to_string(), "127.0.1.31:9000");
        let web = &farm.backends[0];
        assert_eq!(web.servers.len(), 3);
        assert_eq!(web.check.inter, std::time::Duration::from_secs(2));
        assert_eq!((web.check.rise, web.check.fall), (2, 3));
        assert_eq!(farm.frontends[0].port, 8080);
        assert_eq!(farm.frontends[0].redirect_https, Some(8443));
        let https = &farm.frontends[1];
        assert_eq!(https.port, 8443);
        let tls = https.tls.as_ref().expect("8443 terminates TLS");
        assert!(tls.certs.is_empty(), "the farm's own site certificate");
        // humantime's year: 365.25 days.
        assert_eq!(tls.hsts, Some(std::time::Duration::from_secs(31_557_600)));
        assert!(farm.warnings().is_empty());
        // Active-active VRRP: each lb master (priority 200) of one VIP.
        let vrrp: Vec<_> = farm
            .vrrp
            .iter()
            .map(|v| {
                (
                    v.vrid,
                    v.vips[0].to_string(),
                    v.priority["lb-1"],
                    v.priority["lb-2"],
                )
            })
            .collect();
        assert_eq!(
            vrrp,
            [
                (51, "127.0.1.8".into(), 200, 100),
                (52, "127.0.1.9".into(), 100, 200)
            ]
        );
        assert_eq!(farm.site_addresses(), farm.vips());
    }

    #[test]
    fn monitor_settings_are_checked_and_a_monitor_node_gets_the_dashboard_port() {
        let with = |table: &str| {
            format!(
                "{MINIMAL}[[nodes]]\nname = \"mon-1\"\nrole = \"monitor\"\n\
                 address = \"127.0.0.5\"\n[monitor]\n{table}"
            )
        };
        let farm = parse(&with("history = \"5m\"\n")).unwrap();
        assert_eq!(farm.node("mon-1").unwrap().port, 3000);
        assert_eq!(farm.monitor.history, std::time::Duration::from_secs(300));
        let e = err(&with("scrape_interval = \"10ms\"\n"));
        assert!(
            e.contains("monitor.scrape_interval: 10ms is outside"),
            "{e}"
        );
        let e = err(&with("scrape_interval = \"2s\"\nscrape_timeout = \"3s\"\n"));
        assert!(e.contains("monitor.scrape_timeout: 3s must be"), "{e}");
        let e = err(&with("history = \"2d\"\n"));
        assert!(e.contains("monitor.history"), "{e}");
        let e = err(&with("scrape = \"1s\"\n"));
        assert!(e.contains("monitor") && e.contains("scrape"), "{e}");
    }

    #[test]
    fn an_http_dns_check_needs_a_plain_http_frontend() {
        let farm = |mode: &str| {
            format!(
                "[[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"127.0.0.10\"\n\
                 [[nodes]]\nname = \"dns-1\"\nrole = \"dns\"\naddress = \"127.0.0.2\"\n\
                 [[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n\
                 mode = \"{mode}\"\n[[backends]]\nname = \"web\"\nmode = \"{mode}\"\n\
                 [[backends.servers]]\naddress = \"127.0.0.9:80\"\n\
                 [dns]\ncheck = {{ type = \"http\" }}\n"
            )
        };
        let ok = parse(&farm("http")).unwrap();
        assert_eq!(ok.dns.check.kind, crate::DnsCheckType::Http);
        assert_eq!(ok.site_check_port(), 8080);
        assert_eq!(ok.node("dns-1").unwrap().port, 5353);
        let e = err(&farm("tcp"));
        assert!(
            e.contains("dns.check.type: \"http\" needs a frontend"),
            "{e}"
        );
        let e = err(&farm("http").replace("role = \"lb\"", "role = \"web\""));
        assert!(e.contains("dns nodes but no lb node"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let farm = parse(MINIMAL).unwrap();
        assert_eq!(farm.data_dir, Path::new("/base/farm-data"));
        assert_eq!(farm.web.root, Path::new("/base/site"));
        assert_eq!(
            farm.node_data_dir("db-1"),
            Path::new("/base/farm-data/db-1")
        );
    }

    #[test]
    fn the_db_auth_file_and_the_web_tiers_user_resolve_as_paths_and_go_together() {
        let farm = parse(MINIMAL).unwrap();
        assert_eq!((farm.db.auth, farm.web.db_credentials), (None, None));
        let own = format!(
            "{MINIMAL}[db]\nauth = \"rqlite-auth.json\"\n\
             [web]\ndb_user = \"app\"\ndb_password_file = \"app.pw\"\n"
        );
        let farm = parse(&own).unwrap();
        assert_eq!(
            farm.db.auth.as_deref(),
            Some(Path::new("/base/rqlite-auth.json"))
        );
        assert_eq!(
            farm.web.db_credentials,
            Some(("app".into(), Path::new("/base/app.pw").to_path_buf()))
        );
        let e = err(&format!("{MINIMAL}[db]\nauth = \"a.json\"\n"));
        assert!(e.contains("[web] db_user and db_password_file"), "{e}");
        let e = err(&format!("{MINIMAL}[web]\ndb_user = \"app\"\n"));
        assert!(e.contains("set both"), "{e}");
        let e = err(&format!(
            "{MINIMAL}[web]\ndb_user = \"a:b\"\ndb_password_file = \"p\"\n"
        ));
        assert!(e.contains("without ':'"), "{e}");
    }

    #[test]
    fn base_dir_moves_where_relative_paths_resolve() {
        let farm = parse(&format!("base_dir = \"/elsewhere\"\n{MINIMAL}")).unwrap();
        assert_eq!(farm.data_dir, Path::new("/elsewhere/farm-data"));
        assert_eq!(farm.web.root, Path::new("/elsewhere/site"));
        let farm = parse(&format!("base_dir = \"sub\"\n{MINIMAL}")).unwrap();
        assert_eq!(farm.web.root, Path::new("/base/sub/site"));
    }

    #[test]
    fn unknown_role_names_the_key_and_the_choices() {
        let e = err("[[nodes]]\nname = \"x\"\nrole = \"dbx\"\naddress = \"127.0.0.1\"\n");
        assert!(e.starts_with("test.toml: nodes[0].role:"), "{e}");
        assert!(
            e.contains("lb") && e.contains("web") && e.contains("db") && e.contains("monitor"),
            "{e}"
        );
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn malformed_duration_names_the_key() {
        let e = err(&format!("{MINIMAL}\n[db]\nelection_timeout = \"fast\"\n"));
        assert!(e.contains("db.election_timeout"), "{e}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = err(&format!("{MINIMAL}\n[db]\nelection_timout = \"1s\"\n"));
        assert!(e.contains("election_timout"), "{e}");
    }

    #[test]
    fn duplicate_name_and_address_are_refused() {
        let e = err(&format!(
            "{MINIMAL}\n[[nodes]]\nname = \"web-1\"\nrole = \"web\"\naddress = \"127.0.0.1\"\n"
        ));
        assert!(
            e.contains("nodes[2].name: duplicate node name \"web-1\""),
            "{e}"
        );
        assert!(
            e.contains("nodes[2].port: 127.0.0.1:8000 is already used by nodes[0].port"),
            "{e}"
        );
    }

    #[test]
    fn server_must_name_a_node_of_the_file() {
        let e = err(&format!(
            "{MINIMAL}\n[[backends]]\nname = \"web\"\n[[backends.servers]]\nname = \"web-9\"\n"
        ));
        assert!(
            e.contains("backends[0].servers[0].name: no node named \"web-9\""),
            "{e}"
        );
    }

    #[test]
    fn server_may_be_any_host_port() {
        let farm = parse(&format!(
            "{MINIMAL}\n[[backends]]\nname = \"ext\"\n[[backends.servers]]\naddress = \"127.0.0.9:81\"\nweight = 3\n"
        ))
        .unwrap();
        let s = &farm.backends[0].servers[0];
        assert_eq!(
            (s.name.as_str(), s.addr.to_string(), s.weight),
            ("127.0.0.9:81", "127.0.0.9:81".into(), 3)
        );
    }

    #[test]
    fn web_nodes_need_a_db_node() {
        let e = err("[[nodes]]\nname = \"web-1\"\nrole = \"web\"\naddress = \"127.0.0.1\"\n");
        assert!(
            e.contains("nodes: the farm has web nodes but no db node"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = err(&format!(
            "{MINIMAL}\n[[frontends]]\nname = \"www\"\nport = 80\ndefault_backend = \"nope\"\n\
             [[backends]]\nname = \"web\"\n[backends.check]\nrise = 0\n[[backends.servers]]\nname = \"web-1\"\nweight = 999\n"
        ));
        assert!(e.contains("frontends[0].default_backend"), "{e}");
        assert!(e.contains("backends[0].check: rise and fall"), "{e}");
        assert!(e.contains("backends[0].servers[0].weight: 999"), "{e}");
    }

    #[test]
    fn even_voter_count_warns() {
        let farm = parse(&format!(
            "{MINIMAL}\n[[nodes]]\nname = \"db-2\"\nrole = \"db\"\naddress = \"127.0.0.3\"\n"
        ))
        .unwrap();
        let w = farm.warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("2 voters") && w[0].contains("survives 0 failures"),
            "{w:?}"
        );
    }
}
