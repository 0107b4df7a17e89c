//! `webfarm`: the binary. Glue only: parse the arguments, dispatch, map errors to exit codes.
//! The logic lives in the role crates (`webfarm-lb`, `webfarm-web`, `webfarm-db`) and in the
//! supervisor module.
//!
//! Exit codes: 0 success; 1 runtime failure (a node failed, a command could not be carried
//! out); 2 invalid topology file or arguments (nothing was started).

mod args;
mod ca_cmd;
mod control;
mod db_cmd;
mod farm_file;
mod firewall_cmd;
mod lb_cmd;
mod metrics_cmd;
mod netns_up;
mod run_node;
mod secrets;
mod sql_shell;
mod status;
mod supervisor;
mod systemd;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    webfarm_node::metrics::set_build_info(webfarm_node::metrics::BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: env!("WEBFARM_GIT_COMMIT").to_string(),
    });
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("webfarm: error: {e:#}");
            if e.chain()
                .any(|c| c.is::<webfarm_config::ConfigError>() || c.is::<supervisor::Preflight>())
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `webfarm systemd NODE`: prints the node's unit on standard output.
fn systemd_unit(
    name: &str,
    exec: &std::path::Path,
    user: &str,
    farm: &args::FarmArgs,
) -> anyhow::Result<ExitCode> {
    let resolved = farm_file::resolve(farm)?;
    let node = farm_file::node(&resolved.farm, name)?;
    let paths = systemd::Paths { exec, user };
    print!("{}", systemd::unit(&resolved.farm, node, &paths));
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = match cli.command {
        Command::Up { farm, netns } => runtime.block_on(supervisor::up(&farm, &netns)),
        Command::Sql(args) => runtime.block_on(sql_shell::run(&args)),
        Command::Db { command, user } => runtime.block_on(db_cmd::run(&command, user.as_deref())),
        Command::Run {
            node,
            farm,
            supervised,
        } => runtime.block_on(run_node::run(&node, &farm, supervised)),
        Command::Status { json, farm } => runtime.block_on(status::status(&farm, json)),
        Command::Metrics { node, farm } => {
            runtime.block_on(metrics_cmd::run(&farm, node.as_deref()))
        }
        Command::Stop { node, farm } => runtime.block_on(control::send(&farm, "stop", &node)),
        Command::Start { node, farm } => runtime.block_on(control::send(&farm, "start", &node)),
        Command::Kill { node, farm } => runtime.block_on(control::send(&farm, "kill", &node)),
        Command::Lb { command } => runtime.block_on(lb_cmd::run(&command)),
        Command::Ca { command } => ca_cmd::run(&command),
        Command::Systemd {
            node,
            exec,
            user,
            farm,
        } => systemd_unit(&node, &exec, &user, &farm),
        Command::Firewall {
            node,
            apply,
            force,
            check,
            farm,
        } => {
            let action = match (apply, check) {
                (true, _) => firewall_cmd::Action::Apply { force },
                (_, true) => firewall_cmd::Action::Check,
                _ => firewall_cmd::Action::Print,
            };
            firewall_cmd::run(&node, action, &farm)
        }
        Command::Reload { node, farm } => runtime.block_on(lb_cmd::reload(&farm, node.as_deref())),
    };
    // The work is done; what may remain is a blocking read of stdin (a supervised node
    // watching for its supervisor), which would keep a plain drop waiting forever.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}
