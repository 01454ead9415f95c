//! Starts the real `tincan-directory` binary on free ports with a temporary data dir, and talks to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tincan_testkit::ChildGuard;
use tincan_testkit::ports::free_port;

pub const APEX: &str = "e164.tincan.test.";

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tincan-directory"))
}

/// A running directory.
pub struct Directory {
    pub guard: ChildGuard,
    pub dns: SocketAddr,
    pub api: SocketAddr,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
}

impl Directory {
    /// Starts `serve` on fresh ports with `data_dir`, waiting until the API answers.
    pub async fn start(data_dir: &Path) -> Directory {
        Self::start_with(data_dir, &[]).await
    }

    /// Starts `serve` on fresh ports with extra environment (config overrides).
    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Directory {
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::start_on(data_dir, dns, api, env).await
    }

    /// Starts `serve` on the given addresses.
    pub async fn start_on(data_dir: &Path, dns: SocketAddr, api: SocketAddr, env: &[(&str, &str)]) -> Directory {
        let mut cmd = bin();
        cmd.arg("serve").arg("--data-dir").arg(data_dir).arg("--dns").arg(dns.to_string()).arg("--api");
        cmd.arg(api.to_string()).env("RUST_LOG", "info");
        // Tests send many requests quickly; the rate-limit test sets its own.
        cmd.env("TINCAN_DIRECTORY_API__RATE_LIMIT__BURST", "1000000");
        cmd.env("TINCAN_DIRECTORY_API__PUBLIC_RATE_LIMIT__BURST", "1000000");
        cmd.envs(env.iter().copied());
        let log = data_dir.join("serve.log");
        let mut guard = ChildGuard::spawn_logged("tincan-directory", cmd, &log).unwrap();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            guard.ensure_running().unwrap();
            if let Ok(r) = http.get(format!("http://{api}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "not healthy after 30 s\n{}", guard.log_tail(40));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Directory { guard, dns, api, data_dir: data_dir.to_owned(), http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// Adds a provider through the CLI and returns its token.
    pub fn add_provider(&self, name: &str, prefixes: &[&str]) -> String {
        add_provider(&self.data_dir, name, prefixes)
    }

    /// Adds a provider with `--shared` and returns its token.
    pub fn add_provider_shared(&self, name: &str, prefixes: &[&str]) -> String {
        add_provider_shared(&self.data_dir, name, prefixes)
    }
}

/// Runs a subcommand against `data_dir`.
pub fn cli(data_dir: &Path, args: &[&str]) -> Output {
    cli_env(data_dir, args, &[])
}

/// Runs a subcommand against `data_dir` with extra environment (config overrides).
pub fn cli_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    bin().args(args).arg("--data-dir").arg(data_dir).envs(env.iter().copied()).output().unwrap()
}

/// `provider add`, returning the token printed on stdout.
pub fn add_provider(data_dir: &Path, name: &str, prefixes: &[&str]) -> String {
    add_provider_with(data_dir, name, prefixes, &[])
}

/// `provider add --shared` (prefixes may overlap another provider's), returning the token.
pub fn add_provider_shared(data_dir: &Path, name: &str, prefixes: &[&str]) -> String {
    add_provider_with(data_dir, name, prefixes, &["--shared"])
}

fn add_provider_with(data_dir: &Path, name: &str, prefixes: &[&str], extra: &[&str]) -> String {
    let mut args = vec!["provider", "add", name];
    for p in prefixes {
        args.extend(["--prefix", p]);
    }
    args.extend_from_slice(extra);
    let out = cli(data_dir, &args);
    assert!(out.status.success(), "provider add: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the token on stdout: {stdout:?}");
    lines[0].to_owned()
}

/// `keys ds` output lines.
pub fn ds(data_dir: &Path) -> Vec<String> {
    let out = cli(data_dir, &["keys", "ds"]);
    assert!(out.status.success(), "keys ds: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// `delv`'s output (stdout and stderr) for `name`'s `rtype` at `server`, validated with the trust anchors in
/// `anchor` (a BIND `trust-anchors` clause) from the apex down.
pub fn delv(server: SocketAddr, anchor: &Path, name: &str, rtype: &str) -> String {
    tincan_testkit::tools::delv(server, anchor, APEX, name, rtype).unwrap()
}

/// The ENUM owner name of `+<digits>` under [`APEX`].
pub fn owner(number: &str) -> String {
    let digits: String = number.trim_start_matches('+').chars().rev().flat_map(|c| [c, '.']).collect();
    format!("{digits}{APEX}")
}

/// One UDP query with the DO bit; the response.
pub async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true).set_max_payload(4096);
    msg.set_edns(edns);
    let id = msg.metadata.id;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await.unwrap().unwrap();
        let resp = Message::from_vec(&buf[..n]).unwrap();
        if resp.metadata.id == id {
            return resp;
        }
    }
}

/// Whether the answer section holds `rtype` records and their RRSIG.
pub fn signed_answer(resp: &Message, rtype: RecordType) -> bool {
    let has = |t| resp.answers.iter().any(|r| r.record_type() == t);
    has(rtype) && has(RecordType::RRSIG)
}
