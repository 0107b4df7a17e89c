//! The message board's data access: the [`MessageStore`] trait the app needs, and its
//! implementation on the db cluster's client ([`DbClient`]).
//!
//! The consumer declares the interface it needs (rqlite's `http/service.go` style): handlers
//! see four operations and one error type, never SQL, Raft indexes aside, or node addresses.

use std::future::Future;

use serde::Serialize;
use serde_json::{json, Value};
use webfarm_db_client::{ClientError, Consistency, DbClient, Rows, Statement};

/// The table of the message board. `created_at` has no SQL default on purpose: the web node
/// supplies it, because `CURRENT_TIMESTAMP` would be evaluated again by every replica when it
/// applies the log entry, and the copies would differ.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS messages (\
     id INTEGER PRIMARY KEY AUTOINCREMENT, \
     author TEXT NOT NULL, \
     text TEXT NOT NULL, \
     created_at TEXT NOT NULL, \
     served_by TEXT NOT NULL)";

const INSERT: &str =
    "INSERT INTO messages (author, text, created_at, served_by) VALUES (?, ?, ?, ?)";

const LATEST: &str =
    "SELECT id, author, text, created_at, served_by FROM messages ORDER BY id DESC LIMIT ?";

const BY_ID: &str = "SELECT id, author, text, created_at, served_by FROM messages WHERE id = ?";

/// One stored message, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Row id, assigned by the database; increases with every message.
    pub id: i64,
    /// Who wrote it: 1 to 64 characters.
    pub author: String,
    /// The message: 1 to 1000 characters, newlines as `\n`.
    pub text: String,
    /// When the web node took it: UTC, RFC 3339 (`2025-01-31T12:00:00Z`).
    pub created_at: String,
    /// Name of the web node that took it (`web-2`).
    pub served_by: String,
}

/// A validated message about to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Who wrote it.
    pub author: String,
    /// The message.
    pub text: String,
    /// UTC, RFC 3339.
    pub created_at: String,
    /// Name of the web node taking it.
    pub served_by: String,
}

/// A message that was stored, and the Raft log index of the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The message as stored.
    pub message: Message,
    /// Raft log index of the write: a read with `min_index` at least this sees the message.
    pub raft_index: u64,
}

/// What a read returned, and whether its read-your-writes index was unknown to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched<T> {
    /// The value read.
    pub value: T,
    /// True when the `min_index` asked for is beyond the database's log (a stale or forged
    /// `wf_index` cookie, or one from before the data was wiped): the read was made at the
    /// database's commit index instead, and the cookie should be dropped.
    pub index_reset: bool,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No db node answered within the web tier's `db_timeout` (the app answers 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused a statement, or answered with rows of an unexpected shape (the app
    /// answers 500 and logs it).
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// True for [`StoreError::Unavailable`]: retrying later may succeed.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// What a site visitor may read: no node address or internal detail (those go to the
    /// log). `database unavailable: ...` for [`StoreError::Unavailable`]; the SQL error for
    /// [`StoreError::Database`].
    #[must_use]
    pub fn public_message(&self) -> String {
        match self {
            StoreError::Unavailable(_) => {
                "database unavailable: no database node answered in time; try again in a few seconds"
                    .into()
            }
            StoreError::Database(_) => self.to_string(),
        }
    }
}

impl From<ClientError> for StoreError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unavailable {
                tried_for,
                last_error,
            } => StoreError::Unavailable(format!(
                "no db node answered within {tried_for:.1?} (last error: {last_error})"
            )),
            ClientError::Statement { index, message } => {
                StoreError::Database(format!("statement {index} refused: {message}"))
            }
        }
    }
}

/// What the message board needs from a database.
///
/// `min_index` on reads is read-your-writes: the answering database copy must have applied at
/// least that Raft log index (see [`Stored::raft_index`]).
pub trait MessageStore: Clone + Send + Sync + 'static {
    /// Creates the `messages` table if it does not exist; returns the Raft log index of that
    /// write: a read with `min_index` at least this finds the table on any replica.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] while the database cannot be reached.
    fn create_schema(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores `message`; returns it with its id and the write's Raft log index.
    ///
    /// # Errors
    ///
    /// [`StoreError`]; `Unavailable` may mean the write was applied but its answer was lost.
    fn insert(
        &self,
        message: &NewMessage,
    ) -> impl Future<Output = Result<Stored, StoreError>> + Send;

    /// The `limit` newest messages, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn latest(
        &self,
        limit: u32,
        min_index: Option<u64>,
    ) -> impl Future<Output = Result<Fetched<Vec<Message>>, StoreError>> + Send;

    /// The message with this id, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    fn get(
        &self,
        id: i64,
        min_index: Option<u64>,
    ) -> impl Future<Output = Result<Fetched<Option<Message>>, StoreError>> + Send;
}

/// Writes go to the primary (the client finds the leader); reads use
/// [`Consistency::None`] on this web node's preferred replica, with `min_index`.
impl MessageStore for DbClient {
    async fn create_schema(&self) -> Result<u64, StoreError> {
        Ok(self.execute(&[Statement::new(SCHEMA)]).await?.raft_index)
    }

    async fn insert(&self, m: &NewMessage) -> Result<Stored, StoreError> {
        let stmt = Statement::with_params(
            INSERT,
            vec![
                json!(m.author),
                json!(m.text),
                json!(m.created_at),
                json!(m.served_by),
            ],
        );
        let result = self.execute(&[stmt]).await?;
        let Some(write) = result.results.first() else {
            return Err(StoreError::Database(
                "the database returned no result for the insert".into(),
            ));
        };
        Ok(Stored {
            message: Message {
                id: write.last_insert_id,
                author: m.author.clone(),
                text: m.text.clone(),
                created_at: m.created_at.clone(),
                served_by: m.served_by.clone(),
            },
            raft_index: result.raft_index,
        })
    }

    async fn latest(
        &self,
        limit: u32,
        min_index: Option<u64>,
    ) -> Result<Fetched<Vec<Message>>, StoreError> {
        let stmt = Statement::with_params(LATEST, vec![json!(limit)]);
        let r = self.query_full(&stmt, Consistency::None, min_index).await?;
        Ok(Fetched {
            value: messages_from_rows(&r.rows)?,
            index_reset: r.min_index_reset.is_some(),
        })
    }

    async fn get(
        &self,
        id: i64,
        min_index: Option<u64>,
    ) -> Result<Fetched<Option<Message>>, StoreError> {
        let stmt = Statement::with_params(BY_ID, vec![json!(id)]);
        let r = self.query_full(&stmt, Consistency::None, min_index).await?;
        Ok(Fetched {
            value: messages_from_rows(&r.rows)?.into_iter().next(),
            index_reset: r.min_index_reset.is_some(),
        })
    }
}

/// Decodes rows of `id, author, text, created_at, served_by`, found by column name.
fn messages_from_rows(rows: &Rows) -> Result<Vec<Message>, StoreError> {
    let col = |name: &str| {
        rows.columns.iter().position(|c| c == name).ok_or_else(|| {
            StoreError::Database(format!(
                "the answer has no column {name:?} (columns: {:?})",
                rows.columns
            ))
        })
    };
    let (id, author, text, created_at, served_by) = (
        col("id")?,
        col("author")?,
        col("text")?,
        col("created_at")?,
        col("served_by")?,
    );
    rows.values
        .iter()
        .map(|row| {
            let cell = |i: usize| row.get(i).unwrap_or(&Value::Null);
            let string = |i: usize, name: &str| {
                cell(i).as_str().map(str::to_string).ok_or_else(|| {
                    StoreError::Database(format!("column {name:?} is not text: {}", cell(i)))
                })
            };
            Ok(Message {
                id: cell(id).as_i64().ok_or_else(|| {
                    StoreError::Database(format!("column \"id\" is not an integer: {}", cell(id)))
                })?,
                author: string(author, "author")?,
                text: string(text, "text")?,
                created_at: string(created_at, "created_at")?,
                served_by: string(served_by, "served_by")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rows(columns: &[&str], values: Vec<Vec<Value>>) -> Rows {
        Rows {
            columns: columns.iter().map(ToString::to_string).collect(),
            types: vec![String::new(); columns.len()],
            values,
        }
    }

    #[test]
    fn rows_decode_by_column_name_in_any_order() {
        let r = rows(
            &["served_by", "id", "text", "author", "created_at"],
            vec![vec![
                json!("web-1"),
                json!(7),
                json!("hi"),
                json!("ann"),
                json!("2025-01-01T00:00:00Z"),
            ]],
        );
        let m = messages_from_rows(&r).unwrap();
        assert_eq!(
            m,
            vec![Message {
                id: 7,
                author: "ann".into(),
                text: "hi".into(),
                created_at: "2025-01-01T00:00:00Z".into(),
                served_by: "web-1".into(),
            }]
        );
    }

    #[test]
    fn bad_rows_are_database_errors() {
        let missing = rows(&["id"], vec![]);
        let e = messages_from_rows(&missing).unwrap_err();
        assert!(e.to_string().contains("no column \"author\""), "{e}");
        let wrong = rows(
            &["id", "author", "text", "created_at", "served_by"],
            vec![vec![
                json!("x"),
                json!("a"),
                json!("t"),
                json!("c"),
                json!("s"),
            ]],
        );
        let e = messages_from_rows(&wrong).unwrap_err();
        assert!(!e.is_unavailable());
        assert!(e.to_string().contains("\"id\" is not an integer"), "{e}");
    }

    #[test]
    fn client_errors_keep_their_kind() {
        let e = StoreError::from(ClientError::Unavailable {
            tried_for: Duration::from_millis(200),
            last_error: "connection refused".into(),
        });
        assert!(e.is_unavailable());
        assert!(e.to_string().starts_with("database unavailable: "), "{e}");
        assert!(e.to_string().contains("connection refused"), "{e}");
        assert!(
            !e.public_message().contains("connection refused"),
            "{}",
            e.public_message()
        );
        assert!(e.public_message().starts_with("database unavailable: "));
        let e = StoreError::from(ClientError::Statement {
            index: 0,
            message: "no such table: messages".into(),
        });
        assert!(!e.is_unavailable());
        assert!(e.to_string().contains("no such table"), "{e}");
    }
}
