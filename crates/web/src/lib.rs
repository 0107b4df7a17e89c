//! webfarm's web tier: the web server, the application server and the code base of
//! `www.foobar.com`, in one process per web node.
//!
//! A [`WebNode`] serves HTTP/1.1 on its node's `address:port` (axum 0.8):
//!
//! - **Static files** of the code base (`[web] root`, the repository's `site/`) through
//!   tower-http's `ServeDir`: content types, `Last-Modified`, ranges, plus an `ETag` from the
//!   file's size and modification time, and 304 answers to `If-None-Match` /
//!   `If-Modified-Since`. A file served before and unchanged on disk is answered from memory
//!   ahead of the router; one of 16 KiB or more leaves with `sendfile(2)`, as from nginx.
//! - **The foobar app**, a message board kept in the replicated database:
//!   `GET /` (server-rendered page, "Served by web-2"), `POST /messages` (form → 303 to `/`),
//!   `GET /api/messages?limit=N`, `POST /api/messages` (201 + `Location`),
//!   `GET /api/messages/{id}`, and `GET /healthz` for the load balancer's health check.
//! - **`X-Served-By: <node name>`** on every response, errors and 404s included.
//!
//! Writes go to the database primary; reads go to this node's own replica (web-1 reads from
//! db-1, web-2 from db-2...) with [`webfarm_db_client::Consistency::None`]. A `wf_index` cookie
//! carries the Raft log index of a browser's last write so its later reads ask for at least
//! that index (read-your-writes); reads also ask for at least the index at which this node
//! created the `messages` table, so a replica that lags behind it waits instead of answering
//! "no such table". A cookie beyond the database's log (forged, or from before the data was
//! wiped) is dropped. When no db node answers within `[web] db_timeout` (through a failover,
//! say) the app answers 503 with a generic reason (the detail goes to the log), never a 500.
//!
//! The app reaches the database only through [`MessageStore`], the small trait this crate
//! declares and implements for [`webfarm_db_client::DbClient`].
//!
//! ```no_run
//! # async fn run(ctx: webfarm_node::NodeContext) -> Result<(), webfarm_web::WebError> {
//! let node = webfarm_web::WebNode::start(ctx).await?; // binds the port, checks the root
//! let health = node.health(); // for the admin server: /readyz, /status
//! node.wait().await // returns after ctx.shutdown fired and requests in flight finished
//! # }
//! ```

mod api;
mod app;
mod conditional;
mod confine;
mod errors;
mod file_cache;
mod html;
mod http1;
mod metrics;
mod node;
mod pages;
mod read_your_writes;
mod schema;
mod static_files;
mod store;
mod validate;

pub use node::{WebError, WebNode};
pub use store::{Fetched, Message, MessageStore, NewMessage, StoreError, Stored};
