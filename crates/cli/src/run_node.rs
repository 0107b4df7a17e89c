//! `webfarm run --node NAME`: one node in the foreground.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};
use webfarm_config::Role;
use webfarm_node::{admin, Health, NodeContext, Shutdown, ShutdownTrigger};

use crate::args::FarmArgs;
use crate::farm_file;

/// Runs node `name` until SIGTERM / Ctrl-C (or, when `supervised`, until stdin closes because
/// the supervisor is gone), then shuts it down gracefully.
///
/// # Errors
///
/// The node is not in the file, its data directory cannot be created, a port cannot be
/// bound, or the role failed.
pub async fn run(name: &str, args: &FarmArgs, supervised: bool) -> anyhow::Result<ExitCode> {
    webfarm_node::logging::init(supervised);
    let resolved = farm_file::resolve(args)?;
    let farm = Arc::new(resolved.farm);
    let node = farm_file::node(&farm, name)
        .with_context(|| match &resolved.config {
            Some(p) => format!("in {}", p.display()),
            None => "in the built-in farm".into(),
        })?
        .clone();
    let data_dir = farm.node_data_dir(name);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    webfarm_node::metrics::set_data_dir(data_dir.clone());

    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(watch_signals(trigger, supervised));

    let admin_listener = webfarm_node::bind(node.admin_addr(), "admin").await?;
    let admin_tls = webfarm_node::tls::identity(&farm, name)
        .map_err(|e| {
            crate::supervisor::Preflight(format!(
                "internal TLS: {e}; `webfarm up` creates the farm's certificates, and \
                 `webfarm ca issue {name}` says what to copy to this host"
            ))
        })?
        .and_then(|id| id.server);
    let auth = crate::secrets::node_auth(&farm, &node)?;
    let guard = admin::guard(&farm, &auth);
    let ctx = NodeContext {
        farm: farm.clone(),
        node: node.clone(),
        data_dir,
        shutdown: shutdown.clone(),
        auth,
    };
    tracing::info!(node = %node.name, role = %node.role, "starting");
    let serve_admin = |health: Arc<dyn Health>, extra: admin::Router| {
        let (name, role, shutdown) = (node.name.clone(), node.role, shutdown.clone());
        let tls = admin_tls.clone();
        let guard = guard.clone();
        // The role's listeners are bound and the admin port is about to serve: systemd may
        // count the node started.
        tokio::spawn(crate::systemd::notify(health.clone(), shutdown.clone()));
        tokio::spawn(async move {
            let served = admin::serve(
                admin_listener,
                &name,
                role,
                health,
                extra,
                shutdown,
                admin::Access { tls, guard },
            );
            if let Err(e) = served.await {
                tracing::error!("admin server failed: {e}");
            }
        })
    };
    let admin_task = match node.role {
        Role::Lb => {
            // A certificate that cannot be used refuses to start, as a bad farm file does.
            let n = webfarm_lb::LbNode::start(ctx).await.map_err(|e| match e {
                webfarm_lb::LbError::Tls(e) => {
                    anyhow::Error::new(crate::supervisor::Preflight(format!(
                        "TLS: {e}; `webfarm up` creates the farm's certificates, and \
                             `webfarm ca issue {name}` says what to copy to this host"
                    )))
                }
                other => other.into(),
            })?;
            let task = serve_admin(n.health(), n.admin_routes());
            tokio::spawn(reload_on_sighup(n.control(), shutdown.clone()));
            n.wait().await?;
            task
        }
        Role::Web => {
            let n = webfarm_web::WebNode::start(ctx).await?;
            let task = serve_admin(n.health(), admin::Router::new());
            n.wait().await?;
            task
        }
        Role::Db => {
            let n = webfarm_db::DbNode::start(ctx).await?;
            let task = serve_admin(n.health(), admin::Router::new());
            n.wait().await?;
            task
        }
        Role::Monitor => {
            let n = webfarm_monitor::MonitorNode::start(ctx).await?;
            let task = serve_admin(n.health(), admin::Router::new());
            n.wait().await?;
            task
        }
        Role::Dns => {
            let n = webfarm_dns::DnsNode::start(ctx).await?;
            let task = serve_admin(n.health(), admin::Router::new());
            n.wait().await?;
            task
        }
    };
    let _ = admin_task.await;
    tracing::info!(node = %node.name, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// Reloads the lb node's configuration on every SIGHUP (as `POST /lb/reload` does) until
/// shutdown; a refused reload is logged and the running configuration kept.
async fn reload_on_sighup(control: webfarm_lb::LbControl, shutdown: Shutdown) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload with POST /lb/reload");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = hup.recv() => {}
        }
        tracing::info!("SIGHUP: reloading the configuration");
        let control = control.clone();
        match tokio::task::spawn_blocking(move || control.reload()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("reload refused: {e}"),
            Err(e) => tracing::error!("reload task failed: {e}"),
        }
    }
}

/// Fires `trigger` on SIGTERM, SIGINT, or (supervised) EOF on stdin. A second signal exits
/// at once.
async fn watch_signals(trigger: ShutdownTrigger, supervised: bool) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let stdin_closed = async {
        if !supervised {
            return std::future::pending().await;
        }
        let mut buf = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down gracefully"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down gracefully"),
        _ = stdin_closed => tracing::info!("supervisor gone: shutting down gracefully"),
    }
    trigger.trigger();
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::warn!("second signal: exiting now");
    std::process::exit(1);
}
