//! The zone's data: what the farm says (SOA, NS and glue, the site's A/AAAA) plus `[dns]
//! records`, turned into hickory's records and a [`Catalog`] that answers queries for it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use webfarm_config::{Farm, Role};

use crate::DnsError;

/// What every version of the zone shares: names, TTL, name servers and the extra records.
/// Only the site's addresses and the serial change between versions.
#[derive(Debug, Clone)]
pub struct ZoneSpec {
    /// The zone's apex, fully qualified (`foobar.com.`).
    pub origin: Name,
    /// The site's name, fully qualified (`www.foobar.com.`).
    pub site: Name,
    /// TTL of the farm's records, in seconds.
    pub ttl: u32,
    /// `ns1.<zone>`... one per dns node in file order, with its address (the glue).
    pub name_servers: Vec<(Name, IpAddr)>,
    /// The records of `[dns] records`, parsed.
    pub extra: Vec<Record>,
}

/// One version of the zone: its records (SOA first) and the catalog that answers from them.
pub struct Zone {
    /// The SOA serial of this version.
    pub serial: u32,
    /// Every record, the SOA first: what AXFR sends between two copies of the SOA.
    pub records: Vec<Record>,
    /// hickory's authoritative lookup over `records`.
    pub catalog: Catalog,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("serial", &self.serial)
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

/// A name from the farm, fully qualified; `what` names its origin in the error.
fn fqdn(name: &str, what: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(name).map_err(|e| DnsError::Zone(format!("{what}: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

impl ZoneSpec {
    /// The zone as the farm describes it.
    ///
    /// # Errors
    ///
    /// [`DnsError::Zone`] for a bad record of `[dns] records`, naming its index and text.
    pub fn from_farm(farm: &Farm) -> Result<ZoneSpec, DnsError> {
        let settings = &farm.dns;
        let origin = fqdn(&settings.zone, "dns.zone")?;
        let ttl = u32::try_from(settings.ttl.as_secs()).unwrap_or(u32::MAX);
        let mut name_servers = Vec::new();
        for (i, node) in farm.nodes_with_role(Role::Dns).enumerate() {
            let ns = Name::from_ascii(format!("ns{}", i + 1))
                .and_then(|n| n.append_domain(&origin))
                .map_err(|e| DnsError::Zone(format!("name server of {}: {e}", node.name)))?;
            name_servers.push((ns, node.address));
        }
        let extra = settings
            .records
            .iter()
            .enumerate()
            .map(|(i, text)| parse_record(&origin, ttl, i, text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ZoneSpec {
            origin,
            site: fqdn(&farm.site, "site")?,
            ttl,
            name_servers,
            extra,
        })
    }

    /// The zone with the site answering `addresses`, at `serial`.
    ///
    /// # Errors
    ///
    /// [`DnsError::Zone`] when hickory refuses the records (a CNAME beside other data...).
    pub fn build(&self, addresses: &[IpAddr], serial: u32) -> Result<Zone, DnsError> {
        let records = self.records(addresses, serial);
        let mut sets: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
        for r in &records {
            let key = RrKey::new(LowerName::new(&r.name), r.record_type());
            sets.entry(key)
                .or_insert_with(|| RecordSet::with_ttl(r.name.clone(), r.record_type(), r.ttl))
                .insert(r.clone(), serial);
        }
        let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            self.origin.clone(),
            sets,
            ZoneType::Primary,
            // Transfers are answered by our handler, which checks the secondary's address.
            AxfrPolicy::Deny,
        )
        .map_err(DnsError::Zone)?;
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&self.origin), vec![Arc::new(handler)]);
        Ok(Zone {
            serial,
            records,
            catalog,
        })
    }

    /// SOA, NS, glue, the site's addresses, then the extra records.
    fn records(&self, addresses: &[IpAddr], serial: u32) -> Vec<Record> {
        let primary = self
            .name_servers
            .first()
            .map_or_else(|| self.origin.clone(), |(n, _)| n.clone());
        let hostmaster = Name::from_ascii("hostmaster")
            .and_then(|h| h.append_domain(&self.origin))
            .unwrap_or_else(|_| self.origin.clone());
        // Refresh 1 h and retry 10 min: a secondary that missed a NOTIFY catches up within the
        // hour; expire 14 days: it keeps answering that long without its primary. The
        // negative-caching TTL (the SOA minimum, RFC 2308) is the farm's TTL.
        let soa = SOA::new(primary, hostmaster, serial, 3600, 600, 1_209_600, self.ttl);
        let mut out = vec![Record::from_rdata(
            self.origin.clone(),
            self.ttl,
            RData::SOA(soa),
        )];
        for (ns, addr) in &self.name_servers {
            out.push(Record::from_rdata(
                self.origin.clone(),
                self.ttl,
                RData::NS(NS(ns.clone())),
            ));
            out.push(address_record(ns, self.ttl, *addr));
        }
        out.extend(
            addresses
                .iter()
                .map(|a| address_record(&self.site, self.ttl, *a)),
        );
        out.extend(self.extra.iter().cloned());
        out
    }
}

fn address_record(name: &Name, ttl: u32, addr: IpAddr) -> Record {
    let data = match addr {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, data)
}

/// One line of `[dns] records`, parsed by hickory's zone-file parser (RFC 1035 §5.1) with
/// the zone as `$ORIGIN` and `ttl` as `$TTL`.
fn parse_record(origin: &Name, ttl: u32, index: usize, text: &str) -> Result<Record, DnsError> {
    let bad = |why: String| DnsError::Zone(format!("dns.records[{index}]: {text:?}: {why}"));
    let file = format!("$TTL {ttl}\n{text}\n");
    let (_, sets) = Parser::new(file, None, Some(origin.clone()))
        .parse()
        .map_err(|e| bad(e.to_string()))?;
    let mut records = sets
        .into_values()
        .flat_map(|s| s.records_without_rrsigs().cloned().collect::<Vec<_>>());
    let record = records
        .next()
        .ok_or_else(|| bad("holds no record".into()))?;
    if !origin.zone_of(&record.name) {
        return Err(bad(format!("{} is outside the zone {origin}", record.name)));
    }
    if record.record_type() == RecordType::SOA {
        return Err(bad("the farm writes the SOA itself".into()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("foobar.com.").unwrap()
    }

    #[test]
    fn records_are_parsed_relative_to_the_zone() {
        let r = parse_record(&origin(), 5, 0, "mail 300 IN MX 10 mx.foobar.com.").unwrap();
        assert_eq!(r.name.to_string(), "mail.foobar.com.");
        assert_eq!((r.record_type(), r.ttl), (RecordType::MX, 300));
        let r = parse_record(&origin(), 5, 0, "@ TXT \"v=spf1 -all\"").unwrap();
        assert_eq!((r.record_type(), r.ttl), (RecordType::TXT, 5));
    }

    #[test]
    fn the_builtin_farm_has_a_zone() {
        let spec = ZoneSpec::from_farm(&Farm::builtin()).unwrap();
        assert_eq!(spec.origin.to_string(), "foobar.com.");
        assert_eq!(spec.name_servers.len(), 2);
        assert_eq!(spec.extra.len(), 3);
    }

    #[test]
    fn bad_records_name_their_index_and_text() {
        for (text, why) in [
            (
                "mail 300 IN MX ten mx",
                "dns.records[3]: \"mail 300 IN MX ten mx\"",
            ),
            ("x.example.org. A 192.0.2.1", "outside the zone"),
            ("@ SOA a. b. 1 2 3 4 5", "SOA"),
        ] {
            let e = parse_record(&origin(), 5, 3, text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn the_zone_starts_with_its_soa_and_has_ns_glue_and_the_site() {
        let zone = crate::tests::spec()
            .build(&["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()], 42)
            .unwrap();
        let types: Vec<_> = zone.records.iter().map(Record::record_type).collect();
        assert_eq!(
            types,
            [
                RecordType::SOA,
                RecordType::NS,
                RecordType::A,
                RecordType::A,
                RecordType::AAAA
            ]
        );
        assert_eq!(zone.serial, 42);
    }
}
