//! Invalid topology files are refused before anything starts, with exit code 2 and a message
//! naming the file and the key.

mod common;

use std::process::Command;

use common::TempDir;

/// Runs `webfarm up --config <file with text>` and returns (exit code, stderr, data dir, and
/// the temp dir that holds it, removed when dropped).
fn up_with(name: &str, text: &str) -> (Option<i32>, String, std::path::PathBuf, TempDir) {
    let tmp = TempDir::new(name);
    let dir = tmp.path().to_path_buf();
    let config = dir.join("farm.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(common::bin())
        .args(["up", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir.join("data"),
        tmp,
    )
}

fn with_seed(net: u8, extra: &str) -> String {
    format!("{}{extra}", common::farm_toml(net))
}

#[test]
fn invalid_configs_are_refused_with_exit_code_2_and_the_key() {
    let cases: &[(&str, String, &[&str])] = &[
        (
            "unknown-role",
            with_seed(
                60,
                "[[nodes]]\nname = \"x-1\"\nrole = \"cache\"\naddress = \"127.0.60.50\"\n",
            ),
            &["nodes[7].role", "unknown variant", "lb", "web", "db"],
        ),
        (
            "duplicate-name",
            with_seed(
                61,
                "[[nodes]]\nname = \"web-1\"\nrole = \"web\"\naddress = \"127.0.61.50\"\n",
            ),
            &["nodes[7].name", "duplicate node name \"web-1\""],
        ),
        (
            "duplicate-address",
            with_seed(
                62,
                "[[nodes]]\nname = \"web-9\"\nrole = \"web\"\naddress = \"127.0.62.21\"\n",
            ),
            &["nodes[7].port", "127.0.62.21:8000 is already used"],
        ),
        (
            "unknown-server",
            with_seed(63, "[[backends.servers]]\nname = \"web-7\"\n"),
            &["backends[0].servers[3].name", "no node named \"web-7\""],
        ),
        (
            "bad-duration",
            common::farm_toml(64).replace("inter = \"300ms\"", "inter = \"soon\""),
            &["backends[0].check.inter"],
        ),
        (
            "web-without-db",
            "[[nodes]]\nname = \"web-1\"\nrole = \"web\"\naddress = \"127.0.65.21\"\n".into(),
            &["web nodes but no db node"],
        ),
        ("not-toml", "[[nodes]\nname = ".into(), &["line 1"]),
    ];
    for (name, text, needles) in cases {
        let (code, stderr, data, _tmp) = up_with(name, text);
        assert_eq!(
            code,
            Some(2),
            "{name}: expected exit code 2, stderr: {stderr}"
        );
        assert!(
            stderr.contains("farm.toml"),
            "{name}: file not named: {stderr}"
        );
        for n in *needles {
            assert!(stderr.contains(n), "{name}: {n:?} missing from: {stderr}");
        }
        assert!(
            !data.exists(),
            "{name}: something started: {} exists",
            data.display()
        );
    }
}

#[test]
fn missing_site_root_is_refused_before_anything_starts() {
    let text = common::farm_toml(66).replace(
        &common::site_dir().display().to_string(),
        "/nonexistent/site",
    );
    let (code, stderr, data, _tmp) = up_with("noroot", &text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("web.root") && stderr.contains("/nonexistent/site"),
        "{stderr}"
    );
    assert!(!data.exists());
}

#[test]
fn running_an_unknown_node_names_the_known_ones() {
    let out = Command::new(common::bin())
        .args(["run", "--node", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no node named \"nope\"") && stderr.contains("web-1"),
        "{stderr}"
    );
}

#[test]
fn even_voter_count_starts_with_a_warning() {
    let tmp = TempDir::new("evenvoters");
    let dir = tmp.path().to_path_buf();
    let config = dir.join("farm.toml");
    let text = "data_dir = \"data\"\n\
        [[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"127.0.67.31\"\n\
        [[nodes]]\nname = \"db-2\"\nrole = \"db\"\naddress = \"127.0.67.32\"\n";
    std::fs::write(&config, text).unwrap();
    let mut farm = common::TestFarm::start_in(dir, config, 67);
    let log = farm.log_text();
    assert!(
        log.contains("warning: the db cluster has 2 voters") && log.contains("survives 0 failures"),
        "{log}"
    );
    farm.stop();
}
