//! Target `topology`: a topology file's text → a validated [`Farm`] or a clean error
//! ([`Farm::parse`], what `webfarm up --config` and `webfarm run` read).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use webfarm_config::{ConfigError, Farm};

/// The file name errors must name.
const FILE: &str = "fuzz.toml";

/// Checks one input.
///
/// # Panics
///
/// When a property fails: an error that names no file or no problem; a validated farm that
/// breaks one of the rules `Farm::parse` promises or whose dns zone cannot be built; a result
/// that changes when the same TOML document is parsed again or written in another format.
pub fn check(data: &[u8]) {
    // `Farm::load` reads the file as UTF-8 text; anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = parse(text);
    match &first {
        Ok(farm) => check_farm(farm),
        Err(e) => check_error(e),
    }
    assert!(
        same(&first, &parse(text)),
        "parsing the same text twice differs"
    );
    // The same document in `toml`'s own formatting must give the same farm or problems.
    if let Ok(doc) = toml::from_str::<toml::Table>(text) {
        if let Ok(again) = toml::to_string(&doc) {
            let second = parse(&again);
            assert!(
                same(&first, &second),
                "the document written back parses differently:\n{again}\nfirst: {first:?}\n\
                 second: {second:?}"
            );
        }
    }
}

fn parse(text: &str) -> Result<Farm, ConfigError> {
    Farm::parse(text, Some(Path::new(FILE)), Path::new("/fuzz"))
}

/// Whether two results are the same farm, the same problems, or both a parse error at the
/// same key (the location moves when the text is formatted differently).
fn same(a: &Result<Farm, ConfigError>, b: &Result<Farm, ConfigError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (
            Err(ConfigError::Invalid { problems: p, .. }),
            Err(ConfigError::Invalid { problems: q, .. }),
        ) => p == q,
        (Err(ConfigError::Parse { key: k1, .. }), Err(ConfigError::Parse { key: k2, .. })) => {
            k1 == k2
        }
        _ => false,
    }
}

fn check_error(e: &ConfigError) {
    let text = e.to_string();
    assert!(
        text.starts_with(FILE),
        "the error does not name the file: {text}"
    );
    match e {
        ConfigError::Invalid { problems, .. } => {
            assert!(!problems.is_empty(), "Invalid without a problem");
            for p in problems {
                assert!(p.contains(": "), "a problem without its key path: {p:?}");
            }
        }
        ConfigError::Parse { key, message, .. } => {
            assert!(!key.is_empty() && !message.is_empty(), "{text}");
        }
        ConfigError::Read { .. } => panic!("parsing text cannot fail to read: {text}"),
    }
}

/// The rules a validated farm obeys, and what `webfarm up` derives from it before starting.
fn check_farm(farm: &Farm) {
    let mut names = HashSet::new();
    let mut bound = HashSet::new();
    for node in &farm.nodes {
        assert!(
            !node.name.is_empty() && node.name.len() <= 63 && names.insert(node.name.as_str()),
            "node name {:?} empty, too long or repeated",
            node.name
        );
        assert_eq!(farm.node(&node.name), Some(node));
        let mut ports = vec![node.admin_port];
        ports.extend([node.port, node.raft_port].into_iter().filter(|&p| p != 0));
        for p in ports {
            assert!(
                bound.insert(SocketAddr::new(node.address, p)),
                "{}:{p} bound twice",
                node.address
            );
        }
    }
    for fe in &farm.frontends {
        assert!(
            fe.default_backend < farm.backends.len(),
            "frontend {} names backend #{} of {}",
            fe.name,
            fe.default_backend,
            farm.backends.len()
        );
    }
    let _ = (farm.warnings(), farm.vips(), farm.site_addresses());
    // What a dns node builds at start: `webfarm up` checks the first stage for every farm;
    // both must succeed unless the farm's own `[dns] records` lines are at fault (those are
    // parsed by hickory only there).
    let zone = webfarm_dns::zone::ZoneSpec::from_farm(farm)
        .and_then(|spec| spec.build(&farm.site_addresses(), 1));
    if let Err(e) = zone {
        let has_dns = farm
            .nodes
            .iter()
            .any(|n| n.role == webfarm_config::Role::Dns);
        assert!(
            !has_dns || !farm.dns.records.is_empty(),
            "a validated farm's dns zone does not build: {e}"
        );
    }
}
