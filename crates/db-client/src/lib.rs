//! The db tier's API as types, and its clients.
//!
//! A db node speaks rqlite's HTTP API (<https://rqlite.io/docs/api/>). This crate holds what
//! travels on it, so that the server (`webfarm-db`) writes and its clients (`webfarm-web`,
//! the `webfarm` binary) read the same types, and a client needs neither Raft nor SQLite:
//!
//! - [`Statement`], [`Params`]: SQL and its parameters ([`Statement::wire`]: rqlite's form).
//! - [`Consistency`]: the five read levels (`none`, `weak`, `linearizable`, `strong`, `auto`).
//! - [`answer`]: results ([`Rows`], [`WriteResult`], [`Outcome`]) and the JSON answers
//!   ([`Answer`], [`StatementAnswer`], [`ErrorAnswer`]).
//! - [`status`]: `/status` ([`StatusAnswer`]) and `/nodes`; [`membership`]: `/join`,
//!   `/remove`, `/cluster/...` requests and answers ([`ClusterView`]).
//! - [`DbClient`]: the web tier's client, with failover and read-your-writes ([`client`]).
//! - [`AdminClient`]: membership, status, backup and one-node SQL for operators ([`admin`]).
//!
//! Whether a member votes is [`Replica`] (`voter` or `learner`), the topology file's word.
//!
//! ```no_run
//! # async fn demo() -> Result<(), webfarm_db_client::ClientError> {
//! use std::time::Duration;
//! use webfarm_db_client::{Consistency, DbClient, Statement};
//!
//! let db = DbClient::new(vec!["127.0.1.31:4001".parse().unwrap()], 0, Duration::from_secs(10));
//! let w = db
//!     .execute(&[Statement::with_params(
//!         "INSERT INTO messages (author, text) VALUES (?, ?)",
//!         vec!["ada".into(), "hello".into()],
//!     )])
//!     .await?;
//! let rows = db
//!     .query(&Statement::new("SELECT * FROM messages"), Consistency::Weak, Some(w.raft_index))
//!     .await?;
//! # let _ = rows;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod answer;
pub mod client;
mod level;
pub mod membership;
mod statement;
pub mod status;

pub use admin::{AdminClient, AdminError, Target};
pub use answer::{
    Answer, ErrorAnswer, Outcome, Reply, Rows, StatementAnswer, StatementResult, Types, WriteResult,
};
pub use client::{ClientError, ClientStats, DbClient, ExecuteResult, QueryResult, ATTEMPT_TIMEOUT};
pub use level::{Consistency, UnknownLevel};
pub use membership::{
    ChangeAnswer, ClusterMember, ClusterView, JoinRequest, RemoveAnswer, StepDownAnswer,
};
pub use statement::{request_body, Params, Statement, Wire};
pub use status::StatusAnswer;
pub use webfarm_config::Replica;
