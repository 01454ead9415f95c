//! The DNS query handler: any bytes as a UDP or TCP request (the first byte picks the transport) to a signed
//! zone with one number. An answer, when there is one, is a DNS message for the same id, within the UDP size.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use tincan_common::{Clock, SystemClock};
use tincan_directory::dns::{self, KeyAlgorithm, MAX_UDP_PAYLOAD, Transport, Zone, ZoneConfig, ZoneKeys, Zones};
use tincan_enum_core::hickory_proto::rr::Name;
use tincan_enum_core::{E164, NumberRecord, Service, ServiceType};

static ZONES: LazyLock<Zones> = LazyLock::new(|| {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = Arc::new(ZoneKeys::generate(KeyAlgorithm::EcdsaP256Sha256, clock.unix_seconds()).unwrap());
    let config = ZoneConfig { apex: Name::from_ascii("e164.tincan.test.").unwrap(), ..ZoneConfig::default() };
    let zone = Arc::new(Zone::new(config, keys, clock, 1).unwrap());
    let record = NumberRecord {
        number: E164::parse("+442079460001").unwrap(),
        services: vec![Service::new(ServiceType::Matrix, "matrix:u/alice:hs.test").unwrap()],
        key: None,
    };
    zone.upsert(&record).unwrap();
    Zones::new(vec![zone])
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, request)) = data.split_first() else { return };
    let transport = if pick & 1 == 0 { Transport::Udp } else { Transport::Tcp };
    if let Some(a) = dns::answer_detailed(&ZONES, request, transport) {
        assert!(a.bytes.len() >= 12, "an answer has a header");
        assert_eq!(a.bytes[..2], request[..2], "the answer keeps the id");
        assert!(a.bytes[2] & 0x80 != 0, "QR is set");
        if transport == Transport::Udp {
            assert!(a.bytes.len() <= usize::from(MAX_UDP_PAYLOAD), "{} octets over UDP", a.bytes.len());
        }
    }
});
