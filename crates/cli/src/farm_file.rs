//! Resolving which farm a command works on: the file, the data directory, and the
//! supervisor's run directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use webfarm_config::{Farm, Node, Role};

use crate::args::FarmArgs;

/// The farm a command works on, with its data directory made absolute.
pub struct Resolved {
    /// The validated farm; `data_dir` already overridden by `--data-dir`.
    pub farm: Farm,
    /// The absolute path of the topology file, if one was given.
    pub config: Option<PathBuf>,
}

impl Resolved {
    /// `<data_dir>/run`: the supervisor's pid files, state and control socket.
    pub fn run_dir(&self) -> PathBuf {
        run_dir(&self.farm.data_dir)
    }
}

/// `<data_dir>/run`.
pub fn run_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("run")
}

/// Loads the farm named by `args` (or the built-in one).
///
/// When no `--config` is given but a supervisor recorded the file it runs in the data
/// directory, that file is used, so `webfarm status` after `webfarm up --config x.toml`
/// shows the right farm.
///
/// # Errors
///
/// A [`webfarm_config::ConfigError`] (exit code 2) or an I/O error.
pub fn resolve(args: &FarmArgs) -> anyhow::Result<Resolved> {
    let config = match &args.config {
        Some(p) => Some(absolute(p)?),
        None => {
            let data_dir = match &args.data_dir {
                Some(d) => d.clone(),
                None => Farm::builtin().data_dir,
            };
            recorded_config(&data_dir)
        }
    };
    let mut farm = match &config {
        Some(path) => Farm::load(path)?,
        None => Farm::builtin(),
    };
    if let Some(d) = &args.data_dir {
        farm.data_dir = d.clone();
    }
    farm.data_dir = absolute(&farm.data_dir)?;
    farm.web.root = absolute(&farm.web.root)?;
    Ok(Resolved { farm, config })
}

/// The node named `name` of `farm`.
///
/// # Errors
///
/// There is none; the message lists the names there are.
pub fn node<'f>(farm: &'f Farm, name: &str) -> anyhow::Result<&'f Node> {
    farm.node(name).ok_or_else(|| {
        let names: Vec<&str> = farm.nodes.iter().map(|n| n.name.as_str()).collect();
        anyhow::anyhow!("no node named {name:?}; nodes: {}", names.join(", "))
    })
}

/// Checks what the topology file cannot check by itself: the files it names exist.
///
/// # Errors
///
/// A message naming the key, for `webfarm up` to refuse to start (exit code 2).
pub fn preflight(farm: &Farm) -> Result<(), String> {
    if farm.nodes_with_role(Role::Web).next().is_some() && !farm.web.root.is_dir() {
        return Err(format!(
            "web.root: {} is not a directory; run from the repository root (it holds site/) or \
             set [web] root in the topology file",
            farm.web.root.display()
        ));
    }
    Ok(())
}

/// The HTTP client of the operator's commands: with internal TLS, `https://` with the
/// operator's certificate (`<data_dir>/ca/operator.crt`); else plain HTTP. Every request
/// carries the operator's credentials ([`crate::secrets::operator_authorization`]).
///
/// # Errors
///
/// Internal TLS is on and the operator's certificate cannot be used; the message says how
/// to get one.
pub fn operator_http(farm: &Farm) -> anyhow::Result<webfarm_node::http::HttpClient> {
    operator_http_as(farm, None)
}

/// As [`operator_http`], calling the db API as `user` (`USER:PASS`, `--user`) when given.
///
/// # Errors
///
/// As [`operator_http`]; `user` without a password.
pub fn operator_http_as(
    farm: &Farm,
    user: Option<&str>,
) -> anyhow::Result<webfarm_node::http::HttpClient> {
    let authorization = crate::secrets::operator_authorization(farm, user)?;
    Ok(operator_tls_http(farm)?.with_authorization(authorization))
}

fn operator_tls_http(farm: &Farm) -> anyhow::Result<webfarm_node::http::HttpClient> {
    if !farm.tls.internal {
        return Ok(webfarm_node::http::HttpClient::new());
    }
    let layout = webfarm_tls::ca::Layout::of_data_dir(&farm.data_dir);
    let id = webfarm_tls::internal::operator(&layout).with_context(|| {
        format!(
            "internal TLS is on and the operator's certificate is needed; `webfarm up` \
             creates it in {} (on another host, copy ca.crt, operator.crt and operator.key \
             there)",
            layout.dir.display()
        )
    })?;
    Ok(webfarm_node::http::HttpClient::with_tls(&id.client))
}

fn recorded_config(data_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(run_dir(data_dir).join("config")).ok()?;
    let path = PathBuf::from(text.trim());
    (!text.trim().is_empty() && path.is_file()).then_some(path)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve path {}", p.display()))
}
