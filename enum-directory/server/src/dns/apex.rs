//! The apex SOA and NS rdata of a zone as configured, in wire form: one rendering for the DNS engine's zone and
//! for zone transfer, so secondaries receive exactly the apex the directory answers with.

use hickory_proto::rr::Name;

use super::wire::name_to_wire_lower;
use super::zone::{ZoneConfig, ZoneError};

/// SOA (at any serial) and NS rdata of one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApexRdata {
    /// MNAME and RNAME, wire format.
    soa_names: Vec<u8>,
    /// Refresh, retry, expire, minimum.
    timers: [u32; 4],
    /// Each name server, wire format, sorted, without duplicates.
    ns: Vec<Vec<u8>>,
}

impl ApexRdata {
    /// The apex of `c`: its name servers (default `ns1.<apex>`; the first is the SOA MNAME), hostmaster (default
    /// `hostmaster.<apex>`) and SOA timers.
    pub fn new(c: &ZoneConfig) -> Result<ApexRdata, ZoneError> {
        let under_apex = |label: &str| {
            Name::from_ascii(label).expect("a label").append_domain(&c.apex).map_err(|_| ZoneError::BadApex)
        };
        let ns_names = if c.name_servers.is_empty() { vec![under_apex("ns1")?] } else { c.name_servers.clone() };
        let hostmaster = match &c.hostmaster {
            Some(h) => h.clone(),
            None => under_apex("hostmaster")?,
        };
        let mut soa_names = name_to_wire_lower(&ns_names[0]);
        soa_names.extend_from_slice(&name_to_wire_lower(&hostmaster));
        let mut ns: Vec<Vec<u8>> = ns_names.iter().map(name_to_wire_lower).collect();
        ns.sort();
        ns.dedup();
        Ok(ApexRdata { soa_names, timers: [c.soa_refresh, c.soa_retry, c.soa_expire, c.negative_ttl], ns })
    }

    /// The SOA rdata at `serial`.
    pub fn soa(&self, serial: u32) -> Vec<u8> {
        let mut rdata = Vec::with_capacity(self.soa_names.len() + 20);
        rdata.extend_from_slice(&self.soa_names);
        rdata.extend_from_slice(&serial.to_be_bytes());
        for t in self.timers {
            rdata.extend_from_slice(&t.to_be_bytes());
        }
        rdata
    }

    /// The NS rdatas.
    pub fn ns(&self) -> &[Vec<u8>] {
        &self.ns
    }

    /// The SOA minimum (the negative TTL).
    pub fn negative_ttl(&self) -> u32 {
        self.timers[3]
    }
}
