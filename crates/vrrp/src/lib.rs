//! VRRP version 3 ([RFC 5798]) for webfarm's load-balancer pair: the lb nodes of a
//! `[[vrrp]]` instance elect a master that serves the instance's virtual IPs; when the
//! master dies (or stops, or leaves with a priority-0 advertisement) a backup takes over.
//!
//! - [`packet`]: the advertisement (§5) and its checksum over the pseudo-header (§5.2.8).
//! - [`router`]: the state machine of §6.4, pure: events in, actions out.
//! - `link`, `link6`: the transports: raw IP protocol 112 on real interfaces (keepalived
//!   speaks it too; IPv4, and IPv6 from the link-local address), or webfarm's loopback
//!   transport, the same messages in UDP ([`UDP_PORT`]).
//! - [`netif`]: VIPs on real interfaces (`ip addr`), gratuitous ARP and unsolicited
//!   neighbour advertisements.
//! - [`listen`]: binding a frontend on a VIP on loopback so the newest master gets every
//!   new connection.
//! - [`Vrrp`]: the running instances of one node; the lb implements [`VipHolder`].
//!
//! `crates/vrrp/DESIGN.md` gives the reasons.
//!
//! [RFC 5798]: https://www.rfc-editor.org/rfc/rfc5798
//!
//! ```
//! use webfarm_vrrp::router::{Action, Event, Params, Router, State};
//!
//! let mut r = Router::new(Params {
//!     priority: 100,
//!     advert_int: 100,
//!     preempt: true,
//!     preempt_delay: None,
//!     primary: "10.0.0.2".parse().unwrap(),
//! });
//! r.handle(Event::Startup);
//! assert_eq!(r.state(), State::Backup);
//! let actions = r.handle(Event::Timer(webfarm_vrrp::router::Timer::MasterDown));
//! assert!(actions.contains(&Action::TakeVips));
//! assert_eq!(r.state(), State::Master);
//! ```

mod instance;
mod link;
mod link6;
pub mod listen;
pub mod netif;
pub mod packet;
pub mod router;

pub use instance::{InstanceSpec, InstanceStatus, NodeSpec, StatusView, VipHolder, Vrrp};
pub use link::UDP_PORT;
pub use router::{Params, State};

/// Why VRRP cannot run on this node.
#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    /// The process lacks a capability (raw sockets, interface addresses).
    #[error("{what}: operation not permitted; VRRP on a real interface needs {capability} (run as root, or grant it: setcap cap_net_raw,cap_net_admin+ep)")]
    Capability {
        /// `CAP_NET_RAW` or `CAP_NET_ADMIN`.
        capability: &'static str,
        /// What was refused.
        what: String,
    },
    /// No usable interface.
    #[error("VRRP interface: {message}")]
    Interface {
        /// What is wrong.
        message: String,
    },
    /// Another system error.
    #[error("{what}: {error}")]
    Io {
        /// What failed.
        what: String,
        /// The system's error (in the message, not a `source`: the message says it all).
        error: std::io::Error,
    },
}

impl VrrpError {
    fn from_io(what: String, capability: &'static str, source: std::io::Error) -> VrrpError {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            VrrpError::Capability { capability, what }
        } else {
            VrrpError::Io {
                what,
                error: source,
            }
        }
    }
}
