//! Publishing to the real ENUM directory (`tincan-directory`): sign-up publishes number → Matrix ID, the
//! directory answers a DNSSEC-validated NAPTR for it (checked with delv), and `PUT keys/master` publishes the
//! user's master key only when the homeserver confirms it is theirs.
//!
//! The directory binary is another crate's: set `TINCAN_DIRECTORY_BIN`, or build it into the same target dir
//! (`cargo build -p tincan-directory`). Without it the test is skipped (a failure under `CI=true`).

use crate::harness::Ext;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tincan_testkit::{ChildGuard, Synapse, tools};

pub const APEX: &str = "e164.tincan.test.";

pub fn directory_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TINCAN_DIRECTORY_BIN") {
        return Some(PathBuf::from(p));
    }
    // tests run from <target>/debug/deps/; binaries live in <target>/debug/.
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("tincan-directory");
    candidate.exists().then_some(candidate)
}

pub struct Directory {
    _guard: ChildGuard,
    bin: PathBuf,
    data: tempfile::TempDir,
    pub api: String,
    pub dns_port: u16,
}

impl Directory {
    pub async fn start(bin: PathBuf) -> Directory {
        let data = tempfile::tempdir().unwrap();
        let [dns_port, api_port] = tincan_testkit::ports::free_ports::<2>();
        let mut cmd = Command::new(&bin);
        cmd.arg("serve").arg("--data-dir").arg(data.path());
        cmd.args(["--dns", &format!("127.0.0.1:{dns_port}"), "--api", &format!("127.0.0.1:{api_port}")]);
        cmd.args(["--apex", APEX]);
        let mut guard = ChildGuard::spawn_logged("tincan-directory", cmd, data.path().join("serve.log")).unwrap();
        let api = format!("http://127.0.0.1:{api_port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            guard.ensure_running().unwrap();
            if let Ok(r) = reqwest::get(format!("{api}/healthz")).await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "directory not healthy\n{}", guard.log_tail(30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Directory { _guard: guard, bin, data, api, dns_port }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin).args(args).arg("--data-dir").arg(self.data.path()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `delv`'s output (stdout and stderr) for the number's NAPTR, validated up to the directory's DS.
    pub fn delv_naptr(&self, number: &str) -> String {
        let delv = tools::require("delv");
        let work = tempfile::tempdir().unwrap();
        let anchor = self.anchor_conf(work.path());
        let out = tools::run(Command::new(&delv).args([
            "@127.0.0.1",
            "-p",
            &self.dns_port.to_string(),
            "-a",
            anchor.to_str().unwrap(),
            &format!("+root={APEX}"),
            &owner(number),
            "NAPTR",
        ]))
        .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// `trust-anchors { "APEX" static-ds TAG ALG DTYPE "HEX"; };` from `keys ds`.
    pub fn anchor_conf(&self, dir: &Path) -> PathBuf {
        let mut anchors = String::new();
        for line in self.cli(&["keys", "ds"]).lines().filter(|l| l.contains(" DS ")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let i = f.iter().position(|w| *w == "DS").unwrap();
            let hex: String = f[i + 4..].concat();
            anchors.push_str(&format!("  \"{APEX}\" static-ds {} {} {} \"{hex}\";\n", f[i + 1], f[i + 2], f[i + 3]));
        }
        assert!(!anchors.is_empty(), "keys ds printed no DS");
        let path = dir.join("anchor.conf");
        std::fs::write(&path, format!("trust-anchors {{\n{anchors}}};\n")).unwrap();
        path
    }
}

fn owner(number: &str) -> String {
    let digits: String = number.trim_start_matches('+').chars().rev().flat_map(|c| [c, '.']).collect();
    format!("{digits}{APEX}")
}

#[tokio::test]
async fn sign_up_publishes_a_validated_naptr_and_the_master_key() {
    let Some(bin) = directory_bin() else {
        assert!(!tincan_testkit::in_ci(), "tincan-directory binary missing in CI");
        eprintln!("SKIPPED: no tincan-directory binary (set TINCAN_DIRECTORY_BIN or build -p tincan-directory)");
        return;
    };
    let delv = tools::require("delv");
    let dir = Directory::start(bin).await;
    let token = dir.cli(&["provider", "add", "tincan", "--prefix", "+44"]).trim().to_owned();

    let secret = "dir-jwt-secret-0123456789";
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": secret, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"{}\"\n\
         [homeserver]\njwt_secret = \"{secret}\"\n[directory]\nurl = \"{}\"\ntoken = \"{token}\"\n",
        synapse.url(),
        dir.api
    ))
    .await
    .unwrap();
    let number = "+447911123001";
    let (user_id, _) = crate::signup::sign_up(&ext, &synapse, number, "d1").await;

    // The registrar holds the record…
    let http = reqwest::Client::new();
    let rec: Value = http
        .get(format!("{}/v1/numbers/{number}", dir.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uri = format!("matrix:u/{}", user_id.trim_start_matches('@'));
    assert_eq!(rec["services"][0]["uri"], uri.as_str(), "{rec}");

    // …and DNS answers it, validated up to the trust anchor.
    let work = tempfile::tempdir().unwrap();
    let anchor = dir.anchor_conf(work.path());
    let out = tools::run(Command::new(&delv).args([
        "@127.0.0.1",
        "-p",
        &dir.dns_port.to_string(),
        "-a",
        anchor.to_str().unwrap(),
        &format!("+root={APEX}"),
        &owner(number),
        "NAPTR",
    ]))
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("; fully validated"), "{text}");
    assert!(text.contains(&uri), "{text}");

    // Master key: a key that is not the user's is refused; the real one is published.
    let (s, v) = crate::signup::sign_up_token(&ext, &synapse, number, "d2").await;
    let _ = s;
    let access_token = v;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
    };
    let master = b64(signing.verifying_key().as_bytes());
    let other = b64(ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key().as_bytes());
    let put = |key: String| {
        http.put(format!("{}/_tincan/client/v1/keys/master", ext.url))
            .bearer_auth(&access_token)
            .json(&json!({"ed25519": key}))
            .send()
    };
    // Before any upload, no key is the user's.
    let r = put(master.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(format!("{}/_matrix/client/v3/keys/device_signing/upload", synapse.url()))
        .bearer_auth(&access_token)
        .json(&json!({"master_key": {
            "user_id": user_id,
            "usage": ["master"],
            "keys": {format!("ed25519:{master}"): master},
        }}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = put(other).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    let r = put(master.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let rec: Value = http
        .get(format!("{}/v1/numbers/{number}", dir.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["key"]["ed25519"], master.as_str(), "{rec}");

    // Unregistering removes the record from the directory (and DNS).
    let r =
        http.post(format!("{}/_tincan/client/v1/unregister", ext.url)).bearer_auth(&access_token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["numbers"], json!([number]));
    let r = http.get(format!("{}/v1/numbers/{number}", dir.api)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let out = tools::run(Command::new(&delv).args([
        "@127.0.0.1",
        "-p",
        &dir.dns_port.to_string(),
        "-a",
        anchor.to_str().unwrap(),
        &format!("+root={APEX}"),
        &owner(number),
        "NAPTR",
    ]))
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(&uri), "{text}");
}
