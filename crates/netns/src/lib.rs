//! Network namespaces on a bridge: separate hosts on one machine.
//!
//! A [`Network`] is a Linux bridge `<prefix>-br0` in the root namespace holding the first
//! address of a /24 [`Block`] (the operator's host), and one network namespace
//! `<prefix>-<host>` per [`Host`], each with its loopback up and one interface `eth0` (a veth
//! whose other end, `<prefix>-<octet>`, is a port of the bridge) carrying the host's address.
//! There is no default route, no forwarding and no NAT: the block exists only on the bridge
//! and inside the namespaces, so nothing in it can reach or be reached from anywhere else.
//!
//! `webfarm up --netns` runs each node of a farm in such a host; tests use the same type for
//! clusters that need real interfaces (VRRP, network partitions, the firewall). Everything is
//! done with the `ip` command of iproute2, which needs root (`CAP_SYS_ADMIN` to create
//! namespaces, `CAP_NET_ADMIN` for links and addresses): [`check_privileges`] says what is
//! missing before anything is created.
//!
//! ```no_run
//! use webfarm_netns::{Block, Host, Network, Spec};
//!
//! let spec = Spec::new("wfx", "10.78.9.0/24".parse::<Block>()?)?;
//! let a = Host::new("a", spec.block.addr(2));
//! let b = Host::new("b", spec.block.addr(3));
//! let net = Network::create(spec, vec![a, b])?;
//! let out = net.run("a", &["ping", "-c1", "-W1", "10.78.9.3"])?;
//! println!("{out}");
//! net.remove()?; // or drop it: Drop removes everything too
//! # Ok::<(), webfarm_netns::NetnsError>(())
//! ```

mod block;
mod ip;
mod network;

pub use block::Block;
pub use ip::{check_privileges, identify};
pub use network::{cleanup, remains, Host, Network, Spec};

/// What went wrong while setting up, using or removing a [`Network`].
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The process lacks a capability (it is not root).
    #[error(
        "network namespaces need root: this process lacks {missing} (CAP_SYS_ADMIN creates \
         namespaces, CAP_NET_ADMIN the bridge, veths and addresses); run it as root, e.g. \
         with sudo"
    )]
    Privilege {
        /// The missing capabilities, e.g. `CAP_NET_ADMIN and CAP_SYS_ADMIN`.
        missing: String,
    },
    /// The `ip` command is not installed.
    #[error("the `ip` command (iproute2) is not on PATH: install it (apt-get install iproute2)")]
    NoIp,
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it wrote on stderr (or why it could not run).
        stderr: String,
    },
    /// A namespace of the same prefix holds running processes: another network with the
    /// same names is in use, and is left alone.
    #[error(
        "namespace {namespace} holds running processes (pids {pids}): another farm or test \
         uses the prefix; stop it, or choose another prefix"
    )]
    InUse {
        /// The namespace.
        namespace: String,
        /// Its processes.
        pids: String,
    },
    /// A name, prefix, address or block that cannot be used.
    #[error("{0}")]
    Invalid(String),
}
