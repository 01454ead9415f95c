//! The real `tincan-sms` binary: `config check`, and a 10,000-message burst pushed as the homeserver pushes it
//! (application-service transactions of 100 events, each sent until answered 200) while the SMSC link is cut
//! twice and the bridge is killed with SIGKILL once and started again.

use crate::bridge::{AS_TOKEN, Client, HS_TOKEN};
use crate::harness::{Proxy, Smsc, wait_for};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tincan_appservice::config::AppserviceConfig;
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_sms::protocol::gsm7;
use tincan_testkit::{ChildGuard, Synapse};

struct Binary {
    config: PathBuf,
    log: PathBuf,
    health: String,
    guard: Option<ChildGuard>,
}

impl Binary {
    fn command(config: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tincan-sms"));
        cmd.arg("--config").arg(config);
        cmd
    }

    async fn start(config: PathBuf, health: String, log: PathBuf) -> Binary {
        let mut b = Binary { config, log, health, guard: None };
        b.restart().await;
        b
    }

    async fn restart(&mut self) {
        let mut cmd = Self::command(&self.config);
        cmd.env("RUST_LOG", "info");
        self.guard = Some(ChildGuard::spawn_logged("tincan-sms", cmd, &self.log).unwrap());
        let http = reqwest::Client::new();
        let health = self.health.clone();
        let guard = self.guard.as_mut().unwrap();
        wait_for("tincan-sms healthy", Duration::from_secs(60), || {
            let http = http.clone();
            let health = health.clone();
            let running = guard.ensure_running().map_err(|e| e.to_string());
            async move {
                if let Err(e) = running {
                    panic!("{e}");
                }
                let r = http.get(&health).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.kill();
        }
    }
}

fn config_toml(dir: &Path, hs_url: &str, as_port: u16, sms_listen: &str, smsc_port: u16, window: usize) -> String {
    format!(
        r#"
[homeserver]
url = "{hs_url}"
server_name = "hs.test"
[appservice]
id = "tincan-sms"
listen = "127.0.0.1:{as_port}"
url = "http://127.0.0.1:{as_port}"
as_token = "{AS_TOKEN}"
hs_token = "{HS_TOKEN}"
bot_localpart = "smsbot"
[database]
url = "sqlite:{core}"
[sms]
database_url = "sqlite:{sms}"
listen = "{sms_listen}"
numbers = ["+447400000001", "+447400000002"]
[sms.limits]
per_user = {{ per_minute = 10000000, burst = 100000 }}
per_prefix = {{ per_minute = 10000000, burst = 100000 }}
[[sms.smsc]]
name = "peer"
address = "127.0.0.1:{smsc_port}"
system_id = "tincan"
password = "pw"
window = {window}
reconnect_min_ms = 100
reconnect_max_ms = 1000
response_timeout_secs = 5
"#,
        core = dir.join("core.db").display(),
        sms = dir.join("sms.db").display(),
    )
}

#[tokio::test]
async fn config_check_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sms.toml");
    std::fs::write(&path, config_toml(dir.path(), "http://127.0.0.1:8008", 29999, "127.0.0.1:29998", 2775, 10))
        .unwrap();
    let out = Binary::command(&path).args(["config", "check"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["appservice"]["as_token"], "[redacted]");
    assert_eq!(printed["sms"]["smsc"][0]["window"], 10);
    std::fs::write(
        &path,
        config_toml(dir.path(), "http://127.0.0.1:8008", 29999, "nowhere", 2775, 0)
            .replace("+447400000002", "447400000002"),
    )
    .unwrap();
    let out = Binary::command(&path).args(["config", "check"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["sms.listen", "sms.numbers[1]", "sms.smsc[0].window"] {
        assert!(err.contains(key), "{key} in {err}");
    }
    let out = Binary::command(&path).arg("registration").output().unwrap();
    assert!(!out.status.success(), "an invalid config prints no registration");
}

/// Every message reaches the SMSC; the outbox took each Matrix event once; the duplicates at the SMSC are at
/// most what the bridge counted as possible duplicates, at most a window per incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_two_link_drops_and_a_kill_9() {
    const N: usize = 10_000;
    const PER_TXN: usize = 100;
    const WINDOW: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let peer = Smsc::start().await.unwrap();
    let proxy = Proxy::start(peer.port).await;
    let as_port = tincan_testkit::ports::free_port();
    let sms_listen = format!("127.0.0.1:{}", tincan_testkit::ports::free_port());
    let mut core = AppserviceConfig::default();
    core.homeserver.server_name = "hs.test".into();
    core.appservice.id = "tincan-sms".into();
    core.appservice.url = format!("http://127.0.0.1:{as_port}");
    core.appservice.bot_localpart = "smsbot".into();
    let tokens = Tokens { as_token: AS_TOKEN.into(), hs_token: HS_TOKEN.into() };
    let synapse = Synapse::builder().appservice(registration_yaml(&core, "sms_", &tokens)).start().await.unwrap();
    let path = dir.path().join("sms.toml");
    std::fs::write(&path, config_toml(dir.path(), &synapse.url(), as_port, &sms_listen, proxy.port, WINDOW)).unwrap();
    let mut bin = Binary::start(path, format!("http://{sms_listen}/healthz"), dir.path().join("sms.log")).await;

    // A real portal: Alice DMs the ghost through Synapse.
    let alice = synapse.register_user("alice", false).await.unwrap();
    let alice = Client { http: reqwest::Client::new(), base: synapse.url(), token: alice.access_token };
    let ghost = alice.ghost_of("+447400123456").await;
    let room = alice.dm(&ghost).await;

    // The homeserver's side: transactions of 100 events, each pushed until answered 200.
    let pusher = {
        let room = room.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut acknowledged = 0;
            for t in 0..N / PER_TXN {
                let events: Vec<Value> = (t * PER_TXN..(t + 1) * PER_TXN)
                    .map(|i| {
                        json!({"type": "m.room.message", "room_id": room, "sender": "@alice:hs.test",
                               "event_id": format!("$burst{i}"), "origin_server_ts": 1_700_000_000_000u64 + i as u64,
                               "content": {"msgtype": "m.text", "body": format!("burst {i}")}})
                    })
                    .collect();
                let url = format!("http://127.0.0.1:{as_port}/_matrix/app/v1/transactions/burst{t}");
                loop {
                    let sent = http.put(&url).bearer_auth(HS_TOKEN).json(&json!({"events": events})).send().await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        acknowledged += 1;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            acknowledged
        })
    };
    let patient = Duration::from_secs(600);
    peer.wait_submits(N / 5, patient).await;
    proxy.cut();
    peer.wait_submits(2 * N / 5, patient).await;
    proxy.cut();
    peer.wait_submits(3 * N / 5, patient).await;
    bin.kill();
    bin.restart().await;
    let acknowledged = pusher.await.unwrap();
    assert_eq!(acknowledged, N / PER_TXN, "every transaction was acknowledged");

    let sms_db = format!("sqlite:{}", dir.path().join("sms.db").display());
    let pool = sqlx::SqlitePool::connect(&sms_db).await.unwrap();
    wait_for("the outbox to drain", patient, || async {
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sms_segments WHERE state <> 'submitted'")
            .fetch_one(&pool)
            .await
            .unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sms_messages").fetch_one(&pool).await.unwrap();
        (pending == 0 && stored == N as i64).then_some(())
    })
    .await;
    let distinct: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT event_id) FROM sms_messages").fetch_one(&pool).await.unwrap();
    assert_eq!(distinct, N as i64, "each Matrix event taken once");
    let counted: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(uncertain), 0) FROM sms_segments").fetch_one(&pool).await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for s in peer.submits().into_iter().filter(|s| s["status"] == 0) {
        let text = gsm7::decode(&hex::decode(s["sm"].as_str().unwrap()).unwrap());
        *seen.entry(text).or_default() += 1;
    }
    let missing: Vec<usize> = (0..N).filter(|i| !seen.contains_key(&format!("burst {i}"))).collect();
    assert!(
        missing.is_empty(),
        "{} messages never reached the SMSC: {:?}…",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("duplicates at the SMSC: {duplicates}; counted as possible: {counted}");
    assert!(duplicates as i64 <= counted, "every duplicate was counted: {duplicates} > {counted}");
    assert!(counted as usize <= 3 * WINDOW, "at most a window per incident: {counted}");
    let metrics = reqwest::get(format!("http://{sms_listen}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("tincan_sms_possible_duplicates {counted}")), "{metrics}");
    bin.kill();
}
