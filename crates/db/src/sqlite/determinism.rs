//! Deterministic SQL on the write connection.
//!
//! Every replica applies the same log entry, so every replica must compute the same values.
//! SQLite's `random()`, `randomblob(N)`, `CURRENT_TIMESTAMP` and `'now'` do not: here they are
//! overridden, on the write connection only, by application-defined functions of the same name.
//! SQLite looks up application-defined functions before its built-ins (`sqlite3FindFunction`),
//! and compiles the `CURRENT_TIMESTAMP` / `CURRENT_DATE` / `CURRENT_TIME` keywords (also in a
//! `DEFAULT` clause) into calls of functions of those names, so the overrides catch them all.
//!
//! - `random()`, `randomblob(N)`: splitmix64 seeded by (entry seed, statement index).
//! - `date`, `time`, `datetime`, `julianday`, `unixepoch`, `strftime`, `timediff` (any arity):
//!   a `'now'` time value (case-insensitive) or a missing one becomes the entry's time, then the
//!   built-in computes the result on a separate plain in-memory connection.
//! - `current_timestamp`, `current_date`, `current_time`: the entry's time.
//!
//! The overrides are not flagged `SQLITE_DETERMINISTIC` (their value changes per entry), so
//! SQLite refuses them where it requires a deterministic function (index expressions, CHECK
//! constraints, generated columns).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

/// The date and time functions whose `'now'` is replaced, and where their time value sits.
const DATE_FUNCTIONS: &[(&str, usize)] = &[
    ("date", 0),
    ("time", 0),
    ("datetime", 0),
    ("julianday", 0),
    ("unixepoch", 0),
    ("strftime", 1),
];

/// The entry-dependent inputs of the overridden functions, shared with their closures.
#[derive(Debug)]
pub(crate) struct Determinism {
    time_ms: AtomicI64,
    rng: Mutex<u64>,
    eval: Mutex<Connection>,
}

impl Determinism {
    /// Registers the overrides on `conn` (the write connection).
    ///
    /// # Errors
    ///
    /// SQLite's error if the in-memory evaluation connection cannot be opened or a function
    /// cannot be registered.
    pub(crate) fn install(conn: &Connection) -> rusqlite::Result<Arc<Determinism>> {
        let det = Arc::new(Determinism {
            time_ms: AtomicI64::new(0),
            rng: Mutex::new(0),
            eval: Mutex::new(Connection::open_in_memory()?),
        });
        let flags = FunctionFlags::SQLITE_UTF8;

        let d = Arc::clone(&det);
        conn.create_scalar_function("random", 0, flags, move |_| Ok(d.next_u64() as i64))?;
        let d = Arc::clone(&det);
        conn.create_scalar_function("randomblob", 1, flags, move |ctx| {
            let n: i64 = ctx.get::<Option<i64>>(0)?.unwrap_or(1);
            let n = randomblob_len(n)?;
            let mut out = Vec::with_capacity(n + 8);
            while out.len() < n {
                out.extend_from_slice(&d.next_u64().to_le_bytes());
            }
            out.truncate(n);
            Ok(out)
        })?;

        for (name, builtin) in [
            ("current_timestamp", "datetime"),
            ("current_date", "date"),
            ("current_time", "time"),
        ] {
            let d = Arc::clone(&det);
            conn.create_scalar_function(name, 0, flags, move |_| {
                let now = SqlValue::Text(d.now_text());
                d.eval_builtin(builtin, &[now])
            })?;
        }
        for &(name, time_pos) in DATE_FUNCTIONS {
            let d = Arc::clone(&det);
            conn.create_scalar_function(name, -1, flags, move |ctx| {
                let mut args = args_of(ctx)?;
                if args.len() <= time_pos {
                    args.push(SqlValue::Text(d.now_text()));
                } else if is_now(&args[time_pos]) {
                    args[time_pos] = SqlValue::Text(d.now_text());
                }
                d.eval_builtin(name, &args)
            })?;
        }
        let d = Arc::clone(&det);
        conn.create_scalar_function("timediff", 2, flags, move |ctx| {
            let mut args = args_of(ctx)?;
            for a in &mut args {
                if is_now(a) {
                    *a = SqlValue::Text(d.now_text());
                }
            }
            d.eval_builtin("timediff", &args)
        })?;
        Ok(det)
    }

    /// Sets the inputs for statement `index` of an entry proposed at `time_ms` with `seed`.
    pub(crate) fn begin_statement(&self, time_ms: i64, seed: u64, index: usize) {
        self.time_ms.store(time_ms, Ordering::SeqCst);
        let mut state = seed ^ splitmix64(&mut (index as u64).wrapping_add(0x5851_f42d));
        // Stir once so that neighbouring seeds give unrelated streams.
        splitmix64(&mut state);
        *self.rng.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn next_u64(&self) -> u64 {
        let mut s = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        splitmix64(&mut s)
    }

    /// The entry's time as SQLite's `YYYY-MM-DD HH:MM:SS.SSS` (UTC).
    fn now_text(&self) -> String {
        format_utc_millis(self.time_ms.load(Ordering::SeqCst))
    }

    /// Evaluates built-in `name(args...)` on the plain in-memory connection.
    fn eval_builtin(&self, name: &str, args: &[SqlValue]) -> rusqlite::Result<SqlValue> {
        let placeholders = vec!["?"; args.len()].join(", ");
        let sql = format!("SELECT {name}({placeholders})");
        let eval = self.eval.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = eval.prepare_cached(&sql)?;
        stmt.query_row(rusqlite::params_from_iter(args.iter()), |row| {
            row.get::<_, SqlValue>(0)
        })
    }
}

fn args_of(ctx: &Context<'_>) -> rusqlite::Result<Vec<SqlValue>> {
    (0..ctx.len()).map(|i| ctx.get::<SqlValue>(i)).collect()
}

/// Whether SQLite's date functions read `v` as `'now'`: they take any value that is not a
/// number as a C string (`sqlite3_value_text`), so a BLOB reads as its bytes and a text ends
/// at its first NUL (`'now' || char(0) || 'x'` is `'now'`); then compare case-insensitively.
fn is_now(v: &SqlValue) -> bool {
    let bytes = match v {
        SqlValue::Text(s) => s.as_bytes(),
        SqlValue::Blob(b) => b.as_slice(),
        _ => return false,
    };
    let c_string = bytes.split(|&b| b == 0).next().unwrap_or_default();
    c_string.eq_ignore_ascii_case(b"now")
}

/// SQLite's largest string or BLOB (`SQLITE_MAX_LENGTH`, the default `SQLITE_LIMIT_LENGTH`
/// of the bundled library), in bytes.
const MAX_LENGTH: i64 = 1_000_000_000;

/// The length of `randomblob(n)`: at least 1 byte, as the built-in's; over SQLite's length
/// limit it fails as the built-in does (`SQLITE_TOOBIG`, a statement error) instead of
/// trying to allocate it (a huge `n` would abort the process on every replica). rusqlite
/// reports a function's error to SQLite with this message; the statement fails with it.
fn randomblob_len(n: i64) -> rusqlite::Result<usize> {
    if n > MAX_LENGTH {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
            Some("string or blob too big".into()),
        ));
    }
    Ok(usize::try_from(n.max(1)).unwrap_or(1))
}

pub(crate) use webfarm_node::hash::splitmix64;

/// `YYYY-MM-DD HH:MM:SS.SSS` of a Unix time in milliseconds (proleptic Gregorian, UTC).
pub(crate) fn format_utc_millis(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = super::values::civil_from_days(days);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{milli:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_millis_like_sqlite() {
        assert_eq!(format_utc_millis(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            format_utc_millis(951_782_400_123),
            "2000-02-29 00:00:00.123"
        );
        assert_eq!(format_utc_millis(-1), "1969-12-31 23:59:59.999");
        let conn = Connection::open_in_memory().unwrap();
        for ms in [1_700_000_000_456_i64, 4_102_444_800_000, 1_234_567_890_999] {
            let sqlite: String = conn
                .query_row(
                    "SELECT strftime('%Y-%m-%d %H:%M:%f', ?1 / 1000.0, 'unixepoch')",
                    [ms],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(format_utc_millis(ms), sqlite);
        }
    }

    #[test]
    fn overrides_follow_the_entry_not_the_clock() {
        let conn = Connection::open_in_memory().unwrap();
        let det = Determinism::install(&conn).unwrap();
        let row = |det: &Determinism, idx| {
            det.begin_statement(1_000_000_000_000, 42, idx);
            conn.query_row(
                "SELECT random(), hex(randomblob(5)), datetime('now'), CURRENT_TIMESTAMP, \
                 current_date, strftime('%s'), julianday(), unixepoch('NOW', '+1 day')",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, f64>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                },
            )
            .unwrap()
        };
        let a = row(&det, 0);
        let b = row(&det, 0);
        assert_eq!(a, b);
        assert_eq!(a.2, "2001-09-09 01:46:40");
        assert_eq!(a.3, "2001-09-09 01:46:40");
        assert_eq!(a.4, "2001-09-09");
        assert_eq!(a.5, "1000000000");
        assert_eq!(a.7, 1_000_000_000 + 86_400);
        assert_eq!(a.1.len(), 10);
        let c = row(&det, 1);
        assert_ne!(a.0, c.0, "another statement gets another random stream");
        // Not 'now': computed as the built-in would.
        let d: String = conn
            .query_row(
                "SELECT datetime('2020-01-02 03:04:05', '+1 hour')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(d, "2020-01-02 04:04:05");
    }

    /// Found while building the `sql` fuzz target: SQLite's date functions read a BLOB, or a text up to
    /// its first NUL, as `'now'`; those reached the wall clock on each replica.
    #[test]
    fn now_as_a_blob_or_before_a_nul_is_the_entry_time() {
        let conn = Connection::open_in_memory().unwrap();
        let det = Determinism::install(&conn).unwrap();
        det.begin_statement(1_000_000_000_000, 1, 0);
        for sql in [
            "SELECT datetime(CAST('now' AS BLOB))",
            "SELECT datetime(x'6e6f77')",
            "SELECT datetime('NOW' || char(0) || 'later')",
            "SELECT strftime('%Y-%m-%d %H:%M:%S', CAST('now' AS BLOB))",
        ] {
            let got: String = conn.query_row(sql, [], |r| r.get(0)).unwrap();
            assert_eq!(got, "2001-09-09 01:46:40", "{sql}");
        }
    }

    /// Found while building the `sql` fuzz target: `randomblob(N)` with a huge N tried to allocate N
    /// bytes (an abort of every replica); SQLite's own answer is "string or blob too big".
    #[test]
    fn a_huge_randomblob_is_a_statement_error() {
        let conn = Connection::open_in_memory().unwrap();
        let _det = Determinism::install(&conn).unwrap();
        let err = conn
            .query_row("SELECT randomblob(1000000000000)", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .unwrap_err();
        // A statement's error (the same on every replica), not a storage fault.
        assert!(err.to_string().contains("too big"), "{err}");
        assert!(crate::sqlite::sql::is_statement_error(&err), "{err}");
        let n: i64 = conn
            .query_row("SELECT length(randomblob(-5))", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn default_current_timestamp_uses_the_entry_time() {
        let conn = Connection::open_in_memory().unwrap();
        let det = Determinism::install(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER, at TEXT DEFAULT CURRENT_TIMESTAMP)")
            .unwrap();
        det.begin_statement(86_400_000 * 365, 7, 0);
        conn.execute("INSERT INTO t (id) VALUES (1)", []).unwrap();
        let at: String = conn
            .query_row("SELECT at FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(at, "1971-01-01 00:00:00");
    }
}
