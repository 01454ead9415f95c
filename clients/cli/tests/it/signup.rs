//! `tincan register` / `tincan verify` through the real homeserver extension (`tincan-ext`, JWT backend, dev
//! SMS sink) and Synapse. The extension is another crate's binary: set `TINCAN_TEST_EXT_BIN` to it (skipped
//! without it, failing under CI).

use crate::cli::{err, json, out};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tincan_testkit::{ChildGuard, Synapse};

const JWT_SECRET: &str = "cli-test-jwt-secret-0123456789";
const NUM: &str = "+442079460401";

fn tincan(data: &Path, ext: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tincan"))
        .args(["--data-dir", data.to_str().unwrap(), "--ext", ext])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("tincan runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_verify_through_the_extension() -> anyhow::Result<()> {
    let Some(bin) = std::env::var_os("TINCAN_TEST_EXT_BIN").map(PathBuf::from) else {
        assert!(!tincan_testkit::in_ci(), "TINCAN_TEST_EXT_BIN must point at tincan-ext in CI");
        eprintln!("skipped: set TINCAN_TEST_EXT_BIN to the tincan-ext binary");
        return Ok(());
    };
    let hs = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .start()
        .await?;
    let dir = tempfile::tempdir()?;
    let port = tincan_testkit::ports::free_port();
    let sms = dir.path().join("sms.jsonl");
    std::fs::write(
        dir.path().join("ext.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\nserver_name = \"{}\"\nhomeserver_url = \"{}\"\n\
             database_url = \"sqlite://{}?mode=rwc\"\n[homeserver]\nbackend = \"jwt\"\njwt_secret = \"{JWT_SECRET}\"\n\
             [sms]\nbackend = \"dev\"\ndev_file = \"{}\"\n",
            hs.server_name(),
            hs.url(),
            dir.path().join("ext.db").display(),
            sms.display()
        ),
    )?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(dir.path().join("ext.toml")).arg("serve").env_remove("TINCAN_TEST_EXT_BIN");
    let mut guard = ChildGuard::spawn_logged("tincan-ext", cmd, dir.path().join("ext.log"))?;
    let ext = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(format!("{ext}/health")).await.is_ok_and(|r| r.status().is_success()) {
        guard.ensure_running()?;
        anyhow::ensure!(Instant::now() < deadline, "tincan-ext did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let data = dir.path().join("client");
    let o = tincan(&data, &ext, &["register", NUM]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("tincan verify CODE"), "{}", out(&o));
    let text = std::fs::read_to_string(&sms)?;
    let code = text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a code").to_owned();

    let o = tincan(&data, &ext, &["verify", "000000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("the extension refused"), "{}", err(&o));
    let o = tincan(&data, &ext, &["--json", "verify", &code]);
    assert!(o.status.success(), "{}", err(&o));
    let v = json(&o);
    assert_eq!(v["new_account"], true);
    assert_eq!(v["published_for"], json!([NUM]));
    assert!(v["master_key"].is_string());

    // A new process finds the session and the number.
    let o = tincan(&data, &ext, &["--json", "status"]);
    assert_eq!(json(&o)["number"], NUM);
    assert_eq!(json(&o)["user_id"], v["user_id"]);
    Ok(())
}
