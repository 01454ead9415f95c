//! Negative answers are signed at most twice per name and bitmap (the cache admits a denial the second time it
//! is signed, so one-off names of a flood never enter it), then served from the cache; a name registered after
//! a cached denial is answered positively at once, and validators accept both the cached and the new answers.

use hickory_proto::rr::RecordType;
use tincan_enum_core::ServiceType;

use crate::dns_support::{DnsServer, owner, record};
use crate::harness::{query, signed_answer};

fn has_nsec(r: &hickory_proto::op::Message) -> bool {
    r.authorities.iter().any(|x| x.record_type() == RecordType::NSEC)
        && r.authorities.iter().any(|x| x.record_type() == RecordType::RRSIG)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_denials_sign_twice_and_a_registration_answers_at_once() {
    let s = DnsServer::start().await;
    let number = "+442079460003";
    let name = owner(number);
    let keys = s.zone.keys().clone();
    let before = keys.signatures_made();
    let first = query(s.addr, &name, RecordType::NAPTR).await;
    assert!(has_nsec(&first), "{first:?}");
    assert_eq!(s.zone.cached_denials(), 0, "a first denial is not cached");
    let second = query(s.addr, &name, RecordType::NAPTR).await;
    assert!(has_nsec(&second), "{second:?}");
    for _ in 0..20 {
        let again = query(s.addr, &name, RecordType::NAPTR).await;
        assert_eq!(again.authorities, second.authorities, "the cached denial is the same record and signature");
    }
    // Another type at the same missing name has the same NSEC (NXNAME bitmap): still two signatures.
    assert!(has_nsec(&query(s.addr, &name, RecordType::TXT).await));
    assert_eq!(keys.signatures_made() - before, 2, "two signatures for 23 denials of one name");
    assert!(s.zone.cached_denials() >= 1);
    let out = s.delv(&name, "NAPTR").await;
    assert!(out.contains("; negative response, fully validated"), "cached denial: {out}");

    // Registered after the cached denial: answered positively at once, and validated.
    s.zone.upsert(&record(number, &[(ServiceType::Matrix, "matrix:u/new:hs.test")], None)).unwrap();
    let r = query(s.addr, &name, RecordType::NAPTR).await;
    assert!(signed_answer(&r, RecordType::NAPTR), "{r:?}");
    let out = s.delv(&name, "NAPTR").await;
    assert!(out.contains("; fully validated") && out.contains("matrix:u/new:hs.test"), "{out}");
    // Its missing TXT is a NODATA with its own bitmap, not the cached NXNAME denial.
    let out = s.delv(&name, "TXT").await;
    assert!(out.contains("; negative response, fully validated"), "{out}");

    // Removed again: denied again, validated.
    s.zone.remove(&tincan_enum_core::E164::parse(number).unwrap()).unwrap();
    let r = query(s.addr, &name, RecordType::NAPTR).await;
    assert!(r.answers.is_empty() && has_nsec(&r), "{r:?}");
    let out = s.delv(&name, "NAPTR").await;
    assert!(out.contains("; negative response, fully validated"), "{out}");
}
