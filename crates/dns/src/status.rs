//! What a dns node tells its admin server: readiness, `/status` details, `/metrics`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use webfarm_config::Farm;
use webfarm_node::metrics::Scrape;
use webfarm_node::status::{DnsAddressStatus, DnsStatus};
use webfarm_node::{Health, RoleStatus};

use crate::check::HealthTable;
use crate::handler::Counters;
use crate::zone::Zone;

pub(crate) struct DnsHealth {
    pub(crate) addr: SocketAddr,
    pub(crate) farm: Arc<Farm>,
    pub(crate) zone: Arc<ArcSwap<Zone>>,
    pub(crate) table: HealthTable,
    pub(crate) counters: Arc<Counters>,
}

impl fmt::Debug for DnsHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsHealth")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Health for DnsHealth {
    /// Ready once started: the UDP and TCP listeners are bound before `start` returns.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    fn status(&self) -> RoleStatus {
        let addresses = self
            .table
            .snapshot()
            .into_iter()
            .map(|a| DnsAddressStatus {
                addr: a.addr.to_string(),
                health: if a.up { "UP" } else { "DOWN" }.into(),
                check: a.last,
            })
            .collect();
        RoleStatus::Dns(DnsStatus {
            listen: self.addr.to_string(),
            zone: self.farm.dns.zone.clone(),
            serial: self.zone.load().serial,
            site: self.farm.site.clone(),
            addresses,
            answering: self
                .table
                .answering()
                .iter()
                .map(ToString::to_string)
                .collect(),
            queries: self.counters.total(),
        })
    }

    fn metrics(&self, s: &mut Scrape<'_>) -> fmt::Result {
        let series = self.counters.by_type_rcode();
        s.counters(
            "webfarm_dns_queries_total",
            "DNS queries answered, by query type and response code.",
            series
                .iter()
                .map(|((t, r), n)| ([("type", t.as_str()), ("rcode", *r)], *n)),
        )?;
        s.counter(
            "webfarm_dns_zone_transfers_total",
            "Zone transfers (AXFR, or IXFR answered in full) sent to secondaries.",
            self.counters.transfers(),
        )?;
        s.gauge(
            "webfarm_dns_soa_serial",
            "The SOA serial of the zone version in force.",
            i64::from(self.zone.load().serial),
        )?;
        let table = self.table.snapshot();
        s.gauges(
            "webfarm_dns_site_address_up",
            "1 when the site address passes the health check, 0 when it is DOWN.",
            table
                .iter()
                .map(|a| ([("address", a.addr.to_string())], i64::from(a.up))),
        )
    }
}
