use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn any(_: u8) -> bool {
    true
}

/// A VRRPv3 advertisement as keepalived (vrrp_version 3) sends it for `virtual_router_id
/// 79`, `priority 100`, `advert_int 1`, one VIP 10.79.0.100, from 10.79.0.1 to 224.0.0.18;
/// the checksum computed independently of this crate (Python, RFC 1071 over the
/// pseudo-header and message).
const KEEPALIVED_V4: [u8; 12] = [
    0x31, 0x4f, 0x64, 0x01, 0x00, 0x64, 0x74, 0xb9, 0x0a, 0x4f, 0x00, 0x64,
];

/// An IPv6 advertisement: VRID 7, priority 255 (owner), 300 cs, 2001:db8::7, from fe80::1 to
/// ff02::12 (the pseudo-header of RFC 2460 §8.1).
const V6: [u8; 24] = [
    0x31, 0x07, 0xff, 0x01, 0x01, 0x2c, 0xa2, 0xeb, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0x07,
];

/// A whole IPv4 datagram captured from keepalived 2.2.7 (`vrrp_version 3`,
/// `virtual_router_id 79`, `priority 100`, `advert_int 1`, VIPs 10.79.0.100 and
/// 10.79.0.101) on a veth in a network namespace, read by a raw socket of protocol 112.
const CAPTURED: &str = "45c0002400010000ff70d0460a4f0001e0000012\
                        314f640200646a000a4f00640a4f0065";

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn decodes_a_captured_keepalived_datagram() {
    let datagram = unhex(CAPTURED);
    let p = split_ipv4(&datagram).unwrap();
    assert_eq!(
        (p.src, p.dst, p.ttl),
        (Ipv4Addr::new(10, 79, 0, 1), MULTICAST_V4, 255)
    );
    let a = Advert::decode(p.payload, p.src.into(), p.dst.into(), |v| v == 79).unwrap();
    assert_eq!((a.vrid, a.priority, a.max_adver_int), (79, 100, 100));
    assert_eq!(a.addrs, vec![ip("10.79.0.100"), ip("10.79.0.101")]);
    assert_eq!(
        a.encode(p.src.into(), p.dst.into()),
        p.payload,
        "we write what keepalived writes"
    );
}

#[test]
fn decodes_keepalived_advertisement() {
    let a = Advert::decode(&KEEPALIVED_V4, ip("10.79.0.1"), ip("224.0.0.18"), any).unwrap();
    assert_eq!(
        a,
        Advert {
            vrid: 79,
            priority: 100,
            max_adver_int: 100,
            addrs: vec![ip("10.79.0.100")]
        }
    );
    assert_eq!(a.encode(ip("10.79.0.1"), ip("224.0.0.18")), KEEPALIVED_V4);
}

#[test]
fn ipv6_round_trip_with_its_pseudo_header() {
    let (src, dst) = (ip("fe80::1"), ip("ff02::12"));
    let a = Advert::decode(&V6, src, dst, any).unwrap();
    assert_eq!((a.vrid, a.priority, a.max_adver_int), (7, 255, 300));
    assert_eq!(a.addrs, vec![ip("2001:db8::7")]);
    assert_eq!(a.encode(src, dst), V6);
    // The same bytes from another source fail: the pseudo-header is covered.
    let e = Advert::decode(&V6, ip("fe80::2"), dst, any).unwrap_err();
    assert_eq!(e, PacketError::Checksum);
}

#[test]
fn checksum_covers_the_ipv4_pseudo_header() {
    let e = Advert::decode(&KEEPALIVED_V4, ip("10.79.0.2"), ip("224.0.0.18"), any);
    assert_eq!(e, Err(PacketError::Checksum));
    let mut flipped = KEEPALIVED_V4;
    flipped[2] = 101;
    let e = Advert::decode(&flipped, ip("10.79.0.1"), ip("224.0.0.18"), any);
    assert_eq!(e, Err(PacketError::Checksum));
}

#[test]
fn refuses_with_a_typed_error() {
    let (s, d) = (ip("10.79.0.1"), ip("224.0.0.18"));
    let with = |at: usize, value: u8| {
        let mut p = KEEPALIVED_V4;
        p[at] = value;
        Advert::decode(&p, s, d, any).unwrap_err()
    };
    assert_eq!(with(0, 0x21), PacketError::Version(2));
    assert_eq!(with(0, 0x32), PacketError::Type(2));
    assert_eq!(with(3, 0), PacketError::NoAddress);
    assert!(matches!(with(3, 2), PacketError::Length { count: 2, .. }));
    let e = Advert::decode(&KEEPALIVED_V4, s, d, |v| v == 51).unwrap_err();
    assert_eq!(e, PacketError::NotOurs(79));
    let mut long = KEEPALIVED_V4.to_vec();
    long.push(0);
    assert!(matches!(
        Advert::decode(&long, s, d, any),
        Err(PacketError::Length { .. })
    ));
}

#[test]
fn garbage_never_panics() {
    let (s, d) = (ip("10.79.0.1"), ip("224.0.0.18"));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..200usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        assert!(Advert::decode(&bytes, s, d, any).is_err() || len >= 12);
        let _ = split_ipv4(&bytes);
    }
    assert!(Advert::decode(&[], s, d, any).is_err());
    assert!(split_ipv4(&[0x45]).is_err());
}

#[test]
fn max_adver_int_is_twelve_bits() {
    let a = Advert {
        vrid: 1,
        priority: 1,
        max_adver_int: 0xffff,
        addrs: vec![ip("127.0.0.1")],
    };
    let b = a.encode(ip("127.0.0.1"), ip("127.0.0.2"));
    assert_eq!(&b[4..6], &[0x0f, 0xff]);
    let back = Advert::decode(&b, ip("127.0.0.1"), ip("127.0.0.2"), any).unwrap();
    assert_eq!(back.max_adver_int, MAX_ADVER_INT);
}

fn ipv4_datagram(ttl: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0xc0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, ttl, proto, 0, 0, 10, 79, 0, 1, 224, 0, 0, 18]);
    h.extend_from_slice(payload);
    h
}

#[test]
fn raw_ipv4_input_checks_ttl_and_protocol() {
    let p = ipv4_datagram(255, 112, &KEEPALIVED_V4);
    let split = split_ipv4(&p).unwrap();
    assert_eq!(split.src, Ipv4Addr::new(10, 79, 0, 1));
    assert_eq!(split.dst, MULTICAST_V4);
    assert_eq!(split.payload, KEEPALIVED_V4);
    assert_eq!(
        split_ipv4(&ipv4_datagram(254, 112, &KEEPALIVED_V4)),
        Err(PacketError::Ttl(254))
    );
    assert!(matches!(
        split_ipv4(&ipv4_datagram(255, 6, &KEEPALIVED_V4)),
        Err(PacketError::NotVrrp(_))
    ));
}
