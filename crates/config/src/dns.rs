//! `[dns]`: the authoritative DNS server of the site's zone (the `dns` role), and
//! [`Farm::site_addresses`], the one place that says which addresses DNS answers for the site.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::farm::check_dns_name;
use crate::{Farm, Frontend, Mode, Role};

/// Settings of every dns node (`[dns]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// The zone served, without the final dot: default the site's name less its first label
    /// (`foobar.com` for `www.foobar.com`), or the site itself when it has a single label.
    pub zone: String,
    /// TTL of every record the farm makes (A/AAAA of the site, NS, glue, SOA), and of
    /// `records` that name none. Default 5 s: resolvers drop a failed lb within a few seconds.
    pub ttl: Duration,
    /// Other records of the zone, one zone-file line each (RFC 1035 §5.1):
    /// `"<name> [<ttl>] [IN] <type> <data>"`, names relative to the zone unless they end in
    /// `.`; `@` is the zone's apex. Parsed by the dns node when it starts (hickory's zone-file
    /// parser); here only checked for shape.
    pub records: Vec<String>,
    /// The health check of every site address ([`Farm::site_addresses`]).
    pub check: DnsCheck,
    /// Secondaries (`IP:port`): allowed to transfer the zone (AXFR, RFC 5936; any other
    /// client is REFUSED) and sent NOTIFY (RFC 1996) at that address when the serial changes.
    pub secondaries: Vec<SocketAddr>,
}

/// How a dns node checks each site address ([`DnsCheckType`]); `rise` passes in a row bring
/// a DOWN address UP, `fall` failures in a row take an UP one DOWN. Addresses start UP, as an
/// lb's servers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsCheck {
    /// What one check does. Default `tcp`.
    pub kind: DnsCheckType,
    /// Time between two checks of an address. Default 1 s.
    pub inter: Duration,
    /// Consecutive passed checks that bring a DOWN address UP. Default 2.
    pub rise: u32,
    /// Consecutive failed checks that take an UP address DOWN. Default 2.
    pub fall: u32,
    /// How long one connect may take. Default: `inter`, at most 1 s.
    pub timeout: Duration,
}

/// What one check of a site address does (`[dns] check.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsCheckType {
    /// A TCP connect to the first frontend's port (HAProxy's layer-4 `check`): catches an lb
    /// that is gone or whose listener is closed.
    #[default]
    Tcp,
    /// `GET /` with the site as `Host` on the first plain HTTP frontend (mode http, no TLS):
    /// any status below 500 passes (a redirect to HTTPS does); a 5xx, such as an lb's 503
    /// with no server UP, fails.
    Http,
}

/// Default port of a dns node (no root needed; 53 in a real deployment).
pub(crate) const DEFAULT_DNS_PORT: u16 = 5353;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub zone: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    pub records: Option<Vec<String>>,
    #[serde(default)]
    pub check: RawDnsCheck,
    pub secondaries: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDnsCheck {
    #[serde(rename = "type")]
    pub kind: Option<DnsCheckType>,
    #[serde(default, with = "humantime_serde")]
    pub inter: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// The zone a site belongs to by default: the site less its first label.
fn default_zone(site: &str) -> String {
    match site.split_once('.') {
        Some((_, rest)) if !rest.is_empty() => rest.to_string(),
        _ => site.to_string(),
    }
}

/// The `[dns]` table with defaults applied; a problem for each bad value.
pub(crate) fn resolve_dns(raw: &RawDns, site: &str, problems: &mut Vec<String>) -> DnsSettings {
    let zone = raw.zone.as_deref().map_or_else(
        || default_zone(site),
        |z| z.trim_end_matches('.').to_string(),
    );
    if let Err(why) = check_dns_name(&zone) {
        problems.push(format!("dns.zone: {zone:?} {why}"));
    } else if !in_zone(site, &zone) {
        problems.push(format!(
            "dns.zone: the site {site:?} is not in the zone {zone:?}; the zone must be the \
             site's name or one of its parents"
        ));
    }
    let ttl = raw.ttl.unwrap_or(Duration::from_secs(5));
    if ttl.as_secs() == 0 || ttl.subsec_nanos() != 0 || ttl.as_secs() > 86_400 {
        problems.push(format!(
            "dns.ttl: {ttl:?} must be whole seconds from 1s to 1d"
        ));
    }
    let records = raw.records.clone().unwrap_or_default();
    for (i, r) in records.iter().enumerate() {
        if let Err(why) = check_record_shape(r) {
            problems.push(format!("dns.records[{i}]: {r:?} {why}"));
        }
    }
    DnsSettings {
        zone,
        ttl,
        records,
        check: resolve_check(&raw.check, problems),
        secondaries: resolve_secondaries(raw.secondaries.as_deref(), problems),
    }
}

fn resolve_check(raw: &RawDnsCheck, problems: &mut Vec<String>) -> DnsCheck {
    let inter = raw.inter.unwrap_or(Duration::from_secs(1));
    let check = DnsCheck {
        kind: raw.kind.unwrap_or_default(),
        inter,
        rise: raw.rise.unwrap_or(2),
        fall: raw.fall.unwrap_or(2),
        timeout: raw.timeout.unwrap_or(inter.min(Duration::from_secs(1))),
    };
    if inter < Duration::from_millis(10) || inter > Duration::from_secs(3600) {
        problems.push(format!("dns.check.inter: {inter:?} is outside 10ms..=1h"));
    }
    if check.rise == 0 || check.fall == 0 {
        problems.push("dns.check: rise and fall must be at least 1".into());
    }
    if check.timeout.is_zero() {
        problems.push("dns.check.timeout: must be greater than 0".into());
    }
    check
}

fn resolve_secondaries(raw: Option<&[String]>, problems: &mut Vec<String>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (i, s) in raw.unwrap_or_default().iter().enumerate() {
        match s.parse::<SocketAddr>() {
            Ok(a) => out.push(a),
            Err(_) => problems.push(format!(
                "dns.secondaries[{i}]: {s:?} is not IP:port; expected e.g. \"192.0.2.53:53\""
            )),
        }
    }
    out
}

/// Whether `name` is `zone` or below it (case-insensitive, no final dots).
fn in_zone(name: &str, zone: &str) -> bool {
    let (name, zone) = (name.to_ascii_lowercase(), zone.to_ascii_lowercase());
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// A record line's shape: one line, no `$` directive (`$INCLUDE` would read files), at least
/// a name, a type and data. The data itself is checked by the dns node's zone-file parser.
fn check_record_shape(r: &str) -> Result<(), String> {
    if r.contains(['\n', '\r']) {
        return Err("must be one line".into());
    }
    let r = r.trim();
    if r.starts_with('$') {
        return Err("is a directive; only records are allowed".into());
    }
    if r.split_whitespace().count() < 3 {
        return Err(
            "is not a record; write \"<name> [<ttl>] [IN] <type> <data>\", e.g. \
             \"mail 300 IN MX 10 mx.foobar.com.\""
                .into(),
        );
    }
    Ok(())
}

/// Problems of the farm's dns part that need the nodes and frontends: a dns node needs an lb
/// to answer for the site, and an HTTP check a plain HTTP frontend.
pub(crate) fn check_dns_farm(
    farm_has: impl Fn(Role) -> bool,
    dns: &DnsSettings,
    frontends: &[Frontend],
    problems: &mut Vec<String>,
) {
    if !farm_has(Role::Dns) {
        return;
    }
    if !farm_has(Role::Lb) {
        problems.push(
            "nodes: the farm has dns nodes but no lb node for the site's address; add a \
             [[nodes]] with role = \"lb\""
                .into(),
        );
    }
    if dns.check.kind == DnsCheckType::Http && plain_http(frontends).is_none() {
        problems.push(
            "dns.check.type: \"http\" needs a frontend with mode = \"http\" and no tls; use \
             \"tcp\""
                .into(),
        );
    }
}

/// The first frontend that speaks plain HTTP.
fn plain_http(frontends: &[Frontend]) -> Option<&Frontend> {
    frontends
        .iter()
        .find(|f| f.mode == Mode::Http && f.tls.is_none())
}

impl Farm {
    /// The port the dns nodes check on each site address: the first frontend's for a TCP
    /// check, the first plain HTTP frontend's for an HTTP check; 80 when there is none (a
    /// farm without frontends has no lb, hence no dns node).
    pub fn site_check_port(&self) -> u16 {
        let frontend = match self.dns.check.kind {
            DnsCheckType::Tcp => self.frontends.first(),
            DnsCheckType::Http => plain_http(&self.frontends),
        };
        frontend.map_or(80, |f| f.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(raw: RawDns, site: &str) -> Result<DnsSettings, Vec<String>> {
        let mut problems = Vec::new();
        let s = resolve_dns(&raw, site, &mut problems);
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(problems)
        }
    }

    #[test]
    fn defaults_follow_the_site() {
        let s = resolve(RawDns::default(), "www.foobar.com").unwrap();
        assert_eq!(s.zone, "foobar.com");
        assert_eq!(s.ttl, Duration::from_secs(5));
        assert_eq!((s.check.rise, s.check.fall), (2, 2));
        assert_eq!(s.check.inter, Duration::from_secs(1));
        assert_eq!(
            resolve(RawDns::default(), "localhost").unwrap().zone,
            "localhost"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let raw = RawDns {
            zone: Some("other.org".into()),
            ttl: Some(Duration::from_millis(1500)),
            records: Some(vec!["mail".into(), "$INCLUDE /etc/passwd x".into()]),
            secondaries: Some(vec!["127.0.0.1".into()]),
            check: RawDnsCheck {
                rise: Some(0),
                ..RawDnsCheck::default()
            },
        };
        let e = resolve(raw, "www.foobar.com").unwrap_err().join("\n");
        for key in [
            "dns.zone: the site \"www.foobar.com\" is not in the zone \"other.org\"",
            "dns.ttl: 1.5s must be whole seconds",
            "dns.records[0]: \"mail\" is not a record",
            "dns.records[1]: \"$INCLUDE /etc/passwd x\" is a directive",
            "dns.secondaries[0]: \"127.0.0.1\" is not IP:port",
            "dns.check: rise and fall",
        ] {
            assert!(e.contains(key), "no {key:?} in\n{e}");
        }
    }

    #[test]
    fn the_zone_may_be_the_site_or_a_parent() {
        let raw = |z: &str| RawDns {
            zone: Some(z.into()),
            ..RawDns::default()
        };
        assert!(resolve(raw("www.foobar.com."), "www.foobar.com").is_ok());
        assert!(resolve(raw("com"), "www.foobar.com").is_ok());
        assert!(resolve(raw("bar.com"), "www.foobar.com").is_err());
    }
}
