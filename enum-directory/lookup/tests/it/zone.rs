//! The test apex, its records, and a zone under it signed with BIND's tools (through the testkit).

use anyhow::Result;
use tincan_enum_core::{E164, MasterKey, owner_name};
use tincan_enum_lookup::TrustAnchor;
use tincan_testkit::dnssec;

use hickory_proto::rr::Name;

/// The apex every test zone uses.
pub const APEX: &str = "e164.lookup.test.";

/// The apex as a `Name`.
pub fn apex() -> Name {
    Name::from_ascii(APEX).unwrap()
}

/// A master key from a seed.
pub fn master_key(seed: u8) -> MasterKey {
    let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes();
    MasterKey::from_bytes(public).unwrap()
}

/// The owner name of `number` under [`APEX`], as zone-file text.
pub fn owner(number: &str) -> String {
    owner_name(&E164::parse(number).unwrap(), &apex()).to_string()
}

/// Zone-file lines for a number: NAPTRs `(enumservice, uri)` and an optional key.
pub fn number_records(number: &str, services: &[(&str, &str)], key: Option<&MasterKey>) -> String {
    let owner = owner(number);
    let mut out = String::new();
    for (i, (service, uri)) in services.iter().enumerate() {
        let pref = (i + 1) * 10;
        out.push_str(&format!("{owner} 300 IN NAPTR 100 {pref} \"u\" \"{service}\" \"!^.*$!{uri}!\" .\n"));
    }
    if let Some(key) = key {
        out.push_str(&format!("{owner} 300 IN TXT \"v=tc1; mk={}\"\n", key.to_base64()));
    }
    out
}

/// A zone under [`APEX`] signed with BIND's tools (the testkit's [`dnssec::SignedZone`]).
pub struct SignedZone(dnssec::SignedZone);

impl SignedZone {
    /// Generates a KSK and a ZSK (ECDSA P-256) for [`APEX`].
    pub fn generate() -> Result<Self> {
        dnssec::SignedZone::generate(APEX).map(Self)
    }

    /// The trust anchor from the KSK's DS.
    pub fn anchor(&self) -> TrustAnchor {
        self.0.ds().unwrap().parse().unwrap()
    }
}

impl std::ops::Deref for SignedZone {
    type Target = dnssec::SignedZone;
    fn deref(&self) -> &dnssec::SignedZone {
        &self.0
    }
}

pub use dnssec::{corrupt_rrsig, edit_zone};
