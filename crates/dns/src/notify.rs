//! NOTIFY (RFC 1996): tells each secondary that the zone's serial changed, so it refreshes
//! at once instead of at the SOA's refresh interval.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use tokio::net::UdpSocket;

/// How many times a NOTIFY is sent before giving up (RFC 1996 §3.6: retransmit until
/// answered; BIND and Knot try five times).
const TRIES: u32 = 5;
/// How long each try waits for the answer.
const WAIT: Duration = Duration::from_secs(2);

/// Sends a NOTIFY for the zone whose SOA is `soa` to every secondary, from address `from`
/// (secondaries accept NOTIFY only from their primary's address), each in its own task.
pub fn notify_all(soa: &Record, secondaries: &[SocketAddr], from: IpAddr) {
    for &to in secondaries {
        let soa = soa.clone();
        tokio::spawn(async move {
            match notify(&soa, to, from).await {
                Ok((tries, ResponseCode::NoError)) => {
                    tracing::info!(secondary = %to, tries, "NOTIFY answered")
                }
                // A secondary of another primary (it allows NOTIFY from that one only).
                Ok((_, rcode)) => tracing::warn!(secondary = %to, %rcode, "NOTIFY refused"),
                Err(e) => tracing::warn!(secondary = %to, "NOTIFY: {e}"),
            }
        });
    }
}

/// One NOTIFY, retried until a matching answer comes; the number of tries it took and the
/// answer's response code.
async fn notify(soa: &Record, to: SocketAddr, from: IpAddr) -> Result<(u32, ResponseCode), String> {
    let id = message_id();
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    message.add_query(Query::query(soa.name.clone(), RecordType::SOA));
    // RFC 1996 §3.7: the SOA may travel in the answer section, as a hint.
    message.add_answer(soa.clone());
    let bytes = message
        .to_vec()
        .map_err(|e| format!("cannot encode: {e}"))?;
    let socket = UdpSocket::bind(SocketAddr::new(from, 0))
        .await
        .map_err(|e| format!("cannot bind {from}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    for attempt in 1..=TRIES {
        socket
            .send_to(&bytes, to)
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Ok(Ok((n, peer))) =
            tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            let Ok(answer) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let meta = &answer.metadata;
            if peer == to && meta.id == id && meta.message_type == MessageType::Response {
                return Ok((attempt, meta.response_code));
            }
        }
    }
    Err(format!("no answer after {TRIES} tries"))
}

/// A message id that differs between messages (RFC 5452 wants it unpredictable for queries;
/// a NOTIFY's answer is only matched, never trusted for data).
fn message_id() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}
