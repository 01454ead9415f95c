//! An independent Matrix client under node: matrix-js-sdk with its Rust crypto (`testkit/node/`, installed by
//! `dev/test`'s `ensure_node`), for tests that need a second, non-Rust implementation of end-to-end encryption.
//!
//! [`JsClient::dm`] runs `testkit/node/dm.mjs`: it logs in with an existing access token and device, joins an
//! encrypted room, optionally sends one message and waits for an expected one, and reports each step as a
//! JSON line (`ready`, `sent`, `received`, `error`) that [`JsClient::expect`] reads.

use crate::process::ChildGuard;
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The folder of the npm package (`testkit/node`).
pub fn package_dir() -> PathBuf {
    crate::repo_root().join("testkit/node")
}

/// A running `dm.mjs` (or another script that follows its protocol); stopped on drop.
#[derive(Debug)]
pub struct JsClient {
    guard: ChildGuard,
    stdout: PathBuf,
    stderr: PathBuf,
    commands: PathBuf,
    consumed: usize,
    _dir: tempfile::TempDir,
}

impl JsClient {
    /// Starts `dm.mjs` with `args` (see the script's header: `base_url`, `user_id`, `access_token`,
    /// `device_id`, `room_id`, `send`, `expect_sender`, `expect_body`, `timeout_ms`). The script then follows
    /// [`JsClient::send`] and [`JsClient::expect_body`] until [`JsClient::quit`] or its timeout.
    pub fn dm(args: &Value) -> anyhow::Result<Self> {
        Self::script(&package_dir().join("dm.mjs"), args)
    }

    /// Starts another node `script` that follows `dm.mjs`'s protocol: `args` in `TINCAN_JS_ARGS` (with
    /// `commands` added), commands appended to that file ([`JsClient::command`]), JSON lines with an `event`
    /// on stdout ([`JsClient::expect`]). It finds the npm packages through `TINCAN_NODE_MODULES`.
    pub fn script(script: &std::path::Path, args: &Value) -> anyhow::Result<Self> {
        let pkg = package_dir();
        if !pkg.join("node_modules/matrix-js-sdk").exists() {
            bail!("{} has no node_modules: run dev/test (its ensure_node installs them)", pkg.display());
        }
        let dir = tempfile::Builder::new().prefix("tincan-js-").tempdir()?;
        let stdout = dir.path().join("stdout.jsonl");
        let stderr = dir.path().join("stderr.log");
        let commands = dir.path().join("commands.jsonl");
        let mut args = args.clone();
        args["commands"] = Value::String(commands.display().to_string());
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .current_dir(&pkg)
            .env("TINCAN_JS_ARGS", args.to_string())
            .env("TINCAN_NODE_MODULES", pkg.join("node_modules"));
        let name = format!("node {}", script.file_name().unwrap_or_default().to_string_lossy());
        cmd.stdout(std::fs::File::create(&stdout)?).stderr(std::fs::File::create(&stderr)?);
        let guard = ChildGuard::spawn(name, cmd)?;
        Ok(Self { guard, stdout, stderr, commands, consumed: 0, _dir: dir })
    }

    /// Appends `command` to the script's commands file.
    pub fn command(&self, command: Value) -> anyhow::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::options().create(true).append(true).open(&self.commands)?;
        writeln!(file, "{command}")?;
        Ok(())
    }

    /// Sends `text` into the room (the script answers with a `sent` line).
    pub fn send(&self, text: &str) -> anyhow::Result<()> {
        self.command(serde_json::json!({ "send": text }))
    }

    /// Waits until a message with `body` from `expect_sender` was received and decrypted (any time since the
    /// start); returns its `received` line.
    pub async fn expect_body(&mut self, body: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.command(serde_json::json!({ "expect": body }))?;
        self.expect("received", timeout).await
    }

    /// From now on keeps back the Olm-encrypted to-device messages the client sends (which carry its room keys)
    /// while telling its crypto they were sent: the next message goes out and its key does not.
    pub async fn withhold_keys(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.command(serde_json::json!({ "withhold_keys": true }))?;
        self.expect("withholding", timeout).await.map(drop)
    }

    /// Sends what [`JsClient::withhold_keys`] kept back, in order; returns how many requests went out.
    pub async fn release_keys(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        self.command(serde_json::json!({ "release_keys": true }))?;
        let v = self.expect("released", timeout).await?;
        v["count"].as_u64().context("a count of released requests")
    }

    /// From now on shares room keys with verified devices only; unverified ones (a bridge's ghost devices)
    /// get `m.room_key.withheld` instead.
    pub async fn blacklist_unverified(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.command(serde_json::json!({ "blacklist_unverified": true }))?;
        self.expect("blacklisting", timeout).await.map(drop)
    }

    /// Makes the next message start a new Megolm session (whose room key is shared anew).
    pub async fn new_session(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.command(serde_json::json!({ "new_session": true }))?;
        self.expect("new_session", timeout).await.map(drop)
    }

    /// Waits until `expect_sender` sent a `com.beeper.message_send_status` about `event_id` and it decrypted;
    /// returns its `status` line (`content`, `encrypted`).
    pub async fn expect_status(&mut self, event_id: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.command(serde_json::json!({ "expect_status": event_id }))?;
        self.expect("status", timeout).await
    }

    /// Lets the script stop.
    pub fn quit(&self) -> anyhow::Result<()> {
        self.command(serde_json::json!({ "quit": true }))
    }

    /// Waits for the next line whose `event` is `event` (earlier lines of other kinds are skipped); fails on an
    /// `error` line, on exit, or after `timeout`.
    pub async fn expect(&mut self, event: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.expect_one_of(&[event], timeout).await
    }

    /// Waits for the next line whose `event` is one of `events` (earlier lines of other kinds are skipped);
    /// fails on an `error` line, on exit, or after `timeout`.
    pub async fn expect_one_of(&mut self, events: &[&str], timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            while self.consumed < complete {
                let end = self.consumed + text[self.consumed..].find('\n').expect("a complete line");
                let line = &text[self.consumed..end];
                self.consumed = end + 1;
                // The SDK's crypto (wasm) logs to stdout too: only the script's own lines are JSON objects.
                if !line.starts_with("{\"event\":") {
                    continue;
                }
                let v: Value =
                    serde_json::from_str(line).with_context(|| format!("{} wrote {line:?}", self.guard.name()))?;
                if v["event"] == "error" {
                    bail!("{} failed: {}\n{}", self.guard.name(), v["message"], self.stderr_tail());
                }
                if events.iter().any(|e| v["event"] == *e) {
                    return Ok(v);
                }
            }
            if let Some(status) = self.guard.try_wait()? {
                bail!("{} exited ({status}) before {events:?}\n{}", self.guard.name(), self.stderr_tail());
            }
            if Instant::now() > deadline {
                bail!("{}: no {events:?} within {timeout:?}\n{}", self.guard.name(), self.stderr_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every line the script wrote so far that is one of its JSON objects (for diagnostics).
    pub fn lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        text.lines().filter(|l| l.starts_with("{\"event\":")).filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
