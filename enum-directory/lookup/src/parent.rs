//! The apex's DS set as its parent zone publishes it, to compare with the DS set a trust list names for the
//! directory (the charter's): [`parent_ds`] asks, [`DsRecord`] is what is compared.
//!
//! Whether the servers asked serve the parent zone at all is read from their answer. DS records for the apex,
//! or a negative answer whose SOA is a zone above the apex, come from the parent (a server of the parent zone,
//! or a recursive resolver that asked it). REFUSED, or a negative answer from the apex's own zone (what a
//! server of the directory's zone alone answers to a DS query at its apex), mean they do not:
//! [`ParentDs::NotServed`], and nothing can be compared.
//!
//! The set is read as published, not validated: the lookup has no trust anchor above the apex. Trust in the
//! directory still comes from the configured anchor alone; the comparison finds a trust list and a parent that
//! disagree (a list left stale after a KSK roll, or a parent changed by someone else). Someone who can forge
//! the answer can make it fail (which they could do to the lookup anyway) or pass (which gains them nothing the
//! anchor does not give).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::dnssec::rdata::{DNSSECRData, DS};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::anchor::{AnchorEntry, TrustAnchor};
use crate::error::LookupError;
use crate::resolve::net_error;

/// A DS record as compared: what identifies the key it vouches for (TTL, class and the owner's case do not
/// count).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DsRecord {
    /// Key tag.
    pub key_tag: u16,
    /// DNSSEC algorithm number.
    pub algorithm: u8,
    /// Digest type (2 = SHA-256, 4 = SHA-384).
    pub digest_type: u8,
    /// The digest.
    pub digest: Vec<u8>,
}

impl From<&DS> for DsRecord {
    fn from(ds: &DS) -> Self {
        DsRecord {
            key_tag: ds.key_tag(),
            algorithm: u8::from(ds.algorithm()),
            digest_type: u8::from(ds.digest_type()),
            digest: ds.digest().to_vec(),
        }
    }
}

impl std::fmt::Display for DsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DS {} {} {} {}", self.key_tag, self.algorithm, self.digest_type, hex::encode_upper(&self.digest))
    }
}

/// The DS entries of `anchor` (its DNSKEY entries are not DS records and are left out).
pub fn ds_records(anchor: &TrustAnchor) -> BTreeSet<DsRecord> {
    anchor
        .entries()
        .iter()
        .filter_map(|e| match e {
            AnchorEntry::Ds(ds) => Some(DsRecord::from(ds)),
            AnchorEntry::Dnskey(_) => None,
        })
        .collect()
}

/// What the servers said about the apex's DS set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentDs {
    /// The parent zone answered: the DS records it publishes for the apex (empty: an unsigned delegation, or
    /// no delegation at all).
    Published {
        /// The parent zone, when the answer names it (the SOA of a negative answer).
        zone: Option<Name>,
        /// The records.
        ds: BTreeSet<DsRecord>,
    },
    /// The servers do not serve the apex's parent zone (they refused, or the apex's own zone answered).
    NotServed {
        /// Why the answer says so.
        reason: &'static str,
    },
}

/// Asks `servers` in turn (the next when one cannot be reached) for the DS set of `apex`.
pub async fn parent_ds(servers: &[SocketAddr], apex: &Name, timeout: Duration) -> Result<ParentDs, LookupError> {
    let mut last = LookupError::Timeout;
    for server in servers {
        match crate::keys::query(*server, apex, RecordType::DS, timeout).await {
            Ok(message) => return classify(&message, apex),
            Err(e) => last = net_error(e),
        }
    }
    Err(last)
}

/// Reads a DS answer for `apex` (pure).
pub(crate) fn classify(message: &Message, apex: &Name) -> Result<ParentDs, LookupError> {
    let soa_zone = message.authorities.iter().find(|r| r.record_type() == RecordType::SOA).map(|r| r.name.clone());
    // A negative answer from a zone above the apex is the parent's; from the apex (or below) it is the child's.
    let negative = |what: &'static str| match soa_zone {
        Some(zone) if zone.zone_of(apex) && zone != *apex => {
            Ok(ParentDs::Published { zone: Some(zone), ds: BTreeSet::new() })
        }
        Some(_) => Ok(ParentDs::NotServed {
            reason: "the answer's SOA is not a zone above the apex (the apex's own zone answered)",
        }),
        None => Ok(ParentDs::NotServed { reason: what }),
    };
    match message.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return negative("NXDOMAIN without the SOA of the zone that says so"),
        ResponseCode::Refused => return Ok(ParentDs::NotServed { reason: "the server refused the DS query" }),
        ResponseCode::ServFail => return Err(LookupError::ServerFailure),
        code => return Err(LookupError::ErrorResponse(code)),
    }
    let ds: BTreeSet<DsRecord> = message
        .answers
        .iter()
        .filter(|r| r.name == *apex)
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::DS(ds)) => Some(DsRecord::from(ds)),
            _ => None,
        })
        .collect();
    if !ds.is_empty() {
        return Ok(ParentDs::Published { zone: None, ds });
    }
    negative("no DS and no SOA in the answer (a referral, or a server that does not say whose zone it is)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::SOA;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn answer(code: ResponseCode, answers: Vec<Record>, soa_owner: Option<&str>) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = code;
        m.answers = answers;
        if let Some(owner) = soa_owner {
            let soa = SOA::new(name("ns.test."), name("h.test."), 1, 3600, 600, 86400, 300);
            m.authorities = vec![Record::from_rdata(name(owner), 300, RData::SOA(soa))];
        }
        m
    }

    #[test]
    fn whose_zone_answered_decides_whether_the_parent_was_asked() {
        let apex = name("e164.tincan.test.");
        let anchor: TrustAnchor = format!("e164.tincan.test. IN DS 4711 13 2 {}", "9A".repeat(32)).parse().unwrap();
        let ds_rr = match &anchor.entries()[0] {
            AnchorEntry::Ds(ds) => Record::from_rdata(apex.clone(), 300, RData::DNSSEC(DNSSECRData::DS(ds.clone()))),
            other => panic!("{other:?}"),
        };
        let published = classify(&answer(ResponseCode::NoError, vec![ds_rr], None), &apex).unwrap();
        assert_eq!(published, ParentDs::Published { zone: None, ds: ds_records(&anchor) });
        assert_eq!(ds_records(&anchor).iter().next().unwrap().to_string(), format!("DS 4711 13 2 {}", "9A".repeat(32)));

        // NODATA from the parent: an unsigned delegation. NXDOMAIN from the parent: no delegation. Both publish
        // nothing.
        for code in [ResponseCode::NoError, ResponseCode::NXDomain] {
            let got = classify(&answer(code, vec![], Some("tincan.test.")), &apex).unwrap();
            assert_eq!(got, ParentDs::Published { zone: Some(name("tincan.test.")), ds: BTreeSet::new() }, "{code}");
        }
        // The apex's own zone (the directory alone) answered, or nobody said whose zone it is, or refused.
        let child = classify(&answer(ResponseCode::NoError, vec![], Some("E164.tincan.test.")), &apex).unwrap();
        assert!(matches!(child, ParentDs::NotServed { .. }), "{child:?}");
        let unnamed = classify(&answer(ResponseCode::NoError, vec![], None), &apex).unwrap();
        assert!(matches!(unnamed, ParentDs::NotServed { .. }), "{unnamed:?}");
        let refused = classify(&answer(ResponseCode::Refused, vec![], None), &apex).unwrap();
        assert!(matches!(refused, ParentDs::NotServed { .. }), "{refused:?}");
        // A zone beside the apex is not its parent.
        let beside = classify(&answer(ResponseCode::NoError, vec![], Some("other.test.")), &apex).unwrap();
        assert!(matches!(beside, ParentDs::NotServed { .. }), "{beside:?}");
        // A failure is an error, not "not served": nobody answered.
        assert!(matches!(
            classify(&answer(ResponseCode::ServFail, vec![], None), &apex),
            Err(LookupError::ServerFailure)
        ));
    }
}
