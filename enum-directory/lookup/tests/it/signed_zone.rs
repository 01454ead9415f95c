//! A zone signed with `dnssec-signzone` (NSEC chain) and served by Knot: answers, denials, and every way an
//! answer can be bogus.

use std::time::Duration;

use anyhow::Result;
use tincan_enum_lookup::{
    BogusReason, E164, Lookup, LookupConfig, LookupError, Resolution, TrustAnchor, ValidationStatus,
};

use crate::knot::{self, Knot};
use crate::zone::{SignedZone, apex, corrupt_rrsig, edit_zone, master_key, number_records, owner};

const ALICE: &str = "+442079460001";
const BOB: &str = "+442079460002";
const NOBODY: &str = "+442079460003";

fn records() -> String {
    let alice = number_records(
        ALICE,
        &[
            ("E2U+x-matrix", "matrix:u/alice:hs.test?action=chat"),
            ("E2U+sip", "sip:+442079460001@sip.test"),
            ("E2U+sms:tel", "tel:+442079460001"),
            ("E2U+voice:tel", "tel:+442079460001"),
        ],
        Some(&master_key(1)),
    );
    let bob = number_records(BOB, &[("E2U+sip", "sip:bob@sip.test")], None);
    format!("{alice}{bob}")
}

fn lookup(knot: &Knot, anchor: TrustAnchor) -> Lookup {
    let mut config = LookupConfig::new(vec![knot.addr], apex(), anchor);
    config.timeout = Duration::from_secs(2);
    Lookup::new(config).unwrap()
}

async fn resolve(lookup: &Lookup, number: &str) -> Result<Resolution, LookupError> {
    lookup.resolve(&E164::parse(number).unwrap()).await
}

fn assert_bogus(result: Result<Resolution, LookupError>, expected: BogusReason) {
    match result {
        Err(LookupError::Bogus { reason, .. }) => assert_eq!(reason, expected),
        other => panic!("expected Bogus({expected:?}), got {other:?}"),
    }
}

#[tokio::test]
async fn registered_number_gives_routes_and_key_secure() -> Result<()> {
    let zone = SignedZone::generate()?;
    let knot = knot::serve(&zone.sign(&records(), &[])?).await?;
    let lookup = lookup(&knot, zone.anchor());

    let alice = resolve(&lookup, ALICE).await?;
    assert_eq!(alice.status, ValidationStatus::Secure);
    assert!(alice.is_registered());
    assert_eq!(alice.routes.matrix.as_ref().unwrap().user_id(), "@alice:hs.test");
    assert_eq!(alice.routes.sip, vec!["sip:+442079460001@sip.test".to_owned()]);
    assert_eq!(alice.routes.sms.as_ref().map(E164::as_str), Some(ALICE));
    assert_eq!(alice.routes.voice.as_ref().map(E164::as_str), Some(ALICE));
    assert_eq!(alice.key, Some(master_key(1)));

    // A number with NAPTR but no TXT: the missing TXT is a validated NODATA.
    let bob = resolve(&lookup, BOB).await?;
    assert_eq!(bob.status, ValidationStatus::Secure);
    assert_eq!(bob.routes.sip, vec!["sip:bob@sip.test".to_owned()]);
    assert!(bob.routes.matrix.is_none() && bob.key.is_none());
    Ok(())
}

#[tokio::test]
async fn unregistered_number_is_a_validated_absence() -> Result<()> {
    let zone = SignedZone::generate()?;
    let knot = knot::serve(&zone.sign(&records(), &[])?).await?;
    let lookup = lookup(&knot, zone.anchor());

    // NXDOMAIN proven by the NSEC chain.
    let nobody = resolve(&lookup, NOBODY).await?;
    assert!(!nobody.is_registered());
    assert_eq!(nobody.status, ValidationStatus::Secure);
    // Before the first name in the zone, and after the last (the NSEC chain wraps around).
    assert!(!resolve(&lookup, "+442079460000").await?.is_registered());
    assert!(!resolve(&lookup, "+33123456789").await?.is_registered());
    // Another country entirely.
    assert!(!resolve(&lookup, "+4915112345678").await?.is_registered());
    Ok(())
}

#[tokio::test]
async fn dnskey_anchor_and_delv_clause_work_too() -> Result<()> {
    let zone = SignedZone::generate()?;
    let knot = knot::serve(&zone.sign(&records(), &[])?).await?;

    let by_key = lookup(&knot, zone.ksk_dnskey()?.parse()?);
    assert_eq!(resolve(&by_key, ALICE).await?.key, Some(master_key(1)));

    let ds = zone.ds()?;
    let f: Vec<&str> = ds.split_whitespace().collect();
    let clause = format!("trust-anchors {{ \"{}\" static-ds {} {} {} \"{}\"; }};", f[0], f[3], f[4], f[5], f[6]);
    let by_clause = lookup(&knot, clause.parse()?);
    assert!(resolve(&by_clause, ALICE).await?.routes.matrix.is_some());
    Ok(())
}

#[tokio::test]
async fn tampered_signature_is_bogus_never_a_route() -> Result<()> {
    let zone = SignedZone::generate()?;
    let signed = zone.sign(&records(), &[])?;
    corrupt_rrsig(&signed, &owner(ALICE), "NAPTR")?;
    let knot = knot::serve(&signed).await?;
    let lookup = lookup(&knot, zone.anchor());

    assert_bogus(resolve(&lookup, ALICE).await, BogusReason::BadSignature);
    // The rest of the zone still validates.
    assert_eq!(resolve(&lookup, BOB).await?.status, ValidationStatus::Secure);
    Ok(())
}

#[tokio::test]
async fn data_changed_after_signing_is_bogus() -> Result<()> {
    let zone = SignedZone::generate()?;
    let signed = zone.sign(&records(), &[])?;
    edit_zone(&signed, |line| Some(line.replace("matrix:u/alice:hs.test", "matrix:u/mallory:evil.test")))?;
    let knot = knot::serve(&signed).await?;
    let lookup = lookup(&knot, zone.anchor());

    assert_bogus(resolve(&lookup, ALICE).await, BogusReason::BadSignature);
    Ok(())
}

#[tokio::test]
async fn key_changed_after_signing_is_bogus() -> Result<()> {
    let zone = SignedZone::generate()?;
    let signed = zone.sign(&records(), &[])?;
    let (good, evil) = (master_key(1).to_base64(), master_key(9).to_base64());
    edit_zone(&signed, |line| Some(line.replace(&good, &evil)))?;
    let knot = knot::serve(&signed).await?;
    let lookup = lookup(&knot, zone.anchor());

    assert_bogus(resolve(&lookup, ALICE).await, BogusReason::BadSignature);
    Ok(())
}

#[tokio::test]
async fn missing_signature_is_bogus() -> Result<()> {
    let zone = SignedZone::generate()?;
    let signed = zone.sign(&records(), &[])?;
    let alice = owner(ALICE);
    edit_zone(&signed, |line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let strip = f.first() == Some(&alice.as_str()) && f.get(3) == Some(&"RRSIG") && f.get(4) == Some(&"NAPTR");
        (!strip).then(|| line.to_owned())
    })?;
    let knot = knot::serve(&signed).await?;
    let lookup = lookup(&knot, zone.anchor());

    let result = resolve(&lookup, ALICE).await;
    assert!(matches!(result, Err(LookupError::Bogus { .. })), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn forged_denial_is_bogus() -> Result<()> {
    let zone = SignedZone::generate()?;
    let signed = zone.sign(&records(), &[])?;
    // Break the NSEC that proves NOBODY's absence (it is owned by BOB's name, the one before it).
    corrupt_rrsig(&signed, &owner(BOB), "NSEC")?;
    let knot = knot::serve(&signed).await?;
    let lookup = lookup(&knot, zone.anchor());

    let result = resolve(&lookup, NOBODY).await;
    assert!(matches!(result, Err(LookupError::Bogus { .. })), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn expired_signatures_are_bogus() -> Result<()> {
    let zone = SignedZone::generate()?;
    let signed = zone.sign(&records(), &["-P", "-s", "20200101000000", "-e", "20200201000000"])?;
    let knot = knot::serve(&signed).await?;
    let lookup = lookup(&knot, zone.anchor());

    // The apex key set itself is expired: caught before any answer is trusted.
    assert_bogus(resolve(&lookup, ALICE).await, BogusReason::UnsignedKeys);
    Ok(())
}

#[tokio::test]
async fn wrong_trust_anchor_is_an_error() -> Result<()> {
    let zone = SignedZone::generate()?;
    let other = SignedZone::generate()?;
    let knot = knot::serve(&zone.sign(&records(), &[])?).await?;

    let lookup = lookup(&knot, other.anchor());
    assert_bogus(resolve(&lookup, ALICE).await, BogusReason::UntrustedKeys);
    assert_bogus(resolve(&lookup, NOBODY).await, BogusReason::UntrustedKeys);
    Ok(())
}

#[tokio::test]
async fn a_new_zsk_is_picked_up_through_the_anchor() -> Result<()> {
    let zone = SignedZone::generate()?;
    let first = knot::serve(&zone.sign(&records(), &[])?).await?;
    let port = first.addr.port();
    let lookup = lookup(&first, zone.anchor());
    assert!(resolve(&lookup, ALICE).await?.is_registered());
    drop(first);

    // Same KSK (same DS), new ZSK, same address: answers are now signed by a key the lookup has not seen. The
    // lookup notices the failure, re-fetches the apex keys, checks them against the anchor and retries.
    zone.replace_zsk()?;
    let _second = knot::serve_on(&zone.sign(&records(), &[])?, port).await?;
    let bob = resolve(&lookup, BOB).await?;
    assert_eq!(bob.status, ValidationStatus::Secure);
    assert_eq!(bob.routes.sip, vec!["sip:bob@sip.test".to_owned()]);
    Ok(())
}

#[tokio::test]
async fn unsigned_zone_is_insecure_unless_allowed() -> Result<()> {
    let zone = SignedZone::generate()?;
    let dir = tempfile::tempdir()?;
    let plain = dir.path().join("zone.db");
    let apex_text = crate::zone::APEX;
    std::fs::write(
        &plain,
        format!(
            "$TTL 300\n{apex_text} IN SOA ns1.{apex_text} hostmaster.{apex_text} 1 3600 600 86400 300\n\
             {apex_text} IN NS ns1.{apex_text}\nns1.{apex_text} IN A 127.0.0.1\n{}",
            records()
        ),
    )?;
    let knot = knot::serve(&plain).await?;

    let strict = lookup(&knot, zone.anchor());
    let result = resolve(&strict, ALICE).await;
    assert!(matches!(result, Err(LookupError::Insecure { .. })), "{result:?}");

    let mut config = LookupConfig::new(vec![knot.addr], apex(), zone.anchor());
    config.allow_insecure = true;
    let lax = Lookup::new(config)?;
    let alice = resolve(&lax, ALICE).await?;
    assert_eq!(alice.status, ValidationStatus::Insecure);
    assert_eq!(alice.routes.matrix.unwrap().user_id(), "@alice:hs.test");
    let nobody = resolve(&lax, NOBODY).await?;
    assert!(!nobody.is_registered());
    assert_eq!(nobody.status, ValidationStatus::Insecure);

    // A signed zone under the lax flag is still validated: tampering stays bogus.
    let signed = zone.sign(&records(), &[])?;
    corrupt_rrsig(&signed, &owner(ALICE), "NAPTR")?;
    let knot = knot::serve(&signed).await?;
    let mut config = LookupConfig::new(vec![knot.addr], apex(), zone.anchor());
    config.allow_insecure = true;
    assert_bogus(resolve(&Lookup::new(config)?, ALICE).await, BogusReason::BadSignature);
    Ok(())
}
