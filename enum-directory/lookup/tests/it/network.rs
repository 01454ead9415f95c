//! Transport failures are typed, and never confused with validation results.

use std::time::Duration;

use anyhow::Result;
use tincan_enum_lookup::{E164, Lookup, LookupConfig, LookupError};
use tincan_testkit::ports;

use crate::knot;
use crate::zone::{SignedZone, apex, number_records};

#[tokio::test]
async fn silent_server_times_out() -> Result<()> {
    let zone = SignedZone::generate()?;
    // A UDP socket that reads queries and never answers.
    let port = ports::free_port();
    let sink = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await?;
    let _drain = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while sink.recv_from(&mut buf).await.is_ok() {}
    });
    let mut config = LookupConfig::new(vec![([127, 0, 0, 1], port).into()], apex(), zone.anchor());
    config.timeout = Duration::from_millis(300);
    config.attempts = 1;
    let lookup = Lookup::new(config)?;
    let result = lookup.resolve(&E164::parse("+442079460001")?).await;
    assert!(matches!(result, Err(LookupError::Timeout)), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn server_without_the_zone_refuses() -> Result<()> {
    // Knot serves e164.lookup.test.; ask it about another apex.
    let zone = SignedZone::generate()?;
    let knot = knot::serve(&zone.sign(&number_records("+442079460001", &[], None), &[])?).await?;
    let other = hickory_proto::rr::Name::from_ascii("e164.elsewhere.test.")?;
    let anchor = zone.ds()?.replace("e164.lookup.test.", "e164.elsewhere.test.").parse()?;
    let lookup = Lookup::new(LookupConfig::new(vec![knot.addr], other, anchor))?;
    let result = lookup.resolve(&E164::parse("+442079460001")?).await;
    assert!(matches!(result, Err(LookupError::Refused)), "{result:?}");
    Ok(())
}

#[test]
fn anchor_for_another_zone_is_a_config_error() {
    let zone = SignedZone::generate().unwrap();
    let other = hickory_proto::rr::Name::from_ascii("e164.elsewhere.test.").unwrap();
    let err = Lookup::new(LookupConfig::new(vec![([127, 0, 0, 1], 53).into()], other, zone.anchor())).unwrap_err();
    assert!(matches!(err, tincan_enum_lookup::ConfigError::AnchorZoneMismatch { .. }), "{err:?}");
}
