//! Peers for the SMS bridge's tests: the smpp34 SMSC (`tests/smsc_peer.py`, steered over its control port) and a
//! TCP proxy in front of it that can cut the link or refuse connections, as a carrier network does.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tincan_testkit::ChildGuard;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The SMSC peer.
pub struct Smsc {
    pub guard: ChildGuard,
    pub port: u16,
    control: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

impl Smsc {
    pub async fn start() -> anyhow::Result<Smsc> {
        let dir = tempfile::tempdir()?;
        let port = tincan_testkit::ports::free_port();
        let control = tincan_testkit::ports::free_port();
        let log = dir.path().join("smsc.jsonl");
        let python = tincan_testkit::synapse::venv().join("bin/python");
        let mut cmd = Command::new(python);
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smsc_peer.py"))
            .arg(port.to_string())
            .arg(control.to_string());
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

/// A TCP proxy to `target`: [`Proxy::cut`] drops every open connection (the link drops), and while
/// [`Proxy::set_down`] holds, new connections are closed at once (the SMSC is unreachable).
pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (d, c) = (down.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Proxy { port, down, conns, accept }
    }

    /// Drops every open connection.
    pub fn cut(&self) {
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Refuses (and cuts) connections while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Polls `f` every 50 ms until it gives a value.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
