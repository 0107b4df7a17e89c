//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`), and the seeds we
//! wrote (`fuzz/seeds/<target>/`), through the same checks the fuzz targets run, on the
//! stable toolchain: `cargo test --workspace` keeps the corpus, and every crash input fixed
//! since, as regression tests without cargo-fuzz.

use std::path::{Path, PathBuf};

/// The repository's `fuzz/corpus`.
fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// Every file of `dir`, sorted, so a failure names the same file each run.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str) {
    let (_, check) = webfarm_fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let dir = corpus_root().join(target);
    let mut inputs = files(&dir);
    assert!(
        !inputs.is_empty(),
        "{} holds no corpus file: run the target and `cargo fuzz cmin` (fuzz/README.md)",
        dir.display()
    );
    let seeds = corpus_root().join("../seeds").join(target);
    if seeds.is_dir() {
        inputs.extend(files(&seeds));
    }
    for path in &inputs {
        let data = std::fs::read(path).expect("a corpus file");
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(
            result.is_ok(),
            "{target}: {} fails its properties (rerun: cargo +nightly fuzz run {target} {})",
            path.display(),
            path.display()
        );
    }
    eprintln!("{target}: {} corpus and seed files replayed", inputs.len());
}

#[test]
fn every_target_has_a_corpus_and_a_test() {
    let on_disk: Vec<String> = std::fs::read_dir(corpus_root())
        .expect("fuzz/corpus")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for (name, _) in webfarm_fuzzing::TARGETS {
        assert!(on_disk.iter().any(|d| d == name), "no fuzz/corpus/{name}");
    }
}

#[test]
fn topology_corpus() {
    replay("topology");
}

#[test]
fn lb_head_corpus() {
    replay("lb_head");
}

#[test]
fn acl_corpus() {
    replay("acl");
}

#[test]
fn dns_corpus() {
    replay("dns");
}

#[test]
fn rqlite_body_corpus() {
    replay("rqlite_body");
}

#[test]
fn sql_corpus() {
    replay("sql");
}
