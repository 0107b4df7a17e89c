//! How advertisements travel: the [`Link`] of one lb node, shared by its instances.
//!
//! - **Raw** (real interfaces): IP protocol 112 (RFC 5798 §5.1.1.4), TTL 255, bound to the
//!   interface, to the multicast group 224.0.0.18 or unicast to the peers (keepalived's
//!   `unicast_peer`). The kernel gives the IPv4 header with each packet, so the TTL is
//!   checked (§7.1). Needs CAP_NET_RAW.
//! - **Udp** (loopback, webfarm's own transport): the same VRRPv3 messages in UDP datagrams
//!   between the lb nodes' addresses, port [`UDP_PORT`]; no privilege needed. The checksum's
//!   pseudo-header uses the datagram's addresses. keepalived cannot be a peer there.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::link6::Raw6;
use crate::packet::{self, PROTOCOL, TTL};
use crate::VrrpError;

/// The UDP port of the loopback transport (RFC 5798's number).
pub const UDP_PORT: u16 = 5798;

/// One received VRRP message with its addresses.
#[derive(Debug)]
pub(crate) struct Received {
    pub bytes: Vec<u8>,
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// The node's socket for advertisements.
#[derive(Debug)]
pub(crate) enum Link {
    Udp { sock: UdpSocket, local: IpAddr },
    Raw { sock: UdpSocket, local: Ipv4Addr },
    Raw6(Raw6),
}

impl Link {
    /// The UDP transport on `local:5798`.
    pub async fn udp(local: IpAddr) -> Result<Link, VrrpError> {
        let addr = SocketAddr::new(local, UDP_PORT);
        let sock = UdpSocket::bind(addr).await.map_err(|error| VrrpError::Io {
            what: format!("bind the VRRP loopback transport on UDP {addr}"),
            error,
        })?;
        Ok(Link::Udp { sock, local })
    }

    /// The raw IPv4 transport on `interface`, whose address is `local`.
    pub fn raw(local: IpAddr, interface: &str) -> Result<Link, VrrpError> {
        let IpAddr::V4(local) = local else {
            return Raw6::open(interface).map(Link::Raw6);
        };
        let io = |what: &str| {
            let what = format!("{what} (interface {interface})");
            move |source: std::io::Error| VrrpError::from_io(what, "CAP_NET_RAW", source)
        };
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(PROTOCOL))),
        )
        .map_err(io("open a raw IP socket for VRRP (protocol 112)"))?;
        sock.bind_device(Some(interface.as_bytes()))
            .map_err(io("bind the VRRP socket to its interface"))?;
        sock.set_ttl_v4(u32::from(TTL)).map_err(io("set TTL 255"))?;
        sock.set_multicast_ttl_v4(u32::from(TTL))
            .map_err(io("set multicast TTL 255"))?;
        sock.set_multicast_loop_v4(false)
            .map_err(io("turn multicast loop off"))?;
        sock.set_multicast_if_v4(&local)
            .map_err(io("choose the multicast interface"))?;
        sock.join_multicast_v4(&packet::MULTICAST_V4, &local)
            .map_err(io("join 224.0.0.18"))?;
        sock.set_nonblocking(true).map_err(io("set non-blocking"))?;
        // tokio's UdpSocket is only recv/sendto on a datagram descriptor: it drives the raw
        // socket as well, without `unsafe` registration.
        let sock = UdpSocket::from_std(std::net::UdpSocket::from(sock))
            .map_err(io("register the VRRP socket"))?;
        Ok(Link::Raw { sock, local })
    }

    /// This node's address: the advertisements' source.
    pub fn local(&self) -> IpAddr {
        match self {
            Link::Udp { local, .. } => *local,
            Link::Raw { local, .. } => IpAddr::V4(*local),
            Link::Raw6(r) => IpAddr::V6(r.local),
        }
    }

    /// Whether this is the loopback (UDP) transport.
    pub fn is_udp(&self) -> bool {
        matches!(self, Link::Udp { .. })
    }

    /// Sends `bytes` to `dst`. Errors are the caller's to log: a lost advertisement is
    /// what VRRP's timers are made for.
    pub async fn send(&self, bytes: &[u8], dst: IpAddr) -> std::io::Result<()> {
        match self {
            Link::Udp { sock, .. } => {
                sock.send_to(bytes, SocketAddr::new(dst, UDP_PORT)).await?;
            }
            Link::Raw { sock, .. } => {
                sock.send_to(bytes, SocketAddr::new(dst, 0)).await?;
            }
            Link::Raw6(r) => match dst {
                IpAddr::V6(v6) => r.send(bytes, v6).await?,
                IpAddr::V4(_) => return Err(std::io::Error::other("IPv4 peer on IPv6")),
            },
        }
        Ok(())
    }

    /// The next VRRP message. On the raw transport the IPv4 header is checked (protocol,
    /// TTL 255) and removed; a bad one is returned as an error to count and skip.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is either returned or left in the socket.
    pub async fn recv(&self) -> std::io::Result<Result<Received, packet::PacketError>> {
        let mut buf = vec![0u8; 1500];
        match self {
            Link::Udp { sock, local } => {
                let (n, from) = sock.recv_from(&mut buf).await?;
                buf.truncate(n);
                Ok(Ok(Received {
                    bytes: buf,
                    src: from.ip(),
                    dst: *local,
                }))
            }
            Link::Raw { sock, .. } => {
                let n = sock.recv(&mut buf).await?;
                Ok(packet::split_ipv4(&buf[..n]).map(|p| Received {
                    bytes: p.payload.to_vec(),
                    src: IpAddr::V4(p.src),
                    dst: IpAddr::V4(p.dst),
                }))
            }
            Link::Raw6(r) => r.recv().await,
        }
    }
}
