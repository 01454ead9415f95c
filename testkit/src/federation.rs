//! Providers that federate: several Synapses talking over real TLS on loopback, each with its own `tincan-ext`
//! and its own provider token on ONE `tincan-directory` (issue #22, "two providers, one network").
//!
//! - [`TestCa`]: a certificate authority made for the test with `openssl` (P-256), issuing each Synapse a
//!   certificate for `localhost` and `127.0.0.1`. Synapses trust that CA alone for outgoing federation and verify
//!   certificates as in production (`federation_verify_certificates` stays on).
//! - [`SynapseBuilder::federation`](crate::SynapseBuilder::federation): the federation listener, server name
//!   `localhost:PORT`.
//! - [`Ext`]: the real `tincan-ext` binary beside one Synapse (JWT login, dev SMS sink, publishing to the
//!   directory and resolving other providers' numbers through its DNSSEC-signed, log-backed answers).
//! - [`Federation`]: the directory and N [`Provider`]s on it.
//!
//! The binaries are other crates': found through `TINCAN_TEST_EXT_BIN` and `TINCAN_TEST_DIRECTORY_BIN` (exported
//! by `dev/test`), else next to the test executable; without them [`Federation::start`] gives `None` (the test is
//! skipped; under `CI=true` it panics).

use crate::directory::{self, APEX, Directory, Registrar};
use crate::process::ChildGuard;
use crate::{Synapse, in_ci};
use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The environment variable naming the `tincan-ext` binary.
pub const EXT_BIN_ENV: &str = "TINCAN_TEST_EXT_BIN";

/// A certificate authority for one test: its key and self-signed certificate in a temporary directory, made
/// with the `openssl` command line tool.
#[derive(Debug)]
pub struct TestCa {
    cert: PathBuf,
    issued: AtomicU32,
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes the CA (P-256, valid two days, `CA:TRUE`, for signing certificates only).
    pub fn new() -> Result<TestCa> {
        let dir = tempfile::Builder::new().prefix("tincan-ca-").tempdir()?;
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Tincan test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )?;
        Ok(TestCa { cert: dir.path().join("ca.pem"), issued: AtomicU32::new(0), dir })
    }

    /// The CA certificate (PEM): what a peer trusts.
    pub fn cert_file(&self) -> &Path {
        &self.cert
    }

    /// A new server key and certificate for `localhost` and `127.0.0.1` (`serverAuth`), signed by this CA: the
    /// PEM files (certificate, key).
    pub fn issue(&self) -> Result<(PathBuf, PathBuf)> {
        self.issue_for(&[])
    }

    /// [`issue`](Self::issue), the certificate naming the DNS names `names` too.
    pub fn issue_for(&self, names: &[&str]) -> Result<(PathBuf, PathBuf)> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let d = self.dir.path();
        let (key, csr, cert, ext) =
            (format!("server{n}.key"), format!("server{n}.csr"), format!("server{n}.pem"), format!("server{n}.ext"));
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=localhost",
            ],
        )?;
        std::fs::write(
            d.join(&ext),
            format!(
                "subjectAltName=DNS:localhost,{}IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                names.iter().map(|n| format!("DNS:{n},")).collect::<String>()
            ),
        )?;
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &(n + 1).to_string(),
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        )?;
        Ok((d.join(cert), d.join(key)))
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (`apt-get install openssl`)")?;
    ensure!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The `tincan-ext` binary ([`EXT_BIN_ENV`], else next to the test executable), or `None` after printing why the
/// test is skipped; under `CI=true` a missing binary panics.
pub fn ext_binary_or_skip() -> Option<PathBuf> {
    let found = directory::sibling_binary(EXT_BIN_ENV, "tincan-ext");
    if found.is_none() {
        assert!(!in_ci(), "{EXT_BIN_ENV} must point at tincan-ext in CI");
        eprintln!("skipped: no tincan-ext binary (set {EXT_BIN_ENV} or build the workspace)");
    }
    found
}

/// A running `tincan-ext` with the dev SMS sink; stopped on drop.
#[derive(Debug)]
pub struct Ext {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    guard: ChildGuard,
    dir: tempfile::TempDir,
}

impl Ext {
    /// Starts `bin serve --dev-sms` with `settings` (TOML: `server_name`, `[homeserver]`, `[directory]`…) after
    /// the parts every test needs (listen address, SQLite in its directory, dev SMS sink, code-hash key, limits
    /// lifted), and waits for `/health`.
    pub async fn start(bin: &Path, settings: &str) -> Result<Ext> {
        Ext::start_at(bin, crate::ports::free_port(), settings).await
    }

    /// [`Ext::start`] listening on `port` (known before it starts, e.g. for the directory's port webhooks).
    pub async fn start_at(bin: &Path, port: u16, settings: &str) -> Result<Ext> {
        let dir = tempfile::Builder::new().prefix("tincan-ext-").tempdir()?;
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"sqlite://{db}?mode=rwc\"\n{settings}\n\
             [codes]\nsecret = \"test-only-code-secret-0123456789abcdef\"\n\
             [sms]\nbackend = \"dev\"\ndev_file = \"{sms}\"\n\
             [limits]\nallowed_countries = [\"*\"]\n\
             [limits.per_ip]\nburst = 10000\nrefill = 10000\nperiod_secs = 3600\n\
             [limits.per_prefix]\nburst = 10000\nrefill = 10000\nperiod_secs = 3600\n",
            db = dir.path().join("ext.db").display(),
            sms = dir.path().join("sms.jsonl").display(),
        );
        std::fs::write(dir.path().join("ext.toml"), config)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(dir.path().join("ext.toml")).args(["serve", "--dev-sms"]);
        cmd.env_remove(EXT_BIN_ENV).env_remove(directory::BIN_ENV).env("RUST_LOG", "info");
        let mut guard = ChildGuard::spawn_logged("tincan-ext", cmd, dir.path().join("ext.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            if let Err(e) = guard.ensure_running() {
                bail!("{e}\n{}", guard.log_tail(40));
            }
            if Instant::now() > deadline {
                bail!("tincan-ext did not come up\n{}", guard.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Ext { url, guard, dir })
    }

    /// The code in the newest dev-sink SMS to `to`.
    pub fn code(&self, to: &str) -> Result<String> {
        let text = std::fs::read_to_string(self.dir.path().join("sms.jsonl")).unwrap_or_default();
        let msg = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .rfind(|v| v["to"] == to)
            .with_context(|| format!("no SMS to {to}"))?;
        let body = msg["text"].as_str().unwrap_or_default();
        body.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).map(str::to_owned).context("no code")
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }

    /// Stops it now (it is also stopped on drop).
    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

/// One provider: its federating Synapse, its extension and its registrar token on the shared directory.
#[derive(Debug)]
pub struct Provider {
    /// Its name in the directory (`provider add NAME`).
    pub name: String,
    /// Its Synapse, federating (server name `localhost:PORT`).
    pub hs: Synapse,
    /// Its `tincan-ext`.
    pub ext: Ext,
    /// The registrar API with its provider token.
    pub registrar: Registrar,
}

/// The directory and the providers on it, their Synapses federating with each other.
#[derive(Debug)]
pub struct Federation {
    /// The providers, in the order given to [`Federation::start`]. Before the directory, so they stop first.
    pub providers: Vec<Provider>,
    /// The one directory.
    pub directory: Directory,
    /// The directory's trust anchor (`keys ds`).
    pub anchor: String,
    /// The transparency log's key.
    pub log_key: String,
    // Last: the certificates are read at start, and go once everything stopped.
    _ca: TestCa,
}

/// How [`Federation::builder`] sets the network up beyond its defaults.
#[derive(Debug)]
pub struct FederationBuilder<'a> {
    specs: &'a [(&'a str, &'a [&'a str])],
    port_window_secs: Option<u64>,
    record_ttl_secs: Option<u32>,
    ext_settings: Vec<(String, String)>,
    admins: Vec<String>,
}

impl FederationBuilder<'_> {
    /// The TTL of the directory's NAPTR and TXT records (`dns.zone.record_ttl`, 300 s by default), which is how
    /// long clients may keep an answer: short for a test that changes a number and looks it up again.
    pub fn record_ttl_secs(mut self, secs: u32) -> Self {
        self.record_ttl_secs = Some(secs);
        self
    }

    /// The directory's port objection window (`ports.window_secs`, its default a day), its ports checked every
    /// second.
    pub fn port_window_secs(mut self, secs: u64) -> Self {
        self.port_window_secs = Some(secs);
        self
    }

    /// More extension settings for provider `name` (TOML starting with a section, e.g.
    /// `"[porting]\nunlocked = \"release\"\n"`).
    pub fn ext_settings(mut self, name: &str, toml: &str) -> Self {
        self.ext_settings.push((name.to_owned(), toml.to_owned()));
        self
    }

    /// Provider `name`'s extension gets `homeserver.admin_token`, the token of an admin registered on its
    /// Synapse: with it the extension can deactivate an account its user closes after a port
    /// (`account/close`; without it that answers 501).
    pub fn admin_token(mut self, name: &str) -> Self {
        self.admins.push(name.to_owned());
        self
    }

    /// Starts it: see [`Federation::start`].
    pub async fn start(self) -> Result<Option<Federation>> {
        Federation::start_with(self).await
    }
}

impl Federation {
    /// The directory, then for each `(name, prefixes)` a provider: `provider add` (prefixes another provider
    /// was given already are added `--shared`), a federating Synapse with JWT login, and its extension
    /// publishing numbers and keys with its token and resolving other providers' numbers through the
    /// directory's DNS (DNSSEC to the anchor, answers backed by the log; the number list mirrored every
    /// second). The directory's port webhooks reach each provider's extension. `None` when a binary is missing
    /// (see the module docs).
    pub async fn start(specs: &[(&str, &[&str])]) -> Result<Option<Federation>> {
        Federation::builder(specs).start().await
    }

    /// [`Federation::start`] with settings of its own (the port window, extension settings).
    pub fn builder<'a>(specs: &'a [(&'a str, &'a [&'a str])]) -> FederationBuilder<'a> {
        FederationBuilder {
            specs,
            port_window_secs: None,
            record_ttl_secs: None,
            ext_settings: Vec::new(),
            admins: Vec::new(),
        }
    }

    async fn start_with(b: FederationBuilder<'_>) -> Result<Option<Federation>> {
        let specs = b.specs;
        let Some(dir_bin) = directory::binary_or_skip() else { return Ok(None) };
        let Some(ext_bin) = ext_binary_or_skip() else { return Ok(None) };
        let ca = TestCa::new()?;
        // Each extension's port is chosen now, so the directory knows where its port webhook goes.
        let ext_ports: Vec<u16> = specs.iter().map(|_| crate::ports::free_port()).collect();
        let mut env: Vec<(String, String)> = specs
            .iter()
            .zip(&ext_ports)
            .map(|((name, _), port)| {
                (
                    format!("TINCAN_DIRECTORY_PORTS__WEBHOOKS__{}", name.to_uppercase()),
                    format!("http://127.0.0.1:{port}/_tincan/directory/v1/ports"),
                )
            })
            .collect();
        if let Some(secs) = b.port_window_secs {
            env.push(("TINCAN_DIRECTORY_PORTS__WINDOW_SECS".into(), secs.to_string()));
            env.push(("TINCAN_DIRECTORY_PORTS__CHECK_INTERVAL_SECS".into(), "1".into()));
        }
        if let Some(secs) = b.record_ttl_secs {
            env.push(("TINCAN_DIRECTORY_DNS__ZONE__RECORD_TTL".into(), secs.to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let directory = Directory::start_env(&dir_bin, &env).await?;
        let anchor = directory.trust_anchor()?;
        let log_key = directory.log_key().await?;

        // The Synapses start together (each takes seconds).
        let mut starting = Vec::new();
        for (name, _) in specs {
            let jwt = format!("{name}-jwt-secret-0123456789abcdef");
            let builder = Synapse::builder()
                .federation(&ca)?
                .config(json!({"jwt_config": {"enabled": true, "secret": jwt, "algorithm": "HS256"}}));
            starting.push((jwt, tokio::spawn(builder.start())));
        }
        let mut taken: Vec<&str> = Vec::new();
        let mut providers = Vec::new();
        for (((name, prefixes), (jwt, hs)), ext_port) in specs.iter().zip(starting).zip(ext_ports) {
            let hs = hs.await.context("starting Synapse")??;
            let shared = prefixes.iter().any(|p| taken.contains(p));
            let more: &[&str] = if shared { &["--shared"] } else { &[] };
            let registrar = directory.add_provider_with(name, prefixes, more)?;
            taken.extend(prefixes.iter());
            let more: String =
                b.ext_settings.iter().filter(|(n, _)| n == name).map(|(_, toml)| format!("{toml}\n")).collect();
            let admin = if b.admins.iter().any(|n| n == name) {
                format!("admin_token = \"{}\"\n", hs.register_user("tincan-admin", true).await?.access_token)
            } else {
                String::new()
            };
            let settings = format!(
                "server_name = \"{server}\"\nhomeserver_url = \"{hs_url}\"\n\
                 [homeserver]\nbackend = \"jwt\"\njwt_secret = \"{jwt}\"\n{admin}\
                 [directory]\nurl = \"{api}\"\ntoken = \"{token}\"\ndns_servers = [\"{dns}\"]\napex = \"{APEX}\"\n\
                 trust_anchor = '''\n{anchor}'''\nlog_key = \"{log_key}\"\nsync_interval_secs = 1\n{more}",
                server = hs.server_name(),
                hs_url = hs.url(),
                api = directory.api,
                token = registrar.token,
                dns = directory.dns,
            );
            let ext = Ext::start_at(&ext_bin, ext_port, &settings).await?;
            providers.push(Provider { name: name.to_string(), hs, ext, registrar });
        }
        Ok(Some(Federation { providers, directory, anchor, log_key, _ca: ca }))
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> &Provider {
        self.providers.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no provider {name}"))
    }

    /// The provider named `name`, to stop parts of it.
    pub fn provider_mut(&mut self, name: &str) -> &mut Provider {
        self.providers.iter_mut().find(|p| p.name == name).unwrap_or_else(|| panic!("no provider {name}"))
    }
}
