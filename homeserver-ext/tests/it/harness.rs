//! Starts the real `tincan-ext` binary with a config written for the test, and reads codes from its dev
//! SMS sink or from the SMSC simulator.

use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tincan_common::MockClock;
use tincan_homeserver_ext::App;
use tincan_homeserver_ext::config::ExtConfig;
use tincan_testkit::ChildGuard;

/// A running `tincan-ext`.
pub struct Ext {
    pub guard: ChildGuard,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    database_url: String,
    /// The `TINCAN_EXT_…` variables it runs with (one-off commands get them too).
    env: Vec<(String, String)>,
}

impl Ext {
    /// Starts the binary with `extra` TOML appended to a base config (listen, SQLite, dev SMS sink).
    pub async fn start(extra: &str) -> anyhow::Result<Ext> {
        Ext::start_on(None, extra).await
    }

    /// [`Ext::start`] on the database `database_url` (a PostgreSQL URL), or SQLite in its directory.
    pub async fn start_on(database_url: Option<&str>, extra: &str) -> anyhow::Result<Ext> {
        Ext::start_env(database_url, extra, &[]).await
    }

    /// [`Ext::start_on`] listening on `port` (when a peer must know the URL first, as an OpenID issuer).
    pub async fn start_at(port: u16, database_url: Option<&str>, extra: &str) -> anyhow::Result<Ext> {
        Ext::start_env_at(port, database_url, extra, &[]).await
    }

    /// [`Ext::start_on`] with `TINCAN_EXT_…` variables in its environment (they override the file). Settings
    /// every test needs (the code-hash key) come from the environment unless `env` or `extra` sets them.
    pub async fn start_env(database_url: Option<&str>, extra: &str, env: &[(&str, &str)]) -> anyhow::Result<Ext> {
        Ext::start_env_at(tincan_testkit::ports::free_port(), database_url, extra, env).await
    }

    /// [`Ext::start_env`] listening on `port`.
    pub async fn start_env_at(
        port: u16,
        database_url: Option<&str>,
        extra: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Ext> {
        Ext::spawn(port, database_url, extra, env, &[]).await
    }

    /// [`Ext::start_env`] with the binary started by `launcher` (a command that ends by running its last
    /// argument, the binary, with the arguments after it: `unshare`, a shell wrapper…).
    pub async fn start_launched(launcher: &[&str], extra: &str, env: &[(&str, &str)]) -> anyhow::Result<Ext> {
        Ext::spawn(tincan_testkit::ports::free_port(), None, extra, env, launcher).await
    }

    async fn spawn(
        port: u16,
        database_url: Option<&str>,
        extra: &str,
        env: &[(&str, &str)],
        launcher: &[&str],
    ) -> anyhow::Result<Ext> {
        let dir = tempfile::Builder::new().prefix("tincan-ext-").tempdir()?;
        let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("ext.db").display());
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\n\
             database_url = \"{db}\"\n\
             {extra}\n",
            db = database_url.unwrap_or(&sqlite),
        );
        let database_url = database_url.unwrap_or(&sqlite).to_owned();
        let config = if config.contains("[sms]") {
            config
        } else {
            format!("{config}\n[sms]\nbackend = \"dev\"\ndev_file = \"{}\"\n", dir.path().join("sms.jsonl").display())
        };
        std::fs::write(dir.path().join("ext.toml"), &config)?;
        let bin = env!("CARGO_BIN_EXE_tincan-ext");
        let mut cmd = match launcher.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("--config")
            .arg(dir.path().join("ext.toml"))
            .arg("serve")
            .env("RUST_LOG", "info,tincan_homeserver_ext=debug");
        if config.contains("backend = \"dev\"") {
            cmd.arg("--dev-sms");
        }
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (key, value) in DEFAULT_ENV {
            let set = env.iter().any(|(e, _)| e.starts_with(key));
            if !set && !config.contains(&format!("\n{}", key.rsplit("__").next().unwrap().to_lowercase())) {
                env.push((key.to_string(), value.to_string()));
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut guard = ChildGuard::spawn_logged("tincan-ext", cmd, dir.path().join("ext.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            guard.ensure_running()?;
            if let Ok(r) = http.get(format!("{url}/health")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("tincan-ext did not come up\n{}", guard.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Ext { guard, url, dir, http, database_url, env })
    }

    /// Runs `tincan-ext --config <this config> ARGS` (a one-off command beside the server) and checks it succeeds.
    pub fn command(&self, args: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_tincan-ext"))
            .arg("--config")
            .arg(self.dir.path().join("ext.toml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("tincan-ext runs");
        assert!(out.status.success(), "tincan-ext {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Its database.
    pub fn db_url(&self) -> String {
        self.database_url.clone()
    }

    /// Its database, opened beside the server.
    pub async fn store(&self) -> std::sync::Arc<dyn tincan_homeserver_ext::store::Store> {
        tincan_homeserver_ext::store::open(&self.database_url).await.expect("the extension's database")
    }
}

impl Api for Ext {
    fn parts(&self) -> (&str, &reqwest::Client, &Path) {
        (&self.url, &self.http, self.dir.path())
    }
}

/// What every test's extension needs and tests rarely care about, set unless the test sets it.
pub const DEFAULT_ENV: &[(&str, &str)] =
    &[("TINCAN_EXT_CODES__SECRET", TEST_CODE_SECRET), ("TINCAN_EXT_LIMITS__ALLOWED_COUNTRIES", "[\"*\"]")];

/// The code-hash key of test extensions (a test fixture, not a real secret).
pub const TEST_CODE_SECRET: &str = "test-only-code-secret-0123456789abcdef";

/// Requests to a running extension and the codes its dev sink wrote.
pub trait Api {
    /// Its base URL, the HTTP client, and its directory (where the dev sink writes `sms.jsonl`).
    fn parts(&self) -> (&str, &reqwest::Client, &Path);

    /// POSTs JSON and returns (status, body).
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (base, http, _) = self.parts();
        answer(http.post(format!("{base}{path}")).json(&body)).await
    }

    /// POSTs JSON with a bearer token and returns (status, body).
    async fn post_auth(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let (base, http, _) = self.parts();
        answer(http.post(format!("{base}{path}")).bearer_auth(token).json(&body)).await
    }

    /// GETs with a bearer token and returns (status, body).
    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (base, http, _) = self.parts();
        answer(http.get(format!("{base}{path}")).bearer_auth(token)).await
    }

    /// The dev sink's messages so far.
    fn sms(&self) -> Vec<(String, String)> {
        read_jsonl(&self.parts().2.join("sms.jsonl"))
            .into_iter()
            .map(|v| (v["to"].as_str().unwrap().to_owned(), v["text"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// The code in the newest dev-sink message to `to`.
    fn last_code(&self, to: &str) -> String {
        let msgs = self.sms();
        let (_, text) = msgs.iter().rev().find(|(t, _)| t == to).expect("an SMS to this number");
        code_in(text)
    }
}

async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The extension in this test's process, with an injected clock, serving on a free port (tests of time).
pub struct Local {
    pub app: Arc<App>,
    pub clock: Arc<MockClock>,
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Local {
    /// Serves `config` (its dev sink, and unless `database_url` is set its database, put in a temporary
    /// directory) with the clock at `now`.
    pub async fn start(config: ExtConfig, now: u64) -> anyhow::Result<Local> {
        Local::start_with(config, now, None).await
    }

    /// [`Local::start`] with this homeserver connector instead of the configured one.
    pub async fn start_with(
        config: ExtConfig,
        now: u64,
        homeserver: Option<Arc<dyn tincan_homeserver_ext::homeserver::HomeserverConnector>>,
    ) -> anyhow::Result<Local> {
        Local::start_on(config, now, homeserver, tokio::net::TcpListener::bind("127.0.0.1:0").await?).await
    }

    /// [`Local::start_with`] on a bound `listener` (when the config must name its address first).
    pub async fn start_on(
        mut config: ExtConfig,
        now: u64,
        homeserver: Option<Arc<dyn tincan_homeserver_ext::homeserver::HomeserverConnector>>,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<Local> {
        if config.limits.allowed_countries.is_empty() {
            config.limits.allowed_countries = vec!["*".into()];
        }
        if config.codes.secret.is_empty() {
            config.codes.secret = tincan_common::Secret::new(TEST_CODE_SECRET);
        }
        let dir = tempfile::Builder::new().prefix("tincan-ext-").tempdir()?;
        // A database the test chose (several nodes on one) is kept; the default becomes a file of its own.
        if config.database_url == ExtConfig::default().database_url {
            config.database_url = format!("sqlite://{}?mode=rwc", dir.path().join("ext.db").display());
        }
        let clock = Arc::new(MockClock::at(now));
        let store = tincan_homeserver_ext::store::open(&config.database_url).await?;
        let sms = Arc::new(tincan_homeserver_ext::sms::DevSink::new(dir.path().join("sms.jsonl")));
        let homeserver =
            homeserver.unwrap_or_else(|| tincan_homeserver_ext::homeserver::from_config(&config, clock.clone()));
        let rng = rand::SeedableRng::seed_from_u64(now);
        let app = Arc::new(App::new(config, store, sms, homeserver, clock.clone(), rng));
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn({
            let app = app.clone();
            async move { tincan_homeserver_ext::serve_on(app, listener).await.expect("serving") }
        });
        Ok(Local { app, clock, url, dir, http: reqwest::Client::new(), server })
    }
}

impl Api for Local {
    fn parts(&self) -> (&str, &reqwest::Client, &Path) {
        (&self.url, &self.http, self.dir.path())
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Stores an Identity Service token for `user_id` as `account/register` does (its homeserver is the user ID's
/// server part), valid for ever: for tests that need a token and no OpenID exchange.
pub async fn add_is_token<S: tincan_homeserver_ext::store::IdentityRepository + ?Sized>(
    store: &S,
    token: &str,
    user_id: &str,
) {
    let server_name = user_id.split_once(':').expect("a Matrix ID").1.to_owned();
    let t = tincan_homeserver_ext::store::IsToken { user_id: user_id.to_owned(), server_name };
    store.add_token(&tincan_homeserver_ext::code::digest(token), &t, 0, i64::MAX).await.unwrap();
}

/// The first six-digit word of a message.
pub fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a 6-digit code").to_owned()
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The smpp34 SMSC simulator (`tests/smsc_sim.py`), its JSON-line events in a log file.
pub struct Smsc {
    pub guard: ChildGuard,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smsc {
    pub async fn start() -> anyhow::Result<Smsc> {
        Smsc::start_args(&[]).await
    }

    /// [`Smsc::start`] never answering a submit_sm to `destination` (digits): a slow SMSC for one number.
    pub async fn start_hanging(destination: &str) -> anyhow::Result<Smsc> {
        Smsc::start_args(&[destination]).await
    }

    async fn start_args(args: &[&str]) -> anyhow::Result<Smsc> {
        let dir = tempfile::tempdir()?;
        let port = tincan_testkit::ports::free_port();
        let log = dir.path().join("smsc.jsonl");
        let python = tincan_testkit::synapse::venv().join("bin/python");
        let mut cmd = Command::new(python);
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smsc_sim.py")).arg(port.to_string()).args(args);
        let mut guard = ChildGuard::spawn_logged("smsc-sim", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !read_jsonl(&log).iter().any(|e| e["event"] == "listening") {
            guard.ensure_running()?;
            if Instant::now() > deadline {
                bail!("SMSC simulator did not start\n{}", guard.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Smsc { guard, port, log, _dir: dir })
    }

    pub fn events(&self) -> Vec<Value> {
        read_jsonl(&self.log)
    }

    /// Waits for the `n`th (1-based) submit_sm and returns it.
    pub async fn submit(&self, n: usize) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let subs: Vec<Value> = self.events().into_iter().filter(|e| e["event"] == "submit_sm").collect();
            if subs.len() >= n {
                return Ok(subs[n - 1].clone());
            }
            if Instant::now() > deadline {
                return Err(anyhow::anyhow!("no submit_sm #{n}")).context(self.guard.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
