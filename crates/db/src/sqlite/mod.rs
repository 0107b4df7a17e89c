//! The SQLite layer: the user's database, applying log entries to it, and its snapshots.

pub(crate) mod applied;
pub(crate) mod apply;
pub(crate) mod authorizer;
pub(crate) mod database;
pub(crate) mod determinism;
pub(crate) mod dump;
pub(crate) mod load;
pub(crate) mod snapshot;
pub(crate) mod sql;
pub(crate) mod values;
