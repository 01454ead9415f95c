//! Codes at rest and error bodies: a database dump reveals no live code (the hash is keyed by `codes.secret`,
//! read here from a `*_FILE`), and a 5xx body never carries the internal error (a webhook URL with its key),
//! only a reference that is in the log.

use crate::harness::{Api, Ext};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const BASE: &str = "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"at-rest-secret-0123456789\"\n";

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

#[tokio::test]
async fn a_database_dump_does_not_give_the_code() {
    let keydir = tempfile::tempdir().unwrap();
    let key_file = keydir.path().join("code-secret");
    let secret = "from-a-file-0123456789abcdef0123456789";
    std::fs::write(&key_file, format!("{secret}\n")).unwrap();
    let ext =
        Ext::start_env(None, BASE, &[("TINCAN_EXT_CODES__SECRET_FILE", key_file.to_str().unwrap())]).await.unwrap();
    let phone = "+447911123600";
    let (s, b) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": phone, "client_secret": "dump", "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let code = ext.last_code(phone);
    // Everything the database holds about the session.
    let row = ext.store().await.session(b["sid"].as_str().unwrap()).await.unwrap().unwrap();
    // An attacker with the dump tries every code under every key the row offers (the sid alone was the key).
    let keys = [row.sid.as_str(), row.client_secret_digest.as_str(), row.number.as_str()];
    let found: Vec<String> = (0..1_000_000u32)
        .map(|c| format!("{c:06}"))
        .filter(|c| keys.iter().any(|k| hmac(k.as_bytes(), &[c.as_bytes()]) == row.code_hash))
        .collect();
    assert!(found.is_empty(), "the dump alone gave the code: {found:?} (the SMS said {code})");
    // The key is the one from the file.
    assert_eq!(row.code_hash, hmac(secret.as_bytes(), &[row.sid.as_bytes(), &[0], code.as_bytes()]));
    let (s, v) = ext
        .post("/_tincan/client/v1/register/verify", json!({"sid": row.sid, "client_secret": "dump", "code": code}))
        .await;
    // The homeserver is not running: the code was accepted (a 502 from the login step, not a wrong code).
    assert_ne!(v["errcode"], "M_THREEPID_AUTH_FAILED", "{s} {v}");
}

#[tokio::test]
async fn a_server_error_body_has_a_reference_not_the_webhook_key() {
    let closed = tincan_testkit::ports::free_port();
    let ext = Ext::start(&format!(
        "{BASE}[sms]\nbackend = \"webhook\"\nwebhook_url = \"http://127.0.0.1:{closed}/send?key=pumpkin-webhook-key\"\n"
    ))
    .await
    .unwrap();
    let (s, b) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": "+447911123601", "client_secret": "err", "send_attempt": 1}),
        )
        .await;
    assert_eq!((s, b["errcode"].as_str().unwrap()), (502, "M_UNKNOWN"), "{b}");
    let message = b["error"].as_str().unwrap();
    assert!(!message.contains("pumpkin") && !message.contains("127.0.0.1"), "internal detail in the body: {b}");
    let reference = message.strip_prefix("internal error; reference ").expect("a reference");
    assert_eq!(reference.len(), 16, "{message}");
    // The log has the reference beside the whole error.
    let log = std::fs::read_to_string(ext.dir.path().join("ext.log")).unwrap();
    let line =
        log.lines().find(|l| l.contains(reference)).unwrap_or_else(|| panic!("{reference} not in the log:\n{log}"));
    assert!(line.contains("SMS webhook"), "{line}");
}
