//! The VRRPv3 advertisement (RFC 5798 §5): encoding, decoding and the checksum.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                        IPvX Address(es)                       |
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4).
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group of VRRP advertisements (RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP advertisements (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit every advertisement is sent with and must arrive with (§5.1.1.3).
pub const TTL: u8 = 255;
/// The largest Max Adver Int: 12 bits of centiseconds (40.95 s).
pub const MAX_ADVER_INT: u16 = 0x0fff;

const HEADER: usize = 8;

/// One VRRPv3 advertisement (version 3, type 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Virtual Router Identifier, 1..=255 (§5.2.3).
    pub vrid: u8,
    /// The sender's priority: 255 address owner, 1..=254 backup, 0 master leaving (§5.2.4).
    pub priority: u8,
    /// Max Adver Int in centiseconds, 12 bits (§5.2.7).
    pub max_adver_int: u16,
    /// The virtual router's addresses, all of one family (§5.2.9).
    pub addrs: Vec<IpAddr>,
}

/// Why a received packet is not an advertisement to act on (RFC 5798 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header, or than its own address count says.
    #[error("wrong length: {len} bytes for {count} address(es) of {family}")]
    Length {
        /// Bytes received.
        len: usize,
        /// The packet's Count IPvX Addr.
        count: u8,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// Not version 3 (§5.2.1).
    #[error("VRRP version {0}, only version 3 is spoken")]
    Version(u8),
    /// Not an advertisement (type 1, §5.2.2).
    #[error("VRRP packet type {0}, not an advertisement (1)")]
    Type(u8),
    /// The checksum over the pseudo-header and the message does not match (§5.2.8).
    #[error("bad checksum")]
    Checksum,
    /// The IP TTL or hop limit is not 255: the packet crossed a router (§7.1).
    #[error("TTL {0}, must be 255")]
    Ttl(u8),
    /// Count IPvX Addr is 0.
    #[error("no address in the advertisement")]
    NoAddress,
    /// A virtual router this node does not run: ignored, not an error to log (§7.1).
    #[error("VRID {0} is not one of ours")]
    NotOurs(u8),
    /// Not an IPv4 packet of protocol 112 (raw socket input).
    #[error("not a VRRP over IP packet: {0}")]
    NotVrrp(&'static str),
}

impl Advert {
    /// Encodes the advertisement as sent from `src` to `dst` (the checksum covers their
    /// pseudo-header, §5.2.8). `max_adver_int` is cut to 12 bits.
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.addrs.len() * 16);
        let int = self.max_adver_int & MAX_ADVER_INT;
        out.extend_from_slice(&[0x31, self.vrid, self.priority, self.addrs.len() as u8]);
        out.extend_from_slice(&int.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in &self.addrs {
            match a {
                IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
                IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
            }
        }
        let sum = checksum(src, dst, &out);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Decodes a VRRP message received from `src` to `dst` (the IP header already
    /// removed), for a router running the VRIDs `ours` accepts.
    ///
    /// # Errors
    ///
    /// [`PacketError`]: version, type, length, count or checksum wrong, or a VRID not ours.
    pub fn decode(
        bytes: &[u8],
        src: IpAddr,
        dst: IpAddr,
        ours: impl Fn(u8) -> bool,
    ) -> Result<Advert, PacketError> {
        let family = if src.is_ipv4() { "IPv4" } else { "IPv6" };
        let short = |count| PacketError::Length {
            len: bytes.len(),
            count,
            family,
        };
        if bytes.len() < HEADER {
            return Err(short(0));
        }
        let (version, kind) = (bytes[0] >> 4, bytes[0] & 0x0f);
        if version != 3 {
            return Err(PacketError::Version(version));
        }
        if kind != 1 {
            return Err(PacketError::Type(kind));
        }
        let count = bytes[3];
        let width = if src.is_ipv4() { 4 } else { 16 };
        if count == 0 {
            return Err(PacketError::NoAddress);
        }
        // Trailing bytes are refused too: keepalived never sends them.
        if bytes.len() != HEADER + usize::from(count) * width {
            return Err(short(count));
        }
        if checksum(src, dst, bytes) != 0 {
            return Err(PacketError::Checksum);
        }
        if !ours(bytes[1]) {
            return Err(PacketError::NotOurs(bytes[1]));
        }
        let addrs = bytes[HEADER..].chunks(width).map(addr_of).collect();
        Ok(Advert {
            vrid: bytes[1],
            priority: bytes[2],
            max_adver_int: u16::from_be_bytes([bytes[4], bytes[5]]) & MAX_ADVER_INT,
            addrs,
        })
    }
}

fn addr_of(chunk: &[u8]) -> IpAddr {
    match <[u8; 4]>::try_from(chunk) {
        Ok(v4) => IpAddr::from(v4),
        Err(_) => {
            let mut v6 = [0u8; 16];
            v6.copy_from_slice(chunk);
            IpAddr::from(v6)
        }
    }
}

/// A received IPv4 datagram of a raw socket (header included), split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live as received.
    pub ttl: u8,
    /// The VRRP message.
    pub payload: &'a [u8],
}

/// Splits the IPv4 datagram a raw IPv4 socket returns, checking protocol 112 and TTL 255
/// (§7.1: "MUST verify that the IP TTL is 255").
///
/// # Errors
///
/// [`PacketError::NotVrrp`] for a short or non-VRRP datagram, [`PacketError::Ttl`].
pub fn split_ipv4(bytes: &[u8]) -> Result<Ipv4Packet<'_>, PacketError> {
    if bytes.len() < 20 || bytes[0] >> 4 != 4 {
        return Err(PacketError::NotVrrp("not IPv4"));
    }
    let ihl = usize::from(bytes[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if ihl < 20 || bytes.len() < ihl || total < ihl || bytes.len() < total {
        return Err(PacketError::NotVrrp("truncated IPv4 header"));
    }
    if bytes[9] != PROTOCOL {
        return Err(PacketError::NotVrrp("IP protocol is not 112"));
    }
    if bytes[8] != TTL {
        return Err(PacketError::Ttl(bytes[8]));
    }
    let ip = |at: usize| Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
    Ok(Ipv4Packet {
        src: ip(12),
        dst: ip(16),
        ttl: bytes[8],
        payload: &bytes[ihl..total],
    })
}

/// The checksum of RFC 5798 §5.2.8: the 16-bit one's complement of the one's complement
/// sum of the pseudo-header (RFC 2460 §8.1 for IPv6, the same fields for IPv4: source,
/// destination, protocol 112, length) and the VRRP message. Over a message that carries its
/// checksum, the result is 0 when it is right.
pub fn checksum(src: IpAddr, dst: IpAddr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&[0, PROTOCOL]);
            add(&(msg.len() as u16).to_be_bytes());
        }
        (s, d) => {
            add(&v6(s).octets());
            add(&v6(d).octets());
            add(&(msg.len() as u32).to_be_bytes());
            add(&[0, 0, 0, PROTOCOL]);
        }
    }
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests;
