//! The HTTP layer: rqlite's API on each db node's main address.

pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod backup;
pub(crate) mod cluster;
pub(crate) mod forward;
pub(crate) mod queue;
pub(crate) mod read;
pub(crate) mod render;
pub(crate) mod request;
pub(crate) mod service;
pub(crate) mod status;
