//! Virtual IPs on a real interface: find the interface of the node's address, add and
//! remove the VIPs (the `ip` binary, iproute2), and announce them with gratuitous ARP
//! (RFC 5798 §6.4.1 and §8.1.2: the master sends one for each IPv4 address it takes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use nix::ifaddrs::getifaddrs;
use nix::sys::socket::{sendto, socket, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType};

use crate::VrrpError;

/// Gratuitous ARPs sent when taking a VIP (keepalived's `garp_master_repeat` is 5).
pub const GARP_REPEAT: u32 = 5;
/// The time between two of them.
pub const GARP_SPACING: Duration = Duration::from_millis(100);
/// When a second set is sent, if the VIPs are still held (keepalived's `garp_master_delay`,
/// 5 s): a host that ignored the first set (Linux ignores an ARP update within `locktime`,
/// 1 s, of the previous one, e.g. the other router's own announcement) learns it then.
pub const GARP_SECOND_SET: Duration = Duration::from_secs(5);
/// The least time between two announcements for lower-priority advertisements.
pub const ANNOUNCE_MIN_GAP: Duration = Duration::from_secs(1);

/// The interface that holds `addr`.
///
/// # Errors
///
/// [`VrrpError::Interface`] if no interface holds it.
pub fn interface_of(addr: IpAddr) -> Result<String, VrrpError> {
    let found = getifaddrs().ok().and_then(|mut all| {
        all.find(|i| {
            let a = i.address.as_ref();
            let v4 = a
                .and_then(|a| a.as_sockaddr_in())
                .map(|s| IpAddr::V4(s.ip()));
            let v6 = a
                .and_then(|a| a.as_sockaddr_in6())
                .map(|s| IpAddr::V6(s.ip()));
            v4.or(v6) == Some(addr)
        })
    });
    found
        .map(|i| i.interface_name)
        .ok_or_else(|| VrrpError::Interface {
            message: format!(
                "no interface holds the node's address {addr}; add it, or set `interface` in \
             [[vrrp]]"
            ),
        })
}

/// The link-local IPv6 address of `interface` (the source of IPv6 advertisements, RFC 5798
/// §5.1.2.1).
///
/// # Errors
///
/// [`VrrpError::Interface`] if it has none.
pub fn link_local_of(interface: &str) -> Result<Ipv6Addr, VrrpError> {
    let found = getifaddrs().ok().and_then(|mut all| {
        all.find_map(|i| {
            let v6 = i.address.as_ref()?.as_sockaddr_in6()?.ip();
            (i.interface_name == interface && v6.is_unicast_link_local()).then_some(v6)
        })
    });
    found.ok_or_else(|| VrrpError::Interface {
        message: format!("interface {interface} has no IPv6 link-local address (fe80::/10)"),
    })
}

fn link_addr(interface: &str) -> Option<LinkAddr> {
    getifaddrs().ok()?.find_map(|i| {
        let l = i.address.as_ref()?.as_link_addr().copied()?;
        (i.interface_name == interface).then_some(l)
    })
}

/// `ip addr add VIP/32 dev IF` (`/128 nodad` for IPv6); an address already there is fine.
///
/// # Errors
///
/// [`VrrpError::Capability`] (CAP_NET_ADMIN) when refused, [`VrrpError::Io`] otherwise.
pub fn add_vip(interface: &str, vip: IpAddr) -> Result<(), VrrpError> {
    let cidr = with_prefix(vip);
    let mut args = vec!["addr", "add", &cidr, "dev", interface];
    if vip.is_ipv6() {
        args.push("nodad");
    }
    run_ip(&args, &["File exists"])
}

/// `ip addr del VIP dev IF`; an address already gone is fine.
///
/// # Errors
///
/// As [`add_vip`].
pub fn del_vip(interface: &str, vip: IpAddr) -> Result<(), VrrpError> {
    let cidr = with_prefix(vip);
    run_ip(
        &["addr", "del", &cidr, "dev", interface],
        &["Cannot assign requested address", "Address not found"],
    )
}

fn with_prefix(vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(_) => format!("{vip}/32"),
        IpAddr::V6(_) => format!("{vip}/128"),
    }
}

fn run_ip(args: &[&str], harmless: &[&str]) -> Result<(), VrrpError> {
    let what = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| VrrpError::Io {
            what: format!("run `{what}` (is iproute2 installed?)"),
            error,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lower = stderr.to_lowercase();
    if out.status.success() || harmless.iter().any(|h| lower.contains(&h.to_lowercase())) {
        return Ok(());
    }
    if stderr.contains("Operation not permitted") {
        return Err(VrrpError::Capability {
            capability: "CAP_NET_ADMIN",
            what,
        });
    }
    Err(VrrpError::Io {
        what,
        error: std::io::Error::other(stderr.trim().to_string()),
    })
}

/// One gratuitous ARP request for `vip` from `interface`'s MAC address, broadcast (RFC 5227
/// §3's announcement: sender and target protocol address both the VIP).
///
/// # Errors
///
/// [`VrrpError::Capability`] (CAP_NET_RAW) for the AF_PACKET socket, [`VrrpError::Io`].
pub fn gratuitous_arp(interface: &str, vip: Ipv4Addr) -> Result<(), VrrpError> {
    let dest = link_addr(interface).ok_or_else(|| VrrpError::Interface {
        message: format!("interface {interface} has no link-layer address"),
    })?;
    let mac = dest.addr().unwrap_or_default();
    let frame = arp_frame(mac, vip);
    let io = |what: &str| {
        let what = format!("{what} (interface {interface})");
        move |e: nix::Error| VrrpError::from_io(what, "CAP_NET_RAW", std::io::Error::from(e))
    };
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::empty(),
        None,
    )
    .map_err(io("open an AF_PACKET socket for gratuitous ARP"))?;
    sendto(fd.as_raw_fd(), &frame, &dest, MsgFlags::empty()).map_err(io("send gratuitous ARP"))?;
    Ok(())
}

/// One unsolicited neighbour advertisement for `vip` (RFC 4861 §4.4 and §7.2.6: Override
/// set, the interface's link-layer address as an option) to all nodes (ff02::1), hop limit
/// 255; the kernel fills in the ICMPv6 checksum.
///
/// # Errors
///
/// [`VrrpError::Capability`] (CAP_NET_RAW) for the ICMPv6 socket, [`VrrpError::Io`].
pub fn unsolicited_na(interface: &str, vip: Ipv6Addr) -> Result<(), VrrpError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mac = link_addr(interface)
        .and_then(|l| l.addr())
        .ok_or_else(|| VrrpError::Interface {
            message: format!("interface {interface} has no link-layer address"),
        })?;
    let io = |what: &str| {
        let what = format!("{what} (interface {interface})");
        move |e: std::io::Error| VrrpError::from_io(what, "CAP_NET_RAW", e)
    };
    let ifindex =
        nix::net::if_::if_nametoindex(interface).map_err(|e| io("find the interface")(e.into()))?;
    let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(io("open an ICMPv6 socket for neighbour advertisements"))?;
    sock.set_multicast_hops_v6(255)
        .map_err(io("set hop limit 255"))?;
    sock.set_multicast_if_v6(ifindex)
        .map_err(io("choose the interface"))?;
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, ifindex);
    sock.send_to(&na_message(mac, vip), &SocketAddr::V6(all_nodes).into())
        .map_err(io("send an unsolicited neighbour advertisement"))?;
    Ok(())
}

/// The ICMPv6 neighbour advertisement (checksum left 0 for the kernel).
pub fn na_message(mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0]; // type, code, checksum, flags: Override
    m.extend_from_slice(&vip.octets());
    m.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    m.extend_from_slice(&mac);
    m
}

/// The Ethernet frame of a gratuitous ARP request (RFC 826 layout).
pub fn arp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_frame_layout() {
        let f = arp_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 79, 0, 100));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[28..32], &[10, 79, 0, 100]);
        assert_eq!(&f[38..42], &[10, 79, 0, 100]);
    }

    #[test]
    fn na_layout() {
        let m = na_message([2, 0, 0, 0, 0, 1], "2001:db8::7".parse().unwrap());
        assert_eq!(m.len(), 32);
        assert_eq!(
            (m[0], m[4]),
            (136, 0x20),
            "neighbour advertisement, Override"
        );
        assert_eq!(
            &m[8..24],
            &"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], &[2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn loopback_is_found_by_address() {
        assert_eq!(interface_of("127.0.0.1".parse().unwrap()).unwrap(), "lo");
        let e = interface_of("192.0.2.1".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("no interface holds"), "{e}");
    }
}
