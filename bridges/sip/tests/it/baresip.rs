//! baresip (Debian `baresip-core` 1.0) as the SIP phone of the media tests: auto-answer, a 440 Hz sine from
//! `ausine` as its microphone, G.711 only (so rtpengine transcodes the browser's Opus), what it receives
//! recorded by the `sndfile` module (1.0's `aufile` plays but does not record), and driven through `ctrl_tcp`
//! (netstring-framed JSON commands; call events come on the same connection).

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tincan_testkit::process::ChildGuard;
use tincan_testkit::sip::reserve_block;
use tincan_testkit::tools;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running baresip with one account, `number`, at `sip`; stopped on drop.
pub struct Baresip {
    /// Where it takes SIP (UDP and TCP).
    pub sip: SocketAddr,
    ctl: TcpStream,
    buffer: Vec<u8>,
    /// Messages read from `ctrl_tcp` and not yet taken.
    pending: Vec<Value>,
    token: u64,
    guard: ChildGuard,
    dir: tempfile::TempDir,
    _block: std::fs::File,
}

/// What baresip received and decoded in its calls so far (the `sndfile` dumps of the decoder's output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Samples in all.
    pub samples: usize,
    /// Samples louder than silence and comfort noise (|s| > 1000 of 32767).
    pub loud: usize,
    /// The largest |sample|.
    pub peak: u16,
}

impl Baresip {
    /// Starts baresip on a block of reserved loopback ports (SIP, and TLS on the next port, which 1.0 always
    /// opens; ctrl_tcp; RTP) with the account `number` at 127.0.0.1, and connects to its ctrl_tcp.
    pub async fn start(number: &str) -> anyhow::Result<Self> {
        let (block, (first, last)) = reserve_block(200)?;
        let sip = SocketAddr::from(([127, 0, 0, 1], first));
        let ctl_addr = SocketAddr::from(([127, 0, 0, 1], first + 2));
        let dir = tempfile::Builder::new().prefix("tincan-baresip-").tempdir()?;
        // `net_interface`: without it baresip puts the machine's first address (not loopback) in its SDP.
        // `ausine` only makes 48 kHz stereo.
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t{sip}\n\
             net_interface\t\t127.0.0.1\n\
             audio_source\t\tausine,440\n\
             audio_player\t\taubridge,nowhere\n\
             audio_alert\t\taubridge,nowhere\n\
             ausrc_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             auplay_srate\t\t48000\n\
             rtp_ports\t\t{}-{last}\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\tausine.so\n\
             module\t\t\taubridge.so\n\
             module\t\t\tsndfile.so\n\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t{ctl_addr}\n\
             snd_path\t\t{}\n",
            first + 10,
            dir.path().display(),
        );
        std::fs::write(dir.path().join("config"), config)?;
        std::fs::write(dir.path().join("accounts"), format!("<sip:{number}@{sip}>;regint=0;answermode=auto\n"))?;
        std::fs::write(dir.path().join("contacts"), "")?;
        let mut cmd = tools::command("baresip");
        cmd.arg("-f").arg(dir.path()).current_dir(dir.path());
        let mut guard = ChildGuard::spawn_logged("baresip", cmd, dir.path().join("baresip.log"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctl = loop {
            guard.ensure_running()?;
            if let Ok(s) = TcpStream::connect(ctl_addr).await {
                break s;
            }
            if Instant::now() > deadline {
                bail!("baresip's ctrl_tcp did not listen within 10 s\n{}", guard.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Ok(Self { sip, ctl, buffer: Vec::new(), pending: Vec::new(), token: 0, guard, dir, _block: block })
    }

    /// Reads one netstring message from ctrl_tcp, waiting until `deadline`.
    async fn read(&mut self, deadline: Instant) -> anyhow::Result<Value> {
        loop {
            if let Some(colon) = self.buffer.iter().position(|&b| b == b':') {
                let len: usize = std::str::from_utf8(&self.buffer[..colon])?.parse().context("netstring length")?;
                if self.buffer.len() > colon + len + 1 {
                    let body = self.buffer[colon + 1..colon + 1 + len].to_vec();
                    self.buffer.drain(..colon + len + 2);
                    return serde_json::from_slice(&body).context("ctrl_tcp JSON");
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(left, self.ctl.read(&mut chunk))
                .await
                .map_err(|_| anyhow::anyhow!("baresip said nothing in time\n{}", self.log_tail(30)))??;
            if n == 0 {
                bail!("baresip closed ctrl_tcp\n{}", self.log_tail(30));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Runs a ctrl_tcp `command` (`dial`, `hangup`…); returns its answer's `data`.
    pub async fn command(&mut self, command: &str, params: &str) -> anyhow::Result<String> {
        self.token += 1;
        let token = format!("t{}", self.token);
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        self.ctl.write_all(format!("{}:{body},", body.len()).as_bytes()).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.read(deadline).await?;
            if v["response"] == true && v["token"] == token.as_str() {
                if v["ok"] != true {
                    bail!("baresip refused {command} {params}: {v}");
                }
                return Ok(v["data"].as_str().unwrap_or_default().to_owned());
            }
            self.pending.push(v);
        }
    }

    /// Waits for the next call event whose `type` is one of `kinds` (`CALL_ESTABLISHED`, `CALL_CLOSED`…);
    /// events before it are dropped.
    pub async fn event(&mut self, kinds: &[&str], timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.pending.iter().position(|v| kinds.iter().any(|k| v["type"] == *k)) {
                let found = self.pending.remove(i);
                self.pending.drain(..i);
                return Ok(found);
            }
            match self.read(deadline).await {
                Ok(v) => self.pending.push(v),
                Err(e) => bail!("no {kinds:?} from baresip within {timeout:?}: {e}"),
            }
        }
    }

    /// What it received and decoded, from the `sndfile` dumps of the decoder (`dump-…-dec.wav`).
    pub fn received(&self) -> anyhow::Result<Received> {
        let mut r = Received { samples: 0, loud: 0, peak: 0 };
        for entry in std::fs::read_dir(self.dir.path())? {
            let path = entry?.path();
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("-dec.wav")) {
                for s in wav_samples(&path)? {
                    r.samples += 1;
                    r.peak = r.peak.max(s.unsigned_abs());
                    r.loud += usize::from(s.unsigned_abs() > 1000);
                }
            }
        }
        Ok(r)
    }

    /// The end of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }
}

/// The 16-bit samples of a WAV file's `data` chunk, to the end of the file (the header's sizes are only
/// written when the file is closed).
fn wav_samples(path: &Path) -> anyhow::Result<Vec<i16>> {
    let bytes = std::fs::read(path)?;
    let Some(data) = bytes.windows(4).position(|w| w == b"data") else { return Ok(Vec::new()) };
    let samples = bytes.get(data + 8..).unwrap_or_default();
    Ok(samples.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect())
}
