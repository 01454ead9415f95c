//! One `knotd` in its own temp dir, as both the zone server of [`crate::dnssec::Knot`] and the secondary of
//! [`crate::secondary::KnotSecondary`] run it: the config's common part (run dir, listener, database, log to
//! stderr), the process with its log, and `dig` polling of the apex SOA.

use crate::process::ChildGuard;
use crate::tools;
use anyhow::{Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A knotd work dir with its `knot.conf` written, not started yet (keys may be imported first).
#[derive(Debug)]
pub(crate) struct KnotdConf {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub addr: SocketAddr,
}

impl KnotdConf {
    /// A temp dir (`prefix…`) with a database dir and `knot.conf`: the common part for `addr`, then what `rest`
    /// makes of the dir's path (keys, remotes, policies, the zone).
    pub fn write(prefix: &str, addr: SocketAddr, rest: impl FnOnce(&str) -> String) -> Result<KnotdConf> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let root = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("db"))?;
        let conf = format!(
            "server:\n    rundir: \"{root}\"\n    listen: {ip}@{port}\n\
             database:\n    storage: \"{root}/db\"\n\
             log:\n  - target: stderr\n    any: info\n{rest}",
            ip = addr.ip(),
            port = addr.port(),
            rest = rest(&root),
        );
        let path = dir.path().join("knot.conf");
        std::fs::write(&path, conf)?;
        Ok(KnotdConf { dir, conf: path, addr })
    }

    /// Starts knotd on this config, its log in `knotd.log` beside it.
    pub fn spawn(self) -> Result<Knotd> {
        let mut cmd = tools::command("knotd");
        cmd.arg("-c").arg(&self.conf);
        let guard = ChildGuard::spawn_logged("knotd", cmd, self.dir.path().join("knotd.log"))?;
        Ok(Knotd { dir: self.dir, addr: self.addr, guard })
    }
}

/// A running knotd; stopped on drop.
#[derive(Debug)]
pub(crate) struct Knotd {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub guard: ChildGuard,
}

impl Knotd {
    /// Its config file.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("knot.conf")
    }

    /// Its work dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `dig` for the apex SOA (one try of one second; `+short` when `short`): its output.
    pub fn dig_soa(&self, apex: &str, short: bool) -> Result<String> {
        let mut cmd = tools::command("dig");
        if short {
            cmd.arg("+short");
        }
        let out = tools::run(
            cmd.args(["+time=1", "+tries=1", "-p", &self.addr.port().to_string()])
                .arg(format!("@{}", self.addr.ip()))
                .args([apex, "SOA"]),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls [`dig_soa`](Self::dig_soa) until `ready` holds for its output, failing when knotd exits or
    /// `within` passes.
    pub async fn wait(
        &mut self,
        apex: &str,
        short: bool,
        within: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.guard.ensure_running()?;
            if ready(&self.dig_soa(apex, short)?) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("knotd on {} not ready within {within:?}\n{}", self.addr, self.guard.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
