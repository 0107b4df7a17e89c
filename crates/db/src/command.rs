//! The payload of a Raft log entry and what applying it gives.
//!
//! One entry carries one or more client **requests** (group commit: the leader gathers the
//! writes that arrive together into one entry, so one fsync and one SQLite transaction serve
//! them all), each with its own statements, flags and results. A request is either SQL
//! ([`SqlRequest`]) or the restore of a whole SQLite file ([`LoadRequest`], `/db/load`).
//!
//! `time_ms` and `seed` are chosen once, by the leader that proposes the entry, so that
//! `datetime('now')`, `CURRENT_TIMESTAMP`, `random()` and `randomblob()` give every replica the
//! same values; request `r` of the entry draws its random numbers from
//! [`request_seed`]`(seed, r)`.

use serde::{Deserialize, Serialize};

use crate::sqlite::determinism::splitmix64;
use crate::types::{Outcome, SqlStatement};

/// The payload of a Raft log entry: requests to apply on every replica, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// The entry's "now": milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Seed of `random()` and `randomblob()` (see [`request_seed`]).
    pub seed: u64,
    /// The client requests of the group, in the order they were accepted.
    pub requests: Vec<Request>,
}

/// One client request inside a log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Request {
    /// Statements (`/db/execute`, `/db/request`, `strong` reads).
    Sql(SqlRequest),
    /// Replace the user's tables with those of a SQLite file (`/db/load`).
    Load(LoadRequest),
}

/// Statements applied together, with rqlite's flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SqlRequest {
    /// The statements, in order.
    pub statements: Vec<SqlStatement>,
    /// All-or-nothing: on the first error every statement of this request is rolled back.
    #[serde(default)]
    pub transaction: bool,
    /// Return the rows of statements that produce rows (`/db/request`, `strong` reads).
    #[serde(default)]
    pub want_rows: bool,
    /// Refuse any statement that could write (`strong` reads through the log).
    #[serde(default)]
    pub read_only: bool,
    /// Give BLOBs as arrays of bytes instead of base64 (rqlite's `blob_array`).
    #[serde(default)]
    pub blob_array: bool,
}

/// A whole SQLite database file to restore on every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRequest {
    /// The file's bytes, base64 (standard alphabet, padded).
    pub sqlite: String,
}

/// What applying one entry gave (only the leader's copy reaches the clients).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// One list of statement outcomes per request of a normal entry, in order; empty for
    /// blank and membership entries. A load gives no outcome, or one error.
    pub results: Vec<Vec<Outcome>>,
}

impl Command {
    /// An entry of one SQL request.
    pub fn sql(request: SqlRequest, time_ms: i64, seed: u64) -> Command {
        Command {
            time_ms,
            seed,
            requests: vec![Request::Sql(request)],
        }
    }
}

/// The random seed of request `index` of an entry whose seed is `seed`: distinct requests of
/// one entry get unrelated random streams, the same on every replica.
pub fn request_seed(seed: u64, index: usize) -> u64 {
    let mut s = seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    splitmix64(&mut s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Params;

    #[test]
    fn requests_round_trip_through_json() {
        let cmd = Command {
            time_ms: 5,
            seed: 7,
            requests: vec![
                Request::Sql(SqlRequest {
                    statements: vec![SqlStatement {
                        sql: "SELECT 1".into(),
                        params: Params::None,
                    }],
                    transaction: true,
                    want_rows: false,
                    read_only: false,
                    blob_array: false,
                }),
                Request::Load(LoadRequest {
                    sqlite: "AA==".into(),
                }),
            ],
        };
        let text = serde_json::to_string(&cmd).unwrap();
        assert!(text.contains(r#""kind":"sql""#), "{text}");
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), cmd);
    }

    #[test]
    fn each_request_gets_its_own_seed() {
        assert_ne!(request_seed(1, 0), request_seed(1, 1));
        assert_eq!(request_seed(9, 3), request_seed(9, 3));
    }
}
