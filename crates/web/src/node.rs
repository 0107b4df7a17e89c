//! [`WebNode`]: one web node's lifecycle (start, health, graceful stop).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;
use webfarm_config::Role;
use webfarm_db_client::DbClient;
use webfarm_node::metrics::Scrape;
use webfarm_node::sendfile::FileBacked;
use webfarm_node::status::{RoleStatus, WebStatus};
use webfarm_node::tls::{PlainListener, TlsListener};
use webfarm_node::{BindError, Health, NodeContext};

use crate::app::{self, App};
use crate::http1;
use crate::metrics::WebMetrics;
use crate::schema::Schema;
use crate::static_files;

/// Why a web node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Internal TLS is on and this node's certificate cannot be used (the error names the
    /// file).
    #[error("internal TLS: {0}")]
    Tls(#[from] webfarm_node::tls::TlsError),
    /// The node given to [`WebNode::start`] does not have role `web`.
    #[error("node {node:?} has role {role}; only a web node runs the web server")]
    NotAWebNode {
        /// The node's name.
        node: String,
        /// Its role.
        role: Role,
    },
    /// The farm has no db node for the app to use.
    #[error(
        "web node {node:?}: the farm has no db node; add a [[nodes]] table with role = \"db\""
    )]
    NoDbNode {
        /// The node's name.
        node: String,
    },
    /// The code base directory (`[web] root`) is missing or unreadable.
    #[error(
        "web node {node:?}: the web root {} cannot be used: {reason}; set [web] root in the \
         topology file to the directory of the site's files (the repository's site/)",
        path.display()
    )]
    Root {
        /// The node's name.
        node: String,
        /// The configured root.
        path: PathBuf,
        /// Why: `does not exist`, `is not a directory`, or the OS error.
        reason: String,
    },
    /// The node's name cannot be sent as an `X-Served-By` value.
    #[error("node name {node:?} cannot be an X-Served-By header value")]
    NodeName {
        /// The node's name.
        node: String,
    },
    /// The HTTP port could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The HTTP server stopped with an I/O error.
    #[error("web node {node:?}: the HTTP server on {addr} failed: {source}")]
    Serve {
        /// The node's name.
        node: String,
        /// The HTTP address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A task of the node panicked or was cancelled.
    #[error("web node {node:?}: the {task} task ended abnormally: {message}")]
    Task {
        /// The node's name.
        node: String,
        /// Which task: `http` or `schema`.
        task: &'static str,
        /// The join error.
        message: String,
    },
}

/// A running web node: the HTTP server (static files + the foobar app) on
/// `address:port`, talking to the db cluster through a [`DbClient`].
#[derive(Debug)]
pub struct WebNode {
    name: String,
    addr: SocketAddr,
    health: Arc<WebHealth>,
    server: JoinHandle<std::io::Result<()>>,
    schema_task: JoinHandle<()>,
}

impl WebNode {
    /// Checks the web root, binds `ctx.node.main_addr()`, and starts serving HTTP/1.1 until
    /// `ctx.shutdown` fires. The `messages` table is created in the background, retried until
    /// the database answers; until then [`Health::ready`] says why not.
    ///
    /// Reads go first to the db node with this node's index among web nodes (web-1 → db-1,
    /// web-2 → db-2, wrapping around); writes go to the primary. A call that gets no answer
    /// within `[web] db_timeout` becomes a 503.
    ///
    /// # Errors
    ///
    /// [`WebError::NotAWebNode`], [`WebError::NoDbNode`], [`WebError::Root`] when the root is
    /// missing or not a directory, [`WebError::Bind`] when the port is taken.
    pub async fn start(ctx: NodeContext) -> Result<WebNode, WebError> {
        let node = &ctx.node;
        let name = node.name.clone();
        if node.role != Role::Web {
            return Err(WebError::NotAWebNode {
                node: name,
                role: node.role,
            });
        }
        let root = ctx.farm.web.root.clone();
        check_root(&name, &root).await?;

        let db_nodes: Vec<SocketAddr> = ctx
            .farm
            .nodes_with_role(Role::Db)
            .map(webfarm_config::Node::main_addr)
            .collect();
        if db_nodes.is_empty() {
            return Err(WebError::NoDbNode { node: name });
        }
        let web_index = ctx
            .farm
            .nodes_with_role(Role::Web)
            .position(|n| n.name == name)
            .unwrap_or(0);
        let read_from = web_index % db_nodes.len();
        let read_addr = db_nodes[read_from];
        let tls = webfarm_node::tls::identity(&ctx.farm, &name)?;
        // The db API's credentials of this tier (`[web] db_user`; crates/db/src/http/auth.rs).
        let http = webfarm_node::http::HttpClient::for_identity(tls.as_ref())
            .with_authorization(ctx.auth.db_credentials.clone());
        let store = DbClient::with_http(db_nodes.clone(), read_from, ctx.farm.web.db_timeout, http);
        let server_tls = tls.and_then(|t| t.server);

        let listener = webfarm_node::bind(node.main_addr(), "web http").await?;
        let addr = listener.local_addr().unwrap_or_else(|_| node.main_addr());

        let schema = Arc::new(Schema::default());
        let requests = Arc::new(AtomicU64::new(0));
        let metrics = Arc::new(WebMetrics::default());
        let app = App {
            metrics: metrics.clone(),
            store: store.clone(),
            name: Arc::from(name.as_str()),
            schema: schema.clone(),
            files: Arc::new(static_files::StaticFiles::new(&root)),
        };
        let sendfile: Arc<dyn FileBacked> = app.files.clone();
        let service = app::WebService::new(app, requests.clone())
            .map_err(|_| WebError::NodeName { node: name.clone() })?;

        let shutdown = ctx.shutdown.clone();
        let server = tokio::spawn(async move {
            let until = async move { shutdown.wait().await };
            match server_tls {
                Some(config) => {
                    let listener = TlsListener::new(listener, config)?;
                    http1::serve(listener, service, until).await
                }
                None => {
                    let files = Some(sendfile);
                    http1::serve(PlainListener { listener, files }, service, until).await
                }
            }
        });
        let schema_task = tokio::spawn(
            schema
                .clone()
                .create_until_done(store.clone(), ctx.shutdown.clone()),
        );
        tracing::info!(
            node = %name,
            http = %addr,
            root = %root.display(),
            read_from = %read_addr,
            "web node serving"
        );
        let health = Arc::new(WebHealth {
            http: addr,
            root,
            db_nodes,
            read_from: read_addr,
            requests,
            schema,
            metrics,
            db: store,
        });
        Ok(WebNode {
            name,
            addr,
            health,
            server,
            schema_task,
        })
    }

    /// The address the HTTP server listens on.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Readiness and status for the admin server.
    #[must_use]
    pub fn health(&self) -> Arc<dyn Health> {
        self.health.clone()
    }

    /// Returns once `ctx.shutdown` fired and the server stopped: no new connection is
    /// accepted, requests in flight finish (a database call may take up to `db_timeout`).
    ///
    /// # Errors
    ///
    /// [`WebError::Serve`] if the server failed, [`WebError::Task`] if a task panicked.
    pub async fn wait(self) -> Result<(), WebError> {
        let task_error = |task, e: tokio::task::JoinError| WebError::Task {
            node: self.name.clone(),
            task,
            message: e.to_string(),
        };
        let served = self.server.await.map_err(|e| task_error("http", e))?;
        served.map_err(|source| WebError::Serve {
            node: self.name.clone(),
            addr: self.addr,
            source,
        })?;
        self.schema_task
            .await
            .map_err(|e| task_error("schema", e))?;
        tracing::info!(node = %self.name, "web node stopped");
        Ok(())
    }
}

async fn check_root(node: &str, root: &std::path::Path) -> Result<(), WebError> {
    let problem = match tokio::fs::metadata(root).await {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "it is not a directory".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "it does not exist".to_string(),
        Err(e) => e.to_string(),
    };
    Err(WebError::Root {
        node: node.to_string(),
        path: root.to_path_buf(),
        reason: problem,
    })
}

/// What the admin server shows of a web node.
#[derive(Debug)]
struct WebHealth {
    http: SocketAddr,
    root: PathBuf,
    db_nodes: Vec<SocketAddr>,
    /// The db node reads go to first.
    read_from: SocketAddr,
    requests: Arc<AtomicU64>,
    schema: Arc<Schema>,
    /// What the app counts, for `/metrics`.
    metrics: Arc<WebMetrics>,
    /// The app's database client (its retries and failovers).
    db: DbClient,
}

impl Health for WebHealth {
    fn ready(&self) -> Result<(), String> {
        self.schema.ready()
    }

    fn status(&self) -> RoleStatus {
        RoleStatus::Web(WebStatus {
            http: self.http.to_string(),
            root: self.root.display().to_string(),
            db_nodes: self.db_nodes.iter().map(ToString::to_string).collect(),
            read_from: self.read_from.to_string(),
            requests: self.requests.load(Ordering::Relaxed),
            database: match self.schema.ready() {
                Ok(()) => "reachable".to_string(),
                Err(e) => e,
            },
        })
    }

    /// The `webfarm_web_*` families ([`crate::metrics`]).
    fn metrics(&self, scrape: &mut Scrape<'_>) -> std::fmt::Result {
        self.metrics.write(self.db.stats(), scrape)
    }
}
