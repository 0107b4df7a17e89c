//! [`DbNode`]: one member of the db cluster, as the CLI starts it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use tokio::task::JoinHandle;
use webfarm_config::{DbSettings, Farm, Replica, Role};
use webfarm_node::{Health, NodeContext, Shutdown, ShutdownTrigger};

use crate::http::api::{self, Api};
use crate::http::auth::ApiAuth;
use crate::metrics::DbMetrics;
use crate::raft::formation::{self, Formation};
use crate::raft::health::DbHealth;
use crate::raft::log_store::LogStore;
use crate::raft::network::{self, Network};
use crate::raft::state_machine::StateMachine;
use crate::sqlite::database::Database;
use crate::store::{Parts, Store};
use crate::types::{node_id, NodeInfo, Raft};

/// How long `wait` lets each HTTP server finish its in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a db node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Internal TLS is on and this node's certificate cannot be used (the error names the
    /// file).
    #[error("internal TLS: {0}")]
    Tls(#[from] webfarm_node::tls::TlsError),
    /// The node given to [`DbNode::start`] does not have role `db`.
    #[error("node {name:?} has role {role}, not db; start it with its own role")]
    NotDbNode {
        /// The node's name.
        name: String,
        /// Its role.
        role: Role,
    },
    /// Two db node names hash to the same Raft node id.
    #[error("db nodes {a:?} and {b:?} get the same Raft node id (FNV-1a of the name); rename one")]
    IdCollision {
        /// One name.
        a: String,
        /// The other.
        b: String,
    },
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] webfarm_node::BindError),
    /// A data file could not be opened: corrupted, not a database, not writable.
    #[error(
        "cannot open the db storage in {dir}: {source}; check the files' permissions and the \
         disk, then restore the directory from a backup, or remove the node from the cluster \
         and re-add it (starting it with an empty directory could lose acknowledged writes)"
    )]
    Storage {
        /// The node's data directory.
        dir: PathBuf,
        /// What failed: the file and its SQLite or I/O error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The `[db]` settings do not make a valid Raft configuration.
    #[error("invalid [db] settings: {0}")]
    Config(String),
    /// This node's Raft state is empty while the cluster holds data it had: its data
    /// directory was lost. Rejoining as an empty member could lose acknowledged writes; the
    /// way back is `webfarm db remove NODE`, then `webfarm db add NODE` (see
    /// `crates/db/DESIGN.md`).
    #[error(
        "db node {node:?} has no Raft state in {dir}, but db node {peer:?} (term {term}, last \
         log index {last_log_index}) shows that the cluster holds data this node had: its data \
         is gone while the cluster exists, and it will not rejoin as an empty member, which \
         could lose acknowledged writes; restore its data directory from a backup, or remove \
         it from the cluster (`webfarm db remove {node}`, with a majority of the voters \
         running), start it with the empty directory, then add it back (`webfarm db add \
         {node}`): it catches up as a learner and is promoted"
    )]
    DataLost {
        /// This node's name.
        node: String,
        /// The peer that reported the cluster's data.
        peer: String,
        /// The peer's term.
        term: u64,
        /// The peer's last log index.
        last_log_index: u64,
        /// This node's data directory.
        dir: PathBuf,
    },
    /// Raft could not start, failed while running (a storage error, for instance), or did not
    /// stop cleanly: `context` says which and what to do, `source` is openraft's (or the
    /// runtime's) error.
    #[error("raft failed: {context}")]
    Raft {
        /// What was being done, and what the operator can do about it.
        context: String,
        /// The error openraft (or the task runtime) returned.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An HTTP server failed.
    #[error("the {what} server failed: {source}")]
    Server {
        /// `SQL API` or `raft`.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The Raft log's file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
struct LogOpenError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// A running db node: Raft, its log and state machine, the SQL API and the Raft endpoint.
pub struct DbNode {
    raft: Raft,
    health: Arc<DbHealth>,
    database: Arc<Database>,
    data_dir: PathBuf,
    shutdown: Shutdown,
    /// Stops the servers without ctx.shutdown (a Raft failure); dropping it stops them too.
    stop: ShutdownTrigger,
    api_task: JoinHandle<std::io::Result<()>>,
    raft_task: JoinHandle<std::io::Result<()>>,
    /// The SQL API's state: its write queue is drained before Raft stops.
    api: Arc<Api<Store>>,
}

impl std::fmt::Debug for DbNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbNode")
            .field("id", &self.health.id)
            .finish_non_exhaustive()
    }
}

/// Every db node of the farm, by Raft node id.
///
/// # Errors
///
/// [`DbError::IdCollision`] when two names hash to the same id.
pub fn cluster_members(farm: &Farm) -> Result<BTreeMap<u64, NodeInfo>, DbError> {
    let mut members = BTreeMap::new();
    for n in farm.nodes_with_role(Role::Db) {
        let info = NodeInfo {
            name: n.name.clone(),
            api_addr: n.main_addr().to_string(),
            raft_addr: n.raft_addr().to_string(),
        };
        if let Some(other) = members.insert(node_id(&n.name), info) {
            return Err(DbError::IdCollision {
                a: other.name,
                b: n.name.clone(),
            });
        }
    }
    Ok(members)
}

/// The openraft configuration of the farm's `[db]` settings.
///
/// # Errors
///
/// [`DbError::Config`] when openraft refuses it.
pub fn raft_config(cluster: &str, db: &DbSettings) -> Result<Config, DbError> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let election = ms(db.election_timeout);
    let config = Config {
        cluster_name: cluster.to_string(),
        heartbeat_interval: ms(db.heartbeat_interval),
        election_timeout_min: election,
        // openraft 0.9 makes a follower wait `leader_lease` (= election_timeout_max) plus a
        // random election timeout after the last heartbeat: a narrow band keeps failover near
        // 2.5 x election_timeout (DbSettings::election_timeout).
        election_timeout_max: election.saturating_add(election / 2).max(election + 1),
        install_snapshot_timeout: election.max(2000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(db.snapshot_threshold),
        max_in_snapshot_log_to_keep: db.snapshot_threshold.min(1000),
        snapshot_max_chunk_size: 1024 * 1024,
        ..Config::default()
    };
    config
        .validate()
        .map_err(|e| DbError::Config(e.to_string()))
}

fn storage_err(
    dir: &std::path::Path,
) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> DbError + '_ {
    move |source| DbError::Storage {
        dir: dir.to_path_buf(),
        source,
    }
}

impl DbError {
    /// A [`DbError::Raft`] while doing `context`.
    pub(crate) fn raft(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DbError {
        DbError::Raft {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl DbNode {
    /// Binds every listener (so "address in use" fails here), opens storage, spawns tasks.
    ///
    /// A node that holds Raft state rejoins with the membership of its log, whatever the
    /// farm file says. On a node whose storage is pristine, a voter of the farm file
    /// initializes the cluster with the farm's voters (the same membership on every node,
    /// which openraft documents as safe) and a learner of a forming cluster asks to be added,
    /// unless its peers show that the cluster is formed without it (it then waits for
    /// `webfarm db add`) or that its data was lost (see [`crate::raft::formation`]). The Raft
    /// endpoint serves only once that is decided, so a refused node receives no entry.
    ///
    /// # Errors
    ///
    /// [`DbError`]: not a db node, a port in use, unreadable storage, invalid settings,
    /// [`DbError::DataLost`] for a pristine node whose data the cluster knows it had.
    pub async fn start(ctx: NodeContext) -> Result<DbNode, DbError> {
        let node = ctx.node.clone();
        if node.role != Role::Db {
            return Err(DbError::NotDbNode {
                name: node.name,
                role: node.role,
            });
        }
        let members = Arc::new(cluster_members(&ctx.farm)?);
        let id = node_id(&node.name);
        let config = raft_config(&ctx.farm.site, &ctx.farm.db)?;
        let api_listener = webfarm_node::bind(node.main_addr(), "db SQL API").await?;
        let raft_listener = webfarm_node::bind(node.raft_addr(), "db raft").await?;
        let tls = webfarm_node::tls::identity(&ctx.farm, &node.name)?;
        // Calls to the other db nodes carry the admin token (their trust in a peer without TLS;
        // crate::http::auth); with TLS the certificate says who calls.
        let http = webfarm_node::http::HttpClient::for_identity(tls.as_ref())
            .with_authorization(ctx.auth.token.as_ref().map(|t| t.bearer()))
            // Only to the farm's db nodes: a `/join` may name any address.
            .authorization_only_to(
                ctx.farm
                    .nodes_with_role(Role::Db)
                    .flat_map(|n| [n.main_addr(), n.raft_addr(), n.admin_addr()]),
            );
        let server_tls = tls.and_then(|t| t.server);
        let network = Network::new(&ctx.farm.site, &node.name, http.clone())
            .map_err(|e| DbError::raft("the site's or node's name", e))?;

        let (log, sm) = open_storage(&ctx.data_dir).await?;
        let database = Arc::clone(sm.store());
        let stats = Arc::new(DbMetrics::new(sm.snapshot_stats()));

        // The log this node holds as it starts: as leader, it reads only once it applied that.
        let startup_log = openraft::storage::RaftLogStorage::get_log_state(&mut log.clone())
            .await
            .map_err(|e| DbError::raft("reading the log's state", e))?
            .last_log_id
            .map_or(0, |id| id.index);
        database.set_startup_log_index(startup_log);
        let raft = Raft::new(id, Arc::new(config), network, log.clone(), sm)
            .await
            .map_err(|e| DbError::raft("starting raft", e))?;
        let health = Arc::new(DbHealth {
            id,
            members: Arc::clone(&members),
            metrics: raft.metrics(),
            log,
            applied: database.applied_index(),
            user_data: database.user_data(),
            transferring_leadership: Arc::new(AtomicBool::new(false)),
            stats: Arc::clone(&stats),
        });
        tokio::spawn(crate::metrics::watch(
            raft.metrics(),
            Arc::clone(&stats),
            ctx.shutdown.clone(),
        ));

        let (stop, stopped) = Shutdown::new();
        let store = Arc::new(Store::new(Parts {
            raft: raft.clone(),
            health: (*health).clone(),
            database: Arc::clone(&database),
            name: node.name.clone(),
            data_dir: ctx.data_dir.clone(),
            farm: Arc::clone(&ctx.farm),
            http: http.clone(),
        }));
        let contact = store.leader_contact();
        let api = Api::new(store, http.clone(), Arc::clone(&stats.forwarded));
        let api_task = serve(
            (api_listener, server_tls.clone()),
            api::router(
                Arc::clone(&api),
                Arc::new(ApiAuth::new(
                    &ctx.farm,
                    &ctx.auth,
                    Arc::clone(&stats.auth_failures),
                )),
            ),
            &ctx.shutdown,
            &stopped,
        );

        let me = members.get(&id).cloned().unwrap_or_default();
        let voters = farm_voters(&ctx.farm, &members);
        let formed = formation::form(
            &raft,
            &me,
            node.replica,
            &members,
            &voters,
            &http,
            &ctx.data_dir,
        )
        .await;
        match formed {
            Err(e) => {
                stop.trigger();
                let _ = raft.shutdown().await;
                let _ = join_server(api_task, "SQL API").await;
                database.close();
                return Err(e);
            }
            Ok(Formation::Join) => {
                let join = formation::auto_join(
                    raft.clone(),
                    me.clone(),
                    (*members).clone(),
                    http.clone(),
                    ctx.shutdown.clone(),
                );
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = join => {}
                        () = stopped.wait() => {}
                    }
                });
            }
            Ok(Formation::Member | Formation::Wait) => {}
        }
        let peers = ctx.farm.tls.internal.then(|| {
            let db = ctx.farm.nodes_with_role(Role::Db);
            db.map(|n| n.name.clone()).collect()
        });
        let raft_task = serve(
            (raft_listener, server_tls),
            network::router(
                raft.clone(),
                contact,
                (&ctx.farm.site, &node.name),
                peers,
                // Without TLS the admin token is the Raft port's only credential.
                (!ctx.farm.tls.internal)
                    .then(|| ctx.auth.token.clone())
                    .flatten(),
            ),
            &ctx.shutdown,
            &stopped,
        );
        tracing::info!(
            node = %node.name,
            api = %node.main_addr(),
            raft = %node.raft_addr(),
            data = %ctx.data_dir.display(),
            "db node started"
        );
        Ok(DbNode {
            raft,
            health,
            database,
            data_dir: ctx.data_dir,
            shutdown: ctx.shutdown,
            stop,
            api_task,
            raft_task,
            api,
        })
    }

    /// For the admin server (/readyz, /status details).
    pub fn health(&self) -> Arc<dyn Health> {
        Arc::clone(&self.health) as Arc<dyn Health>
    }

    /// Returns once ctx.shutdown fired and the node stopped gracefully: the SQL API and Raft
    /// servers stop accepting and finish their requests, Raft stops, the files are closed.
    ///
    /// Also returns, with an error, when Raft stops on a fatal error while running (a storage
    /// error: disk full, I/O error...): the node then stops the same way, so that the process
    /// exits and its supervisor reports it. Restarted, the node applies the committed log
    /// again from its data directory.
    ///
    /// # Errors
    ///
    /// [`DbError::Raft`] when Raft failed or did not stop cleanly, [`DbError::Server`] when a
    /// server failed.
    pub async fn wait(self) -> Result<(), DbError> {
        let mut metrics = self.raft.metrics();
        let failed = tokio::select! {
            () = self.shutdown.wait() => None,
            f = raft_failure(&mut metrics) => Some(f),
        };
        if let Some(f) = &failed {
            tracing::error!(error = %f, "raft stopped on a fatal error; stopping the node");
        }
        self.stop.trigger();
        let api = join_server(self.api_task, "SQL API").await;
        self.api.drain_queue().await;
        let raft_srv = join_server(self.raft_task, "raft").await;
        let stopped = self
            .raft
            .shutdown()
            .await
            .map_err(|e| DbError::raft("raft did not stop cleanly", e));
        self.database.close();
        if let Some(f) = failed {
            let context = format!(
                "the node stopped. Restart it to apply the committed log again from {}; if the \
                 error comes back, check that disk (free space, I/O errors)",
                self.data_dir.display()
            );
            return Err(DbError::Raft { context, source: f });
        }
        api?;
        raft_srv?;
        stopped
    }
}

/// Opens the Raft log and the state machine in `dir` (on the blocking pool).
async fn open_storage(dir: &std::path::Path) -> Result<(LogStore, StateMachine), DbError> {
    let owned = dir.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        let log_path = owned.join("raft-log.db");
        let log = LogStore::open(&log_path).map_err(|source| LogOpenError {
            path: log_path,
            source,
        })?;
        let sm = StateMachine::open(&owned)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((log, sm))
    })
    .await
    .map_err(|e| DbError::raft("the storage task", e))?;
    opened.map_err(storage_err(dir))
}

/// The voters of the farm file, by Raft node id: the membership a forming cluster starts with.
fn farm_voters(farm: &Farm, members: &BTreeMap<u64, NodeInfo>) -> BTreeMap<u64, NodeInfo> {
    farm.nodes_with_role(Role::Db)
        .filter(|n| n.replica == Replica::Voter)
        .filter_map(|n| {
            let id = node_id(&n.name);
            members.get(&id).map(|info| (id, info.clone()))
        })
        .collect()
}

/// Waits until Raft stops by itself; returns why (openraft's `Fatal`).
async fn raft_failure(
    metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, crate::types::NodeInfo>>,
) -> Box<dyn std::error::Error + Send + Sync> {
    match metrics.wait_for(|m| m.running_state.is_err()).await {
        Ok(m) => match &m.running_state {
            Err(fatal) => Box::new(fatal.clone()),
            Ok(()) => "raft stopped".into(),
        },
        Err(_) => "the raft task ended".into(),
    }
}

/// Serves `router` on `listener` until `shutdown` or `stop` fires.
fn serve(
    (listener, tls): (
        tokio::net::TcpListener,
        Option<Arc<webfarm_node::tls::ServerConfig>>,
    ),
    router: axum::Router,
    shutdown: &Shutdown,
    stop: &Shutdown,
) -> JoinHandle<std::io::Result<()>> {
    let (shutdown, stop) = (shutdown.clone(), stop.clone());
    tokio::spawn(async move {
        let until = async move {
            tokio::select! {
                () = shutdown.wait() => {}
                () = stop.wait() => {}
            }
        };
        webfarm_node::serve_router(listener, router, until, tls).await
    })
}

async fn join_server(
    mut task: JoinHandle<std::io::Result<()>>,
    what: &'static str,
) -> Result<(), DbError> {
    match tokio::time::timeout(DRAIN_TIMEOUT, &mut task).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(source))) => Err(DbError::Server { what, source }),
        Ok(Err(e)) => Err(DbError::Server {
            what,
            source: std::io::Error::other(e.to_string()),
        }),
        Err(_) => {
            tracing::warn!(
                server = what,
                "requests still running after {DRAIN_TIMEOUT:?}; closing"
            );
            task.abort();
            Ok(())
        }
    }
}
