//! A DNSSEC-signed ENUM zone for tests, made with BIND's tools (`dnssec-keygen`, `dnssec-signzone`) and served
//! by Knot DNS (`knotd`) on a free loopback port. Shared with the CLI's tests (`#[path]`).
//!
//! The real directory server signs online with compact denial; a pre-signed zone gives the client the same
//! validated answers for what it checks here (routes, keys, denial, tampering) without depending on another
//! crate's binary.

#![allow(dead_code)]

use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;
use tincan_enum_core::{E164, MasterKey, owner_name};
use tincan_testkit::dnssec;

/// The apex of the test zone.
pub const APEX: &str = "e164.tincan.test.";

/// One number's records.
pub struct Entry {
    /// The number.
    pub number: String,
    /// `(enumservice, uri)` NAPTRs.
    pub services: Vec<(String, String)>,
    /// The key TXT.
    pub key: Option<MasterKey>,
}

impl Entry {
    /// A Matrix user with a key.
    pub fn matrix(number: &str, user_id: &str, key: Option<MasterKey>) -> Entry {
        let uri = format!("matrix:u/{}?action=chat", user_id.trim_start_matches('@'));
        Entry { number: number.into(), services: vec![("E2U+x-matrix".into(), uri)], key }
    }

    /// A SIP-only number.
    pub fn sip(number: &str, uri: &str) -> Entry {
        Entry { number: number.into(), services: vec![("E2U+sip".into(), uri.into())], key: None }
    }
}

/// The owner name of a number under [`APEX`].
pub fn owner(number: &str) -> String {
    owner_name(&E164::parse(number).unwrap(), &hickory_proto::rr::Name::from_ascii(APEX).unwrap()).to_string()
}

/// Keys, the signed zone and knotd serving it (the testkit's [`dnssec`] helpers).
pub struct Directory {
    pub addr: SocketAddr,
    /// The DS of the KSK, presentation format: the trust anchor.
    pub anchor: String,
    zone: dnssec::SignedZone,
    _knot: dnssec::Knot,
}

impl Directory {
    /// Signs `entries` and serves them; `tamper` names a number whose NAPTR signature is then corrupted.
    pub async fn serve(entries: &[Entry], tamper: Option<&str>) -> Result<Directory> {
        let zone = dnssec::SignedZone::generate(APEX)?.with_ttl(60);
        let anchor = zone.ds()?.trim().to_owned();
        let mut records = String::new();
        for e in entries {
            let o = owner(&e.number);
            for (i, (service, uri)) in e.services.iter().enumerate() {
                records.push_str(&format!(
                    "{o} 60 IN NAPTR 100 {} \"u\" \"{service}\" \"!^.*$!{uri}!\" .\n",
                    (i + 1) * 10
                ));
            }
            if let Some(k) = e.key {
                records.push_str(&format!("{o} 60 IN TXT \"v=tc1; mk={}\"\n", k.to_base64()));
            }
        }
        let signed = zone.sign(&records, &[])?;
        if let Some(number) = tamper {
            dnssec::corrupt_rrsig(&signed, &owner(number), "NAPTR")?;
        }
        let knot = dnssec::Knot::serve(APEX, &signed).await?;
        Ok(Directory { addr: knot.addr, anchor, zone, _knot: knot })
    }

    /// The anchor written to a file (for `--trust-anchor`).
    pub fn anchor_file(&self) -> Result<PathBuf> {
        let p = self.zone.dir.path().join("anchor.ds");
        std::fs::write(&p, &self.anchor)?;
        Ok(p)
    }
}
