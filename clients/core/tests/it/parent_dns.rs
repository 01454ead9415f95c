//! A directory the charter's trust list names, and DNS around it as a client on the internet sees it, for the
//! parent DS check: `tincan-directory` (the apex, DNSSEC-signed, and its transparency log), Knot serving the
//! parent zone `tincan.test.` with the delegation and a DS set of the test's choice, and Unbound as the
//! client's recursive resolver (stub zones for the parent and the apex). Shared with the CLI's tests (`#[path]`).

#![allow(dead_code)]

use crate::charter_server::Charter;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use tincan_charter::list::{ListInput, TrustedDirectory};
use tincan_testkit::ChildGuard;
use tincan_testkit::directory::{self, APEX, Directory};
use tincan_testkit::dnssec::Knot;

/// The number the directory holds (a Matrix route, no key).
pub const NUM: &str = "+442079460801";
/// Its Matrix user.
pub const USER: &str = "@carol:hs.test";

/// The directory, on the charter's list (version 1) with its own DS, and the DS sets a parent may publish.
pub struct ParentWorld {
    pub directory: Directory,
    pub charter: Charter,
    /// The directory's DS records (`keys ds`): what the charter names.
    pub own: Vec<String>,
    /// Another key's DS for the apex: same algorithm, another tag and digest.
    pub stranger: String,
    tmp: tempfile::TempDir,
}

impl ParentWorld {
    /// `None` when the directory binary is missing (the test is skipped; under CI it panics).
    pub async fn start() -> anyhow::Result<Option<ParentWorld>> {
        let Some(bin) = directory::binary_or_skip() else { return Ok(None) };
        let directory = Directory::start(&bin).await?;
        let registrar = directory.add_provider("tincan", &["+44"])?;
        registrar.put_number(NUM, &[("matrix", "matrix:u/carol:hs.test")]).await?;
        let own: Vec<String> =
            directory.trust_anchor()?.lines().filter(|l| l.contains(" DS ")).map(str::to_owned).collect();
        anyhow::ensure!(own.len() == 1, "{own:?}");
        let f: Vec<&str> = own[0].split_whitespace().collect();
        let flipped: String = f[f.len() - 1].chars().map(|c| if c == 'A' { 'B' } else { 'A' }).collect();
        let tag: u16 = f[f.len() - 4].parse()?;
        let stranger = format!("{APEX} 3600 IN DS {} {} {} {flipped}", tag ^ 1, f[f.len() - 3], f[f.len() - 2]);
        let charter = Charter::start().await;
        let listed = TrustedDirectory {
            id: "test".into(),
            apex: APEX.into(),
            ds: own.clone(),
            api_url: directory.api.parse()?,
            log_key: directory.log_key().await?,
            dns: vec![],
        };
        charter.publish_list(ListInput { directories: vec![listed], providers: vec![] }, 1);
        let tmp = tempfile::tempdir()?;
        Ok(Some(ParentWorld { directory, charter, own, stranger, tmp }))
    }

    /// A recursive resolver for a world whose parent zone publishes `ds` for the apex (`name` tells the
    /// set-ups of one test apart).
    pub async fn resolver(&self, name: &str, ds: &[String]) -> anyhow::Result<Resolver> {
        let zone = self.tmp.path().join(format!("{name}.db"));
        let records: String = ds.iter().map(|d| format!("{d}\n")).collect();
        std::fs::write(
            &zone,
            format!(
                "$TTL 300\ntincan.test. IN SOA ns.tincan.test. hostmaster.tincan.test. 1 3600 600 86400 300\n\
                 tincan.test. IN NS ns.tincan.test.\nns.tincan.test. IN A 127.0.0.1\n\
                 {APEX} IN NS ns.{APEX}\nns.{APEX} IN A 127.0.0.1\n{records}"
            ),
        )?;
        let parent = Knot::serve("tincan.test.", &zone).await?;
        let unbound = Unbound::start(parent.addr, self.directory.dns).await?;
        Ok(Resolver { addr: unbound.addr, _unbound: unbound, _parent: parent })
    }
}

/// `DS TAG ALG DIGTYPE DIGEST` of a presentation-format DS line, as the client names records.
pub fn short(line: &str) -> String {
    let f: Vec<&str> = line.split_whitespace().collect();
    format!("DS {}", f[f.len() - 4..].join(" ")).to_uppercase()
}

/// Unbound in front of a parent (Knot) and the directory; both stop on drop.
pub struct Resolver {
    /// Where the client asks.
    pub addr: SocketAddr,
    _unbound: Unbound,
    _parent: Knot,
}

/// Unbound as a recursive resolver on loopback: iterator only, the parent and the apex as stub zones (the
/// `test.` TLD is served locally by default: not here).
struct Unbound {
    addr: SocketAddr,
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Unbound {
    async fn start(parent: SocketAddr, apex: SocketAddr) -> anyhow::Result<Unbound> {
        let dir = tempfile::Builder::new().prefix("tincan-unbound-").tempdir()?;
        let port = tincan_testkit::ports::free_port();
        let stub = |zone: &str, a: SocketAddr| {
            format!("stub-zone:\n    name: \"{zone}\"\n    stub-addr: {}@{}\n", a.ip(), a.port())
        };
        let conf = format!(
            "server:\n    interface: 127.0.0.1@{port}\n    do-not-query-localhost: no\n    username: \"\"\n    \
             chroot: \"\"\n    directory: \"{d}\"\n    pidfile: \"\"\n    use-syslog: no\n    logfile: \"\"\n    \
             verbosity: 1\n    module-config: \"iterator\"\n    qname-minimisation: no\n    \
             local-zone: \"test.\" nodefault\n{}{}",
            stub("tincan.test.", parent),
            stub(APEX, apex),
            d = dir.path().display(),
        );
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf)?;
        let mut cmd = Command::new(tincan_testkit::tools::require("unbound"));
        cmd.arg("-d").arg("-c").arg(&path);
        let mut guard = ChildGuard::spawn_logged("unbound", cmd, dir.path().join("unbound.log"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Ready once it answers the parent's SOA through the stub.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            guard.ensure_running()?;
            let out = Command::new(tincan_testkit::tools::require("dig"))
                .args(["+short", "+time=1", "+tries=1", "-p", &port.to_string(), "@127.0.0.1", "tincan.test.", "SOA"])
                .output()?;
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "unbound did not answer within 10 s\n{}", guard.log_tail(20));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Unbound { addr, _guard: guard, _dir: dir })
    }
}
