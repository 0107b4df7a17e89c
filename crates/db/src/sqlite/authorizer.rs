//! What user SQL may do on a connection we manage: the authorizer's policy.
//!
//! User SQL runs inside the applier's transaction on the write connection, and on pooled
//! read connections. It may not end or nest our transaction, attach files, create or touch a
//! table named `_webfarm_raft` (the name under which snapshot files carry what they applied,
//! see [`crate::sqlite::applied`]), nor change how a connection behaves: a per-connection setting
//! (`PRAGMA recursive_triggers = ON`, `synchronous`, `case_sensitive_like`...) is not part of
//! the database file, so a replica that restarts, or that happened to apply the entry in
//! another batch, would lose it and compute different results from the same log.
//!
//! - Reading a setting (`PRAGMA name`, no value) is allowed, except the pragmas that act
//!   ([`ACTING`]).
//! - A pragma with a value is allowed only when it is a query that takes an argument
//!   (`table_info(t)`, `index_list(t)`, `integrity_check(10)`...; [`QUERIES_WITH_ARGUMENT`]),
//!   a setting stored in the database file itself (`user_version`, `application_id`), or
//!   `foreign_keys`, which the applier keeps in its applied state and sets again on every
//!   open, between two entries, identically on every replica ([`foreign_keys_value`]).
//! - [`DENIED`] is refused outright, also to read: it would change the journal, let user SQL
//!   write the schema, or make later statements fail with errors that look like a storage
//!   fault (`max_page_count` gives "database or disk is full").
//!
//! SQLite only says "not authorized"; [`Guard`] keeps the reason of the last refusal so the
//! statement's error can say what was refused and why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::Connection;

use crate::sqlite::applied::RECORD_TABLE;

/// Pragmas refused even to read.
pub(crate) const DENIED: [&str; 8] = [
    "journal_mode",
    "locking_mode",
    "writable_schema",
    "query_only",
    "max_page_count",
    "hard_heap_limit",
    "temp_store_directory",
    "data_store_directory",
];

/// Pragmas that act when run without a value: their effect depends on the connection's
/// history or state, not on the log.
pub(crate) const ACTING: [&str; 4] = [
    "optimize",
    "wal_checkpoint",
    "shrink_memory",
    "incremental_vacuum",
];

/// Pragmas whose value is an argument of a query, not a setting.
pub(crate) const QUERIES_WITH_ARGUMENT: [&str; 12] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "pragma_list",
    "function_list",
];

/// Settings kept in the database file, so replicated by the log like any write.
pub(crate) const IN_FILE: [&str; 2] = ["user_version", "application_id"];

/// The SQLite boolean a pragma value stands for: `on/off`, `yes/no`, `true/false`, `1/0`,
/// quoted or not; `None` otherwise.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    let v = value
        .trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .to_ascii_lowercase();
    match v.as_str() {
        "on" | "yes" | "true" | "1" => Some(true),
        "off" | "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// The value a `PRAGMA foreign_keys = v` (or `(v)`) sets, when the authorizer saw one.
pub(crate) fn foreign_keys_value(name: &str, value: Option<&str>) -> Option<bool> {
    if name.eq_ignore_ascii_case("foreign_keys") {
        value.and_then(parse_bool)
    } else {
        None
    }
}

fn is_in(list: &[&str], name: &str) -> bool {
    list.iter().any(|p| name.eq_ignore_ascii_case(p))
}

/// Why user SQL may not run `PRAGMA name [= value]`; `None` when it may.
pub(crate) fn pragma_refusal(name: &str, value: Option<&str>) -> Option<String> {
    if is_in(&DENIED, name) {
        return Some(format!(
            "PRAGMA {name} is not allowed: webfarm manages the journal, the schema and the \
             file limits of its databases"
        ));
    }
    match value {
        None if is_in(&ACTING, name) => Some(format!(
            "PRAGMA {name} is not allowed: its effect depends on this connection's history, \
             so replicas would differ"
        )),
        None => None,
        Some(_) if is_in(&QUERIES_WITH_ARGUMENT, name) || is_in(&IN_FILE, name) => None,
        Some(v) if name.eq_ignore_ascii_case("foreign_keys") => match parse_bool(v) {
            Some(_) => None,
            None => Some(format!("PRAGMA foreign_keys = {v}: expected ON or OFF")),
        },
        Some(_) => Some(format!(
            "PRAGMA {name} cannot be set: it is a setting of one connection, which a \
             restarted replica would not have, so replicas would differ; settable are \
             foreign_keys, user_version and application_id"
        )),
    }
}

/// Why user SQL may not do `action`; `None` when it may.
fn refusal(action: &AuthAction<'_>) -> Option<String> {
    match action {
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Some(
            "BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE are not allowed: each request \
             runs in a transaction of its own; use the transaction flag"
                .into(),
        ),
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Some("ATTACH and DETACH are not allowed".into())
        }
        AuthAction::CreateTable { table_name }
        | AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::DropTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::CreateTrigger { table_name, .. }
        | AuthAction::CreateIndex { table_name, .. }
            if table_name.eq_ignore_ascii_case(RECORD_TABLE) =>
        {
            Some(format!("{RECORD_TABLE} is a name webfarm keeps for itself"))
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => pragma_refusal(pragma_name, *pragma_value),
        _ => None,
    }
}

/// The authorizer of a connection we manage, and what it saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    /// Strict while true (user SQL); everything is allowed otherwise (our own statements).
    user: Arc<AtomicBool>,
    /// Why the last refused action was refused.
    refused: Arc<Mutex<Option<String>>>,
    /// `Some(v)` once an authorized `PRAGMA foreign_keys = v` was prepared.
    foreign_keys: Arc<Mutex<Option<bool>>>,
}

impl Guard {
    /// A guard that is strict until [`Guard::set_user`]`(false)`.
    pub(crate) fn strict() -> Guard {
        let g = Guard::default();
        g.user.store(true, Ordering::SeqCst);
        g
    }

    /// Installs the authorizer on `conn`.
    pub(crate) fn install(&self, conn: &Connection) {
        let g = self.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| g.authorize(&ctx)));
    }

    fn authorize(&self, ctx: &AuthContext<'_>) -> Authorization {
        if !self.user.load(Ordering::SeqCst) {
            return Authorization::Allow;
        }
        match refusal(&ctx.action) {
            Some(why) => {
                *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                Authorization::Deny
            }
            None => {
                if let AuthAction::Pragma {
                    pragma_name,
                    pragma_value,
                } = ctx.action
                {
                    if let Some(v) = foreign_keys_value(pragma_name, pragma_value) {
                        *self
                            .foreign_keys
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(v);
                    }
                }
                Authorization::Allow
            }
        }
    }

    /// Switches between user SQL (strict) and our own statements.
    pub(crate) fn set_user(&self, user: bool) {
        self.user.store(user, Ordering::SeqCst);
    }

    /// Forgets what the authorizer saw (before a statement is prepared).
    pub(crate) fn clear(&self) {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self
            .foreign_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Why the last refused action was refused, taken.
    pub(crate) fn take_refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The `foreign_keys` value a prepared statement sets, taken.
    pub(crate) fn take_foreign_keys(&self) -> Option<bool> {
        self.foreign_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// SQLite's "not authorized", replaced by the reason the guard kept.
pub(crate) fn explain(message: String, guard: &Guard) -> String {
    match guard.take_refusal() {
        Some(why) if message.contains("not authorized") => why,
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settings_that_replicate_may_be_set() {
        assert_eq!(pragma_refusal("foreign_keys", Some("ON")), None);
        assert_eq!(pragma_refusal("foreign_keys", None), None);
        assert!(pragma_refusal("foreign_keys", Some("sometimes")).is_some());
        assert_eq!(pragma_refusal("user_version", Some("3")), None);
        assert_eq!(pragma_refusal("table_info", Some("t")), None);
        assert_eq!(pragma_refusal("recursive_triggers", None), None);
        for p in [
            "recursive_triggers",
            "synchronous",
            "case_sensitive_like",
            "reverse_unordered_selects",
            "defer_foreign_keys",
            "busy_timeout",
        ] {
            assert!(pragma_refusal(p, Some("1")).is_some(), "{p}");
        }
        assert!(pragma_refusal("optimize", None).is_some());
        assert!(pragma_refusal("journal_mode", None).is_some());
    }

    #[test]
    fn reads_sqlite_booleans() {
        assert_eq!(parse_bool("ON"), Some(true));
        assert_eq!(parse_bool("'off'"), Some(false));
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("2"), None);
    }
}
