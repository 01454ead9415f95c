//! A Knot DNS (`knotd`) secondary pulling a zone from a primary by AXFR/IXFR with TSIG, accepting its NOTIFY;
//! optionally signing online (`mod-onlinesign`) with keys imported into its KASP database beforehand.

use crate::process::ChildGuard;
use crate::tools;
use anyhow::{Result, bail};
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
    dir: tempfile::TempDir,
    guard: ChildGuard,
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
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }

    /// The SOA serial it serves, if it serves the zone.
    pub fn serial(&self) -> Result<Option<u32>> {
        let out = tools::run(
            tools::command("dig")
                .args(["+short", "+time=1", "+tries=1", "-p", &self.addr.port().to_string()])
                .arg(format!("@{}", self.addr.ip()))
                .args([self.apex.as_str(), "SOA"]),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.split_whitespace().nth(2).and_then(|s| s.parse().ok()))
    }

    /// Polls until it serves serial `serial` or newer (RFC 1982 arithmetic is not needed in tests), within
    /// `within`.
    pub async fn wait_serial(&mut self, serial: u32, within: Duration) -> Result<u32> {
        let deadline = Instant::now() + within;
        loop {
            self.guard.ensure_running()?;
            if let Some(s) = self.serial()?
                && s >= serial
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("knotd did not reach serial {serial} within {within:?}\n{}", self.guard.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
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
        let dir = tempfile::Builder::new().prefix("tincan-knot2-").tempdir()?;
        let root = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("db"))?;
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
        let conf = format!(
            "server:\n    rundir: \"{root}\"\n    listen: {ip}@{port}\n\
             database:\n    storage: \"{root}/db\"\n\
             log:\n  - target: stderr\n    any: info\n\
             key:\n  - id: {key}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
             remote:\n  - id: primary\n    address: {pip}@{pport}\n    key: {key}\n\
             acl:\n  - id: notify-from-primary\n    address: {pip}\n    key: {key}\n    action: notify\n\
             {policy}\
             zone:\n  - domain: {apex}\n    master: primary\n    acl: notify-from-primary\n    \
             file: \"{root}/zone.db\"\n    zonefile-sync: -1\n    zonefile-load: none\n    \
             journal-content: changes\n{zone_extra}",
            ip = addr.ip(),
            port = addr.port(),
            pip = primary.ip(),
            pport = primary.port(),
        );
        let conf_path = dir.path().join("knot.conf");
        std::fs::write(&conf_path, conf)?;
        for k in &self.keys {
            tools::run_ok(
                tools::command("keymgr")
                    .arg("-c")
                    .arg(&conf_path)
                    .args([apex.as_str(), "import-pem"])
                    .arg(&k.pem)
                    .args(&k.args),
            )?;
        }
        let mut cmd = tools::command("knotd");
        cmd.arg("-c").arg(&conf_path);
        let mut guard = ChildGuard::spawn_logged("knotd", cmd, dir.path().join("knotd.log"))?;
        // Running means it answers on its port (REFUSED or SERVFAIL until the zone arrives).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            guard.ensure_running()?;
            let out = tools::run(
                tools::command("dig")
                    .args(["+time=1", "+tries=1", "-p", &addr.port().to_string()])
                    .arg(format!("@{}", addr.ip()))
                    .args([apex.as_str(), "SOA"]),
            )?;
            if String::from_utf8_lossy(&out.stdout).contains("status:") {
                break;
            }
            if Instant::now() > deadline {
                bail!("knotd did not answer on {addr}\n{}", guard.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(KnotSecondary { addr, apex: self.apex, dir, guard })
    }
}

/// The path of a file in the secondary's directory (for tests that want to look at its files).
impl KnotSecondary {
    /// Its working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
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
