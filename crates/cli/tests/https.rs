//! The farm serves HTTPS with no setup: `webfarm up` creates the farm CA and the site's and
//! nodes' certificates on first start, reuses them on the next, curl trusts the CA, and a
//! bad certificate file stops `webfarm up` before anything starts (exit code 2). With
//! internal TLS (the default) every internal port refuses a client without a certificate
//! of the farm CA, while the site and the operator's commands work.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{TempDir, TestFarm};

const NET: u8 = 58;

/// The seed farm with `www` redirecting to a TLS frontend `www-https` on 8443 (`tls_line`),
/// internal TLS on (the default).
fn https_farm(net: u8, tls_line: &str) -> String {
    common::farm_toml(net)
        .replace(webfarm_testkit::INTERNAL_TLS_OFF, "")
        .replace(
            "[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n",
            &format!(
                "[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n\
             redirect_https = true\n[[frontends]]\nname = \"www-https\"\nport = 8443\n\
             default_backend = \"web\"\n{tls_line}\n"
            ),
        )
}

/// `curl ARGS...`: (exit success, stdout, stderr). Fails naming the package without curl.
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl cannot run ({e}): install Debian's curl"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn up_creates_the_farm_ca_serves_https_and_reuses_it() {
    let tmp = TempDir::new("https-up");
    let config = tmp.path().join("farm.toml");
    std::fs::write(&config, https_farm(NET, "tls = {}")).unwrap();
    let mut farm = TestFarm::start_in(tmp.path().to_path_buf(), config.clone(), NET);
    let ca_dir = tmp.path().join("data/ca");
    let ca = ca_dir.join("ca.crt");
    for key in [
        "ca.key",
        "site.key",
        "operator.key",
        "nodes/lb-1.key",
        "nodes/db-3.key",
    ] {
        let mode = std::fs::metadata(ca_dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // README's command: curl trusts the farm CA, and the page comes over HTTP/2.
    let resolve = format!("www.foobar.com:8443:127.0.{NET}.10");
    let (ok, page, err) = curl(&[
        "-sS",
        "--http2",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version}",
        "https://www.foobar.com:8443/",
    ]);
    assert!(ok, "{err}\n{}", farm.log_text());
    assert!(page.contains("foobar") && page.ends_with("\n2"), "{page}");
    // The plain port redirects to it; the lb's own address is in the site certificate.
    let (_, head, _) = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: www.foobar.com",
        &format!("http://127.0.{NET}.10:8080/about.html"),
    ]);
    assert_eq!(head, "308 https://www.foobar.com:8443/about.html");
    let by_ip = format!("https://127.0.{NET}.10:8443/");
    let (ok, _, err) = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "--cacert",
        ca.to_str().unwrap(),
        &by_ip,
    ]);
    assert!(ok, "{err}");
    // `webfarm ca show` lists every certificate and the CA's fingerprint.
    let show = farm.webfarm(&["ca", "show"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    assert!(text.contains("CA fingerprint (SHA-256): "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("web-2") && l.contains(&format!("web-2, 127.0.{NET}.22"))),
        "{text}"
    );
    internal_ports_refuse_strangers(&ca_dir, tmp.path());
    // The lb's metrics say when the served certificate expires (the CertificateExpiringSoon
    // alert's input), and promtool finds nothing wrong with them.
    let metrics = farm.webfarm(&["metrics", "lb-1"]);
    let text = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("webfarm_certificate_not_after_seconds{"))
        .unwrap_or_else(|| panic!("no certificate expiry in: {text}"));
    assert!(line.contains("proxy=\"www-https\""), "{line}");
    let expires: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expires > now + 300.0 * 86_400.0, "{line}");
    revoked_certificates_are_refused(&farm, &ca_dir, tmp.path());
    let status = farm.webfarm(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let sql = farm.webfarm(&["sql", "-c", "SELECT 1"]);
    assert!(
        sql.status.success(),
        "{}",
        String::from_utf8_lossy(&sql.stderr)
    );
    // A second start reuses the CA and the site certificate.
    let before = (
        std::fs::read(&ca).unwrap(),
        std::fs::read(ca_dir.join("site.crt")).unwrap(),
    );
    farm.stop();
    let farm = TestFarm::start_in(tmp.path().to_path_buf(), config, NET);
    let after = (
        std::fs::read(&ca).unwrap(),
        std::fs::read(ca_dir.join("site.crt")).unwrap(),
    );
    assert!(
        before == after,
        "the CA and the site certificate were replaced on restart"
    );
    assert!(
        !farm.log_text().contains("created the farm CA"),
        "{}",
        farm.log_text()
    );
    // `webfarm ca issue NODE` says what a multi-host deployment copies.
    let issue = farm.webfarm(&["ca", "issue", "lb-1"]);
    let text = String::from_utf8_lossy(&issue.stdout);
    for file in [
        "ca/ca.crt",
        "ca/nodes/lb-1.crt",
        "ca/nodes/lb-1.key",
        "ca/site.key",
    ] {
        assert!(text.contains(file), "{text}");
    }
    assert!(!text.contains("  ca/ca.key"), "{text}");
}

/// Every internal port (admin, web, db API, Raft) refuses a client without a certificate
/// and one with a certificate of another CA, and answers the operator.
fn internal_ports_refuse_strangers(ca_dir: &std::path::Path, tmp: &std::path::Path) {
    let other = webfarm_tls::ca::Layout::of_data_dir(&tmp.join("other"));
    let (stranger, _) =
        webfarm_tls::farm::ensure(&other, &webfarm_tls::farm::Subjects::site("www.foobar.com"))
            .unwrap();
    drop(stranger);
    let ca = ca_dir.join("ca.crt");
    let ca = ca.to_str().unwrap();
    let (op_cert, op_key) = (ca_dir.join("operator.crt"), ca_dir.join("operator.key"));
    let (st_cert, st_key) = (other.operator().cert, other.operator().key);
    let ports = [
        ("10", 9000, "/healthz"),
        ("21", 9000, "/healthz"),
        ("21", 8000, "/healthz"),
        ("31", 9000, "/healthz"),
        ("31", 4001, "/status"),
        ("32", 4002, "/raft/vote"),
    ];
    // `curl` of `url` trusting the farm CA, presenting the certificate `pair` if given.
    let with_cert = |url: &str, pair: Option<(&std::path::Path, &std::path::Path)>| {
        let mut args = vec!["-sS", "-o", "/dev/null", "--cacert", ca];
        if let Some((cert, key)) = pair {
            args.extend([
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ]);
        }
        args.push(url);
        curl(&args)
    };
    for (host, port, path) in ports {
        let url = format!("https://127.0.{NET}.{host}:{port}{path}");
        let (ok, _, err) = with_cert(&url, None);
        assert!(!ok, "{url} answered a client without a certificate");
        assert!(
            err.contains("certificate required") || err.contains("alert"),
            "{url}: {err}"
        );
        let (ok, _, _) = with_cert(&url, Some((&st_cert, &st_key)));
        assert!(!ok, "{url} answered a certificate of another CA");
        let (ok, _, err) = with_cert(&url, Some((&op_cert, &op_key)));
        assert!(ok, "{url} refused the operator: {err}");
        let plain = format!("http://127.0.{NET}.{host}:{port}{path}");
        let (ok, _, _) = curl(&["-sS", "-o", "/dev/null", "--max-time", "5", &plain]);
        assert!(!ok, "{plain} answered plain HTTP");
    }
    // Raft takes requests only from a db node whose certificate names it: web-1's
    // certificate claiming to be db-1 is refused.
    let (web_cert, web_key) = (
        ca_dir.join("nodes/web-1.crt"),
        ca_dir.join("nodes/web-1.key"),
    );
    let url = format!("https://127.0.{NET}.32:4002/raft/vote");
    let (_, body, _) = curl(&[
        "-sS",
        "--cacert",
        ca,
        "--cert",
        web_cert.to_str().unwrap(),
        "--key",
        web_key.to_str().unwrap(),
        "-H",
        "x-webfarm-from: db-1",
        "-X",
        "POST",
        "-w",
        " %{http_code}",
        &url,
    ]);
    assert!(
        body.ends_with(" 403") && body.contains("says it is \"db-1\""),
        "{body}"
    );
}

/// The lb publishes the CRL the certificates point to, over plain HTTP; `webfarm ca revoke`
/// lists a certificate on it, and within seconds the farm's ports refuse the old
/// certificate while its holder works on with the new one.
fn revoked_certificates_are_refused(
    farm: &TestFarm,
    ca_dir: &std::path::Path,
    tmp: &std::path::Path,
) {
    let site = webfarm_tls::cert::LoadedCert::load(
        &ca_dir.join("site.crt"),
        &ca_dir.join("site.key"),
        &webfarm_tls::server::provider(),
    )
    .unwrap();
    let crl_url = "http://www.foobar.com:8080/.well-known/webfarm/ca.crl";
    assert_eq!(site.crl_urls, [crl_url]);
    let resolve = format!("www.foobar.com:8080:127.0.{NET}.10");
    let fetch_crl = || {
        let out = tmp.join("fetched.crl");
        let (_, head, _) = curl(&[
            "-sS",
            "--resolve",
            &resolve,
            "-o",
            out.to_str().unwrap(),
            "-w",
            "%{http_code} %{content_type}",
            crl_url,
        ]);
        (head, std::fs::read(&out).unwrap_or_default())
    };
    let (head, before) = fetch_crl();
    assert_eq!(head, "200 application/pkix-crl", "not redirected, not HTML");
    assert_eq!(before, std::fs::read(ca_dir.join("ca.crl")).unwrap());
    // The operator's key is lost: keep the old pair, revoke it.
    let old = (tmp.join("old-op.crt"), tmp.join("old-op.key"));
    std::fs::copy(ca_dir.join("operator.crt"), &old.0).unwrap();
    std::fs::copy(ca_dir.join("operator.key"), &old.1).unwrap();
    let revoke = farm.webfarm(&["ca", "revoke", "operator"]);
    let said = String::from_utf8_lossy(&revoke.stdout);
    assert!(
        revoke.status.success() && said.contains("revoked operator's certificate (serial "),
        "{said}"
    );
    let (_, after) = fetch_crl();
    assert!(
        after.len() > before.len(),
        "the published CRL lists the serial"
    );
    let ca = ca_dir.join("ca.crt");
    let url = format!("https://127.0.{NET}.31:4001/status");
    let args = |pair: &(std::path::PathBuf, std::path::PathBuf)| {
        vec![
            "-sS".to_string(),
            "-o".into(),
            "/dev/null".into(),
            "--cacert".into(),
            ca.display().to_string(),
            "--cert".into(),
            pair.0.display().to_string(),
            "--key".into(),
            pair.1.display().to_string(),
            url.clone(),
        ]
    };
    let run = |pair| {
        let a = args(pair);
        curl(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    webfarm_testkit::eventually_blocking(
        webfarm_testkit::DEADLINE,
        "db-1 refusing the revoked operator certificate",
        || {
            let (ok, _, err) = run(&old);
            (!ok).then_some(err)
        },
    );
    let new = (ca_dir.join("operator.crt"), ca_dir.join("operator.key"));
    let (ok, _, err) = run(&new);
    assert!(ok, "the new operator certificate: {err}");
    // A web node's certificate revoked: it presents its new one by itself, and the site
    // keeps answering through it.
    let revoke = farm.webfarm(&["ca", "revoke", "web-1"]);
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let page = format!("https://127.0.{NET}.21:8000/healthz");
    webfarm_testkit::eventually_blocking(
        webfarm_testkit::DEADLINE,
        "web-1 serving its new certificate",
        || {
            let pair = (new.0.clone(), new.1.clone());
            let mut a = args(&pair);
            *a.last_mut().unwrap() = page.clone();
            a.extend(["-w".into(), "%{certs}".into()]);
            let (ok, out, _) = curl(&a.iter().map(String::as_str).collect::<Vec<_>>());
            let served = std::fs::read_to_string(ca_dir.join("nodes/web-1.crt")).unwrap();
            let body = served.lines().nth(1).unwrap_or("-").to_string();
            (ok && out.contains(&body)).then_some(())
        },
    );
    let status = farm.webfarm(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
}

#[test]
fn a_bad_certificate_file_stops_up_with_exit_code_2_naming_it() {
    let tmp = TempDir::new("https-bad");
    let config = tmp.path().join("farm.toml");
    let missing = tmp.path().join("missing.pem");
    std::fs::write(
        &config,
        https_farm(
            59,
            &format!("tls = {{ certs = ['{}'] }}", missing.display()),
        ),
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["up", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("missing.pem: cannot read"), "{err}");
    assert!(
        !tmp.path().join("data/run/supervisor.pid").exists(),
        "nothing started"
    );
}
