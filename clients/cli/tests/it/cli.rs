//! Running `tincan`: arguments, output, errors.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `tincan --data-dir DIR ARGS…` with no stdin.
pub fn tincan(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tincan"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("TINCAN_CLI_EXT_URL")
        .env_remove("TINCAN_CLI_DNS")
        .env_remove("TINCAN_CLI_TRUST_ANCHOR")
        .stdin(Stdio::null())
        .output()
        .expect("tincan runs")
}

/// stdout as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout as one JSON document.
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", out(o), err(o)))
}

#[test]
fn status_without_a_session() {
    let d = tempfile::tempdir().unwrap();
    let o = tincan(d.path(), &["--json", "status"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(json(&o)["signed_in"], false);
    let o = tincan(d.path(), &["status"]);
    assert!(out(&o).contains("Not signed in"));
}

#[test]
fn typed_errors_without_services() {
    let d = tempfile::tempdir().unwrap();
    let o = tincan(d.path(), &["--json", "whois", "+442079460001"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["error"]["code"], "no_directory");
    let o = tincan(d.path(), &["--json", "register", "+442079460001"]);
    assert_eq!(json(&o)["error"]["code"], "no_extension");
    let o = tincan(d.path(), &["--json", "verify", "123456"]);
    assert_eq!(json(&o)["error"]["code"], "no_pending_registration");
    let o = tincan(d.path(), &["whois", "not-a-number"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not a valid phone number"), "{}", err(&o));
}

#[test]
fn contacts_import_needs_a_session_but_reads_the_file_first() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.txt");
    std::fs::write(&f, "+442079460001\nnope\n").unwrap();
    let o = tincan(d.path(), &["--json", "contacts", "import", f.to_str().unwrap()]);
    assert!(err(&o).contains("skipped (not an international number): nope"), "{}", err(&o));
    assert_eq!(json(&o)["error"]["code"], "no_extension");
}

#[test]
fn an_earlier_versions_data_dir_is_refused_with_a_clear_error_and_left_as_it_was() {
    let d = tempfile::tempdir().unwrap();
    // What an earlier version wrote after signing in: the access token in clear, no key file.
    let old = br#"{"session": {"homeserver_url": "http://127.0.0.1:9", "number": "+442079460001",
        "matrix": {"user_id": "@a:hs.test", "device_id": "DEV", "access_token": "syt_clear"},
        "key_published": true}, "pending": null, "contacts": {}}"#;
    std::fs::write(d.path().join("state.json"), old).unwrap();
    let o = tincan(d.path(), &["--json", "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(json(&o)["error"]["code"], "unencrypted_data_dir");
    let o = tincan(d.path(), &["status"]);
    assert!(err(&o).contains("earlier version of tincan") && err(&o).contains("sign in again"), "{}", err(&o));
    assert_eq!(std::fs::read(d.path().join("state.json")).unwrap(), old);
    assert!(!d.path().join("store.key").exists());
}
