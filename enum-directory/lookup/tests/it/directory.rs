//! Against the Tincan directory's own DNS engine (`tincan-directory`, in-process on a loopback port): its
//! answers validate, and its compact denials (RFC 9824: NODATA with an NSEC listing NXNAME) map to "not
//! registered".

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use hickory_proto::rr::Name;
use tincan_common::clock::{Clock, SystemClock};
use tincan_directory::dns::{self, KeyAlgorithm, Metrics, ServerConfig, Zone, ZoneConfig, ZoneKeys, Zones};
use tincan_enum_core::{NumberRecord, Service, ServiceType};
use tincan_enum_lookup::{E164, Lookup, LookupConfig, LookupError, ValidationStatus};
use tincan_testkit::{ports, tools};

use crate::zone::master_key;

const APEX: &str = "e164.tincan.test.";

struct Directory {
    addr: SocketAddr,
    zone: Arc<Zone>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Directory {
    async fn start(alg: KeyAlgorithm, records: &[NumberRecord]) -> Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let keys = Arc::new(ZoneKeys::generate(alg, clock.unix_seconds())?);
        let config = ZoneConfig { apex: Name::from_ascii(APEX)?, ..ZoneConfig::default() };
        let zone = Arc::new(Zone::new(config, keys, clock, 1)?);
        for r in records {
            zone.upsert(r)?;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], ports::free_port()));
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let zones = Arc::new(Zones::new(vec![zone.clone()]));
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            dns::server::run(zones, udp, tcp, ServerConfig::default(), Arc::new(Metrics::default()), shutdown).await
        });
        Ok(Self { addr, zone, _stop: stop })
    }

    fn lookup(&self) -> Result<Lookup> {
        let anchor = self.zone.keys().ds_presentation(self.zone.apex_name()).parse()?;
        Ok(Lookup::new(LookupConfig::new(vec![self.addr], Name::from_ascii(APEX)?, anchor))?)
    }
}

fn record(number: &str, services: &[(ServiceType, &str)], key: Option<u8>) -> NumberRecord {
    NumberRecord {
        number: E164::parse(number).unwrap(),
        services: services.iter().map(|(t, u)| Service::new(*t, u).unwrap()).collect(),
        key: key.map(master_key),
    }
}

fn records() -> Vec<NumberRecord> {
    vec![
        record(
            "+442079460001",
            &[
                (ServiceType::Matrix, "matrix:u/alice:hs.test?action=chat"),
                (ServiceType::Sip, "sip:+442079460001@sip.test"),
            ],
            Some(1),
        ),
        record(
            "+4915112345678",
            &[(ServiceType::Sms, "tel:+4915112345678"), (ServiceType::Voice, "tel:+4915112345678")],
            None,
        ),
    ]
}

async fn check_answers(alg: KeyAlgorithm) -> Result<()> {
    let dir = Directory::start(alg, &records()).await?;
    let lookup = dir.lookup()?;

    let alice = lookup.resolve(&E164::parse("+442079460001")?).await?;
    assert_eq!(alice.status, ValidationStatus::Secure);
    assert_eq!(alice.routes.matrix.as_ref().unwrap().user_id(), "@alice:hs.test");
    assert_eq!(alice.routes.sip, vec!["sip:+442079460001@sip.test".to_owned()]);
    assert_eq!(alice.key, Some(master_key(1)));

    // NAPTR present, TXT missing: NODATA with the minimal NSEC (no NXNAME).
    let tel = lookup.resolve(&E164::parse("+4915112345678")?).await?;
    assert_eq!(tel.routes.sms.as_ref().map(E164::as_str), Some("+4915112345678"));
    assert_eq!(tel.routes.voice.as_ref().map(E164::as_str), Some("+4915112345678"));
    assert!(tel.key.is_none() && tel.routes.matrix.is_none());
    Ok(())
}

#[tokio::test]
async fn directory_answers_validate_p256() -> Result<()> {
    check_answers(KeyAlgorithm::EcdsaP256Sha256).await
}

#[tokio::test]
async fn directory_answers_validate_ed25519() -> Result<()> {
    check_answers(KeyAlgorithm::Ed25519).await
}

// Multi-threaded: the blocking `dig` below must not stall the in-process server on the same runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_denial_is_a_validated_not_registered() -> Result<()> {
    let dir = Directory::start(KeyAlgorithm::EcdsaP256Sha256, &records()).await?;
    let lookup = dir.lookup()?;
    let nobody = "+442079460003";

    // First make sure the directory really answers with a compact denial (NXNAME = TYPE128 in the bitmap).
    let owner = tincan_enum_core::owner_name(&E164::parse(nobody)?, &Name::from_ascii(APEX)?).to_ascii();
    let dig = tools::run_ok(
        tools::command("dig")
            .args(["+dnssec", "+norec", "-p", &dir.addr.port().to_string(), "@127.0.0.1"])
            .args([owner.as_str(), "NAPTR"]),
    )?;
    assert!(dig.contains("status: NOERROR"), "{dig}");
    assert!(dig.contains("NXNAME") || dig.contains("TYPE128"), "{dig}");

    let res = lookup.resolve(&E164::parse(nobody)?).await?;
    assert!(!res.is_registered());
    assert_eq!(res.status, ValidationStatus::Secure);
    Ok(())
}

#[tokio::test]
async fn changes_in_the_directory_show_up_validated() -> Result<()> {
    let dir = Directory::start(KeyAlgorithm::EcdsaP256Sha256, &records()).await?;
    let lookup = dir.lookup()?;
    let carol = "+442079460005";
    assert!(!lookup.resolve(&E164::parse(carol)?).await?.is_registered());

    dir.zone.upsert(&record(carol, &[(ServiceType::Matrix, "matrix:u/carol:hs.test")], Some(5)))?;
    // A fresh lookup (the first one caches the denial for its TTL, as any resolver would).
    let res = dir.lookup()?.resolve(&E164::parse(carol)?).await?;
    assert_eq!(res.routes.matrix.unwrap().user_id(), "@carol:hs.test");
    assert_eq!(res.key, Some(master_key(5)));

    dir.zone.remove(&E164::parse(carol)?)?;
    assert!(!dir.lookup()?.resolve(&E164::parse(carol)?).await?.is_registered());
    Ok(())
}

#[tokio::test]
async fn another_directorys_anchor_is_refused() -> Result<()> {
    let dir = Directory::start(KeyAlgorithm::EcdsaP256Sha256, &records()).await?;
    let impostor = Directory::start(KeyAlgorithm::EcdsaP256Sha256, &records()).await?;
    // The impostor serves the same apex with its own keys; the lookup trusts only the real directory's DS.
    let anchor = dir.zone.keys().ds_presentation(dir.zone.apex_name()).parse()?;
    let lookup = Lookup::new(LookupConfig::new(vec![impostor.addr], Name::from_ascii(APEX)?, anchor))?;
    let result = lookup.resolve(&E164::parse("+442079460001")?).await;
    assert!(matches!(result, Err(LookupError::Bogus { .. })), "{result:?}");
    Ok(())
}
