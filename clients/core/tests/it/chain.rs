//! The real chain the client's acceptance tests run against: Synapse (JWT login, OpenID listener) +
//! `tincan-ext` (sign-up by SMS code through its dev sink, publishing number and master key to the directory,
//! Identity Service v2) + `tincan-directory` (DNSSEC-signed ENUM answers, registrar API), which the client reaches
//! through [`TamperProxy`], a DNS man-in-the-middle that corrupts the signatures of one number's answers, and
//! whose transparency log it reaches through [`LogProxy`] (honest until a test tells it to lie).
//! Shared with the CLI's tests (`#[path]`, with `log_proxy.rs`).
//!
//! `tincan-ext` and `tincan-directory` are other crates' binaries: found through `TINCAN_TEST_EXT_BIN` and
//! `TINCAN_TEST_DIRECTORY_BIN` (exported by `dev/test`), else next to the test executable once the workspace is
//! built. Without them the tests are skipped, and fail under CI.

#![allow(dead_code)]

use crate::log_proxy::LogProxy;
use anyhow::{Context, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tincan_client_core::{ClientConfig, DirectoryConfig, Route, SignedIn, TincanClient, TransparencyLogConfig};
use tincan_testkit::directory::{self, APEX, Directory, Registrar, TamperProxy};
use tincan_testkit::synapse::SynapseBuilder;
use tincan_testkit::{ChildGuard, Synapse, in_ci};

const JWT_SECRET: &str = "client-chain-jwt-secret-0123456789";
const EXT_BIN_ENV: &str = "TINCAN_TEST_EXT_BIN";

/// A running `tincan-ext` with the dev SMS sink.
pub struct Ext {
    pub url: String,
    dir: tempfile::TempDir,
    guard: ChildGuard,
}

impl Ext {
    async fn start(bin: &Path, hs: &Synapse, registrar: &Registrar) -> anyhow::Result<Ext> {
        let dir = tempfile::Builder::new().prefix("tincan-ext-").tempdir()?;
        let port = tincan_testkit::ports::free_port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nserver_name = \"{}\"\nhomeserver_url = \"{}\"\n\
             database_url = \"sqlite://{}?mode=rwc\"\n\
             [homeserver]\nbackend = \"jwt\"\njwt_secret = \"{JWT_SECRET}\"\n\
             [codes]\nsecret = \"test-only-code-secret-0123456789abcdef\"\n\
             [sms]\nbackend = \"dev\"\ndev_file = \"{}\"\n\
             [directory]\nurl = \"{}\"\ntoken = \"{}\"\n\
             [limits]\nallowed_countries = [\"*\"]\n\
             [limits.per_ip]\nburst = 10000\nrefill = 10000\nperiod_secs = 3600\n\
             [limits.per_prefix]\nburst = 10000\nrefill = 10000\nperiod_secs = 3600\n",
            hs.server_name(),
            hs.url(),
            dir.path().join("ext.db").display(),
            dir.path().join("sms.jsonl").display(),
            registrar.api,
            registrar.token,
        );
        std::fs::write(dir.path().join("ext.toml"), config)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(dir.path().join("ext.toml")).args(["serve", "--dev-sms"]);
        cmd.env_remove(EXT_BIN_ENV).env_remove(directory::BIN_ENV).env("RUST_LOG", "info");
        let mut guard = ChildGuard::spawn_logged("tincan-ext", cmd, dir.path().join("ext.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::get(format!("{url}/health")).await.is_ok_and(|r| r.status().is_success()) {
            if let Err(e) = guard.ensure_running() {
                bail!("{e}\n{}", guard.log_tail(40));
            }
            if Instant::now() > deadline {
                bail!("tincan-ext did not come up\n{}", guard.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Ext { url, dir, guard })
    }

    /// The code of the newest dev-sink SMS to `to`.
    pub fn code(&self, to: &str) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.dir.path().join("sms.jsonl")).unwrap_or_default();
        let msg = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .rfind(|v| v["to"] == to)
            .with_context(|| format!("no SMS to {to}"))?;
        let body = msg["text"].as_str().unwrap_or_default();
        body.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).map(str::to_owned).context("no code")
    }

    /// The dev sink's file: one JSON line per SMS (`to`, `text`), for tests in other languages.
    pub fn sms_file(&self) -> PathBuf {
        self.dir.path().join("sms.jsonl")
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }
}

/// Synapse + `tincan-ext` + `tincan-directory` + the tampering proxy in front of the directory's DNS.
pub struct Chain {
    pub hs: Synapse,
    pub directory: Directory,
    /// The provider the extension publishes with (tests add their own records with it too).
    pub registrar: Registrar,
    pub ext: Ext,
    /// What clients use as their DNS server.
    pub proxy: TamperProxy,
    /// The trust anchor (`keys ds`).
    pub anchor: String,
    /// The anchor as a file, for `tincan --trust-anchor`.
    pub anchor_file: PathBuf,
    /// What clients use as the transparency log's URL.
    pub log: LogProxy,
    /// The log's public key (pinned by clients).
    pub log_key: String,
}

impl Chain {
    /// Starts everything; answers for `tampered` (a number) get their signatures corrupted by the proxy.
    /// `None` when the binaries are missing (the test is skipped; under CI this panics).
    pub async fn start(tampered: &str) -> anyhow::Result<Option<Chain>> {
        Self::start_with(tampered, |b| b).await
    }

    /// [`start`](Self::start), with `synapse` adding to Synapse's configuration (an appservice, settings).
    pub async fn start_with(
        tampered: &str,
        synapse: impl FnOnce(SynapseBuilder) -> SynapseBuilder,
    ) -> anyhow::Result<Option<Chain>> {
        let Some(dir_bin) = directory::binary_or_skip() else { return Ok(None) };
        let Some(ext_bin) = directory::sibling_binary(EXT_BIN_ENV, "tincan-ext") else {
            assert!(!in_ci(), "{EXT_BIN_ENV} must point at tincan-ext in CI");
            eprintln!("skipped: no tincan-ext binary (set {EXT_BIN_ENV} or `cargo build -p tincan-homeserver-ext`)");
            return Ok(None);
        };
        let hs = synapse(
            Synapse::builder()
                .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}})),
        )
        .start()
        .await?;
        let directory = Directory::start(&dir_bin).await?;
        let registrar = directory.add_provider("tincan", &["+44"])?;
        let anchor = directory.trust_anchor()?;
        let anchor_file = directory.data_dir().join("anchor.ds");
        std::fs::write(&anchor_file, &anchor)?;
        let ext = Ext::start(&ext_bin, &hs, &registrar).await?;
        let proxy = TamperProxy::start(directory.dns, &owner(tampered)).await?;
        let log = LogProxy::start(&directory.api).await?;
        let log_key = directory.log_key().await?;
        Ok(Some(Chain { hs, directory, registrar, ext, proxy, anchor, anchor_file, log, log_key }))
    }

    /// A client config for `data`: the extension, and the directory and its log through the proxies.
    pub fn config(&self, data: &Path) -> ClientConfig {
        let mut c = ClientConfig::new(data);
        c.ext_url = Some(self.ext.url.parse().expect("ext URL"));
        c.directory =
            Some(DirectoryConfig::new(vec![self.proxy.addr], APEX, &self.anchor).with_log(TransparencyLogConfig {
                url: self.log.url.parse().expect("log URL"),
                key: self.log_key.clone(),
            }));
        c
    }

    /// `register` + `verify` with the code from the SMS sink: a signed-in client and what `verify` returned.
    pub async fn sign_up(&self, data: &Path, number: &str) -> anyhow::Result<(TincanClient, SignedIn)> {
        let mut client = TincanClient::open(self.config(data)).await?;
        client.register(number).await?;
        let signed = client.verify(&self.ext.code(number)?).await?;
        Ok((client, signed))
    }

    /// The Matrix URI the extension publishes for `user_id`.
    pub fn matrix_uri(user_id: &str) -> String {
        format!("matrix:u/{}", user_id.trim_start_matches('@'))
    }
}

/// The owner name of a number under [`APEX`].
pub fn owner(number: &str) -> String {
    let digits: String = number.trim_start_matches('+').chars().rev().flat_map(|c| [c, '.']).collect();
    format!("{digits}{APEX}")
}

/// Polls `client.resolve(number)` until the directory serves a Matrix route with a key (the extension's
/// writes reach DNS asynchronously), for at most 30 s.
pub async fn wait_for_key(client: &TincanClient, number: &str) -> anyhow::Result<Route> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let route = client.resolve(number).await;
        if let Ok(r @ Route::Matrix { key: Some(_), .. }) = &route {
            return Ok(r.clone());
        }
        if Instant::now() > deadline {
            bail!("no Matrix route with a key for {number} after 30 s: {route:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
