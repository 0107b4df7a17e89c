//! Unit tests: loading and checking certificates, SNI selection, the farm CA's files.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::ca::{Ensured, FarmCa, Layout, Leaf, Usage};
use crate::cert::LoadedCert;
use crate::farm::{self, NodeIdentity, Subjects};
use crate::resolver::CertSet;
use crate::{server, TlsError};

/// A directory of the test's own, removed at the end.
pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    pub(crate) fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("webfarm-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn leaf(names: &[&str]) -> Leaf {
    Leaf {
        common_name: names[0].into(),
        names: names.iter().map(|s| (*s).to_string()).collect(),
        usage: Usage::Server,
        crl_url: None,
    }
}

fn load(layout: &Layout, stem: &str) -> LoadedCert {
    let p = layout.node(stem);
    LoadedCert::load(&p.cert, &p.key, &server::provider()).unwrap()
}

#[test]
fn issued_certificates_load_cover_their_names_and_chain_to_the_ca() {
    let dir = Dir::new("issue");
    let layout = Layout::of_data_dir(&dir.0);
    let ca = FarmCa::create(&layout, "www.foobar.com").unwrap();
    ca.issue(&leaf(&["www.foobar.com", "127.0.1.10"]))
        .unwrap()
        .write(&layout.node("a"))
        .unwrap();
    let a = load(&layout, "a");
    assert!(a.covers("www.foobar.com") && a.covers("127.0.1.10"));
    assert!(!a.covers("other.foobar.com"));
    let err = a.require_name("foobar.com").unwrap_err().to_string();
    assert!(
        err.contains("foobar.com") && err.contains("www.foobar.com, 127.0.1.10"),
        "{err}"
    );
    a.require_issuer(ca.cert_der(), &layout.ca().cert).unwrap();
    // Another CA's certificate is refused by name.
    let other = Layout::of_data_dir(&dir.0.join("other"));
    let other_ca = FarmCa::create(&other, "x").unwrap();
    let err = a
        .require_issuer(other_ca.cert_der(), &other.ca().cert)
        .unwrap_err();
    assert!(matches!(err, TlsError::UnknownCa { .. }), "{err}");
    // Private keys are the owner's only.
    for key in [layout.ca().key, layout.node("a").key] {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    assert!(a.lifetime() > std::time::Duration::from_secs(390 * 86_400));
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_both_files() {
    let dir = Dir::new("mismatch");
    let layout = Layout::of_data_dir(&dir.0);
    let ca = FarmCa::create(&layout, "s").unwrap();
    ca.issue(&leaf(&["a.test"]))
        .unwrap()
        .write(&layout.node("a"))
        .unwrap();
    ca.issue(&leaf(&["b.test"]))
        .unwrap()
        .write(&layout.node("b"))
        .unwrap();
    let (a, b) = (layout.node("a"), layout.node("b"));
    let err = LoadedCert::load(&a.cert, &b.key, &server::provider()).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("b.key") && text.contains("a.crt"), "{text}");
    // A missing file, a file with no certificate, a file with no key.
    let err = LoadedCert::load(&dir.0.join("nope.crt"), &a.key, &server::provider()).unwrap_err();
    assert!(err.to_string().contains("nope.crt: cannot read"), "{err}");
    let err = LoadedCert::load(&a.key, &a.key, &server::provider()).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    let err = LoadedCert::load(&a.cert, &a.cert, &server::provider()).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
}

#[test]
fn sni_picks_exact_then_wildcard_then_the_default() {
    let dir = Dir::new("sni");
    let layout = Layout::of_data_dir(&dir.0);
    let ca = FarmCa::create(&layout, "s").unwrap();
    for (stem, names) in [
        ("def", &["www.foobar.com"][..]),
        ("api", &["api.foobar.com"][..]),
        ("wild", &["*.example.org"][..]),
    ] {
        ca.issue(&leaf(names))
            .unwrap()
            .write(&layout.node(stem))
            .unwrap();
    }
    let certs: Vec<LoadedCert> = ["def", "api", "wild"]
        .iter()
        .map(|s| load(&layout, s))
        .collect();
    let set = CertSet::new(&certs).unwrap();
    let is = |name: Option<&str>, want: usize| {
        assert!(Arc::ptr_eq(set.pick(name), &certs[want].key), "{name:?}");
    };
    is(Some("api.foobar.com"), 1);
    is(Some("API.Foobar.COM"), 1);
    is(Some("shop.example.org"), 2);
    is(Some("a.b.example.org"), 0); // a wildcard covers one label only
    is(Some("unknown.test"), 0);
    is(None, 0);
    assert!(CertSet::new(&[]).is_none());
}

#[test]
fn the_farm_is_issued_once_then_kept_and_renewed_when_its_names_change() {
    let dir = Dir::new("farm");
    let layout = Layout::of_data_dir(&dir.0);
    let mut subjects = Subjects {
        nodes: vec![NodeIdentity {
            name: "web-1".into(),
            address: "127.0.1.21".parse().unwrap(),
        }],
        ..Subjects::site("www.foobar.com")
    };
    let (_, first) = farm::ensure(&layout, &subjects).unwrap();
    assert!(first.ca_created);
    let what: Vec<&str> = first.issued.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(what, ["CRL", "site", "operator", "web-1"]);
    let ca_pem = std::fs::read(layout.ca().cert).unwrap();
    let (_, again) = farm::ensure(&layout, &subjects).unwrap();
    assert_eq!(
        again,
        farm::Report::default(),
        "nothing to do the second time"
    );
    assert_eq!(std::fs::read(layout.ca().cert).unwrap(), ca_pem);
    // web-1 moved: its certificate is issued again, the others are kept.
    subjects.nodes[0].address = "127.0.1.29".parse().unwrap();
    let (_, moved) = farm::ensure(&layout, &subjects).unwrap();
    assert_eq!(moved.issued, [("web-1".to_string(), "names changed")]);
    assert!(load(&layout, "web-1").covers("127.0.1.29"));
    // Rotation: a new CA, every certificate issued again and chained to it.
    let (ca, rotated) = farm::rotate(&layout, &subjects).unwrap();
    assert!(rotated.ca_created);
    assert_eq!(rotated.issued.len(), 3);
    assert!(rotated
        .issued
        .iter()
        .all(|(_, why)| *why == "signed by another CA"));
    assert_ne!(std::fs::read(layout.ca().cert).unwrap(), ca_pem);
    load(&layout, "web-1")
        .require_issuer(ca.cert_der(), &layout.ca().cert)
        .unwrap();
    assert_eq!(
        ca.ensure(
            &subjects.node_leaf(&subjects.nodes[0]),
            &layout.node("web-1")
        )
        .unwrap(),
        Ensured::Kept
    );
}
