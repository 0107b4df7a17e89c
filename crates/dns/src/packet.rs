//! One raw DNS message in, the bytes the node would send back (or nothing), without a
//! socket: the path hickory's `Server` takes for every UDP datagram and TCP message, so that
//! a test or a fuzzer can drive [`Handler`] with any bytes.
//!
//! hickory-server 0.26 keeps that path private (`ServerContext::handle_request`); this is
//! the same sequence of its public parts, and the answer is encoded by hickory's own
//! [`ResponseHandle`] (UDP answers truncated to 512 bytes, or to the EDNS0 payload size the
//! query advertised, with TC set: RFC 1035 §4.2.1, RFC 6891 §6.2.5):
//!
//! 1. fewer than 12 bytes (no header): dropped, nothing is sent;
//! 2. a header but a message that does not parse: FORMERR with the query's id;
//! 3. a response (QR set): dropped, so the server cannot be used to reflect traffic;
//! 4. anything else: [`Handler`]'s answer.

use std::net::SocketAddr;

use futures_util::StreamExt as _;
use hickory_proto::op::{Header, MessageType, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::BufDnsStreamHandle;
use hickory_server::server::{Request, RequestHandler as _, ResponseHandle, ResponseHandler as _};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};

use crate::handler::Handler;

impl Handler {
    /// Answers the DNS message `packet` received from `src` over `protocol` (UDP or TCP;
    /// for TCP, the message without its 2-byte length prefix) as the running node does: the
    /// encoded answer, or `None` when the node sends nothing (no header, or a response).
    /// Counted in the handler's counters like any query.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a zone transfer's answer may be lost if the future is dropped.
    pub async fn answer_packet(
        &self,
        packet: &[u8],
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let mut decoder = BinDecoder::new(packet);
        let header = Header::read(&mut decoder).ok()?;
        let (stream, mut sent) = BufDnsStreamHandle::new(src);
        let mut handle = ResponseHandle::new(src, stream, protocol);
        match Request::from_bytes(packet.to_vec(), src, protocol) {
            Ok(request) if request.metadata.message_type == MessageType::Response => {
                return None;
            }
            Ok(request) => {
                self.handle_request::<_, TokioTime>(&request, handle).await;
            }
            Err(e) => {
                tracing::debug!(%src, id = header.metadata.id, "malformed query: {e}");
                // No question, as hickory's server answers (its `Queries::empty` is private).
                let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                    return None;
                };
                let response = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                if let Err(e) = handle.send_response(response).await {
                    tracing::warn!(%src, "FORMERR not sent: {e}");
                }
                drop(handle);
            }
        }
        // Every sender is gone: the stream ends after the answer, if one was sent.
        sent.next().await.map(|m| m.into_parts().0)
    }
}
