//! DNSSEC test zones made with the real tools: keys and signatures from BIND's `dnssec-keygen` and
//! `dnssec-signzone`, served by Knot DNS (`knotd`) on a free loopback port, either as signed or signed online by
//! `mod-onlinesign`. Used wherever a test needs a validating client against a zone not made by our own signer.

use crate::knotd::{Knotd, KnotdConf};
use crate::{ports, tools};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A KSK and a ZSK (ECDSA P-256) in a temp dir, and the zones signed with them.
#[derive(Debug)]
pub struct SignedZone {
    /// The key and zone files.
    pub dir: tempfile::TempDir,
    apex: String,
    ttl: u32,
    ksk: String,
}

impl SignedZone {
    /// Generates a KSK and a ZSK for `apex` (with its trailing dot). Default TTL and negative TTL: 300 s.
    pub fn generate(apex: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("tincan-zone-").tempdir()?;
        let ksk = keygen(dir.path(), apex, true)?;
        keygen(dir.path(), apex, false)?;
        Ok(Self { dir, apex: apex.to_owned(), ttl: 300, ksk })
    }

    /// Sets the zone's default TTL and SOA minimum (negative TTL).
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// Replaces the ZSK with a new one (an abrupt ZSK change; the KSK, and so the DS, stay).
    pub fn replace_zsk(&self) -> Result<()> {
        for entry in std::fs::read_dir(self.dir.path())? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if name.starts_with('K') && !name.starts_with(&self.ksk) {
                std::fs::remove_file(&path)?;
            }
        }
        keygen(self.dir.path(), &self.apex, false)?;
        Ok(())
    }

    /// The DS record (SHA-256) of the KSK in presentation format (`APEX IN DS TAG 13 2 HEX`).
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

    /// Signs SOA + NS + `records` (zone-file lines), one record per line (`-O full`), with `extra` arguments
    /// for dnssec-signzone (e.g. `-s`/`-e` for the validity window). Returns the signed file.
    pub fn sign(&self, records: &str, extra: &[&str]) -> Result<PathBuf> {
        let (apex, ttl) = (&self.apex, self.ttl);
        let unsigned = self.dir.path().join("zone.db");
        let signed = self.dir.path().join("zone.signed");
        let zone = format!(
            "$TTL {ttl}\n{apex} IN SOA ns1.{apex} hostmaster.{apex} 1 3600 600 86400 {ttl}\n{apex} IN NS ns1.{apex}\n\
             ns1.{apex} IN A 127.0.0.1\n{records}"
        );
        std::fs::write(&unsigned, zone)?;
        tools::run_ok(
            tools::command("dnssec-signzone")
                .current_dir(self.dir.path())
                .args(["-O", "full", "-S", "-K", "."])
                .args(extra)
                .args(["-o", apex, "-f"])
                .arg(&signed)
                .arg(&unsigned),
        )?;
        Ok(signed)
    }
}

fn keygen(dir: &Path, apex: &str, ksk: bool) -> Result<String> {
    let mut cmd = tools::command("dnssec-keygen");
    cmd.current_dir(dir).args(["-q", "-a", "ECDSAP256SHA256", "-n", "ZONE"]);
    if ksk {
        cmd.args(["-f", "KSK"]);
    }
    let out = tools::run_ok(cmd.arg(apex.trim_end_matches('.')))?;
    let name = out.lines().last().context("dnssec-keygen printed no key name")?;
    Ok(name.trim().to_owned())
}

/// Edits a zone file line by line: `edit` gets each line and returns its replacement (`None` drops it).
pub fn edit_zone(path: &Path, mut edit: impl FnMut(&str) -> Option<String>) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let out: Vec<String> = text.lines().filter_map(&mut edit).collect();
    std::fs::write(path, out.join("\n") + "\n")?;
    Ok(())
}

/// Flips the first character of the signature (the last field) of the RRSIGs covering `rtype` at `owner`, in a
/// zone signed with `-O full` (one record per line).
pub fn corrupt_rrsig(path: &Path, owner: &str, rtype: &str) -> Result<()> {
    let mut hit = 0;
    edit_zone(path, |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&owner) && fields.get(3) == Some(&"RRSIG") && fields.get(4) == Some(&rtype) {
            hit += 1;
            let last = fields.last().copied().unwrap_or_default();
            let swapped = if last.starts_with('A') { 'B' } else { 'A' };
            let prefix = &line[..line.len() - last.len()];
            return Some(format!("{prefix}{swapped}{}", last.get(1..).unwrap_or_default()));
        }
        Some(line.to_owned())
    })?;
    anyhow::ensure!(hit > 0, "no RRSIG {rtype} at {owner}");
    Ok(())
}

/// A running `knotd` serving one zone; stopped on drop.
#[derive(Debug)]
pub struct Knot {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    apex: String,
    knotd: Knotd,
}

impl Knot {
    /// Serves `zone_file` (signed, or plain) as it is, on a free port.
    pub async fn serve(apex: &str, zone_file: &Path) -> Result<Self> {
        Self::start(apex, zone_file, false, ports::free_port()).await
    }

    /// Serves `zone_file` as it is on `port` (one this test reserved, e.g. from an earlier [`Knot`]).
    pub async fn serve_on(apex: &str, zone_file: &Path, port: u16) -> Result<Self> {
        Self::start(apex, zone_file, false, port).await
    }

    /// Serves `zone_file` signed online by `mod-onlinesign` with keys Knot generates.
    pub async fn serve_onlinesign(apex: &str, zone_file: &Path) -> Result<Self> {
        Self::start(apex, zone_file, true, ports::free_port()).await
    }

    async fn start(apex: &str, zone_file: &Path, online: bool, port: u16) -> Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (policy, module) = if online {
            (
                "policy:\n  - id: online\n    algorithm: ecdsap256sha256\n    ksk-lifetime: 0\n    zsk-lifetime: 0\n\
                 mod-onlinesign:\n  - id: default\n    policy: online\n",
                "    module: mod-onlinesign/default\n",
            )
        } else {
            ("", "")
        };
        let conf = KnotdConf::write("tincan-knot-", addr, |root| {
            format!(
                "{policy}\
                 zone:\n  - domain: {apex}\n    file: \"{root}/zone.db\"\n    zonefile-sync: -1\n    \
                 journal-content: none\n{module}"
            )
        })?;
        std::fs::copy(zone_file, conf.dir.path().join("zone.db"))?;
        let mut knotd = conf.spawn()?;
        // Ready once it serves the apex SOA.
        knotd.wait(apex, true, Duration::from_secs(10), |soa| !soa.trim().is_empty()).await?;
        let knot = Self { addr, apex: apex.to_owned(), knotd };
        if online {
            // The SOA can be served before mod-onlinesign has made and stored its keys (keymgr then lists no
            // DS, and a test's trust anchor would be empty): wait for the keys too.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !matches!(knot.onlinesign_ds(), Ok(ds) if !ds.trim().is_empty()) {
                anyhow::ensure!(std::time::Instant::now() < deadline, "knotd made no online-signing keys within 10 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(knot)
    }

    /// The DS records (SHA-256) of the keys Knot made for online signing.
    pub fn onlinesign_ds(&self) -> Result<String> {
        let out =
            tools::run_ok(tools::command("keymgr").arg("-c").arg(self.knotd.conf()).args([self.apex.as_str(), "ds"]))?;
        Ok(out.lines().filter(|l| l.split_whitespace().nth(4) == Some("2")).collect::<Vec<_>>().join("\n"))
    }
}
