//! The real ENUM directory (`tincan-directory`) for cross-component tests: started on free loopback ports with a
//! temporary data dir, a provider added through its CLI, the trust anchor from `keys ds`, and a small client
//! of its registrar API. Also [`TamperProxy`], an in-process DNS man-in-the-middle that flips a byte in the
//! RRSIG signatures of answers for one name, so a validating client can be shown a tampered answer on the wire.
//!
//! The directory is another crate's binary: it is found through `TINCAN_TEST_DIRECTORY_BIN` (exported by
//! `dev/test`; never a `TINCAN_DIRECTORY_*` name, those are the directory's config keys), else next to the
//! test executable's directory (`<target>/debug/tincan-directory`, present once the workspace is built).

use crate::process::ChildGuard;
use crate::{in_ci, ports};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// The apex the test directory serves.
pub const APEX: &str = "e164.tincan.test.";

/// The environment variable naming the `tincan-directory` binary.
pub const BIN_ENV: &str = "TINCAN_TEST_DIRECTORY_BIN";

/// The `tincan-directory` binary: `$TINCAN_TEST_DIRECTORY_BIN`, else `<target>/<profile>/tincan-directory` next to
/// the running test (tests run from `<target>/<profile>/deps/`).
pub fn binary() -> Option<PathBuf> {
    sibling_binary(BIN_ENV, "tincan-directory")
}

/// `$env`, else the binary `name` in the parent of the test executable's directory, if it exists.
pub fn sibling_binary(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join(name);
    candidate.exists().then_some(candidate)
}

/// [`binary`], or `None` after printing why the test is skipped; under `CI=true` a missing binary panics.
pub fn binary_or_skip() -> Option<PathBuf> {
    let found = binary();
    if found.is_none() {
        assert!(!in_ci(), "{BIN_ENV} must point at tincan-directory in CI");
        eprintln!("skipped: no tincan-directory binary (set {BIN_ENV} or `cargo build -p tincan-directory`)");
    }
    found
}

/// A running `tincan-directory serve`, stopped on drop.
#[derive(Debug)]
pub struct Directory {
    /// The DNS listener (UDP and TCP).
    pub dns: SocketAddr,
    /// The registrar API's base URL, `http://127.0.0.1:PORT`.
    pub api: String,
    bin: PathBuf,
    data: tempfile::TempDir,
    guard: ChildGuard,
}

impl Directory {
    /// Starts `bin serve` for [`APEX`] on free ports with a fresh data dir (keys generated on start) and waits
    /// until the API answers `/healthz`.
    pub async fn start(bin: &Path) -> Result<Directory> {
        Directory::start_env(bin, &[]).await
    }

    /// [`Directory::start`] with more `TINCAN_DIRECTORY_…` variables (a test's `PORTS__WINDOW_SECS`, its
    /// `PORTS__WEBHOOKS__<PROVIDER>`…).
    pub async fn start_env(bin: &Path, env: &[(&str, &str)]) -> Result<Directory> {
        let data = tempfile::Builder::new().prefix("tincan-directory-").tempdir()?;
        let [dns_port, api_port] = ports::free_ports::<2>();
        let dns = SocketAddr::from(([127, 0, 0, 1], dns_port));
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg("--data-dir").arg(data.path());
        cmd.args(["--dns", &dns.to_string(), "--api", &format!("127.0.0.1:{api_port}"), "--apex", APEX]);
        // Tests register many numbers quickly.
        cmd.env("TINCAN_DIRECTORY_API__RATE_LIMIT__BURST", "100000").env_remove(BIN_ENV);
        cmd.env("TINCAN_DIRECTORY_API__PUBLIC_RATE_LIMIT__BURST", "100000");
        cmd.envs(env.iter().copied());
        let mut guard = ChildGuard::spawn_logged("tincan-directory", cmd, data.path().join("serve.log"))?;
        let api = format!("http://127.0.0.1:{api_port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Err(e) = guard.ensure_running() {
                bail!("{e}\n{}", guard.log_tail(40));
            }
            if let Ok(r) = http.get(format!("{api}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("tincan-directory not healthy after 60 s\n{}", guard.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Directory { dns, api, bin: bin.to_owned(), data, guard })
    }

    /// Runs a subcommand of the binary against this data dir; its stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["--apex", APEX])
            .env_remove(BIN_ENV)
            .output()
            .with_context(|| format!("running tincan-directory {args:?}"))?;
        ensure!(out.status.success(), "tincan-directory {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    }

    /// `provider add NAME --prefix …`: a registrar client with the new provider's token.
    pub fn add_provider(&self, name: &str, prefixes: &[&str]) -> Result<Registrar> {
        self.add_provider_with(name, prefixes, &[])
    }

    /// [`Directory::add_provider`] with more arguments (`--shared`: prefixes another provider serves too, as
    /// two providers of one country whose numbers port between them).
    pub fn add_provider_with(&self, name: &str, prefixes: &[&str], more: &[&str]) -> Result<Registrar> {
        let mut args = vec!["provider", "add", name];
        for p in prefixes {
            args.extend(["--prefix", p]);
        }
        args.extend(more);
        let token = self.cli(&args)?.trim().to_owned();
        ensure!(!token.is_empty() && !token.contains('\n'), "provider add printed {token:?}");
        Ok(Registrar { api: self.api.clone(), token, http: reqwest::Client::new() })
    }

    /// The trust anchor: the DS records `keys ds` prints (what a client is configured with).
    pub fn trust_anchor(&self) -> Result<String> {
        let ds = self.cli(&["keys", "ds"])?;
        ensure!(ds.contains(" DS "), "keys ds printed no DS: {ds:?}");
        Ok(ds)
    }

    /// The trust anchor as BIND's `trust-anchors { "APEX" static-ds TAG ALG DIGEST-TYPE "HEX"; };` clause (what
    /// `delv -a` reads).
    pub fn bind_trust_anchors(&self) -> Result<String> {
        let mut anchors = String::new();
        for line in self.trust_anchor()?.lines().filter(|l| l.contains(" DS ")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let i = f.iter().position(|w| *w == "DS").context("a DS line")?;
            ensure!(f.len() > i + 4, "short DS line {line:?}");
            let hex: String = f[i + 4..].concat();
            anchors.push_str(&format!("  \"{APEX}\" static-ds {} {} {} \"{hex}\";\n", f[i + 1], f[i + 2], f[i + 3]));
        }
        Ok(format!("trust-anchors {{\n{anchors}}};\n"))
    }

    /// `delv`'s output (stdout and stderr) for the `rtype` records of `number` (`+E.164`), validated by BIND's
    /// validator up to the directory's DS: `; fully validated` when they are.
    pub fn delv(&self, number: &str, rtype: &str) -> Result<String> {
        let work = tempfile::tempdir()?;
        let anchor = work.path().join("anchor.conf");
        std::fs::write(&anchor, self.bind_trust_anchors()?)?;
        let owner: String = number.trim_start_matches('+').chars().rev().flat_map(|c| [c, '.']).collect();
        crate::tools::delv(self.dns, &anchor, APEX, &format!("{owner}{APEX}"), rtype)
    }

    /// The transparency log's public key (unpadded base64), as `GET /v1/log/sth` serves it: what a client pins.
    pub async fn log_key(&self) -> Result<String> {
        let sth: Value = reqwest::get(format!("{}/v1/log/sth", self.api)).await?.error_for_status()?.json().await?;
        sth["log_key"].as_str().map(str::to_owned).context("no log_key in /v1/log/sth")
    }

    /// The transparency log's Ed25519 signing seed, read from the directory's SQLite database (`log_keys`):
    /// what a dishonest operator holds, for tests that sign a forked log.
    pub async fn log_signing_seed(&self) -> Result<[u8; 32]> {
        let path = self.data.path().join("directory.sqlite3");
        let url = format!("sqlite://{}?mode=ro", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await?;
        let seed: Vec<u8> =
            sqlx::query_scalar("SELECT seed FROM log_keys ORDER BY id LIMIT 1").fetch_one(&pool).await?;
        pool.close().await;
        seed.try_into().map_err(|s: Vec<u8>| anyhow::anyhow!("a log seed of {} bytes", s.len()))
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The last `lines` of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }
}

/// The registrar API with one provider's token.
#[derive(Debug, Clone)]
pub struct Registrar {
    /// The API's base URL.
    pub api: String,
    /// The provider's bearer token.
    pub token: String,
    http: reqwest::Client,
}

impl Registrar {
    /// `PUT /v1/numbers/{number}` with `(type, uri)` services (`matrix`, `sip`, `tel`…); the stored record.
    pub async fn put_number(&self, number: &str, services: &[(&str, &str)]) -> Result<Value> {
        let services: Vec<Value> = services.iter().map(|(t, u)| json!({"type": t, "uri": u})).collect();
        let body = json!({ "services": services });
        let r = self.http.put(self.url(number, "")).bearer_auth(&self.token).json(&body).send().await?;
        Self::ok(r).await
    }

    /// `PUT /v1/numbers/{number}/key` with an Ed25519 master key (unpadded base64).
    pub async fn put_key(&self, number: &str, ed25519: &str) -> Result<Value> {
        let body = json!({ "ed25519": ed25519 });
        let r = self.http.put(self.url(number, "/key")).bearer_auth(&self.token).json(&body).send().await?;
        Self::ok(r).await
    }

    /// `GET /v1/numbers/{number}`: the record, or `None` when the number is not registered.
    pub async fn get(&self, number: &str) -> Result<Option<Value>> {
        let r = self.http.get(self.url(number, "")).bearer_auth(&self.token).send().await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::ok(r).await.map(Some)
    }

    fn url(&self, number: &str, suffix: &str) -> String {
        format!("{}/v1/numbers/{number}{suffix}", self.api)
    }

    async fn ok(r: reqwest::Response) -> Result<Value> {
        let status = r.status();
        let text = r.text().await?;
        ensure!(status.is_success(), "registrar answered {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A DNS man-in-the-middle on UDP and TCP (one loopback port): forwards every query to `upstream` and passes
/// the answers back, changed one way:
/// - [`TamperProxy::start`]: in answers to queries for `owner` it flips one byte of every RRSIG's signature in
///   the answer section. Everything else (DNSKEY, DS, other names) passes untouched, so a validating client sees
///   exactly one tampered RRset.
/// - [`TamperProxy::strip_keys`]: answers to DNSKEY queries lose every record (an empty NOERROR answer), as if
///   the zone were unsigned: a client that accepts insecure answers gets every answer downgraded.
///
/// Stopped on drop.
#[derive(Debug)]
pub struct TamperProxy {
    /// Where clients send their queries.
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// How a [`TamperProxy`] changes an answer.
type Change = Arc<dyn Fn(&mut Vec<u8>) + Send + Sync>;

impl TamperProxy {
    /// Starts the signature-flipping proxy for `owner` on a free loopback port.
    pub async fn start(upstream: SocketAddr, owner: &str) -> Result<TamperProxy> {
        let owner: String = owner.trim_end_matches('.').to_ascii_lowercase();
        Self::start_with(
            upstream,
            Arc::new(move |m: &mut Vec<u8>| {
                tamper(m, &owner);
            }),
        )
        .await
    }

    /// Starts the DNSKEY-stripping proxy on a free loopback port.
    pub async fn strip_keys(upstream: SocketAddr) -> Result<TamperProxy> {
        Self::start_with(
            upstream,
            Arc::new(|m: &mut Vec<u8>| {
                strip_dnskey(m);
            }),
        )
        .await
    }

    async fn start_with(upstream: SocketAddr, change: Change) -> Result<TamperProxy> {
        let addr = ports::free_addr();
        let udp = Arc::new(UdpSocket::bind(addr).await?);
        let tcp = TcpListener::bind(addr).await?;
        let c = change.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, client)) = udp.recv_from(&mut buf).await else { continue };
                let query = buf[..n].to_vec();
                let (udp, change) = (udp.clone(), c.clone());
                tokio::spawn(async move {
                    if let Ok(mut answer) = forward_udp(upstream, &query).await {
                        change(&mut answer);
                        let _ = udp.send_to(&answer, client).await;
                    }
                });
            }
        });
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = tcp.accept().await else { continue };
                let change = change.clone();
                tokio::spawn(async move {
                    let _ = relay_tcp(conn, upstream, change).await;
                });
            }
        });
        Ok(TamperProxy { addr, tasks: vec![udp_task, tcp_task] })
    }
}

impl Drop for TamperProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn forward_udp(upstream: SocketAddr, query: &[u8]) -> Result<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.send_to(query, upstream).await?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf)).await??;
    buf.truncate(n);
    Ok(buf)
}

/// Length-prefixed messages (RFC 1035 §4.2.2) relayed one at a time until the client closes.
async fn relay_tcp(mut client: TcpStream, upstream: SocketAddr, change: Change) -> Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    loop {
        let query = match read_framed(&mut client).await {
            Ok(q) => q,
            Err(_) => return Ok(()),
        };
        write_framed(&mut server, &query).await?;
        let mut answer = read_framed(&mut server).await?;
        change(&mut answer);
        write_framed(&mut client, &answer).await?;
    }
}

async fn read_framed(s: &mut TcpStream) -> Result<Vec<u8>> {
    let len = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_framed(s: &mut TcpStream, msg: &[u8]) -> Result<()> {
    let len = u16::try_from(msg.len()).context("message too long")?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(msg).await?;
    Ok(())
}

const RRSIG: u16 = 46;
const DNSKEY: u16 = 48;

/// Empties the answer to a DNSKEY query (every section, EDNS included): an unsigned zone's NODATA. Returns
/// whether it did; other messages are left as they are.
pub fn strip_dnskey(msg: &mut Vec<u8>) -> bool {
    let u16_at = |m: &[u8], i: usize| Some(u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]));
    let Some(1) = u16_at(msg, 4) else { return false };
    let Some((_, qtype_at)) = read_name(msg, 12) else { return false };
    if u16_at(msg, qtype_at) != Some(DNSKEY) {
        return false;
    }
    msg.truncate(qtype_at + 4);
    msg[6..12].fill(0);
    true
}

/// Flips the last byte (part of the signature) of every RRSIG in the answer section when the question is for
/// `owner` (lowercase, no trailing dot). Returns how many were flipped; a message it cannot parse is left as is.
pub fn tamper(msg: &mut [u8], owner: &str) -> usize {
    tamper_inner(msg, owner).unwrap_or(0)
}

fn tamper_inner(msg: &mut [u8], owner: &str) -> Option<usize> {
    let u16_at = |m: &[u8], i: usize| Some(u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]));
    let (qd, an) = (u16_at(msg, 4)?, u16_at(msg, 6)?);
    if qd != 1 {
        return None;
    }
    let (qname, mut i) = read_name(msg, 12)?;
    if !qname.eq_ignore_ascii_case(owner) {
        return Some(0);
    }
    i += 4; // QTYPE, QCLASS
    let mut flipped = 0;
    for _ in 0..an {
        let (_, next) = read_name(msg, i)?;
        let rtype = u16_at(msg, next)?;
        let rdlen = usize::from(u16_at(msg, next + 8)?);
        let rdata = next + 10;
        let end = rdata + rdlen;
        if end > msg.len() {
            return None;
        }
        if rtype == RRSIG && rdlen > 0 {
            msg[end - 1] ^= 0x01;
            flipped += 1;
        }
        i = end;
    }
    Some(flipped)
}

/// A (possibly compressed) name at `at`: its dotted text without the root dot, and the offset after it.
fn read_name(msg: &[u8], at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let (mut i, mut end, mut jumps) = (at, None, 0);
    loop {
        let len = *msg.get(i)?;
        match len {
            0 => {
                return Some((labels.join("."), end.unwrap_or(i + 1)));
            }
            l if l & 0xC0 == 0xC0 => {
                let target = usize::from(u16::from_be_bytes([l & 0x3F, *msg.get(i + 1)?]));
                end.get_or_insert(i + 2);
                jumps += 1;
                if jumps > 64 {
                    return None;
                }
                i = target;
            }
            l => {
                let label = msg.get(i + 1..i + 1 + usize::from(l))?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                i += 1 + usize::from(l);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response for `a.example.` with one TXT and one RRSIG (whose "signature" is `[0xAA, 0xBB]`).
    fn response(qname: &[u8]) -> Vec<u8> {
        let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(qname);
        m.extend_from_slice(&[0, 16, 0, 1]);
        // TXT, owner compressed to the question name.
        m.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 2, 1, b'x']);
        // RRSIG: 18 fixed bytes, signer "." (one zero byte), then the signature.
        m.extend_from_slice(&[0xC0, 12, 0, 46, 0, 1, 0, 0, 0, 60, 0, 21]);
        m.extend_from_slice(&[0, 16, 13, 2, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xAA, 0xBB]);
        m
    }

    #[test]
    fn strips_dnskey_answers_only() {
        let mut m = response(b"\x01a\x07example\x00");
        let qtype_at = 12 + 11;
        m[qtype_at + 1] = 48;
        assert!(strip_dnskey(&mut m));
        assert_eq!(m.len(), qtype_at + 4);
        assert_eq!(&m[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        let mut txt = response(b"\x01a\x07example\x00");
        let before = txt.clone();
        assert!(!strip_dnskey(&mut txt));
        assert_eq!(txt, before);
    }

    #[test]
    fn flips_the_signature_of_the_named_answer_only() {
        let mut m = response(b"\x01a\x07example\x00");
        let before = m.clone();
        assert_eq!(tamper(&mut m, "a.example"), 1);
        assert_eq!(m.len(), before.len());
        assert_eq!(m[m.len() - 1], 0xBB ^ 1);
        assert_eq!(m[..m.len() - 1], before[..before.len() - 1]);

        let mut m = response(b"\x01A\x07EXAMPLE\x00");
        assert_eq!(tamper(&mut m, "a.example"), 1, "case-insensitive");
        let mut m = response(b"\x01b\x07example\x00");
        assert_eq!(tamper(&mut m, "a.example"), 0);
        let mut short = response(b"\x01a\x07example\x00");
        short.truncate(40);
        assert_eq!(tamper(&mut short, "a.example"), 0, "a truncated message is left alone");
    }
}
