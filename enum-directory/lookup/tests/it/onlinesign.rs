//! Knot DNS with `mod-onlinesign`: every answer signed on the fly, denials as "black lies" (NODATA with an NSEC
//! at the query name, the shape compact denial builds on), the DS taken from Knot's own key store.

use anyhow::Result;
use tincan_enum_lookup::{E164, Lookup, LookupConfig, ValidationStatus};

use crate::knot;
use crate::zone::{APEX, apex, master_key, number_records};

#[tokio::test]
async fn online_signed_answers_and_denials_validate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let zone_file = dir.path().join("zone.db");
    let records = number_records("+442079460001", &[("E2U+x-matrix", "matrix:u/alice:hs.test")], Some(&master_key(3)));
    std::fs::write(
        &zone_file,
        format!(
            "$TTL 300\n{APEX} IN SOA ns1.{APEX} hostmaster.{APEX} 1 3600 600 86400 300\n{APEX} IN NS ns1.{APEX}\n\
             ns1.{APEX} IN A 127.0.0.1\n{records}"
        ),
    )?;
    let knot = knot::serve_onlinesign(&zone_file).await?;
    let lookup = Lookup::new(LookupConfig::new(vec![knot.addr], apex(), knot.onlinesign_ds()?.parse()?))?;

    let alice = lookup.resolve(&E164::parse("+442079460001")?).await?;
    assert_eq!(alice.status, ValidationStatus::Secure);
    assert_eq!(alice.routes.matrix.unwrap().user_id(), "@alice:hs.test");
    assert_eq!(alice.key, Some(master_key(3)));

    let nobody = lookup.resolve(&E164::parse("+442079460009")?).await?;
    assert!(!nobody.is_registered());
    assert_eq!(nobody.status, ValidationStatus::Secure);
    Ok(())
}
