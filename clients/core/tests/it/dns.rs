//! A DNSSEC-signed ENUM zone for tests, made with BIND's tools (`dnssec-keygen`, `dnssec-signzone`) and served
//! by Knot DNS (`knotd`) on a free loopback port. Shared with the CLI's tests (`#[path]`).
//!
//! The real directory server signs online with compact denial; a pre-signed zone gives the client the same
//! validated answers for what it checks here (routes, keys, denial, tampering) without depending on another
//! crate's binary.

#![allow(dead_code)]

use anyhow::{Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tincan_enum_core::{E164, MasterKey, owner_name};
use tincan_testkit::{ChildGuard, ports, tools};

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

/// Keys, the signed zone and knotd serving it.
pub struct Directory {
    pub addr: SocketAddr,
    /// The DS of the KSK, presentation format: the trust anchor.
    pub anchor: String,
    dir: tempfile::TempDir,
    guard: ChildGuard,
}

impl Directory {
    /// Signs `entries` and serves them; `tamper` names a number whose NAPTR signature is then corrupted.
    pub async fn serve(entries: &[Entry], tamper: Option<&str>) -> Result<Directory> {
        let dir = tempfile::Builder::new().prefix("tincan-zone-").tempdir()?;
        let d = dir.path();
        let ksk = keygen(d, true)?;
        keygen(d, false)?;
        let anchor = tools::run_ok(tools::command("dnssec-dsfromkey").arg("-2").arg(d.join(format!("{ksk}.key"))))?
            .trim()
            .to_owned();
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
        let unsigned = d.join("zone.db");
        let signed = d.join("zone.signed");
        std::fs::write(
            &unsigned,
            format!(
                "$TTL 60\n{APEX} IN SOA ns1.{APEX} hostmaster.{APEX} 1 3600 600 86400 60\n{APEX} IN NS ns1.{APEX}\n\
                 ns1.{APEX} IN A 127.0.0.1\n{records}"
            ),
        )?;
        tools::run_ok(
            tools::command("dnssec-signzone")
                .current_dir(d)
                .args(["-O", "full", "-S", "-K", ".", "-o", APEX, "-f"])
                .arg(&signed)
                .arg(&unsigned),
        )?;
        if let Some(number) = tamper {
            corrupt_rrsig(&signed, &owner(number), "NAPTR")?;
        }
        let port = ports::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let root = d.display();
        std::fs::create_dir_all(d.join("db"))?;
        let conf = format!(
            "server:\n    rundir: \"{root}\"\n    listen: 127.0.0.1@{port}\n\
             database:\n    storage: \"{root}/db\"\n\
             log:\n  - target: stderr\n    any: info\n\
             zone:\n  - domain: {APEX}\n    file: \"{}\"\n    zonefile-sync: -1\n    journal-content: none\n",
            signed.display()
        );
        std::fs::write(d.join("knot.conf"), conf)?;
        let mut cmd = tools::command("knotd");
        cmd.arg("-c").arg(d.join("knot.conf"));
        let guard = ChildGuard::spawn_logged("knotd", cmd, d.join("knotd.log"))?;
        let mut me = Directory { addr, anchor, dir, guard };
        me.wait_ready().await?;
        Ok(me)
    }

    /// The anchor written to a file (for `--trust-anchor`).
    pub fn anchor_file(&self) -> Result<PathBuf> {
        let p = self.dir.path().join("anchor.ds");
        std::fs::write(&p, &self.anchor)?;
        Ok(p)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        for _ in 0..200 {
            self.guard.ensure_running()?;
            let out = tools::run(
                tools::command("dig")
                    .args(["+short", "+time=1", "+tries=1", "-p", &self.addr.port().to_string(), "@127.0.0.1"])
                    .args([APEX, "SOA"]),
            )?;
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("knotd did not answer on {}\n{}", self.addr, self.guard.log_tail(30))
    }
}

fn keygen(dir: &Path, ksk: bool) -> Result<String> {
    let mut cmd = tools::command("dnssec-keygen");
    cmd.current_dir(dir).args(["-q", "-a", "ECDSAP256SHA256", "-n", "ZONE"]);
    if ksk {
        cmd.args(["-f", "KSK"]);
    }
    let out = tools::run_ok(cmd.arg(APEX.trim_end_matches('.')))?;
    let name = out.trim().to_owned();
    anyhow::ensure!(!name.is_empty(), "dnssec-keygen printed no key name");
    Ok(name)
}

/// Changes one character of the signature of the RRSIG(s) covering `rtype` at `owner`.
fn corrupt_rrsig(path: &Path, owner: &str, rtype: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut hits = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() == Some(&owner) && f.get(3) == Some(&"RRSIG") && f.get(4) == Some(&rtype) {
                hits += 1;
                let sig = f.last().unwrap();
                let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
                format!("{}{flipped}{}", &line[..line.len() - sig.len()], &sig[1..])
            } else {
                line.to_owned()
            }
        })
        .collect();
    anyhow::ensure!(hits > 0, "no RRSIG {rtype} at {owner}");
    std::fs::write(path, lines.join("\n") + "\n")?;
    Ok(())
}
