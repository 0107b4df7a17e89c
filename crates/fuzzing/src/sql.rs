//! Target `sql`: SQL statements applied as a log entry on two replicas
//! ([`webfarm_db::fuzzing::Replica`], the applier of every db node, with the deterministic
//! `random()`/`'now'` overrides and the authorizer) must leave the same results and the same
//! database, whatever the wall clock says.
//!
//! The input is an rqlite request body when it parses as one (statements with parameters),
//! else one SQL text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use webfarm_db::fuzzing::{parse_statements, Replica};
use webfarm_db_client::Statement;

/// The entry's time: 2001-09-09 01:46:40 UTC, far from the wall clock.
const ENTRY_TIME_MS: i64 = 1_000_000_000_000;
/// The entry's random seed.
const SEED: u64 = 42;
/// SQLite virtual machine steps a statement may take (in units of 1000), so that an input
/// that loops forever (a recursive CTE) ends; the harness's limit, not the node's.
const MAX_STEPS_K: u32 = 20_000;

/// Checks one input.
///
/// # Panics
///
/// When two replicas applying the same entry disagree on a result or on the database, or
/// when a result or the database holds the wall clock's date or time (a `'now'` or a random
/// value that escaped the overrides).
pub fn check(data: &[u8]) {
    let statements = match parse_statements(data) {
        Ok(s) => s,
        Err(_) => {
            let text = String::from_utf8_lossy(data);
            if text.trim().is_empty() {
                return;
            }
            vec![Statement::new(text.into_owned())]
        }
    };
    let a = replica_state(&statements);
    let b = replica_state(&statements);
    assert_eq!(a, b, "two replicas applied the same entry differently");
    let markers = wall_clock_markers();
    let input = String::from_utf8_lossy(data);
    for m in markers.iter().filter(|m| !input.contains(m.as_str())) {
        assert!(
            !a.contains(m.as_str()),
            "the wall clock ({m}) leaked into:\n{a}"
        );
    }
}

/// Results and dump of a fresh replica after applying `statements` in one entry.
fn replica_state(statements: &[Statement]) -> String {
    let mut r = Replica::new().expect("an in-memory replica");
    let mut steps = 0u32;
    r.connection().progress_handler(
        1000,
        Some(move || {
            steps += 1;
            steps > MAX_STEPS_K
        }),
    );
    let results = r.apply(statements.to_vec(), false, ENTRY_TIME_MS, SEED);
    let dump = r.dump().unwrap_or_else(|e| format!("dump failed: {e}"));
    format!("{results:?}\n{dump}")
}

/// Texts that only the wall clock produces: today's date (UTC, as SQLite writes it), the
/// leading digits of the Unix time in seconds and of the Julian day number.
fn wall_clock_markers() -> Vec<String> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let date = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
    let unix = secs.to_string();
    let julian = (days + 2_440_588).to_string();
    vec![
        date.to_string()[..10].to_string(),
        unix[..unix.len().min(6)].to_string(),
        julian[..julian.len().min(5)].to_string(),
    ]
}
