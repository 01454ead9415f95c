//! Scale check (ignored by default; run with `--run-ignored only`, ideally `--release`): a million numbers load
//! in seconds and fit in a few hundred MB, and answering them still signs each RRset once.

use std::sync::Arc;
use std::time::Instant;

use tincan_common::SystemClock;
use tincan_directory::dns::{KeyAlgorithm, Transport, Zones, answer};
use tincan_enum_core::{E164, NumberRecord, Service, ServiceType};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "scale check: a million numbers"]
fn a_million_numbers_load_fast_and_small() {
    let n: u32 = std::env::var("TINCAN_SCALE_NUMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let made = Instant::now();
    let records: Vec<NumberRecord> = (0..n)
        .map(|i| {
            let number = E164::parse(&format!("+49151{i:08}")).unwrap();
            let uri = format!("matrix:u/u{i}:hs.test");
            NumberRecord { number, services: vec![Service::new(ServiceType::Matrix, &uri).unwrap()], key: None }
        })
        .collect();
    eprintln!("built {n} records in {:?}", made.elapsed());
    let zone = crate::dns_support::zone_with(Arc::new(SystemClock), KeyAlgorithm::EcdsaP256Sha256, &[]);
    let before = rss_kib();
    let t = Instant::now();
    zone.load(records.iter()).unwrap();
    let load = t.elapsed();
    drop(records);
    let after = rss_kib();
    eprintln!(
        "loaded {} numbers in {load:?}; RSS grew {} MiB (records freed)",
        zone.len(),
        (after.saturating_sub(before)) / 1024
    );
    assert_eq!(zone.len(), n as usize);
    assert!(load.as_secs() < 10, "load took {load:?}");
    // Sign everything (what the refresher does after start-up) and measure again.
    let t = Instant::now();
    let signed = zone.refresh().unwrap();
    let signed_rss = rss_kib();
    eprintln!(
        "signed {signed} RRsets in {:?}; RSS now {} MiB above the start",
        t.elapsed(),
        signed_rss.saturating_sub(before) / 1024
    );
    assert!(signed_rss.saturating_sub(before) < 512 * 1024, "over 0.5 GB");
    let zones = Zones::new(vec![zone.clone()]);
    let name = crate::dns_support::owner("+4915100000042");
    let mut m = tincan_enum_core::hickory_proto::op::Message::query();
    m.add_query(tincan_enum_core::hickory_proto::op::Query::query(
        tincan_enum_core::hickory_proto::rr::Name::from_ascii(&name).unwrap(),
        tincan_enum_core::hickory_proto::rr::RecordType::NAPTR,
    ));
    let q = m.to_vec().unwrap();
    let t = Instant::now();
    for _ in 0..100_000 {
        assert!(answer(&zones, &q, Transport::Udp).is_some());
    }
    eprintln!("100k positive answers (no EDNS) in {:?}", t.elapsed());
}
