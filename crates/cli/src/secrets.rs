//! The farm's secrets for the binary: made by `webfarm up` (beside the CA), read by `webfarm
//! run` into the node's [`NodeAuth`], and sent by the operator's commands.
//!
//! What is where and why: crates/auth (`webfarm_auth::secrets`); who checks what:
//! ARCHITECTURE.md, "Authentication".

use anyhow::Context;
use http::HeaderValue;
use webfarm_auth::secrets::{read_secret, OPERATOR_USER, WEB_USER};
use webfarm_auth::{AdminToken, Secrets, Users};
use webfarm_config::{Farm, Node, Role};
use webfarm_node::access::NodeAuth;

use crate::supervisor::Preflight;

/// Creates the farm's secrets that are missing (on `webfarm up`) and says what it made.
///
/// # Errors
///
/// A file that cannot be written, or no system randomness.
pub fn ensure(farm: &Farm) -> anyhow::Result<()> {
    let secrets = Secrets::of_data_dir(&farm.data_dir);
    let made = secrets.ensure().context("the farm's secrets")?;
    if !made.files.is_empty() {
        crate::supervisor::say(&format!(
            "created the farm's secrets in {}: {} (the operator's commands use admin.token)",
            secrets.dir.display(),
            made.files.join(", ")
        ));
    }
    Ok(())
}

/// What node `node` checks its callers with and sends: the admin token (every node, when the
/// file is there; required without internal TLS and on the monitor), a db node's users
/// (`[db] auth` or the generated file), a web node's db credentials (`[web] db_user`).
///
/// # Errors
///
/// A [`Preflight`] naming the missing or unreadable file and how to get it.
pub fn node_auth(farm: &Farm, node: &Node) -> anyhow::Result<NodeAuth> {
    let secrets = Secrets::of_data_dir(&farm.data_dir);
    let missing = |what: &str, e: &dyn std::fmt::Display| {
        Preflight(format!(
            "{what}: {e}; `webfarm up` creates the farm's secrets in {}; on many hosts copy \
             the files README's \"Deploying on many hosts\" lists",
            secrets.dir.display()
        ))
    };
    let token_needed = !farm.tls.internal || node.role == Role::Monitor;
    let token = match secrets.admin_token() {
        Ok(t) => Some(t),
        Err(e) if token_needed => return Err(missing("the admin token", &e).into()),
        Err(_) => None,
    };
    let db_users = if node.role == Role::Db {
        let path = farm.db.auth.clone().unwrap_or_else(|| secrets.auth_path());
        let users = Users::load(&path).map_err(|e| missing("the db's auth file", &e))?;
        Some(std::sync::Arc::new(users))
    } else {
        None
    };
    let db_credentials = if node.role == Role::Web {
        let (user, file) = farm
            .web
            .db_credentials
            .clone()
            .unwrap_or_else(|| (WEB_USER.to_string(), secrets.web_password_path()));
        let password = read_secret(&file).map_err(|e| missing("the web tier's db password", &e))?;
        Some(webfarm_auth::basic::header(&user, &password))
    } else {
        None
    };
    Ok(NodeAuth {
        token,
        db_users,
        db_credentials,
        refusals: std::sync::Arc::default(),
    })
}

/// The secret files node `node`'s host needs (what [`node_auth`] reads): the admin token
/// without internal TLS or on the monitor, the generated auth file on a db node (unless
/// `[db] auth` names the user's own), the web tier's password on a web node (unless `[web]
/// db_password_file` names another).
pub fn files_for(farm: &Farm, node: &Node) -> Vec<std::path::PathBuf> {
    let secrets = Secrets::of_data_dir(&farm.data_dir);
    let mut files = Vec::new();
    if !farm.tls.internal || node.role == Role::Monitor {
        files.push(secrets.token_path());
    }
    match node.role {
        Role::Db if farm.db.auth.is_none() => files.push(secrets.auth_path()),
        Role::Web if farm.web.db_credentials.is_none() => {
            files.push(secrets.web_password_path());
        }
        _ => {}
    }
    files
}

/// The farm's admin token, if its file is there.
pub fn admin_token(farm: &Farm) -> Option<AdminToken> {
    Secrets::of_data_dir(&farm.data_dir).admin_token().ok()
}

/// The `Authorization` of the operator's commands: `user` (`USER:PASS`, rqlite's `-u`) when
/// given, else the generated `operator` user with the admin token as password (which the
/// admin routes take too); `None` when neither is there.
///
/// # Errors
///
/// `user` without `:PASS`.
pub fn operator_authorization(
    farm: &Farm,
    user: Option<&str>,
) -> anyhow::Result<Option<HeaderValue>> {
    if let Some(spec) = user {
        let (name, password) = spec.split_once(':').with_context(|| {
            format!("--user {spec:?}: give USER:PASSWORD, as rqlite's `-u` takes")
        })?;
        return Ok(Some(webfarm_auth::basic::header(name, password)));
    }
    Ok(admin_token(farm).map(|t| webfarm_auth::basic::header(OPERATOR_USER, t.expose())))
}
