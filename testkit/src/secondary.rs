//! A Knot DNS (`knotd`) secondary pulling a zone from a primary by AXFR/IXFR with TSIG, accepting its NOTIFY;
//! optionally signing online (`mod-onlinesign`) with keys imported into its KASP database beforehand.

use crate::knotd::{Knotd, KnotdConf};
use crate::process::ChildGuard;
use crate::tools;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A key imported into the secondary's KASP database with `keymgr import-pem`.
#[derive(Debug, Clone)]
pub struct ImportedKey {
    /// The PKCS#8 PEM file.
    pub pem: PathBuf,
    /// The arguments `keymgr … import-pem FILE` takes after the file (`algorithm=13 ksk=yes publish=… active=…`).
    pub args: Vec<String>,
}

/// How to start a [`KnotSecondary`].
#[derive(Debug, Clone)]
pub struct KnotSecondaryBuilder {
    apex: String,
    primary: SocketAddr,
    key_name: String,
    secret: String,
    listen: Option<SocketAddr>,
    keys: Vec<ImportedKey>,
}

/// A running secondary; stopped on drop.
#[derive(Debug)]
pub struct KnotSecondary {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    apex: String,
    knotd: Knotd,
}

impl KnotSecondary {
    /// A secondary of `apex` pulling from `primary` with TSIG key `key_name` (HMAC-SHA256, base64 `secret`).
    pub fn builder(apex: &str, primary: SocketAddr, key_name: &str, secret: &str) -> KnotSecondaryBuilder {
        KnotSecondaryBuilder {
            apex: apex.to_owned(),
            primary,
            key_name: key_name.to_owned(),
            secret: secret.to_owned(),
            listen: None,
            keys: Vec::new(),
        }
    }

    /// knotd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.knotd.path().join("knotd.log")).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.knotd.guard.log_tail(lines)
    }

    /// The SOA serial it serves, if it serves the zone.
    pub fn serial(&self) -> Result<Option<u32>> {
        Ok(soa_serial(&self.knotd.dig_soa(&self.apex, true)?))
    }

    /// Polls until it serves serial `serial` or newer (RFC 1982 arithmetic is not needed in tests), within
    /// `within`.
    pub async fn wait_serial(&mut self, serial: u32, within: Duration) -> Result<u32> {
        self.knotd
            .wait(&self.apex, true, within, |soa| soa_serial(soa).is_some_and(|s| s >= serial))
            .await
            .with_context(|| format!("knotd did not reach serial {serial}"))?;
        Ok(self.serial()?.unwrap_or(serial))
    }

    /// Its working directory (for tests that want to look at its files).
    pub fn dir(&self) -> &Path {
        self.knotd.path()
    }
}

/// The serial in `dig +short … SOA` output.
fn soa_serial(short: &str) -> Option<u32> {
    short.split_whitespace().nth(2).and_then(|s| s.parse().ok())
}

impl KnotSecondaryBuilder {
    /// Listens on `addr` instead of a free loopback port (e.g. `127.77.0.1:53` for `ldns-walk`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Signs online (`mod-onlinesign`) with these keys, imported before knotd starts; no key is generated.
    pub fn onlinesign(mut self, keys: Vec<ImportedKey>) -> Self {
        self.keys = keys;
        self
    }

    /// Writes the config, imports the keys and starts knotd; returns once it runs (the zone may still be on
    /// its way: use [`KnotSecondary::wait_serial`]).
    pub async fn start(self) -> Result<KnotSecondary> {
        let addr = self.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], crate::ports::free_port())));
        let (apex, key, secret, primary) = (&self.apex, &self.key_name, &self.secret, self.primary);
        let online = !self.keys.is_empty();
        let (policy, zone_extra) = if online {
            (
                "policy:\n  - id: imported\n    algorithm: ecdsap256sha256\n    manual: on\n\
                 mod-onlinesign:\n  - id: default\n    policy: imported\n",
                "    module: mod-onlinesign/default\n",
            )
        } else {
            ("", "")
        };
        let conf = KnotdConf::write("tincan-knot2-", addr, |root| {
            format!(
                "key:\n  - id: {key}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
                 remote:\n  - id: primary\n    address: {pip}@{pport}\n    key: {key}\n\
                 acl:\n  - id: notify-from-primary\n    address: {pip}\n    key: {key}\n    action: notify\n\
                 {policy}\
                 zone:\n  - domain: {apex}\n    master: primary\n    acl: notify-from-primary\n    \
                 file: \"{root}/zone.db\"\n    zonefile-sync: -1\n    zonefile-load: none\n    \
                 journal-content: changes\n{zone_extra}",
                pip = primary.ip(),
                pport = primary.port(),
            )
        })?;
        for k in &self.keys {
            tools::run_ok(
                tools::command("keymgr")
                    .arg("-c")
                    .arg(&conf.conf)
                    .args([apex.as_str(), "import-pem"])
                    .arg(&k.pem)
                    .args(&k.args),
            )?;
        }
        let mut knotd = conf.spawn()?;
        // Running means it answers on its port (REFUSED or SERVFAIL until the zone arrives).
        knotd.wait(apex, false, Duration::from_secs(30), |out| out.contains("status:")).await?;
        Ok(KnotSecondary { addr, apex: self.apex, knotd })
    }
}

/// An NSD secondary pulling a zone from a primary with TSIG; it serves the copy (and transfers it out to
/// loopback clients without a key, for tests to check it whole).
#[derive(Debug)]
pub struct NsdSecondary {
    /// Where it answers.
    pub addr: SocketAddr,
    apex: String,
    dir: tempfile::TempDir,
    guard: ChildGuard,
}

impl NsdSecondary {
    /// Starts nsd on `listen` as a secondary of `apex` from `primary` with TSIG `key_name`/`secret`.
    pub async fn start(
        apex: &str,
        primary: SocketAddr,
        key_name: &str,
        secret: &str,
        listen: SocketAddr,
    ) -> Result<NsdSecondary> {
        let dir = tempfile::Builder::new().prefix("tincan-nsd-").tempdir()?;
        let root = dir.path().display().to_string();
        let conf = format!(
            "server:\n  ip-address: {ip}@{port}\n  port: {port}\n  zonesdir: \"{root}\"\n  database: \"\"\n  \
             pidfile: \"{root}/nsd.pid\"\n  xfrdfile: \"{root}/xfrd.state\"\n  zonelistfile: \"{root}/zone.list\"\n  \
             username: \"\"\n  chroot: \"\"\n  verbosity: 2\n  rrl-ratelimit: 0\n\
             remote-control:\n  control-enable: no\n\
             key:\n  name: \"{key_name}\"\n  algorithm: hmac-sha256\n  secret: \"{secret}\"\n\
             zone:\n  name: \"{apex}\"\n  zonefile: \"zone.db\"\n  request-xfr: {pip}@{pport} {key_name}\n  \
             allow-notify: {pip} {key_name}\n  provide-xfr: 127.0.0.0/8 NOKEY\n",
            port = listen.port(),
            ip = listen.ip(),
            pport = primary.port(),
            pip = primary.ip(),
        );
        let conf_path = dir.path().join("nsd.conf");
        std::fs::write(&conf_path, conf)?;
        let mut cmd = tools::command("nsd");
        cmd.arg("-d").arg("-c").arg(&conf_path);
        let guard = ChildGuard::spawn_logged("nsd", cmd, dir.path().join("nsd.log"))?;
        Ok(NsdSecondary { addr: listen, apex: apex.to_owned(), dir, guard })
    }

    /// Polls until the secondary serves a signed copy, then writes what it transfers out (`dig AXFR`) to a file
    /// and returns its path.
    pub async fn wait_zone(&mut self, within: Duration) -> Result<PathBuf> {
        let deadline = Instant::now() + within;
        let path = self.dir.path().join("transferred.zone");
        loop {
            self.guard.ensure_running()?;
            let out = tools::run(
                tools::command("dig")
                    .args(["+time=5", "+tries=1", "+onesoa", "+nocmd", "+nostats", "+nocomments"])
                    .args(["-p", &self.addr.port().to_string()])
                    .arg(format!("@{}", self.addr.ip()))
                    .args([self.apex.as_str(), "AXFR"]),
            )?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("NSEC3PARAM") && !text.contains("Transfer failed") {
                std::fs::write(&path, text)?;
                return Ok(path);
            }
            if Instant::now() > deadline {
                let head: Vec<&str> = text.lines().take(20).collect();
                bail!(
                    "nsd did not load {} within {within:?}; last AXFR from it:\n{}\n{}",
                    self.apex,
                    head.join("\n"),
                    self.guard.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
