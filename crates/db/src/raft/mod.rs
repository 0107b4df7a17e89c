//! The Raft layer: openraft's storage, network and membership for the db cluster.

pub(crate) mod formation;
pub(crate) mod group_commit;
pub(crate) mod health;
pub mod log_store;
pub(crate) mod membership;
pub(crate) mod network;
pub mod state_machine;
