//! The query handler on its own: no panic on any input, well-formed answers, cached signatures.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tincan_common::{Clock, MockClock};
use tincan_directory::dns::{KeyAlgorithm, Transport, Zones, answer};
use tincan_enum_core::hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use tincan_enum_core::hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::dns_support::{APEX, owner, sample_records, zone_with};

fn zones_at(clock: Arc<MockClock>) -> (Zones, Arc<tincan_directory::dns::Zone>) {
    let zone = zone_with(clock, KeyAlgorithm::EcdsaP256Sha256, &sample_records());
    (Zones::new(vec![zone.clone()]), zone)
}

fn query(name: &str, t: RecordType, dnssec: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 77;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if dnssec {
        let mut e = Edns::new();
        e.set_dnssec_ok(true);
        e.set_max_payload(1232);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

fn ask(zones: &Zones, name: &str, t: RecordType, dnssec: bool) -> Message {
    Message::from_vec(&answer(zones, &query(name, t, dnssec), Transport::Udp).unwrap()).unwrap()
}

#[test]
fn answers_have_the_right_shape() {
    let (zones, _) = zones_at(Arc::new(MockClock::at(1_800_000_000)));
    let m = ask(&zones, &owner("+442079460001"), RecordType::NAPTR, true);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.authoritative);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.iter().filter(|r| r.record_type() == RecordType::NAPTR).count(), 2);
    assert_eq!(m.answers.iter().filter(|r| r.record_type() == RecordType::RRSIG).count(), 1);
    assert!(m.edns.as_ref().unwrap().flags().dnssec_ok);

    // Without DO: no RRSIG.
    let m = ask(&zones, &owner("+442079460001"), RecordType::NAPTR, false);
    assert_eq!(m.answers.len(), 2);
    assert!(m.edns.is_none());

    // Compact denial: NOERROR, SOA + RRSIG + NSEC + RRSIG in authority, NSEC owned by the query name.
    let missing = owner("+442079460003");
    let m = ask(&zones, &missing, RecordType::NAPTR, true);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let types: Vec<RecordType> = m.authorities.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::SOA, RecordType::RRSIG, RecordType::NSEC, RecordType::RRSIG]);
    let nsec = &m.authorities[2];
    assert_eq!(nsec.name.to_ascii(), missing);
    assert_eq!(nsec.ttl, 300, "negative TTL is the SOA minimum");
    let RData::DNSSEC(tincan_enum_core::hickory_proto::dnssec::rdata::DNSSECRData::NSEC(n)) = &nsec.data else {
        panic!("not an NSEC: {nsec:?}")
    };
    assert_eq!(n.next_domain_name().to_ascii(), format!("\\000.{missing}"));
    let bitmap: Vec<RecordType> = n.type_bit_maps().collect();
    assert_eq!(bitmap, [RecordType::RRSIG, RecordType::NSEC, RecordType::Unknown(128)]);

    // NODATA at an existing number lists what exists there.
    let m = ask(&zones, &owner("+442079460002"), RecordType::TXT, true);
    let nsec = m.authorities.iter().find(|r| r.record_type() == RecordType::NSEC).unwrap();
    let RData::DNSSEC(tincan_enum_core::hickory_proto::dnssec::rdata::DNSSECRData::NSEC(n)) = &nsec.data else {
        panic!()
    };
    assert_eq!(n.type_bit_maps().collect::<Vec<_>>(), [RecordType::NAPTR, RecordType::RRSIG, RecordType::NSEC]);

    // An empty non-terminal: NODATA with just RRSIG NSEC.
    let m = ask(&zones, "4.4.e164.tincan.test.", RecordType::NAPTR, true);
    let nsec = m.authorities.iter().find(|r| r.record_type() == RecordType::NSEC).unwrap();
    let RData::DNSSEC(tincan_enum_core::hickory_proto::dnssec::rdata::DNSSECRData::NSEC(n)) = &nsec.data else {
        panic!()
    };
    assert_eq!(n.type_bit_maps().collect::<Vec<_>>(), [RecordType::RRSIG, RecordType::NSEC]);

    // Apex.
    let m = ask(&zones, APEX, RecordType::DNSKEY, true);
    assert_eq!(m.answers.iter().filter(|r| r.record_type() == RecordType::DNSKEY).count(), 2);
    let m = ask(&zones, APEX, RecordType::SOA, false);
    assert_eq!(m.answers.len(), 1);

    // Outside: REFUSED, not authoritative.
    let m = ask(&zones, "example.com.", RecordType::A, false);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
}

#[test]
fn edns_version_and_opcode_errors() {
    let (zones, _) = zones_at(Arc::new(MockClock::at(1_800_000_000)));
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(APEX).unwrap(), RecordType::SOA));
    let mut e = Edns::new();
    e.set_version(1);
    m.edns = Some(e);
    let r = Message::from_vec(&answer(&zones, &m.to_vec().unwrap(), Transport::Udp).unwrap()).unwrap();
    // hickory decodes extended rcode 16 as BADSIG (BADVERS shares the number).
    assert!(matches!(r.metadata.response_code, ResponseCode::BADVERS | ResponseCode::BADSIG));
    let mut m = Message::query();
    m.metadata.op_code = OpCode::Update;
    m.add_query(Query::query(Name::from_ascii(APEX).unwrap(), RecordType::SOA));
    let r = Message::from_vec(&answer(&zones, &m.to_vec().unwrap(), Transport::Udp).unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    let mut q = Query::query(Name::from_ascii(APEX).unwrap(), RecordType::SOA);
    q.query_class = DNSClass::CH;
    let mut m = Message::query();
    m.add_query(q);
    let r = Message::from_vec(&answer(&zones, &m.to_vec().unwrap(), Transport::Udp).unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // Garbage after a header: FORMERR with the id.
    let r = answer(&zones, &[0xAB, 0xCD, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 99], Transport::Udp).unwrap();
    let r = Message::from_vec(&r).unwrap();
    assert_eq!((r.metadata.id, r.metadata.response_code), (0xABCD, ResponseCode::FormErr));
    assert!(answer(&zones, &[1, 2, 3], Transport::Udp).is_none());
}

#[test]
fn signatures_are_cached_and_remade_at_the_refresh_point() {
    let clock = Arc::new(MockClock::at(1_800_000_000));
    let (zones, zone) = zones_at(clock.clone());
    let keys = zone.keys().clone();
    let name = owner("+442079460001");
    let rrsig_inception = |m: &Message| {
        m.answers
            .iter()
            .find_map(|r| match &r.data {
                RData::DNSSEC(tincan_enum_core::hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(s)) => {
                    Some(s.input().sig_inception.get())
                }
                _ => None,
            })
            .unwrap()
    };
    let before = keys.signatures_made();
    let first = ask(&zones, &name, RecordType::NAPTR, true);
    for _ in 0..200 {
        ask(&zones, &name, RecordType::NAPTR, true);
        ask(&zones, &name, RecordType::TXT, true);
        ask(&zones, APEX, RecordType::DNSKEY, true);
    }
    assert_eq!(keys.signatures_made(), before, "positive answers never sign");
    // Negative answers sign their NSEC online, one signature each.
    ask(&zones, &owner("+442079460003"), RecordType::NAPTR, true);
    assert_eq!(keys.signatures_made(), before + 1);

    // 5 days on: before the refresh point (7 d left of 14 d, expirations spread over the last 1.4 d): cached.
    clock.advance(Duration::from_secs(5 * 86_400));
    let before = keys.signatures_made();
    let again = ask(&zones, &name, RecordType::NAPTR, true);
    assert_eq!(keys.signatures_made(), before);
    assert_eq!(rrsig_inception(&again), rrsig_inception(&first));

    // 8 days on, past the refresh point: re-made once (the NAPTR set, plus the apex sets), then cached again.
    clock.advance(Duration::from_secs(3 * 86_400));
    let before = keys.signatures_made();
    let fresh = ask(&zones, &name, RecordType::NAPTR, true);
    let after_one = keys.signatures_made();
    assert!(after_one > before, "stale signatures are remade");
    assert!(rrsig_inception(&fresh) > rrsig_inception(&first));
    for _ in 0..50 {
        ask(&zones, &name, RecordType::NAPTR, true);
    }
    assert_eq!(keys.signatures_made(), after_one);
    // The refresher re-signs the rest (the TXT of this number, the other numbers) in one pass, then nothing.
    assert!(zone.refresh().unwrap() > 0);
    assert_eq!(zone.refresh().unwrap(), 0);
    // The re-made signatures start at the refresh point (less the inception skew), not at the first signing,
    // and the TXT set's, re-made by the refresher, is served as it is.
    let skew = tincan_directory::dns::ZoneConfig::default().inception_skew;
    let refreshed_at = clock.unix_seconds() as u32 - skew;
    assert_eq!(rrsig_inception(&fresh), refreshed_at);
    let before = keys.signatures_made();
    let txt = ask(&zones, &name, RecordType::TXT, true);
    assert_eq!(keys.signatures_made(), before, "the refresher's TXT signature is served");
    assert_eq!(rrsig_inception(&txt), refreshed_at);
}

#[test]
fn upsert_remove_and_serial() {
    let clock = Arc::new(MockClock::at(1_800_000_000));
    let (zones, zone) = zones_at(clock);
    let serial = zone.serial();
    let r = crate::dns_support::record(
        "+442079460005",
        &[(tincan_enum_core::ServiceType::Matrix, "matrix:u/carol:hs.test")],
        None,
    );
    zone.upsert(&r).unwrap();
    assert_eq!(zone.serial(), serial + 1);
    assert_eq!(zone.get(&r.number).unwrap(), r);
    let full = sample_records().remove(0);
    assert_eq!(zone.get(&full.number).unwrap(), full, "services in order, key back");
    let m = ask(&zones, &owner("+442079460005"), RecordType::NAPTR, true);
    assert_eq!(m.answers.len(), 2);
    assert!(zone.remove(&r.number).unwrap());
    assert!(!zone.remove(&r.number).unwrap());
    assert_eq!(zone.serial(), serial + 2);
    let m = ask(&zones, &owner("+442079460005"), RecordType::NAPTR, true);
    assert!(m.answers.is_empty());
    let soa = m.authorities.iter().find(|r| r.record_type() == RecordType::SOA).unwrap();
    let RData::SOA(soa) = &soa.data else { panic!() };
    assert_eq!(soa.serial, serial + 2);
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        // Under the apex: digits (maybe a number, a prefix, too long), random case in the apex.
        (proptest::collection::vec(0u8..10, 0..18), any::<bool>()).prop_map(|(ds, upper)| {
            let apex = if upper { "E164.TINCAN.test." } else { APEX };
            let mut s: String = ds.iter().rev().map(|d| format!("{d}.")).collect();
            s.push_str(apex);
            s
        }),
        // Arbitrary labels under the apex.
        proptest::collection::vec("[a-zA-Z0-9*_-]{1,20}", 1..6).prop_map(|ls| format!("{}.{APEX}", ls.join("."))),
        // Elsewhere.
        proptest::collection::vec("[a-z0-9]{1,63}", 0..5).prop_map(|ls| format!("{}.", ls.join("."))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700), tcp in any::<bool>()) {
        let (zones, _) = zones_at(Arc::new(MockClock::at(1_800_000_000)));
        let t = if tcp { Transport::Tcp } else { Transport::Udp };
        if let Some(r) = answer(&zones, &bytes, t) {
            prop_assert!(Message::from_vec(&r).is_ok());
        }
    }

    #[test]
    fn random_queries_get_well_formed_answers(
        name in arb_name(),
        qtype in prop_oneof![Just(35u16), Just(16), Just(6), Just(2), Just(48), Just(255), Just(47), Just(43), any::<u16>()],
        edns in proptest::option::of((any::<bool>(), any::<bool>(), 0u16..5000, 0u8..2)),
        opcode in prop_oneof![Just(0u8), 0u8..16],
        class in prop_oneof![Just(1u16), any::<u16>()],
        tcp in any::<bool>(),
    ) {
        let (zones, _) = zones_at(Arc::new(MockClock::at(1_800_000_000)));
        let Ok(qname) = Name::from_ascii(&name) else { return Ok(()) };
        let mut q = Query::query(qname, RecordType::from(qtype));
        q.query_class = DNSClass::from(class);
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.op_code = OpCode::from_u8(opcode);
        m.add_query(q);
        if let Some((dnssec_ok, co, payload, version)) = edns {
            let mut e = Edns::new();
            e.set_dnssec_ok(dnssec_ok);
            e.set_max_payload(payload.max(512));
            e.set_version(version);
            e.flags_mut().z = if co { 0x4000 } else { 0 };
            m.edns = Some(e);
        }
        let Ok(bytes) = m.to_vec() else { return Ok(()) };
        let t = if tcp { Transport::Tcp } else { Transport::Udp };
        let r = answer(&zones, &bytes, t);
        prop_assert!(r.is_some(), "every query is answered");
        let r = r.unwrap();
        if !tcp {
            let max = edns.map_or(512, |(_, _, p, _)| usize::from(p.clamp(512, 1232)));
            prop_assert!(r.len() <= max, "{} > {}", r.len(), max);
        }
        let parsed = Message::from_vec(&r);
        prop_assert!(parsed.is_ok(), "unparsable answer: {:?}", parsed.err());
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.metadata.id, 4242);
        prop_assert_eq!(parsed.metadata.message_type, MessageType::Response);
    }
}

/// What the journal follower publishes: nothing for records the zone already has, stored signatures reused
/// when they fit (no signing), signing only without them, removal for a deleted number; one serial bump per
/// batch. And entries re-made by the refresher are handed to the zone's sink.
#[test]
fn prepare_reuses_stored_signatures_and_skips_what_is_published() {
    use std::sync::Mutex;
    use tincan_directory::dns::{RefreshedSink, SignedEntry};
    use tincan_enum_core::E164;

    let clock = Arc::new(MockClock::at(1_800_000_000));
    let records = sample_records();
    let zone = zone_with(clock.clone(), KeyAlgorithm::EcdsaP256Sha256, &records[..1]);
    let keys = zone.keys();
    let known = &records[0];
    assert!(zone.prepare(&known.number, Some((known, None))).unwrap().is_none(), "already published");

    // Signed elsewhere with the same keys (as `numbers import` does): loaded as stored, nothing signed here.
    let other = zone_with(clock.clone(), KeyAlgorithm::EcdsaP256Sha256, &[]);
    let new = &records[1];
    let before = keys.signatures_made();
    let foreign = other.sign_record(new).unwrap().unwrap();
    let same_keys = zone.sign_record(new).unwrap().unwrap();
    let signed_here = keys.signatures_made() - before;
    assert!(signed_here > 0);
    let before = keys.signatures_made();
    let prepared = zone.prepare(&new.number, Some((new, Some(same_keys.as_bytes())))).unwrap().unwrap().unwrap();
    assert_eq!(prepared, same_keys, "stored signatures reused");
    assert_eq!(keys.signatures_made(), before, "nothing signed");
    // Signatures by other keys, or none stored: signed here.
    let resigned = zone.prepare(&new.number, Some((new, Some(foreign.as_bytes())))).unwrap().unwrap().unwrap();
    assert!(zone.publishes(new, &resigned));
    let before = keys.signatures_made();
    let unsigned = zone.prepare(&new.number, Some((new, None))).unwrap().unwrap().unwrap();
    assert!(zone.publishes(new, &unsigned) && !zone.publishes(known, &unsigned));
    assert!(keys.signatures_made() > before);
    // Deleted: removed if there, nothing if not.
    assert_eq!(zone.prepare(&known.number, None).unwrap(), Some(None));
    assert_eq!(zone.prepare(&new.number, None).unwrap(), None);

    let serial = zone.serial();
    let n = zone.install_many(vec![(new.number.clone(), Some(prepared)), (known.number.clone(), None)]).unwrap();
    assert_eq!((n, zone.serial()), (2, serial.wrapping_add(1)), "one serial bump for the batch");
    assert!(zone.get(&known.number).is_none() && zone.get(&new.number).as_ref() == Some(new));
    assert!(zone.prepare(&new.number, Some((new, None))).unwrap().is_none(), "applying twice does nothing");
    assert_eq!(zone.install_many(vec![(known.number.clone(), None)]).unwrap(), 0);
    assert_eq!(zone.serial(), serial.wrapping_add(1));

    type Seen = Arc<Mutex<Vec<(E164, SignedEntry, bool)>>>;
    struct Sink(Seen);
    impl RefreshedSink for Sink {
        fn refreshed(&self, number: E164, entry: SignedEntry, may_wait: bool) {
            self.0.lock().unwrap().push((number, entry, may_wait));
        }
    }
    let seen = Seen::default();
    zone.set_refreshed_sink(Box::new(Sink(seen.clone())));
    clock.advance(Duration::from_secs(8 * 86_400));
    assert!(zone.refresh().unwrap() > 0);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one number in the zone");
    let (number, entry, may_wait) = &got[0];
    assert!(number == &new.number && zone.publishes(new, entry) && *may_wait);
    assert!(entry != &same_keys, "new signatures");
}
