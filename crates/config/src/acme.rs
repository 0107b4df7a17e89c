//! The `[acme]` table: the site certificate obtained and renewed from an ACME (RFC 8555)
//! certificate authority (Let's Encrypt, or any RFC 8555 directory) by the load balancer,
//! which answers the http-01 challenges itself.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::farm::check_dns_name;
use crate::raw::RawAcme;
use crate::{Frontend, Mode, Node, Role};

/// `[acme]`, validated: where to order the site certificate and for which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The CA's directory URL (RFC 8555 §7.1.1), always `https://`, such as
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// The account's contact URLs (RFC 8555 §7.3), each `mailto:`; may be empty.
    pub contact: Vec<String>,
    /// The DNS names the certificate covers, lower case, without duplicates; the site's
    /// name is always among them. Default: the site alone.
    pub names: Vec<String>,
    /// An extra root certificate (PEM) to trust for the CA's own HTTPS API, besides the
    /// system's roots: for a private ACME server or a test CA such as Pebble. Relative
    /// paths resolve against the farm file's directory.
    pub ca_file: Option<PathBuf>,
}

/// `[acme]` → [`AcmeSettings`], with a problem per invalid key; `site` is the farm's site
/// name (already checked), `base` the directory relative paths resolve against.
pub(crate) fn resolve_acme(
    raw: Option<&RawAcme>,
    site: &str,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<AcmeSettings> {
    let raw = raw?;
    let directory = match raw.directory.as_deref() {
        None => {
            problems.push(
                "acme.directory: missing; give the CA's directory URL, e.g. \
                 \"https://acme-v02.api.letsencrypt.org/directory\""
                    .into(),
            );
            String::new()
        }
        Some(url) => {
            if let Err(why) = check_https_url(url) {
                problems.push(format!("acme.directory: {url:?} {why}"));
            }
            url.to_string()
        }
    };
    let contact = raw.contact.clone().unwrap_or_default();
    for (i, c) in contact.iter().enumerate() {
        if let Err(why) = check_mailto(c) {
            problems.push(format!("acme.contact[{i}]: {c:?} {why}"));
        }
    }
    let names = resolve_names(raw.names.as_deref(), site, problems);
    Some(AcmeSettings {
        directory,
        contact,
        names,
        ca_file: raw.ca_file.as_ref().map(|p| base.join(p)),
    })
}

/// `acme.names`: each a DNS name that http-01 can validate, no duplicates, the site among
/// them; `[site]` when left out.
fn resolve_names(raw: Option<&[String]>, site: &str, problems: &mut Vec<String>) -> Vec<String> {
    let Some(raw) = raw else {
        return vec![site.to_ascii_lowercase()];
    };
    let mut names: Vec<String> = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let key = format!("acme.names[{i}]");
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("*.") {
            problems.push(format!(
                "{key}: {name:?} is a wildcard; http-01 cannot validate wildcard names (RFC \
                 8555 §7.1.3: they need dns-01); list each name"
            ));
        } else if lower.parse::<IpAddr>().is_ok() {
            problems.push(format!(
                "{key}: {name:?} is an IP address; list DNS names (the site's names)"
            ));
        } else if let Err(why) = check_dns_name(&lower) {
            problems.push(format!("{key}: {name:?} {why}"));
        } else if names.contains(&lower) {
            problems.push(format!("{key}: {name:?} is listed twice"));
        } else {
            names.push(lower);
        }
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case(site)) {
        problems.push(format!(
            "acme.names: must include the site {site:?}: the certificate replaces the site \
             certificate, which must cover the site"
        ));
    }
    names
}

/// RFC 8555 §6.1: every ACME request goes over HTTPS.
fn check_https_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(
            "is not an https:// URL; RFC 8555 §6.1 requires HTTPS, e.g. \
                    \"https://acme-v02.api.letsencrypt.org/directory\""
                .into(),
        );
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host; expected https://HOST[:PORT]/PATH".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    Ok(())
}

/// RFC 8555 §7.3 (and what Let's Encrypt accepts): one `mailto:` address per URL.
fn check_mailto(contact: &str) -> Result<(), String> {
    let Some(address) = contact.strip_prefix("mailto:") else {
        return Err(format!(
            "is not a mailto: URL; write \"mailto:{}\"",
            contact.trim()
        ));
    };
    let valid = address.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !address.contains([',', ' ', '?']);
    if valid {
        Ok(())
    } else {
        Err("is not one e-mail address; expected \"mailto:NAME@DOMAIN\"".into())
    }
}

/// Problems of a farm with `[acme]` that cannot obtain a certificate: no lb node to order
/// it, or no plain HTTP frontend to answer http-01 on.
pub(crate) fn check_acme_farm(nodes: &[Node], frontends: &[Frontend], problems: &mut Vec<String>) {
    if !nodes.iter().any(|n| n.role == Role::Lb) {
        problems.push(
            "acme: the farm has no lb node; the load balancer orders the certificate, add one"
                .into(),
        );
    }
    if !frontends.iter().any(plain_http) {
        problems.push(
            "acme: http-01 challenges are answered on a plain HTTP frontend and the farm has \
             none; add a [[frontends]] with mode = \"http\", no tls, on port 80"
                .into(),
        );
    }
}

/// Warnings of a farm with `[acme]` that runs but likely cannot use its certificate.
pub(crate) fn acme_warnings(frontends: &[Frontend], out: &mut Vec<String>) {
    if !frontends.iter().any(|f| plain_http(f) && f.port == 80) {
        out.push(
            "acme: no plain HTTP frontend listens on port 80, where ACME servers validate \
             http-01 challenges (RFC 8555 §8.3); only a test CA can be told another port"
                .into(),
        );
    }
    if !frontends
        .iter()
        .any(|f| f.tls.as_ref().is_some_and(|t| t.certs.is_empty()))
    {
        out.push(
            "acme: no HTTPS frontend serves the site certificate (every tls table lists its \
             own certs), so none serves the ACME certificate; leave `certs` out of one"
                .into(),
        );
    }
}

fn plain_http(f: &Frontend) -> bool {
    f.mode == Mode::Http && f.tls.is_none()
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, Farm};
    use std::path::Path;

    const FARM: &str = r#"
[[nodes]]
name = "lb-1"
role = "lb"
address = "127.0.0.1"
[[frontends]]
name = "http"
port = 80
default_backend = "web"
[[frontends]]
name = "https"
port = 443
default_backend = "web"
tls = {}
[[backends]]
name = "web"
[[backends.servers]]
address = "127.0.0.2:8000"
"#;

    fn parse(acme: &str) -> Result<Farm, ConfigError> {
        Farm::parse(
            &format!("{FARM}\n[acme]\n{acme}"),
            Some(Path::new("farm.toml")),
            Path::new("/base"),
        )
    }

    fn err(acme: &str) -> String {
        parse(acme).expect_err("invalid").to_string()
    }

    const LE: &str = "directory = \"https://acme-v02.api.letsencrypt.org/directory\"\n";

    #[test]
    fn defaults_and_resolved_paths() {
        let farm = parse(&format!(
            "{LE}contact = [\"mailto:ops@foobar.com\"]\nca_file = \"pebble.pem\"\n"
        ))
        .unwrap();
        let acme = farm.acme.as_ref().unwrap();
        assert_eq!(
            acme.directory,
            "https://acme-v02.api.letsencrypt.org/directory"
        );
        assert_eq!(acme.contact, ["mailto:ops@foobar.com"]);
        assert_eq!(acme.names, ["www.foobar.com"]);
        assert_eq!(acme.ca_file.as_deref(), Some(Path::new("/base/pebble.pem")));
        assert!(farm.warnings().is_empty(), "{:?}", farm.warnings());
        assert!(Farm::builtin().acme.is_none());
    }

    #[test]
    fn names_are_lower_case_and_must_include_the_site() {
        let farm = parse(&format!(
            "{LE}names = [\"WWW.foobar.com\", \"foobar.com\"]\n"
        ))
        .unwrap();
        assert_eq!(farm.acme.unwrap().names, ["www.foobar.com", "foobar.com"]);
        let e = err(&format!("{LE}names = [\"foobar.com\"]\n"));
        assert!(
            e.contains("acme.names: must include the site \"www.foobar.com\""),
            "{e}"
        );
    }

    #[test]
    fn bad_names_are_named() {
        let e = err(&format!(
            "{LE}names = [\"www.foobar.com\", \"*.foobar.com\", \"10.0.0.1\", \"a b\", \
             \"www.foobar.com\"]\n"
        ));
        assert!(
            e.contains("acme.names[1]: \"*.foobar.com\" is a wildcard"),
            "{e}"
        );
        assert!(
            e.contains("acme.names[2]: \"10.0.0.1\" is an IP address"),
            "{e}"
        );
        assert!(
            e.contains("acme.names[3]: \"a b\" is not a DNS name"),
            "{e}"
        );
        assert!(
            e.contains("acme.names[4]: \"www.foobar.com\" is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn the_directory_must_be_an_https_url() {
        for (bad, why) in [
            ("http://acme.test/dir", "is not an https:// URL"),
            ("acme.test/dir", "is not an https:// URL"),
            ("https:///dir", "has no host"),
            ("https://acme.test/a dir", "contains spaces"),
        ] {
            let e = err(&format!("directory = {bad:?}\n"));
            assert!(
                e.contains(&format!("acme.directory: {bad:?} {why}")),
                "{bad}: {e}"
            );
        }
        let e = err("contact = []\n");
        assert!(e.contains("acme.directory: missing"), "{e}");
        assert!(parse("directory = \"https://127.0.0.1:14000/dir\"\n").is_ok());
    }

    #[test]
    fn contacts_must_be_mailto_urls() {
        let e = err(&format!(
            "{LE}contact = [\"ops@foobar.com\", \"mailto:a@x.com,b@y.com\", \"mailto:ops\"]\n"
        ));
        assert!(
            e.contains("acme.contact[0]: \"ops@foobar.com\" is not a mailto: URL; write \"mailto:ops@foobar.com\""),
            "{e}"
        );
        assert!(e.contains("acme.contact[1]: "), "{e}");
        assert!(e.contains("acme.contact[2]: "), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = err(&format!("{LE}renew = \"30d\"\n"));
        assert!(e.contains("acme") && e.contains("renew"), "{e}");
    }

    #[test]
    fn the_farm_needs_an_lb_and_a_plain_http_frontend() {
        let text = format!(
            "[[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"127.0.0.1\"\n[acme]\n{LE}"
        );
        let e = Farm::parse(&text, None, Path::new("/"))
            .expect_err("invalid")
            .to_string();
        assert!(e.contains("acme: the farm has no lb node"), "{e}");
        assert!(e.contains("acme: http-01 challenges are answered"), "{e}");
    }

    #[test]
    fn warnings_for_a_port_other_than_80_and_no_site_certificate() {
        let text = FARM
            .replace("port = 80\n", "port = 8080\n")
            .replace("tls = {}", "tls = { certs = [\"own.pem\"] }");
        let farm = Farm::parse(&format!("{text}\n[acme]\n{LE}"), None, Path::new("/")).unwrap();
        let w = farm.warnings().join("\n");
        assert!(
            w.contains("no plain HTTP frontend listens on port 80"),
            "{w}"
        );
        assert!(
            w.contains("no HTTPS frontend serves the site certificate"),
            "{w}"
        );
    }
}
