//! webfarm's database tier: a replicated SQLite database in the manner of rqlite.
//!
//! The db nodes of the farm form one Raft cluster ([openraft]) of replicas: voters, and
//! read-only replicas (learners), whose membership changes at run time (`/join`, `/remove`,
//! `/cluster/...`; see `DESIGN.md`). A write goes to the leader (any node forwards it), becomes
//! a log entry (writes that arrive together share one: group commit), and once a majority of
//! the voters stored it every replica applies it to its own SQLite database. Reads are served
//! from a replica's local copy at the consistency level the client asks for. The HTTP API is
//! rqlite's (bulk and parameterized statements, consistency levels, queued writes, backups and
//! loads), so rqlite clients such as pyrqlite work unchanged.
//!
//! The crate is layered as rqlite is, each layer seeing only the one below:
//! `http` (rqlite's API: parse, call the store, render; forwarding to the leader) → `store`
//! (the facade: writes, the read rules, membership, status; typed errors) → `raft` (openraft's
//! storage, network, formation, membership, group commit, leadership transfer) → `sqlite` (the
//! user's database: applying entries, snapshots, determinism, the authorizer, load and dump).
//!
//! - [`DbNode`]: one node as the CLI runs it (`start`, `health`, `wait`).
//! - [`DbClient`]: the client the web tier uses, with failover (from `webfarm-db-client`).
//! - [`log_store::LogStore`], [`state_machine::StateMachine`]: the storage openraft drives.
//! - [`types`]: the Raft type configuration and the log entry payload.
//!
//! Files in a node's data directory: `raft-log.db` (the Raft log, vote and committed log id,
//! synced before every acknowledgement), `db.sqlite` (the user's database, holding only the
//! user's objects), `db.closed.json` (after a graceful stop: what `db.sqlite` has applied; a
//! start without it rebuilds `db.sqlite` from the snapshot and the log), `snapshot/` (the
//! current snapshot, a SQLite file that records its own log id, and its metadata).
//!
//! ```no_run
//! # async fn demo() -> Result<(), webfarm_db::ClientError> {
//! use std::time::Duration;
//! use webfarm_db::{Consistency, DbClient, Statement};
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

pub mod command;
/// Entry points for the fuzz targets (`fuzz/`); not part of the crate's API.
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod metrics;
mod node;
mod raft;
mod sqlite;
mod store;
pub mod types;

pub use http::auth::{bcrypt_slots, BCRYPT_WAIT};
pub use node::{cluster_members, raft_config, DbError, DbNode};
pub use raft::{log_store, state_machine};
/// The client API, defined in `webfarm-db-client` (which needs neither Raft nor SQLite).
pub use webfarm_db_client::{
    ClientError, Consistency, DbClient, ExecuteResult, QueryResult, Rows, Statement, WriteResult,
};
