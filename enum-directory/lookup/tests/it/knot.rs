//! Knot DNS (`knotd`) serving a test zone on a free loopback port: a pre-signed zone file as is, or an unsigned
//! one signed online by `mod-onlinesign` (Knot's "black lies": NODATA with an NSEC at the query name).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use tincan_testkit::{ChildGuard, ports, tools};

use crate::zone::APEX;

/// A running knotd, stopped on drop.
pub struct Knot {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    guard: ChildGuard,
}

impl Knot {
    /// Serves `zone_file` (already signed, or plain) as is.
    pub async fn serve(zone_file: &Path) -> Result<Self> {
        Self::start(zone_file, false, ports::free_port()).await
    }

    /// Serves `zone_file` as is on `port` (one this test reserved, e.g. from an earlier [`Knot`]).
    pub async fn serve_on(zone_file: &Path, port: u16) -> Result<Self> {
        Self::start(zone_file, false, port).await
    }

    /// Serves `zone_file` signed online by `mod-onlinesign` with keys Knot generates.
    pub async fn serve_onlinesign(zone_file: &Path) -> Result<Self> {
        Self::start(zone_file, true, ports::free_port()).await
    }

    async fn start(zone_file: &Path, online: bool, port: u16) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("db"))?;
        std::fs::copy(zone_file, dir.path().join("zone.db"))?;
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
        let conf = format!(
            "server:\n    rundir: \"{root}\"\n    listen: 127.0.0.1@{port}\n\
             database:\n    storage: \"{root}/db\"\n\
             log:\n  - target: stderr\n    any: info\n\
             {policy}\
             zone:\n  - domain: {APEX}\n    file: \"{root}/zone.db\"\n    zonefile-sync: -1\n    \
             journal-content: none\n{module}"
        );
        let conf_path = dir.path().join("knot.conf");
        std::fs::write(&conf_path, conf)?;
        let mut cmd = tools::command("knotd");
        cmd.arg("-c").arg(&conf_path);
        let guard = ChildGuard::spawn_logged("knotd", cmd, dir.path().join("knotd.log"))?;
        let mut knot = Self { addr, dir, guard };
        knot.wait_ready().await?;
        Ok(knot)
    }

    /// Polls until the apex DNSKEY (or, unsigned, the SOA) is served.
    async fn wait_ready(&mut self) -> Result<()> {
        for _ in 0..100 {
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

    /// The DS records (SHA-256) of the keys Knot made for online signing.
    pub fn onlinesign_ds(&self) -> Result<String> {
        let out = tools::run_ok(
            tools::command("keymgr").arg("-c").arg(self.dir.path().join("knot.conf")).args([APEX, "ds"]),
        )?;
        Ok(out.lines().filter(|l| l.split_whitespace().nth(4) == Some("2")).collect::<Vec<_>>().join("\n"))
    }
}
