//! Sign-up through the real homeserver extension (`tincan-ext`, JWT backend, dev SMS sink) and Synapse: two
//! numbers sign up, cross-signing is bootstrapped and published, then "hi" goes from A to B's number through
//! the signed directory zone; the wall time from `verify` to delivery is printed (the benchmark).
//!
//! The extension is another crate's binary, so it is found through `TINCAN_TEST_EXT_BIN` (e.g.
//! `cargo build -p tincan-homeserver-ext` then `TINCAN_TEST_EXT_BIN=target/debug/tincan-ext`). Without it the test
//! is skipped, and fails under CI.

use crate::dns::{Directory, Entry};
use crate::harness::wait_for;
use anyhow::{Context, bail};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tincan_client_core::{ClientConfig, DirectoryConfig, KeyStatus, TincanClient};
use tincan_testkit::{ChildGuard, Synapse};

const JWT_SECRET: &str = "client-test-jwt-secret-0123456789";
const A_NUM: &str = "+442079460301";
const B_NUM: &str = "+442079460302";

struct Ext {
    url: String,
    dir: tempfile::TempDir,
    _guard: ChildGuard,
}

impl Ext {
    async fn start(bin: PathBuf, hs: &Synapse) -> anyhow::Result<Ext> {
        let dir = tempfile::Builder::new().prefix("tincan-ext-").tempdir()?;
        let port = tincan_testkit::ports::free_port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nserver_name = \"{}\"\nhomeserver_url = \"{}\"\n\
             database_url = \"sqlite://{}?mode=rwc\"\n\
             [homeserver]\nbackend = \"jwt\"\njwt_secret = \"{JWT_SECRET}\"\n\
             [sms]\nbackend = \"dev\"\ndev_file = \"{}\"\n",
            hs.server_name(),
            hs.url(),
            dir.path().join("ext.db").display(),
            dir.path().join("sms.jsonl").display(),
        );
        std::fs::write(dir.path().join("ext.toml"), config)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(dir.path().join("ext.toml")).arg("serve").env_remove("TINCAN_TEST_EXT_BIN");
        let mut guard = ChildGuard::spawn_logged("tincan-ext", cmd, dir.path().join("ext.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !reqwest::get(format!("{url}/health")).await.is_ok_and(|r| r.status().is_success()) {
            if let Err(e) = guard.ensure_running() {
                bail!("{e}\n{}", guard.log_tail(400));
            }
            if Instant::now() > deadline {
                bail!("tincan-ext did not come up\n{}", guard.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Ext { url, dir, _guard: guard })
    }

    /// The code of the newest dev-sink SMS to `to`.
    fn code(&self, to: &str) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.dir.path().join("sms.jsonl"))?;
        let msg = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .rfind(|v| v["to"] == to)
            .context("no SMS to the number")?;
        let body = msg["text"].as_str().unwrap_or_default();
        body.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).map(str::to_owned).context("no code")
    }
}

fn config(data: &std::path::Path, ext: &Ext, dir: Option<&Directory>) -> ClientConfig {
    let mut c = ClientConfig::new(data);
    c.ext_url = Some(ext.url.parse().unwrap());
    c.directory = dir.map(|d| DirectoryConfig {
        servers: vec![d.addr],
        apex: crate::dns::APEX.into(),
        trust_anchor: d.anchor.clone(),
        allow_insecure: false,
    });
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_by_number_then_message_by_number() -> anyhow::Result<()> {
    let Some(bin) = std::env::var_os("TINCAN_TEST_EXT_BIN").map(PathBuf::from) else {
        assert!(!tincan_testkit::in_ci(), "TINCAN_TEST_EXT_BIN must point at tincan-ext in CI");
        eprintln!("skipped: set TINCAN_TEST_EXT_BIN to the tincan-ext binary");
        return Ok(());
    };
    let hs = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .start()
        .await?;
    let ext = Ext::start(bin, &hs).await?;
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);

    let mut a = TincanClient::open(config(da.path(), &ext, None)).await?;
    a.register(A_NUM).await?;
    let sa = a.verify(&ext.code(A_NUM)?).await?;
    assert!(sa.new_account);
    assert_eq!(sa.published_for, [A_NUM]);
    let ka = sa.master_key.expect("cross-signing bootstrapped");

    let mut b = TincanClient::open(config(db.path(), &ext, None)).await?;
    b.register(B_NUM).await?;
    let started = Instant::now();
    let sb = b.verify(&ext.code(B_NUM)?).await?;
    let verify_took = started.elapsed();
    let kb = sb.master_key.expect("cross-signing bootstrapped");
    assert_eq!(sb.published_for, [B_NUM]);

    // What the extension published, served signed (the extension's own tests cover its registrar writes).
    let dir = Directory::serve(
        &[Entry::matrix(A_NUM, &sa.user_id, Some(ka)), Entry::matrix(B_NUM, &sb.user_id, Some(kb))],
        None,
    )
    .await?;
    drop((a, b));
    let a = TincanClient::open(config(da.path(), &ext, Some(&dir))).await?;
    let b = TincanClient::open(config(db.path(), &ext, Some(&dir))).await?;
    assert_eq!(a.number().map(|n| n.to_string()), Some(A_NUM.to_owned()));

    let incoming = b.messages();
    let sync = b.spawn_sync()?;
    let send_started = std::time::Instant::now();
    let sent = a.send_text(B_NUM, "hi", false).await?;
    assert!(matches!(sent.key_status, Some(KeyStatus::Verified { .. })), "{sent:?}");
    let got = wait_for(incoming, |m| m.body == "hi").await?;
    let delivery = send_started.elapsed();
    eprintln!(
        "bench: B's verify (JWT login, first sync, cross-signing bootstrap, key publish) {verify_took:?}; \
         A's send by number (DNSSEC lookup, /keys/query, DM creation, Megolm share) → decrypted at B {delivery:?}; \
         sum {:?} (the signed test zone's start-up excluded)",
        verify_took + delivery
    );
    assert!(got.encrypted);
    sync.abort();
    assert!(b.check_contact(A_NUM).await?.key_status.is_some_and(|s| s.is_verified()));
    Ok(())
}
