//! The SMSC peer of the SMS tests: `bridges/sms/tests/smsc_peer.py` on the PyPI `smpp34` server (an SMPP 3.4
//! implementation independent of the rusmpp crates the bridge uses), run from the venv and steered over its
//! control port. Used by the bridge's own tests and by the client's end-to-end SMS test.

use crate::ChildGuard;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The peer's script (see its doc for the control commands and what it logs).
pub fn script() -> PathBuf {
    crate::repo_root().join("bridges/sms/tests/smsc_peer.py")
}

/// The SMSC peer.
pub struct Smsc {
    /// The process (its log tail, killing it).
    pub guard: ChildGuard,
    /// Its SMPP port on 127.0.0.1.
    pub port: u16,
    control: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

impl Smsc {
    /// Starts it on a free port; returns once it listens.
    pub async fn start() -> anyhow::Result<Smsc> {
        let dir = tempfile::tempdir()?;
        let port = crate::ports::free_port();
        let control = crate::ports::free_port();
        let log = dir.path().join("smsc.jsonl");
        let python = crate::synapse::venv().join("bin/python");
        let mut cmd = Command::new(python);
        cmd.arg(script()).arg(port.to_string()).arg(control.to_string());
        let mut guard = ChildGuard::spawn_logged("smsc-peer", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !read_jsonl(&log).iter().any(|e| e["event"] == "listening") {
            guard.ensure_running()?;
            if Instant::now() > deadline {
                bail!("the SMSC peer did not start\n{}", guard.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Smsc { guard, port, control, log, _dir: dir })
    }

    /// Every event it logged.
    pub fn events(&self) -> Vec<Value> {
        read_jsonl(&self.log)
    }

    /// Every submit_sm it received.
    pub fn submits(&self) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == "submit_sm").collect()
    }

    /// Waits until it received at least `n` submit_sm.
    pub async fn wait_submits(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.submits();
            if s.len() >= n {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} submit_sm arrived\n{}",
                s.len(),
                self.guard.log_tail(10)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a control command; fails on an error reply.
    pub async fn control(&self, command: Value) -> anyhow::Result<Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.control)).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(&mut stream).read_line(&mut line).await?;
        let reply: Value = serde_json::from_str(&line).with_context(|| format!("control reply {line:?}"))?;
        if reply["ok"] != true {
            bail!("control {command}: {reply}");
        }
        Ok(reply)
    }

    /// Sets behaviour (see the script's doc).
    pub async fn set(&self, settings: Value) {
        let mut c = settings;
        c["cmd"] = json!("set");
        self.control(c).await.unwrap();
    }
}
