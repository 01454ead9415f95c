//! A real Synapse homeserver for tests.
//!
//! Started from the project's Python venv (`TINCAN_TEST_VENV`, else `<repo>/.venv`, else
//! `/var/tmp/tincan-venv`; `dev/test` creates it) on a free loopback port with a fresh SQLite data dir, a
//! generated signing key and shared registration secret, and rate limits lifted. Its one listener serves the
//! `client` and `openid` resources, so an identity server can check a user's OpenID token with it. The test can
//! merge its own settings into `homeserver.yaml` (`jwt_config`, `account_threepid_delegates`, appservice
//! registrations…).
//! With [`SynapseBuilder::federation`] it also federates: a second listener serves the federation and key APIs
//! over TLS with a certificate of a [`TestCa`], its server name is `localhost:PORT` (that listener's port), and it
//! trusts only that CA for outgoing federation (see [`crate::federation`]).
//! The process is stopped when the [`Synapse`] is dropped, even when the test panics.

use crate::federation::TestCa;
use crate::process::ChildGuard;
use anyhow::{Context, bail};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Python venv holding `matrix-synapse`.
pub fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("TINCAN_TEST_VENV") {
        return PathBuf::from(v);
    }
    let local = crate::repo_root().join(".venv");
    if local.join("bin/python").exists() { local } else { PathBuf::from("/var/tmp/tincan-venv") }
}

/// Configures and starts a [`Synapse`].
#[derive(Debug, Clone)]
pub struct SynapseBuilder {
    server_name: String,
    extra: Value,
    appservices: Vec<String>,
    federation: Option<FederationTls>,
}

/// The TLS files of a federating Synapse.
#[derive(Debug, Clone)]
struct FederationTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// Keep the builder's server name (found through DNS) instead of `localhost:PORT`.
    keep_name: bool,
}

impl Default for SynapseBuilder {
    fn default() -> Self {
        Self { server_name: "hs.test".into(), extra: json!({}), appservices: Vec::new(), federation: None }
    }
}

impl SynapseBuilder {
    /// The homeserver's `server_name` (default `hs.test`).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// Settings merged (deeply, objects by key) into the generated `homeserver.yaml`.
    pub fn config(mut self, extra: Value) -> Self {
        merge(&mut self.extra, extra);
        self
    }

    /// An application-service registration (YAML or JSON text), added to `app_service_config_files`.
    pub fn appservice(mut self, registration: impl Into<String>) -> Self {
        self.appservices.push(registration.into());
        self
    }

    /// Federates over real TLS on loopback: a second listener (federation and key APIs) on its own port with a
    /// certificate `ca` issues for `localhost` and `127.0.0.1`, the server name `localhost:PORT` (replacing
    /// [`server_name`](Self::server_name): a name with its port needs neither `.well-known` nor SRV), outgoing
    /// federation trusting `ca` alone (`federation_custom_ca_list`, certificates verified), and 127.0.0.1 let
    /// through Synapse's IP range blocklist (`ip_range_whitelist`; an IP literal as server name would stay
    /// blocked, hence `localhost`).
    pub fn federation(mut self, ca: &TestCa) -> anyhow::Result<Self> {
        let (cert, key) = ca.issue()?;
        self.federation = Some(FederationTls { ca: ca.cert_file().to_owned(), cert, key, keep_name: false });
        Ok(self)
    }

    /// [`federation`](Self::federation), keeping [`server_name`](Self::server_name) (a name without a port,
    /// which the certificate names too): other servers find the federation listener through DNS (SRV
    /// `_matrix-fed._tcp`) or `.well-known`, as on the internet.
    pub fn federation_named(mut self, ca: &TestCa) -> anyhow::Result<Self> {
        let (cert, key) = ca.issue_for(&[&self.server_name])?;
        self.federation = Some(FederationTls { ca: ca.cert_file().to_owned(), cert, key, keep_name: true });
        Ok(self)
    }

    /// Writes the config, starts Synapse and waits until `/_matrix/client/versions` answers.
    pub async fn start(self) -> anyhow::Result<Synapse> {
        let dir = tempfile::Builder::new().prefix("tincan-synapse-").tempdir()?;
        let port = crate::ports::free_port();
        let mut secret = [0u8; 24];
        rand::rng().fill_bytes(&mut secret);
        let shared_secret = hex::encode(secret);
        let d = dir.path();

        write_signing_key(&d.join("signing.key"))?;
        std::fs::write(d.join("log.yaml"), log_config(&d.join("homeserver.log")))?;
        let mut as_files = Vec::new();
        for (i, reg) in self.appservices.iter().enumerate() {
            let path = d.join(format!("appservice-{i}.yaml"));
            std::fs::write(&path, reg)?;
            as_files.push(path.display().to_string());
        }
        let mut server_name = self.server_name.clone();
        let mut config = base_config(&server_name, port, d, &shared_secret, &as_files);
        let mut federation_port = None;
        if let Some(tls) = &self.federation {
            let fed_port = crate::ports::free_port();
            if !tls.keep_name {
                server_name = format!("localhost:{fed_port}");
            }
            merge(&mut config, federation_config(&server_name, port, fed_port, tls));
            federation_port = Some(fed_port);
        }
        merge(&mut config, self.extra.clone());
        // JSON is YAML, so Synapse reads it as is.
        let config_path = d.join("homeserver.yaml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;

        let guard = spawn(&config_path, d)?;
        let mut synapse = Synapse {
            guard,
            port,
            federation_port,
            server_name,
            shared_secret,
            http: reqwest::Client::new(),
            config_path,
            dir,
        };
        synapse.wait_ready(Duration::from_secs(90)).await?;
        Ok(synapse)
    }
}

/// A running Synapse; stopped on drop.
#[derive(Debug)]
pub struct Synapse {
    guard: ChildGuard,
    port: u16,
    federation_port: Option<u16>,
    server_name: String,
    shared_secret: String,
    http: reqwest::Client,
    config_path: PathBuf,
    // Last, so the data dir is removed after the process stopped.
    dir: tempfile::TempDir,
}

/// A user created through the shared-secret admin API.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisteredUser {
    /// `@localpart:server_name`.
    pub user_id: String,
    /// An access token for the client-server API.
    pub access_token: String,
    /// The device the token belongs to.
    pub device_id: String,
}

impl Synapse {
    /// A builder with defaults (`server_name` `hs.test`).
    pub fn builder() -> SynapseBuilder {
        SynapseBuilder::default()
    }

    /// Starts a Synapse with the default config.
    pub async fn start() -> anyhow::Result<Synapse> {
        Self::builder().start().await
    }

    /// The client-server API base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The federation listener's port (TLS), with [`SynapseBuilder::federation`].
    pub fn federation_port(&self) -> Option<u16> {
        self.federation_port
    }

    /// The configured `server_name`.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The process id of the Synapse process.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The data dir (SQLite database, logs, config).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated `homeserver.yaml`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The last lines of Synapse's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("homeserver.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/_matrix/client/versions", self.url());
        loop {
            if let Err(e) = self.guard.ensure_running() {
                bail!("{e}\nhomeserver.log:\n{}", self.log_tail(40));
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("Synapse did not answer {url} within {timeout:?}\n{}", self.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers `localpart` through the shared-secret admin API (`/_synapse/admin/v1/register`).
    pub async fn register_user(&self, localpart: &str, admin: bool) -> anyhow::Result<RegisteredUser> {
        let url = format!("{}/_synapse/admin/v1/register", self.url());
        #[derive(Deserialize)]
        struct Nonce {
            nonce: String,
        }
        let nonce: Nonce = self.http.get(&url).send().await?.error_for_status()?.json().await?;
        let password = format!("pw-{localpart}-{}", self.port);
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.shared_secret.as_bytes())?;
        for (i, part) in
            [nonce.nonce.as_str(), localpart, &password, if admin { "admin" } else { "notadmin" }].iter().enumerate()
        {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part.as_bytes());
        }
        let body = json!({
            "nonce": nonce.nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": hex::encode(mac.finalize().into_bytes()),
        });
        let resp = self.http.post(&url).json(&body).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("registering {localpart}: {status} {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("register response: {text}"))
    }

    /// Calls `/_matrix/client/v3/account/whoami` with `token` and returns the user id.
    pub async fn whoami(&self, token: &str) -> anyhow::Result<String> {
        let resp =
            self.http.get(format!("{}/_matrix/client/v3/account/whoami", self.url())).bearer_auth(token).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("whoami: {status} {body}");
        }
        body["user_id"].as_str().map(str::to_owned).context("whoami without user_id")
    }

    /// Stops Synapse now (it is also stopped on drop).
    pub fn stop(&mut self) {
        self.guard.stop();
    }

    /// Starts Synapse again after [`stop`](Self::stop): the same config, data and port (a homeserver restart,
    /// or the end of an outage), and waits until it answers.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.guard.stop();
        self.guard = spawn(&self.config_path, self.dir.path())?;
        self.wait_ready(Duration::from_secs(90)).await
    }
}

/// Runs Synapse from the venv on `config_path`, in `dir`, its output appended to `dir/stdout.log`.
fn spawn(config_path: &Path, dir: &Path) -> anyhow::Result<ChildGuard> {
    let python = venv().join("bin/python");
    if !python.exists() {
        bail!("no Synapse venv at {}: run dev/test (it creates it) or set TINCAN_TEST_VENV", venv().display());
    }
    let mut cmd = Command::new(python);
    cmd.args(["-m", "synapse.app.homeserver", "-c"]).arg(config_path).current_dir(dir);
    ChildGuard::spawn_logged("synapse", cmd, dir.join("stdout.log"))
}

fn base_config(server_name: &str, port: u16, dir: &Path, shared_secret: &str, as_files: &[String]) -> Value {
    let lifted = json!({"per_second": 10000, "burst_count": 10000});
    json!({
        "server_name": server_name,
        "public_baseurl": format!("http://127.0.0.1:{port}/"),
        "pid_file": dir.join("homeserver.pid"),
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": false,
            "x_forwarded": false,
            "resources": [{"names": ["client", "openid"], "compress": false}],
        }],
        "database": {"name": "sqlite3", "args": {"database": dir.join("homeserver.db")}},
        "log_config": dir.join("log.yaml"),
        "media_store_path": dir.join("media"),
        "signing_key_path": dir.join("signing.key"),
        "registration_shared_secret": shared_secret,
        "report_stats": false,
        "trusted_key_servers": [],
        "suppress_key_server_warning": true,
        "enable_registration": false,
        "url_preview_enabled": false,
        "presence": {"enabled": false},
        "app_service_config_files": as_files,
        "rc_message": lifted,
        "rc_registration": lifted,
        "rc_registration_token_validity": lifted,
        "rc_login": {"address": lifted, "account": lifted, "failed_attempts": lifted},
        "rc_admin_redaction": lifted,
        "rc_joins": {"local": lifted, "remote": lifted},
        "rc_joins_per_room": lifted,
        "rc_3pid_validation": lifted,
        "rc_invites": {"per_room": lifted, "per_user": lifted, "per_issuer": lifted},
        "rc_key_requests": lifted,
        "rc_delayed_event_mgmt": lifted,
        "rc_room_creation": lifted,
        // End-to-bridge encryption: to-device messages (MSC2409/MSC4203), device-list changes and one-time-key
        // counts (MSC3202) in appservice transactions. They only apply to appservices that opt in.
        "experimental_features": {
            "msc2409_to_device_messages_enabled": true,
            "msc3202_transaction_extensions": true,
        },
    })
}

/// What a federating Synapse adds to [`base_config`]: both listeners (the client one as before, the federation
/// one over TLS), the certificate, the trusted CA and loopback let through the IP range blocklist.
fn federation_config(server_name: &str, port: u16, fed_port: u16, tls: &FederationTls) -> Value {
    json!({
        "server_name": server_name,
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": false,
                "x_forwarded": false,
                "resources": [{"names": ["client", "openid"], "compress": false}],
            },
            {
                "port": fed_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": true,
                "x_forwarded": false,
                "resources": [{"names": ["federation"], "compress": false}],
            },
        ],
        "tls_certificate_path": tls.cert,
        "tls_private_key_path": tls.key,
        "federation_verify_certificates": true,
        "federation_custom_ca_list": [tls.ca],
        // Synapse blocks loopback for outgoing federation by default; `localhost` resolves to 127.0.0.1 here.
        "ip_range_whitelist": ["127.0.0.1/32"],
    })
}

fn log_config(log: &Path) -> String {
    format!(
        "version: 1\n\
         formatters:\n  precise:\n    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'\n\
         handlers:\n  file:\n    class: logging.FileHandler\n    formatter: precise\n    filename: {}\n\
         root:\n  level: INFO\n  handlers: [file]\n\
         disable_existing_loggers: false\n",
        log.display()
    )
}

/// Writes a Synapse signing key (`ed25519 <key id> <unpadded base64 seed>`).
fn write_signing_key(path: &Path) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed);
    std::fs::write(path, format!("ed25519 a_test {b64}\n"))?;
    Ok(())
}

/// Deep merge: objects merge key by key, anything else is replaced.
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep() {
        let mut a = json!({"a": {"b": 1, "c": 2}, "l": [1]});
        merge(&mut a, json!({"a": {"c": 3}, "l": [2], "n": true}));
        assert_eq!(a, json!({"a": {"b": 1, "c": 3}, "l": [2], "n": true}));
    }
}
