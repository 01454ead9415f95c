//! The real binary end to end: API writes answered signed in DNS within 100 ms, deletes gone, restarts keep data
//! and keys, delv validates answers with the trust anchor from `keys ds`, and the CLI's own contracts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};
use tincan_testkit::tools;

use crate::harness::{APEX, Directory, cli, cli_env, ds, owner, query, signed_answer};

const NUMBER: &str = "+442079460001";
const KEY: &str = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY";

async fn register(d: &Directory, token: &str) -> Value {
    let body = json!({"services": [
        {"type": "matrix", "uri": "matrix:u/alice:hs.test"},
        {"type": "sip", "uri": "sip:+442079460001@sip.test"},
    ]});
    let r = d.http.put(d.url(&format!("/v1/numbers/{NUMBER}"))).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// Polls DNS until `rtype` is answered signed; returns how long after `since` it was.
async fn signed_within(dns: SocketAddr, name: &str, rtype: RecordType, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(2);
    loop {
        if signed_answer(&query(dns, name, rtype).await, rtype) {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "{name} {rtype} not answered signed after 2 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn api_writes_are_signed_in_dns_within_100ms_and_deletes_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let token = d.add_provider("acme", &["+44"]);
    let name = owner(NUMBER);
    let before = query(d.dns, &name, RecordType::NAPTR).await;
    assert!(!before.answers.iter().any(|r| r.record_type() == RecordType::NAPTR));

    register(&d, &token).await;
    let after_200 = Instant::now();
    let took = signed_within(d.dns, &name, RecordType::NAPTR, after_200).await;
    assert!(took < Duration::from_millis(100), "NAPTR visible after {took:?}");
    let naptrs = query(d.dns, &name, RecordType::NAPTR).await;
    assert_eq!(naptrs.answers.iter().filter(|r| r.record_type() == RecordType::NAPTR).count(), 2);

    let r = d.http.put(d.url(&format!("/v1/numbers/{NUMBER}/key"))).bearer_auth(&token).json(&json!({"ed25519": KEY}));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 200);
    let took = signed_within(d.dns, &name, RecordType::TXT, Instant::now()).await;
    assert!(took < Duration::from_millis(100), "TXT visible after {took:?}");

    let r = d.http.delete(d.url(&format!("/v1/numbers/{NUMBER}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let gone = query(d.dns, &name, RecordType::NAPTR).await;
    assert!(!gone.answers.iter().any(|r| r.record_type() == RecordType::NAPTR), "deleted number still answered");

    // dig, an independent client, agrees.
    let out = tools::run_ok(tools::command("dig").args([
        "@127.0.0.1",
        "-p",
        &d.dns.port().to_string(),
        "+dnssec",
        "+norec",
        &name,
        "NAPTR",
    ]))
    .unwrap();
    assert!(!out.contains("E2U+x-matrix"), "{out}");
}

#[tokio::test]
async fn restart_keeps_data_keys_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Directory::start(dir.path()).await;
    let token = d.add_provider("acme", &["+44"]);
    let stored = register(&d, &token).await;
    let ds_before = ds(dir.path());
    assert_eq!(ds_before.len(), 1, "{ds_before:?}");
    let status = d.guard.stop().expect("stopped");
    assert!(status.success(), "clean shutdown on SIGTERM: {status}\n{}", d.guard.log_tail(20));
    drop(d);

    assert_eq!(ds(dir.path()), ds_before, "same keys after a restart");
    let d = Directory::start(dir.path()).await;
    signed_within(d.dns, &owner(NUMBER), RecordType::NAPTR, Instant::now()).await;
    let got: Value = d
        .http
        .get(d.url(&format!("/v1/numbers/{NUMBER}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, stored);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("zone loaded"), "{log}");
    assert_eq!(ds(dir.path()), ds_before);
}

#[tokio::test]
async fn delv_validates_answers_with_the_ds_from_keys_ds() {
    let delv = tools::require("delv");
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let token = d.add_provider("acme", &["+44"]);
    register(&d, &token).await;
    let r = d.http.put(d.url(&format!("/v1/numbers/{NUMBER}/key"))).bearer_auth(&token).json(&json!({"ed25519": KEY}));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 200);

    let ds = ds(dir.path());
    let fields: Vec<&str> = ds[0].split_whitespace().collect();
    assert_eq!(&fields[..3], [APEX, "IN", "DS"], "{ds:?}");
    let (tag, alg, digest_type, hex) = (fields[3], fields[4], fields[5], fields[6]);
    assert_eq!((alg, digest_type), ("13", "2"));
    let anchor = dir.path().join("anchor.conf");
    std::fs::write(
        &anchor,
        format!("trust-anchors {{ \"{APEX}\" static-ds {tag} {alg} {digest_type} \"{hex}\"; }};\n"),
    )
    .unwrap();

    let delv_query = |name: String, rtype: &str| {
        let out = tools::run(std::process::Command::new(&delv).args([
            "@127.0.0.1",
            "-p",
            &d.dns.port().to_string(),
            "-a",
            anchor.to_str().unwrap(),
            &format!("+root={APEX}"),
            &name,
            rtype,
        ]))
        .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let out = delv_query(owner(NUMBER), "NAPTR");
    assert!(out.contains("; fully validated") && out.contains("E2U+x-matrix"), "{out}");
    let out = delv_query(owner(NUMBER), "TXT");
    assert!(out.contains("; fully validated") && out.contains(KEY), "{out}");
    let out = delv_query(owner("+442079460002"), "NAPTR");
    assert!(out.contains("; negative response, fully validated"), "{out}");
}

/// Issue 14 item 17: a provider whose prefix covers or lies under another provider's is refused (it could claim
/// numbers in the other's range by writing first), naming both, unless the operator says `--shared`.
#[test]
fn provider_add_refuses_a_prefix_overlapping_another_providers_unless_shared() {
    let dir = tempfile::tempdir().unwrap();
    crate::harness::add_provider(dir.path(), "acme", &["+4420", "+49"]);
    for (name, prefix, theirs) in [("under", "+442079", "+4420"), ("over", "+44", "+4420"), ("same", "+49", "+49")] {
        let out = cli(dir.path(), &["provider", "add", name, "--prefix", "+1", "--prefix", prefix]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {prefix} overlaps acme's {theirs} but was accepted");
        assert!(out.stdout.is_empty(), "no token for a refused add");
        assert!(err.contains(&format!("prefix {prefix} overlaps {theirs} of provider \"acme\"")), "{err}");
        assert!(err.contains("--shared"), "{err}");
    }
    // Neighbours that share no number are fine, and so is an overlap the operator asks for.
    crate::harness::add_provider(dir.path(), "beta", &["+4421", "+1"]);
    crate::harness::add_provider_shared(dir.path(), "gamma", &["+442079"]);
    let list = cli(dir.path(), &["provider", "list"]);
    assert_eq!(String::from_utf8(list.stdout).unwrap(), "acme\t+4420,+49\nbeta\t+1,+4421\ngamma\t+442079\n");
}

#[test]
fn provider_add_prints_only_the_token_and_list_shows_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let t1 = crate::harness::add_provider(dir.path(), "acme", &["+44", "+4420"]);
    let t2 = crate::harness::add_provider(dir.path(), "beta", &["+49"]);
    assert!(t1.starts_with("tcd_") && t1.len() > 40 && t1 != t2, "{t1}");
    let dup = cli(dir.path(), &["provider", "add", "acme", "--prefix", "+1"]);
    assert!(!dup.status.success());
    assert!(dup.stdout.is_empty(), "no token for a failed add");
    let bad = cli(dir.path(), &["provider", "add", "gamma", "--prefix", "44"]);
    assert!(!bad.status.success(), "prefixes need a +");
    let none = cli(dir.path(), &["provider", "add", "delta"]);
    assert!(!none.status.success(), "at least one prefix");
    let list = cli(dir.path(), &["provider", "list"]);
    assert!(list.status.success());
    assert_eq!(String::from_utf8(list.stdout).unwrap(), "acme\t+44,+4420\nbeta\t+49\n");
}

#[test]
fn keys_generate_is_idempotent_and_supports_ed25519() {
    let dir = tempfile::tempdir().unwrap();
    let gen_ = cli(dir.path(), &["keys", "generate", "--algorithm", "ed25519", "--apex", "other.test"]);
    assert!(gen_.status.success(), "{}", String::from_utf8_lossy(&gen_.stderr));
    let out = cli(dir.path(), &["keys", "ds", "--apex", "other.test"]);
    let ds = String::from_utf8(out.stdout).unwrap();
    assert!(ds.starts_with("other.test. IN DS ") && ds.split_whitespace().nth(4) == Some("15"), "{ds}");
    let again = cli(dir.path(), &["keys", "generate", "--apex", "other.test"]);
    assert!(again.status.success());
    let out = cli(dir.path(), &["keys", "ds", "--apex", "other.test"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), ds, "no new keys");
    let missing = cli(dir.path(), &["keys", "ds", "--apex", "none.test"]);
    assert!(!missing.status.success(), "no keys yet for that apex");
}

#[test]
fn config_check_redacts_secrets_and_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[database]\nurl = \"postgres://dir:hunter2@127.0.0.1/dir\"\n[dns]\nlisten = \"127.0.0.1:5300\"\n\
         [dns.zone]\nrecord_ttl = 60\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["config", "check", "--config", good.to_str().unwrap(), "--apex", "e164.example"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("hunter2") && stdout.contains("[redacted]"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:5300") && stdout.contains("e164.example"), "{stdout}");
    assert!(stdout.contains("record_ttl = 60"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[dns]\napex = \".\"\n[dns.zone]\nsignature_validity = 100\nsignature_refresh = 200\n\
         [database]\nurl = \"mysql://x\"\n[api.rate_limit]\nburst = 0\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["config", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for key in ["dns.apex", "dns.zone.signature_refresh", "database.url", "api.rate_limit.burst"] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[dns]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    let out = cli(dir.path(), &["config", "check", "--config", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_addr"));
}

#[tokio::test]
async fn postgres_backend_serves_and_survives_a_restart() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = [("TINCAN_DIRECTORY_DATABASE__URL", pg.url())];
    let out = cli_env(dir.path(), &["provider", "add", "acme", "--prefix", "+44"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut d = Directory::start_with(dir.path(), &env).await;
    let stored = register(&d, &token).await;
    assert!(d.guard.stop().expect("stopped").success());
    drop(d);
    assert!(!dir.path().join("directory.sqlite3").exists(), "nothing went to SQLite");

    let d = Directory::start_with(dir.path(), &env).await;
    signed_within(d.dns, &owner(NUMBER), RecordType::NAPTR, Instant::now()).await;
    let got: Value = d
        .http
        .get(d.url(&format!("/v1/numbers/{NUMBER}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, stored);
    let ds = cli_env(dir.path(), &["keys", "ds"], &env);
    assert!(ds.status.success() && String::from_utf8_lossy(&ds.stdout).starts_with(APEX));
}
