//! A zone signed with BIND's tools (`dnssec-keygen`, `dnssec-signzone`), and helpers to write its records.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tincan_enum_core::{E164, MasterKey, owner_name};
use tincan_enum_lookup::TrustAnchor;
use tincan_testkit::tools;

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

/// Keys in a temp dir and the signed zone made with them.
pub struct SignedZone {
    pub dir: tempfile::TempDir,
    ksk: String,
}

impl SignedZone {
    /// Generates a KSK and a ZSK (ECDSA P-256) for [`APEX`].
    pub fn generate() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let ksk = keygen(dir.path(), true)?;
        keygen(dir.path(), false)?;
        Ok(Self { dir, ksk })
    }

    /// Replaces the ZSK with a new one (an abrupt ZSK change; the KSK, and so the DS, stay).
    pub fn replace_zsk(&self) -> Result<()> {
        for entry in std::fs::read_dir(self.dir.path())? {
            let path = entry?.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('K') && !name.starts_with(&self.ksk) {
                std::fs::remove_file(&path)?;
            }
        }
        keygen(self.dir.path(), false)?;
        Ok(())
    }

    /// The DS record of the KSK in presentation format (`APEX IN DS TAG 13 2 HEX`).
    pub fn ds(&self) -> Result<String> {
        tools::run_ok(
            tools::command("dnssec-dsfromkey").arg("-2").arg(self.dir.path().join(format!("{}.key", self.ksk))),
        )
    }

    /// The KSK's DNSKEY record in presentation format.
    pub fn ksk_dnskey(&self) -> Result<String> {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{}.key", self.ksk)))?;
        Ok(text.lines().filter(|l| !l.starts_with(';')).collect::<Vec<_>>().join("\n"))
    }

    /// The trust anchor from [`SignedZone::ds`].
    pub fn anchor(&self) -> TrustAnchor {
        self.ds().unwrap().parse().unwrap()
    }

    /// Signs SOA + NS + `records`, one record per line (`-O full`), with `extra` args for dnssec-signzone
    /// (e.g. `-s`/`-e` for the validity window). Returns the signed file.
    pub fn sign(&self, records: &str, extra: &[&str]) -> Result<PathBuf> {
        let unsigned = self.dir.path().join("zone.db");
        let signed = self.dir.path().join("zone.signed");
        let zone = format!(
            "$TTL 300\n{APEX} IN SOA ns1.{APEX} hostmaster.{APEX} 1 3600 600 86400 300\n{APEX} IN NS ns1.{APEX}\n\
             ns1.{APEX} IN A 127.0.0.1\n{records}"
        );
        std::fs::write(&unsigned, zone)?;
        tools::run_ok(
            tools::command("dnssec-signzone")
                .current_dir(self.dir.path())
                .args(["-O", "full", "-S", "-K", "."])
                .args(extra)
                .args(["-o", APEX, "-f"])
                .arg(&signed)
                .arg(&unsigned),
        )?;
        Ok(signed)
    }
}

fn keygen(dir: &Path, ksk: bool) -> Result<String> {
    let mut cmd = tools::command("dnssec-keygen");
    cmd.current_dir(dir).args(["-q", "-a", "ECDSAP256SHA256", "-n", "ZONE"]);
    if ksk {
        cmd.args(["-f", "KSK"]);
    }
    let out = tools::run_ok(cmd.arg(APEX.trim_end_matches('.')))?;
    let name = out.lines().last().context("dnssec-keygen printed no key name")?;
    Ok(name.trim().to_owned())
}

/// Edits the signed zone file line by line: `edit` gets each line and returns its replacement (`None` drops it).
pub fn edit_zone(path: &Path, mut edit: impl FnMut(&str) -> Option<String>) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let out: Vec<String> = text.lines().filter_map(&mut edit).collect();
    std::fs::write(path, out.join("\n") + "\n")?;
    Ok(())
}

/// Flips the first character of the signature (the last field) of RRSIG lines of `rtype` at `owner`.
pub fn corrupt_rrsig(path: &Path, owner: &str, rtype: &str) -> Result<()> {
    let mut hit = 0;
    edit_zone(path, |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&owner) && fields.get(3) == Some(&"RRSIG") && fields.get(4) == Some(&rtype) {
            hit += 1;
            let last = fields.last().unwrap();
            let first = last.chars().next().unwrap();
            let swapped = if first == 'A' { 'B' } else { 'A' };
            let new_last = format!("{swapped}{}", &last[1..]);
            let prefix = &line[..line.len() - last.len()];
            return Some(format!("{prefix}{new_last}"));
        }
        Some(line.to_owned())
    })?;
    anyhow::ensure!(hit > 0, "no RRSIG {rtype} at {owner}");
    Ok(())
}
