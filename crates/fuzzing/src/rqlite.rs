//! Target `rqlite_body`: an rqlite request body (`/db/execute`, `/db/query`, `/db/request`)
//! → the statements the db API reads from it, or its 400 answer; the same bytes as a URL
//! query string → the flags.

use webfarm_db::fuzzing::{parse_flags, parse_go_duration, parse_statements};
use webfarm_db_client::Statement;

/// Checks one input.
///
/// # Panics
///
/// When an accepted body holds no statement or an empty SQL text, when the statements do
/// not survive their rqlite wire form (what `DbClient` sends) or their Raft log form, or
/// when a refusal names no reason or a statement that is not in the body.
pub fn check(data: &[u8]) {
    match parse_statements(data) {
        Ok(statements) => check_accepted(&statements),
        Err((index, message)) => {
            assert!(!message.is_empty(), "a 400 without a reason");
            if let Some(i) = index {
                assert!(
                    message.starts_with(&format!("statement {i}: ")),
                    "{message}"
                );
                let items = serde_json::from_slice::<Vec<serde_json::Value>>(data)
                    .map(|v| v.len())
                    .unwrap_or_default();
                assert!(i < items, "statement {i} named in a body of {items}");
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    for (key, duration) in parse_flags(&text) {
        if let Err(message) = duration {
            assert!(message.starts_with(key), "{message}");
        }
    }
    if let Some(d) = parse_go_duration(&text) {
        // A duration that parses is one a timer can take.
        let _ = std::time::Instant::now().checked_add(d);
    }
}

fn check_accepted(statements: &[Statement]) {
    assert!(
        !statements.is_empty(),
        "an accepted body without statements"
    );
    for s in statements {
        assert!(!s.sql.trim().is_empty(), "an empty SQL text accepted");
    }
    // What DbClient sends for these statements reads back as the same statements.
    let wire = webfarm_db_client::request_body(statements);
    let again = parse_statements(&wire).unwrap_or_else(|e| {
        panic!(
            "the wire form {:?} is refused: {e:?}",
            String::from_utf8_lossy(&wire)
        )
    });
    assert_eq!(again, statements, "the wire form reads back differently");
    // The Raft log's form of each statement (serde) round-trips.
    for s in statements {
        let log = serde_json::to_vec(s).expect("a statement serializes");
        let back: Statement = serde_json::from_slice(&log).expect("the log form reads back");
        assert_eq!(&back, s, "the log form reads back differently");
    }
}
