//! Target `dns`: raw DNS message bytes → the answer a dns node of the built-in farm would
//! send, or nothing ([`Handler::answer_packet`], the path of every UDP datagram and TCP
//! message).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::xfer::Protocol;
use webfarm_config::Farm;
use webfarm_dns::handler::{Counters, Handler};
use webfarm_dns::zone::ZoneSpec;

/// A secondary of the fuzzed node: may transfer the zone over TCP.
const SECONDARY: [u8; 4] = [127, 0, 0, 1];
/// Any other client.
const CLIENT: [u8; 4] = [127, 0, 0, 9];

struct Node {
    rt: tokio::runtime::Runtime,
    handler: Handler,
    origin: Name,
    site: Vec<IpAddr>,
}

thread_local! {
    static NODE: RefCell<Option<Node>> = const { RefCell::new(None) };
}

fn node() -> Node {
    let farm = Farm::builtin();
    let spec = ZoneSpec::from_farm(&farm).expect("the built-in farm's zone");
    let site = farm.site_addresses();
    let zone = spec
        .build(&site, 7)
        .expect("the built-in farm's zone builds");
    Node {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime"),
        handler: Handler {
            zone: Arc::new(ArcSwap::from_pointee(zone)),
            secondaries: vec![IpAddr::from(SECONDARY)],
            counters: Arc::new(Counters::default()),
        },
        origin: spec.origin,
        site,
    }
}

/// Checks one input: the packet over UDP from a client and over TCP from a secondary.
///
/// # Panics
///
/// When an answer does not parse, is not a response, carries another id or opcode than the
/// query, is longer than the transport allows, names another question, or answers a name
/// outside the zone; or when the node no longer answers `www.foobar.com` afterwards.
pub fn check(data: &[u8]) {
    NODE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let node = cell.get_or_insert_with(node);
        for (protocol, from) in [(Protocol::Udp, CLIENT), (Protocol::Tcp, SECONDARY)] {
            let src = SocketAddr::new(IpAddr::from(from), 53000);
            let answer = node
                .rt
                .block_on(node.handler.answer_packet(data, src, protocol));
            check_answer(node, data, protocol, answer.as_deref());
        }
        still_answers(node);
    });
}

fn check_answer(node: &Node, query: &[u8], protocol: Protocol, answer: Option<&[u8]>) {
    let Some(bytes) = answer else {
        // Dropped: only a message without a header, or a response, may be.
        let is_response = query.len() >= 12 && query[2] & 0x80 != 0;
        assert!(
            query.len() < 12 || is_response,
            "a query with a header got no answer over {protocol}"
        );
        return;
    };
    assert!(query.len() >= 12, "an answer to a message without a header");
    let answer = Message::from_vec(bytes).unwrap_or_else(|e| {
        panic!("the node's answer does not parse ({e}): {bytes:02x?}");
    });
    let meta = &answer.metadata;
    assert_eq!(
        meta.id,
        u16::from_be_bytes([query[0], query[1]]),
        "the answer's id"
    );
    assert_eq!(meta.message_type, MessageType::Response, "QR must be set");
    let opcode = OpCode::from_u8((query[2] >> 3) & 0x0f);
    assert_eq!(meta.op_code, opcode, "the answer's opcode");
    let request = Message::from_vec(query).ok();
    let limit = match (protocol, request.as_ref().and_then(|r| r.edns.as_ref())) {
        (Protocol::Udp, Some(edns)) => usize::from(edns.max_payload().max(512)),
        (Protocol::Udp, None) => 512,
        _ => usize::from(u16::MAX),
    };
    assert!(
        bytes.len() <= limit,
        "{} bytes over {protocol}",
        bytes.len()
    );
    if let Some(request) = &request {
        if !answer.queries.is_empty() {
            assert_eq!(answer.queries.len(), request.queries.len(), "the question");
            for (a, q) in answer.queries.iter().zip(&request.queries) {
                assert!(
                    a.name().eq_case(q.name()) || a.name() == q.name(),
                    "question {} answered as {}",
                    q.name(),
                    a.name()
                );
                assert_eq!(
                    (a.query_type(), a.query_class()),
                    (q.query_type(), q.query_class())
                );
            }
        }
    }
    // Authoritative for its zone only: never an answer about another name (no open resolver).
    for record in answer.answers.iter().chain(&answer.authorities) {
        assert!(
            node.origin.zone_of(&record.name),
            "answered {} outside {}",
            record.name,
            node.origin
        );
    }
}

/// The node still answers the site's name with its addresses.
fn still_answers(node: &Node) {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    let site = Name::from_ascii("www.foobar.com.").expect("a name");
    m.add_query(Query::query(site, RecordType::A));
    let packet = m.to_vec().expect("a query encodes");
    let src = SocketAddr::new(IpAddr::from(CLIENT), 53001);
    let bytes = node
        .rt
        .block_on(node.handler.answer_packet(&packet, src, Protocol::Udp))
        .expect("the node answers www.foobar.com");
    let answer = Message::from_vec(&bytes).expect("its answer parses");
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let mut got: Vec<IpAddr> = answer
        .answers
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .collect();
    got.sort();
    let mut want = node.site.clone();
    want.sort();
    assert_eq!(got, want, "www.foobar.com's addresses");
}
