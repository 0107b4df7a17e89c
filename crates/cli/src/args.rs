//! Command-line arguments (clap, derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// webfarm: the distributed web infrastructure of www.foobar.com in one binary.
///
/// `webfarm up` runs the whole farm on this machine, each node its own process on its own
/// loopback address; `webfarm run --node NAME` runs one node (one per host in production).
#[derive(Debug, Parser)]
#[command(name = "webfarm", version, about, long_about = None)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The farm file and data directory, shared by every command.
#[derive(Debug, Args, Clone)]
pub struct FarmArgs {
    /// Topology file (TOML). Default: the built-in farm (lb-1, web-1..3, db-1..3).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory; each node keeps its data in DIR/<node>/. Default: the file's
    /// `data_dir` (./farm-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start every node of the farm as its own process and supervise them until Ctrl-C.
    Up {
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Run one node in the foreground (one node per host in a real deployment).
    Run {
        /// The node's name in the topology file.
        #[arg(long, value_name = "NAME")]
        node: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
        /// Set by `webfarm up`: log without timestamps, stop when stdin closes.
        #[arg(long, hide = true)]
        supervised: bool,
    },
    /// Show every node's health and role details.
    Status {
        /// One JSON object `{"nodes":[...]}` instead of a table.
        #[arg(long)]
        json: bool,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Stop one node of a running farm gracefully (SIGTERM, then SIGKILL after 10s).
    Stop {
        /// The node's name.
        node: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Start again a node of a running farm that was stopped or killed.
    Start {
        /// The node's name.
        node: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// SIGKILL one node of a running farm (a real crash: no cleanup, no flush).
    Kill {
        /// The node's name.
        node: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
}
