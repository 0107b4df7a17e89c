//! Host firewalls of the farm: each node's nftables ruleset, derived from the farm file.
//!
//! The topology already says who talks to whom: lbs proxy to web nodes, web nodes query the
//! db, db nodes replicate over Raft, the monitor scrapes admin ports, users reach only the
//! frontends and the DNS. [`ruleset`] turns that into the input rules of one node's host (a
//! pure function of the [`Farm`]), [`render`] writes them as an nft script that replaces
//! `table inet webfarm` in one transaction, [`Nft`] loads it and lists the live table, and
//! [`check`] compares the live table with the expected one as nft prints both
//! ([`normalise`]). `crates/firewall/DESIGN.md` says why these rules and what is not
//! covered.
//!
//! ```
//! use webfarm_config::Farm;
//! use webfarm_firewall::{render, ruleset};
//!
//! let farm = Farm::builtin();
//! let web = ruleset(&farm, farm.node("web-1").unwrap());
//! let script = render(&web, "the built-in farm");
//! assert!(script.contains("policy drop;"));
//! assert!(script.contains("ip saddr { 127.0.1.10, 127.0.1.11, 127.0.1.8, 127.0.1.9 } tcp dport 8000 accept"));
//! ```

mod check;
mod nft;
mod render;
mod ruleset;

pub use check::{compare, Difference};
pub use nft::{normalise, Nft};
pub use render::{render, table};
pub use ruleset::{ruleset, Allow, From, Ruleset, Service};

/// The one table webfarm owns on a host (family `inet`: IPv4 and IPv6 in one table).
pub const TABLE: &str = "inet webfarm";

/// What went wrong while loading or checking a ruleset.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The `nft` binary (or `ip`, for a namespace) could not be run.
    #[error("cannot run nft ({0}): install nftables (apt-get install nftables)")]
    NoNft(String),
    /// nft refused a command or a script.
    #[error("`{command}` failed: {stderr}{}", hint(.stderr))]
    Nft {
        /// The command line.
        command: String,
        /// What nft wrote on stderr.
        stderr: String,
    },
    /// The scratch namespace of [`normalise`] could not be made.
    #[error("{0}")]
    Scratch(String),
}

fn hint(stderr: &str) -> &'static str {
    if stderr.contains("Operation not permitted") {
        " (nftables needs root: CAP_NET_ADMIN)"
    } else {
        ""
    }
}

/// Loads `script` (from [`render`]) on `nft`'s host.
///
/// # Errors
///
/// As [`Nft::load`]; nothing is changed then (nft applies a script whole or not at all).
pub fn apply(nft: &Nft, script: &str) -> Result<(), FirewallError> {
    nft.load(script)
}

/// The differences between the table `nft`'s host runs and `script`'s; empty when they
/// match.
///
/// # Errors
///
/// As [`normalise`] and [`Nft::list_table`].
pub fn check(nft: &Nft, script: &str) -> Result<Vec<Difference>, FirewallError> {
    let expected = normalise(script)?;
    let live = nft.list_table()?;
    Ok(compare(&expected, live.as_deref()))
}

#[cfg(test)]
mod tests;
