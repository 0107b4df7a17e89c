//! The request handler hickory's server calls for every well-formed query: zone transfers
//! (AXFR, RFC 5936; IXFR answered in full, RFC 1995 §4) for the configured secondaries, every
//! other query by hickory's [`Catalog`](hickory_server::zone_handler::Catalog) over the zone
//! version in force; and the counters of `/metrics`.

use std::collections::BTreeMap;
use std::iter;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use hickory_proto::op::{Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::zone::Zone;

/// Queries answered, by query type and response code.
#[derive(Debug, Default)]
pub struct Counters {
    /// Keyed by the query type's number (`None`: no question), named only at scrape time:
    /// nothing is allocated per query.
    by_type_rcode: Mutex<BTreeMap<(Option<u16>, &'static str), u64>>,
    total: AtomicU64,
    transfers: AtomicU64,
}

impl Counters {
    fn record(&self, qtype: Option<RecordType>, rcode: ResponseCode) {
        let qtype = qtype.map(u16::from);
        let mut map = self
            .by_type_rcode
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry((qtype, rcode_name(rcode))).or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Every (query type, response code) with its count.
    pub fn by_type_rcode(&self) -> Vec<((String, &'static str), u64)> {
        let map = self
            .by_type_rcode
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(&(qtype, rcode), &n)| {
                let name =
                    qtype.map_or_else(|| "none".to_string(), |t| RecordType::from(t).to_string());
                ((name, rcode), n)
            })
            .collect()
    }

    /// Queries answered since the node started.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Zone transfers sent in full since the node started.
    pub fn transfers(&self) -> u64 {
        self.transfers.load(Ordering::Relaxed)
    }
}

/// The mnemonic of a response code, as `dig` prints it (RFC 1035 §4.1.1, RFC 6895).
fn rcode_name(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

/// What hickory's server calls: the zone in force, who may transfer it, the counters.
pub struct Handler {
    /// The zone version in force, swapped whole when the answer set changes.
    pub zone: Arc<ArcSwap<Zone>>,
    /// Addresses allowed to transfer the zone (`[dns] secondaries`).
    pub secondaries: Vec<IpAddr>,
    /// Queries by type and response code.
    pub counters: Arc<Counters>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let zone = self.zone.load_full();
        let qtype = request.queries.queries().first().map(|q| q.query_type());
        let transfer = matches!(qtype, Some(RecordType::AXFR | RecordType::IXFR));
        let info = if transfer && request.metadata.op_code == OpCode::Query {
            self.transfer(&zone, request, response_handle).await
        } else {
            zone.catalog
                .handle_request::<R, T>(request, response_handle)
                .await
        };
        self.counters.record(qtype, info.response_code);
        info
    }
}

impl Handler {
    /// AXFR or IXFR: the whole zone in one message (SOA, every record, SOA), over TCP, to a
    /// secondary; REFUSED to anyone else or for another zone. Over UDP an IXFR gets the SOA
    /// alone (RFC 1995 §2: the client retries over TCP) and an AXFR is refused.
    async fn transfer<R: ResponseHandler>(
        &self,
        zone: &Zone,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let origin = LowerName::new(&zone.records[0].name);
        let query = &request.queries.queries()[0];
        let allowed = self.secondaries.contains(&request.src().ip());
        let udp = request.protocol() == Protocol::Udp;
        let qtype = query.query_type();
        let mut meta = Metadata::response_from_request(&request.metadata);
        let refuse = !allowed || *query.name() != origin || (udp && qtype == RecordType::AXFR);
        let records: Vec<_> = if refuse {
            tracing::info!(src = %request.src(), %qtype, "zone transfer refused");
            meta.response_code = ResponseCode::Refused;
            Vec::new()
        } else if udp {
            meta.authoritative = true;
            zone.records[..1].iter().collect()
        } else {
            meta.authoritative = true;
            self.counters.transfers.fetch_add(1, Ordering::Relaxed);
            tracing::info!(src = %request.src(), serial = zone.serial, "zone transfer");
            zone.records
                .iter()
                .chain(iter::once(&zone.records[0]))
                .collect()
        };
        let response = MessageResponseBuilder::new(&request.queries, None).build(
            meta,
            records,
            iter::empty(),
            iter::empty(),
            iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(src = %request.src(), "zone transfer not sent: {e}");
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header {
                    metadata: meta,
                    counts: Default::default(),
                })
            }
        }
    }
}
