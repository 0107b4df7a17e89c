//! The raw IPv6 transport (RFC 5798 §5.1.2): IP protocol 112 from the interface's
//! link-local address, hop limit 255, to ff02::12 (or unicast peers). The IPv6 header is not
//! handed to raw sockets, so the destination and the hop limit come as ancillary data
//! (IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT) and are checked as §7.1 says.

use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::link::Received;
use crate::packet::{self, PacketError, PROTOCOL, TTL};
use crate::VrrpError;

/// A raw IPv6 VRRP socket bound to one interface.
#[derive(Debug)]
pub(crate) struct Raw6 {
    sock: UdpSocket,
    /// The interface's link-local address: the advertisements' source.
    pub local: Ipv6Addr,
    ifindex: u32,
}

impl Raw6 {
    /// Opens it on `interface`, from its link-local address.
    pub fn open(interface: &str) -> Result<Raw6, VrrpError> {
        let io = |what: &str| {
            let what = format!("{what} (interface {interface})");
            move |e: std::io::Error| VrrpError::from_io(what, "CAP_NET_RAW", e)
        };
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| io("find the interface")(e.into()))?;
        let local = crate::netif::link_local_of(interface)?;
        let proto = Protocol::from(i32::from(PROTOCOL));
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(proto))
            .map_err(io("open a raw IPv6 socket for VRRP (protocol 112)"))?;
        sock.bind_device(Some(interface.as_bytes()))
            .map_err(io("bind the VRRP socket to its interface"))?;
        let from = SocketAddrV6::new(local, 0, 0, ifindex);
        sock.bind(&SocketAddr::V6(from).into())
            .map_err(io("send from the link-local address"))?;
        sock.set_multicast_hops_v6(u32::from(TTL))
            .map_err(io("set hop limit 255"))?;
        sock.set_unicast_hops_v6(u32::from(TTL))
            .map_err(io("set hop limit 255"))?;
        sock.set_multicast_loop_v6(false)
            .map_err(io("turn multicast loop off"))?;
        sock.set_multicast_if_v6(ifindex)
            .map_err(io("choose the multicast interface"))?;
        sock.join_multicast_v6(&packet::MULTICAST_V6, ifindex)
            .map_err(io("join ff02::12"))?;
        setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)
            .map_err(|e| io("ask for destinations")(e.into()))?;
        setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true)
            .map_err(|e| io("ask for hop limits")(e.into()))?;
        sock.set_nonblocking(true).map_err(io("set non-blocking"))?;
        let sock = UdpSocket::from_std(std::net::UdpSocket::from(sock))
            .map_err(io("register the VRRP socket"))?;
        Ok(Raw6 {
            sock,
            local,
            ifindex,
        })
    }

    /// Sends `bytes` to `dst` (link-local scope: this interface).
    pub async fn send(&self, bytes: &[u8], dst: Ipv6Addr) -> std::io::Result<()> {
        let to = SocketAddrV6::new(dst, 0, 0, self.ifindex);
        self.sock.send_to(bytes, SocketAddr::V6(to)).await?;
        Ok(())
    }

    /// The next message, with its destination and hop limit checked.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn recv(&self) -> std::io::Result<Result<Received, PacketError>> {
        let fd = self.sock.as_raw_fd();
        self.sock
            .async_io(Interest::READABLE, || {
                receive(fd).map_err(std::io::Error::from)
            })
            .await
    }
}

fn receive(fd: i32) -> nix::Result<Result<Received, PacketError>> {
    let mut buf = vec![0u8; 1500];
    let mut space = nix::cmsg_space!(nix::libc::in6_pktinfo, nix::libc::c_int);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut space), MsgFlags::empty())?;
    let (mut dst, mut hops) = (None, None);
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            ControlMessageOwned::Ipv6HopLimit(h) => hops = Some(h),
            _ => {}
        }
    }
    let (n, src) = (msg.bytes, msg.address.map(|a| a.ip()));
    buf.truncate(n);
    let (Some(src), Some(dst)) = (src, dst) else {
        return Ok(Err(PacketError::NotVrrp("no source or destination")));
    };
    if hops != Some(i32::from(TTL)) {
        let h = hops.and_then(|h| u8::try_from(h).ok()).unwrap_or(0);
        return Ok(Err(PacketError::Ttl(h)));
    }
    Ok(Ok(Received {
        bytes: buf,
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
    }))
}
