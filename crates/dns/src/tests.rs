//! The server on real sockets (127.0.0.1, port 0): answers, transfers, and malformed
//! packets over UDP and TCP, none of which may stop it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::handler::{Counters, Handler};
use crate::zone::ZoneSpec;

/// foobar.com with www.foobar.com and ns1 at 127.0.0.1, TTL 5 s.
pub(crate) fn spec() -> ZoneSpec {
    ZoneSpec {
        origin: Name::from_ascii("foobar.com.").unwrap(),
        site: Name::from_ascii("www.foobar.com.").unwrap(),
        ttl: 5,
        name_servers: vec![(
            Name::from_ascii("ns1.foobar.com.").unwrap(),
            "127.0.0.1".parse().unwrap(),
        )],
        extra: vec![],
    }
}

/// A server on 127.0.0.1 for which 127.0.0.1 is a secondary; its address and counters.
async fn server() -> (SocketAddr, Arc<Counters>, Server<Handler>) {
    let zone = spec()
        .build(
            &["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
            7,
        )
        .unwrap();
    let (udp, tcp) = crate::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let mut server = Server::new(Handler {
        zone: Arc::new(ArcSwap::from_pointee(zone)),
        secondaries: vec!["127.0.0.1".parse().unwrap()],
        counters: counters.clone(),
    });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(2), 8);
    (addr, counters, server)
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

async fn udp_exchange(addr: SocketAddr, packet: &[u8]) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let wait = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf));
    let n = wait.await.ok()?.ok()?;
    Some(Message::from_vec(&buf[..n]).expect("an answer hickory can read"))
}

async fn tcp_exchange(addr: SocketAddr, packet: &[u8]) -> Option<Message> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let len = u16::try_from(packet.len()).unwrap().to_be_bytes();
    s.write_all(&len).await.ok()?;
    s.write_all(packet).await.ok()?;
    let read = async {
        let n = s.read_u16().await.ok()?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()??;
    Some(Message::from_vec(&buf).expect("an answer hickory can read"))
}

/// Packets that are not DNS queries, or broken ones.
fn garbage() -> Vec<Vec<u8>> {
    let good = query("www.foobar.com.", RecordType::A);
    let mut noise = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..300 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        noise.push((x >> 16) as u8);
    }
    let mut lying_counts = good.clone();
    lying_counts[4..12].copy_from_slice(&[0xff; 8]);
    vec![
        vec![],
        vec![0],
        vec![1, 2, 3, 4, 5],
        good[..12].to_vec(),
        good[..good.len() - 3].to_vec(),
        lying_counts,
        noise,
        vec![0xff; 512],
    ]
}

#[tokio::test]
async fn answers_authoritatively_nxdomain_inside_and_refused_outside() {
    let (addr, counters, _server) = server().await;
    let a = udp_exchange(addr, &query("www.foobar.com.", RecordType::A))
        .await
        .unwrap();
    assert!(a.metadata.authoritative);
    assert_eq!(a.answers.len(), 2);
    let nx = udp_exchange(addr, &query("nope.foobar.com.", RecordType::A))
        .await
        .unwrap();
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    let out = udp_exchange(addr, &query("example.org.", RecordType::A))
        .await
        .unwrap();
    assert_eq!(out.metadata.response_code, ResponseCode::Refused);
    let tcp = tcp_exchange(addr, &query("foobar.com.", RecordType::NS))
        .await
        .unwrap();
    assert_eq!(tcp.answers[0].record_type(), RecordType::NS);
    let counts = counters.by_type_rcode();
    assert!(
        counts.contains(&(("A".into(), "NXDOMAIN"), 1)),
        "{counts:?}"
    );
}

#[tokio::test]
async fn a_secondary_gets_the_whole_zone_between_two_soas() {
    let (addr, counters, _server) = server().await;
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let m = tcp_exchange(addr, &query("foobar.com.", qtype))
            .await
            .unwrap();
        let types: Vec<_> = m.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types.first(), Some(&RecordType::SOA), "{qtype}");
        assert_eq!(types.last(), Some(&RecordType::SOA), "{qtype}");
        assert_eq!(types.len(), 6, "{qtype}: {types:?}");
    }
    assert_eq!(counters.transfers(), 2);
    let udp = udp_exchange(addr, &query("foobar.com.", RecordType::AXFR))
        .await
        .unwrap();
    assert_eq!(udp.metadata.response_code, ResponseCode::Refused);
    let other = tcp_exchange(addr, &query("www.foobar.com.", RecordType::AXFR))
        .await
        .unwrap();
    assert_eq!(other.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_goes_on() {
    let (addr, _, _server) = server().await;
    let mut formerr = 0;
    for (i, packet) in garbage().iter().enumerate() {
        let answers = [
            udp_exchange(addr, packet).await,
            tcp_exchange(addr, packet).await,
        ];
        for m in answers.into_iter().flatten() {
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::FormErr,
                "packet {i}"
            );
            formerr += 1;
        }
        // A TCP client that announces more than it sends, then leaves.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x01, 0xf4]).await.unwrap();
        s.write_all(packet).await.unwrap();
        drop(s);
        let good = query("www.foobar.com.", RecordType::A);
        let m = udp_exchange(addr, &good)
            .await
            .expect("still answers over UDP");
        assert_eq!(m.answers.len(), 2, "after packet {i}");
        let m = tcp_exchange(addr, &good)
            .await
            .expect("still answers over TCP");
        assert_eq!(m.answers.len(), 2, "after packet {i}");
    }
    // Those with a readable header (12 bytes or more) are answered FORMERR.
    assert!(formerr >= 4, "{formerr} FORMERR answers");
}
