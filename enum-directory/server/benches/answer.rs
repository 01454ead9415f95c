//! `answer()` throughput: a positive NAPTR with DO (cached signatures), a repeated negative answer with DO (its
//! NSEC signature cached) and a flood of distinct negative names (one online NSEC signature each), on a zone of
//! 10k numbers. `cargo bench -p tincan-directory --bench answer`.

#![allow(missing_docs)] // criterion_group! makes an undocumented function

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tincan_common::SystemClock;
use tincan_directory::dns::{KeyAlgorithm, Transport, Zone, ZoneConfig, ZoneKeys, Zones, answer};
use tincan_enum_core::hickory_proto::op::{Edns, Message, Query};
use tincan_enum_core::hickory_proto::rr::{Name, RecordType};
use tincan_enum_core::{E164, NumberRecord, Service, ServiceType, owner_name};

fn zones(alg: KeyAlgorithm) -> (Zones, Name) {
    let apex = Name::from_ascii("e164.tincan.test.").unwrap();
    let keys = Arc::new(ZoneKeys::generate(alg, 0).unwrap());
    let config = ZoneConfig { apex: apex.clone(), ..ZoneConfig::default() };
    let zone = Arc::new(Zone::new(config, keys, Arc::new(SystemClock), 1).unwrap());
    let records: Vec<NumberRecord> = (0..10_000)
        .map(|i| NumberRecord {
            number: E164::parse(&format!("+49151{i:08}")).unwrap(),
            services: vec![Service::new(ServiceType::Matrix, &format!("matrix:u/u{i}:hs.test")).unwrap()],
            key: None,
        })
        .collect();
    zone.load(records.iter()).unwrap();
    zone.refresh().unwrap();
    (Zones::new(vec![zone]), apex)
}

fn query(name: &Name) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(name.clone(), RecordType::NAPTR));
    let mut e = Edns::new();
    e.set_dnssec_ok(true);
    e.set_max_payload(1232);
    m.edns = Some(e);
    m.to_vec().unwrap()
}

fn bench(c: &mut Criterion) {
    for alg in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
        let (zones, apex) = zones(alg);
        let positive = query(&owner_name(&E164::parse("+4915100000042").unwrap(), &apex));
        let negative = query(&owner_name(&E164::parse("+4915190000042").unwrap(), &apex));
        c.bench_function(&format!("{alg:?}/positive NAPTR +DO"), |b| {
            b.iter(|| answer(&zones, black_box(&positive), Transport::Udp))
        });
        c.bench_function(&format!("{alg:?}/negative NAPTR +DO (same name: cached NSEC signature)"), |b| {
            b.iter(|| answer(&zones, black_box(&negative), Transport::Udp))
        });
        // Every query a new name: the eight lowest digits, the first eight labels (`\x01<digit>` each after the
        // 12-byte header), count up.
        let mut flood = negative.clone();
        let mut n = 0u32;
        c.bench_function(&format!("{alg:?}/negative NAPTR +DO (distinct names: online NSEC)"), |b| {
            b.iter(|| {
                n += 1;
                for i in 0..8 {
                    flood[13 + 2 * i] = b'0' + (n / 10u32.pow(i as u32) % 10) as u8;
                }
                answer(&zones, black_box(&flood), Transport::Udp)
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
