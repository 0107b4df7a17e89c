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

/// `webfarm up --netns`: every node in a network namespace of its own (root only).
#[derive(Debug, Args, Clone)]
pub struct NetnsArgs {
    /// Run every node in its own network namespace, with its own interface on a bridge, as
    /// on separate hosts. Needs root. Loopback addresses 127.x.y.N of the farm file become
    /// N of the netns block; the derived file is <data_dir>/netns-farm.toml.
    #[arg(long)]
    pub netns: bool,
    /// Names: namespaces PREFIX-<node>, bridge PREFIX-br0, veths PREFIX-<N>.
    #[arg(long, value_name = "PREFIX", default_value = "wf", requires = "netns")]
    pub netns_prefix: String,
    /// The /24 block of the nodes' addresses; the bridge (this host) takes .1.
    #[arg(
        long,
        value_name = "BLOCK",
        default_value = "10.77.0.0/24",
        requires = "netns"
    )]
    pub netns_net: String,
    /// Do not load each node's host firewall (`webfarm firewall NODE`) into its namespace;
    /// by default every namespace gets its node's rules before the node starts, with this
    /// host (the bridge's .1) as an operator.
    #[arg(long, requires = "netns")]
    pub no_firewall: bool,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// An SQL shell on the db cluster, like sqlite3 and the rqlite shell: interactive, or
    /// `-c "SQL"`, or statements on standard input.
    Sql(crate::sql_shell::SqlArgs),
    /// Db cluster membership at run time: nodes, add, remove, promote, step-down.
    Db {
        /// What to do.
        #[command(subcommand)]
        command: crate::db_cmd::DbCommand,
        /// Call the db API as this user of its auth file, `USER:PASSWORD` (rqlite's `-u`).
        /// Default: the farm's generated `operator` user.
        #[arg(short = 'u', long, value_name = "USER:PASSWORD", global = true)]
        user: Option<String>,
    },
    /// Start every node of the farm as its own process and supervise them until Ctrl-C.
    Up {
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
        /// Network namespaces (`--netns`).
        #[command(flatten)]
        netns: NetnsArgs,
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
    /// Print a node's metrics (Prometheus text, as its admin port's `/metrics` answers), or
    /// every node's after a `# node NAME ADDR` line each.
    Metrics {
        /// The node's name (default: every node).
        node: Option<String>,
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
    /// Load balancer run-time control: list servers, set a weight or a state.
    Lb {
        /// What to do.
        #[command(subcommand)]
        command: LbCommand,
    },
    /// The farm's certificate authority: show it, issue a node's certificate, rotate it.
    Ca {
        /// What to do.
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Print a systemd unit that runs NODE on its own host (`Type=notify`, restart on
    /// failure, sandboxed, only the capabilities its role needs): README's "Deploying on
    /// many hosts" says where it goes.
    Systemd {
        /// The node's name.
        node: String,
        /// Where the webfarm binary is on the node's host.
        #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/webfarm")]
        exec: PathBuf,
        /// The unprivileged user (and group) the node runs as.
        #[arg(long, value_name = "NAME", default_value = "webfarm")]
        user: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Print the nftables ruleset of NODE's host, derived from the farm file (input dropped
    /// unless the farm or `[firewall]` allows it); `--apply` loads it on this host, `--check`
    /// compares this host's live table with it (exit 1 naming the differences).
    Firewall {
        /// The node's name.
        node: String,
        /// Load the ruleset on this host: `nft -f`, one transaction that replaces only
        /// `table inet webfarm`. Needs root.
        #[arg(long, conflicts_with = "check")]
        apply: bool,
        /// With `--apply`: load the rules even though they would not accept a new SSH
        /// connection from the address this session comes from (`SSH_CONNECTION`).
        #[arg(long, requires = "apply")]
        force: bool,
        /// Compare this host's `table inet webfarm` with the expected one. Needs root.
        #[arg(long)]
        check: bool,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Re-read the topology file on every lb node (as SIGHUP does): new backends, servers
    /// and weights apply without dropping requests; an invalid file is refused.
    Reload {
        /// Only this lb node (default: every lb node of the farm).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
}

/// `webfarm ca ...`: the farm CA's files under `<data_dir>/ca/` (created by `webfarm up`).
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// The CA and every certificate it issued: names, expiry, SHA-256 fingerprints, and how
    /// to make a browser trust the CA.
    Show {
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Issue NODE's certificate anew (creating the CA and the other certificates if they are
    /// missing) and print which files a multi-host deployment copies to NODE's host.
    Issue {
        /// The node's name.
        node: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Replace the CA with a new one and issue every certificate again; nodes pick the new
    /// files up on reload or restart, clients need the new ca.crt.
    Rotate {
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Revoke a certificate (a lost key, a node retired): list it on the farm CA's CRL
    /// (`<data_dir>/ca/ca.crl`, which nodes check and load balancers publish) and issue a
    /// new one in its place.
    Revoke {
        /// What: `site`, `operator` or a node's name.
        what: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
}

/// `webfarm lb ...`: talks to the lb nodes' admin addresses (`/lb/...`).
#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// List every backend's servers: state, weight, connections, last check.
    Servers {
        /// Only this lb node (default: every lb node of the farm).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// One JSON object `{"nodes":[{"name","backends":[...]}]}` instead of a table.
        #[arg(long)]
        json: bool,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Set a server's weight (0..=256) at run time.
    SetWeight {
        /// `BACKEND/SERVER`, e.g. `web/web-2`.
        target: String,
        /// The new weight.
        weight: u32,
        /// Only this lb node (default: every lb node of the farm).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Set a server's state: ready, drain (no new requests, in-flight ones finish) or maint.
    SetState {
        /// `BACKEND/SERVER`, e.g. `web/web-2`.
        target: String,
        /// `ready`, `drain` or `maint`.
        state: String,
        /// Only this lb node (default: every lb node of the farm).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Make a server a backup one (traffic only while no active server is usable), or active.
    SetBackup {
        /// `BACKEND/SERVER`, e.g. `web/web-3`.
        target: String,
        /// `true` (backup) or `false` (active).
        #[arg(action = clap::ArgAction::Set)]
        backup: bool,
        /// Only this lb node (default: every lb node of the farm).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
}
