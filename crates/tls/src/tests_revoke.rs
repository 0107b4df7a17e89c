//! Revocation: the list, the CRL, and internal TLS refusing a revoked peer (real rustls
//! handshakes, in memory) within a second or two of `revoke`, then accepting its new
//! certificate.

use std::time::{Duration, Instant};

use rustls::{ClientConnection, ServerConnection};
use rustls_pki_types::ServerName;

use crate::ca::Layout;
use crate::cert::LoadedCert;
use crate::farm::{self, NodeIdentity, Subjects};
use crate::internal::{self, Identity};
use crate::revoke::{self, crl_url};
use crate::tests::Dir;
use crate::{server, TlsError};

fn subjects() -> Subjects {
    let node = |name: &str, ip: &str| NodeIdentity {
        name: name.into(),
        address: ip.parse().unwrap(),
    };
    Subjects {
        nodes: vec![node("web-1", "127.0.1.21"), node("db-1", "127.0.1.31")],
        crl_url: Some(crl_url("www.foobar.com", 8080)),
        ..Subjects::site("www.foobar.com")
    }
}

/// A full handshake of `client` calling `server` under `name`, bytes passed in memory.
fn handshake(client: &Identity, server: &Identity, name: &str) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut c = ClientConnection::new(client.client.clone(), name)?;
    let mut s = ServerConnection::new(server.server.clone().unwrap())?;
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish")
}

/// Polls `f` until it returns true, for at most 10 s.
fn within(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn revoked(r: Result<(), rustls::Error>) -> bool {
    matches!(
        r,
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))
    )
}

fn load(paths: &crate::ca::PairPaths) -> LoadedCert {
    LoadedCert::load(&paths.cert, &paths.key, &server::provider()).unwrap()
}

#[test]
fn leaves_name_the_crl_and_a_revoked_serial_is_listed_in_it() {
    let dir = Dir::new("crl");
    let layout = Layout::of_data_dir(&dir.0);
    let s = subjects();
    let (ca, _) = farm::ensure(&layout, &s).unwrap();
    let site = load(&layout.site());
    assert_eq!(
        site.crl_urls,
        ["http://www.foobar.com:8080/.well-known/webfarm/ca.crl"]
    );
    let web = load(&layout.node("web-1"));
    ca.revoke(&web, "web-1").unwrap();
    ca.revoke(&web, "web-1").unwrap();
    let list = revoke::read_list(&layout.revoked()).unwrap();
    assert_eq!(list.len(), 1, "revoked twice, listed once");
    assert_eq!(
        (list[0].serial_hex(), list[0].what.as_str()),
        (web.serial_hex(), "web-1")
    );
    let der = std::fs::read(layout.crl()).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let serials: Vec<Vec<u8>> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    assert_eq!(serials, std::slice::from_ref(&web.serial));
    // The next `ensure` issues web-1 a new certificate, and keeps the fresh CRL.
    let (_, report) = farm::ensure(&layout, &s).unwrap();
    assert_eq!(report.issued, [("web-1".to_string(), "revoked")]);
    // A damaged list is an error naming the file and line, not an empty list.
    std::fs::write(layout.revoked(), "ABCD 1700000000 web-1\nnot a line\n").unwrap();
    let err = revoke::read_list(&layout.revoked()).unwrap_err();
    assert!(
        matches!(err, TlsError::BadRevocationList { line: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("revoked:2"), "{err}");
}

#[test]
fn a_revoked_node_is_refused_within_seconds_then_its_new_certificate_is_accepted() {
    let dir = Dir::new("refuse");
    let layout = Layout::of_data_dir(&dir.0);
    let s = subjects();
    let (ca, _) = farm::ensure(&layout, &s).unwrap();
    let web = internal::node(&layout, "web-1").unwrap();
    let db = internal::node(&layout, "db-1").unwrap();
    handshake(&web, &db, "db-1").unwrap();
    // web-1's key is lost: db-1 refuses it as a client...
    ca.revoke(&load(&layout.node("web-1")), "web-1").unwrap();
    within("db-1 refusing the revoked web-1", || {
        revoked(handshake(&web, &db, "db-1"))
    });
    // ...until web-1's new certificate is on disk, which it picks up by itself.
    let (leaf, paths) = s.leaf_of(&layout, "web-1").unwrap();
    ca.issue(&leaf).unwrap().write(&paths).unwrap();
    within("web-1 presenting its new certificate", || {
        handshake(&web, &db, "db-1").is_ok()
    });
    // A revoked server is refused by its clients just the same.
    ca.revoke(&load(&layout.node("db-1")), "db-1").unwrap();
    within("web-1 refusing the revoked db-1", || {
        revoked(handshake(&web, &db, "db-1"))
    });
}
