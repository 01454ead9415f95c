//! SIP peers for tests: rtpengine (Debian `rtpengine-daemon`, userspace mode), sipp scenarios and baresip, on
//! free loopback ports, stopped when dropped.

use crate::process::ChildGuard;
use crate::{ports, tools};
use anyhow::{Context, Result, bail};
use std::fs::OpenOptions;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running `rtpengine` in userspace mode (`--table=-1`): its ng control port and its RTP port range.
#[derive(Debug)]
pub struct Rtpengine {
    /// The ng control address (UDP).
    pub ng: SocketAddr,
    /// The first and last RTP port it may use.
    pub port_range: (u16, u16),
    guard: ChildGuard,
    _dir: tempfile::TempDir,
    _block: std::fs::File,
}

impl Rtpengine {
    /// Starts rtpengine on 127.0.0.1 with a free ng port and a reserved block of 200 RTP ports; waits until
    /// it answers an ng `ping`.
    pub async fn start() -> Result<Self> {
        Self::start_with_ports(200).await
    }

    /// [`Rtpengine::start`] with `len` RTP ports (each anchored call takes four: RTP and RTCP per party).
    pub async fn start_with_ports(len: u16) -> Result<Self> {
        let ng = ports::free_addr();
        let (block, (min, max)) = reserve_block(len)?;
        let dir = tempfile::Builder::new().prefix("tincan-rtpengine-").tempdir()?;
        let log = dir.path().join("rtpengine.log");
        let mut cmd = tools::command("rtpengine");
        // `--config-file=none`: Debian's /etc/rtpengine/rtpengine.conf would add fixed CLI and HTTP ports that two
        // rtpengines cannot share.
        cmd.args([
            "--config-file=none",
            "--foreground",
            "--table=-1",
            "--interface=127.0.0.1",
            &format!("--listen-ng={ng}"),
            &format!("--port-min={min}"),
            &format!("--port-max={max}"),
            "--log-stderr",
            "--no-fallback",
            &format!("--pidfile={}", dir.path().join("pid").display()),
        ]);
        let mut guard = ChildGuard::spawn_logged("rtpengine", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        loop {
            guard.ensure_running()?;
            probe.send_to(b"probe d7:command4:pinge", ng)?;
            let mut buf = [0u8; 256];
            if let Ok((n, _)) = probe.recv_from(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).contains("pong")
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("rtpengine did not answer ng ping within 10 s\n{}", guard.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { ng, port_range: (min, max), guard, _dir: dir, _block: block })
    }

    /// Kills rtpengine at once (SIGKILL).
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// The end of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }
}

/// Reserves `len` consecutive ports in 20000..30000 (below Linux's ephemeral range) with a lock file held for
/// the life of the returned file, so parallel tests' rtpengines never share RTP ports. Blocks of 200 or fewer
/// are taken from the bottom, larger ones from the top, so that the two sizes' locks never cover one port
/// (unless so many tests run at once that the range is full).
pub fn reserve_block(len: u16) -> Result<(std::fs::File, (u16, u16))> {
    let dir = std::env::temp_dir().join("tincan-testkit-ports");
    std::fs::create_dir_all(&dir)?;
    let starts: Vec<u16> = if len <= 200 {
        (0..).map(|i| 20000 + i * len).take_while(|s| s + len <= 30000).collect()
    } else {
        (1..).map_while(|i: u16| 30000u16.checked_sub(i * len)).take_while(|s| *s >= 20000).collect()
    };
    for start in starts {
        let path = dir.join(format!("block-{start}-{len}.lock"));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        if file.try_lock().is_ok() {
            return Ok((file, (start, start + len - 1)));
        }
    }
    bail!("no free block of {len} ports in 20000..30000")
}

/// A sipp scenario file written into a temp dir.
#[derive(Debug)]
pub struct Scenario {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scenario {
    /// Writes `xml` (a sipp scenario) to a file.
    pub fn new(name: &str, xml: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("tincan-sipp-").tempdir()?;
        let path = dir.path().join(format!("{name}.xml"));
        std::fs::write(&path, xml)?;
        Ok(Self { dir, path })
    }

    /// The scenario file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A directory for this scenario's logs and CSV files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A sipp command running this scenario from `local` to `remote`, stopping after `calls` calls:
    /// `-sf FILE -i IP -p PORT -m CALLS -nostdin -timeout 30s -timeout_error -trace_err` (add `-r`, `-s`, `-set`
    /// etc. as needed).
    pub fn command(&self, remote: SocketAddr, local: SocketAddr, calls: u32) -> Command {
        let mut cmd = tools::command("sipp");
        cmd.arg(remote.to_string())
            .arg("-sf")
            .arg(&self.path)
            .args(["-i", &local.ip().to_string(), "-p", &local.port().to_string()])
            .args(["-m", &calls.to_string(), "-nostdin", "-timeout", "30s", "-timeout_error", "-trace_err"])
            .arg("-error_file")
            .arg(self.dir.path().join("errors.log"))
            .current_dir(self.dir.path());
        cmd
    }

    /// A sipp command running this scenario as a server on `local` for one call (a phone or trunk that waits
    /// for the test's request): `-sf FILE -i IP -p PORT -m 1 -nostdin -timeout 60s -timeout_error -trace_err`.
    pub fn uas_command(&self, local: SocketAddr) -> Command {
        let mut cmd = tools::command("sipp");
        cmd.arg("-sf")
            .arg(&self.path)
            .args(["-i", &local.ip().to_string(), "-p", &local.port().to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "60s", "-timeout_error", "-trace_err"])
            .arg("-error_file")
            .arg(self.dir.path().join("errors.log"))
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `cmd` (from [`Scenario::command`]) to completion off the async runtime; fails with sipp's error
    /// log when it exits non-zero (sipp exits 0 only when every call succeeded).
    pub async fn run(&self, mut cmd: Command) -> Result<String> {
        let errors = self.dir.path().join("errors.log");
        let out = tokio::task::spawn_blocking(move || cmd.output()).await?.context("running sipp")?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            let log = std::fs::read_to_string(&errors).unwrap_or_default();
            bail!("sipp exited with {}\n{}\nerrors:\n{}", out.status, tail(&text, 40), tail(&log, 60));
        }
        Ok(text)
    }

    /// What sipp traced so far of the messages it sent and received (run with `-trace_msg`; sipp writes them
    /// out as they pass, so this can be read while it runs).
    pub fn messages(&self) -> String {
        traced_messages(self.dir.path())
    }

    /// Starts `cmd` in the background (for a UAS the test talks to); stopped on drop.
    pub fn spawn(&self, cmd: Command, name: &str) -> Result<ChildGuard> {
        ChildGuard::spawn_logged(name, cmd, self.dir.path().join(format!("{name}.log")))
    }

    /// Starts `cmd` (a UAS from [`Scenario::uas_command`] on `local`, with any further arguments) in the
    /// background like [`Scenario::spawn`], and waits until sipp listens on UDP `local`, so that what the test
    /// sends next finds it; fails with its log if it exits first or does not listen within 10 s.
    pub async fn serve(&self, cmd: Command, local: SocketAddr, name: &str) -> Result<ChildGuard> {
        let mut guard = self.spawn(cmd, name)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !udp_bound(local) {
            guard.ensure_running().with_context(|| guard.log_tail(30))?;
            if Instant::now() > deadline {
                bail!("{name} does not listen on {local} after 10 s\n{}", guard.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(guard)
    }
}

/// Whether a UDP socket is bound to `addr` on this machine (read from `/proc/net/udp`, which does not touch the
/// port: a probe bind could take it from under the process about to bind it).
fn udp_bound(addr: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = addr else { return false };
    // The kernel writes the address as the in-memory u32 in hex (little-endian here) and the port in hex.
    let want = format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port());
    std::fs::read_to_string("/proc/net/udp")
        .is_ok_and(|table| table.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some(want.as_str())))
}

/// The messages sipp traced (`-trace_msg`) into its `*_messages.log` files in `dir`, so far.
pub fn traced_messages(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else { return String::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// Waits (off the async runtime) until a background sipp exits; true when it exited 0 within `timeout`. On
/// failure its log's end is printed.
pub async fn finished(mut guard: ChildGuard, timeout: Duration) -> bool {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        loop {
            match guard.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("{} exited with {status}\n{}", guard.name(), guard.log_tail(40));
                    }
                    return status.success();
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    eprintln!("{} did not finish within {timeout:?}\n{}", guard.name(), guard.log_tail(40));
                    return false;
                }
            }
        }
    })
    .await
    .unwrap_or(false)
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_udp_port_is_seen_and_a_free_one_is_not() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        assert!(udp_bound(addr));
        drop(socket);
        assert!(!udp_bound(addr));
    }
}
