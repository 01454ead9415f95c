//! The binary's own subcommands: `config check` and `registration`.

use std::process::Command;

fn ext(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tincan-ext")).args(args).envs(env.iter().copied()).output().unwrap()
}

#[test]
fn config_check_reports_problems_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ext.toml");
    std::fs::write(&file, "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"supersecret-0123456789\"\n")
        .unwrap();
    let ok = ext(&["--config", file.to_str().unwrap(), "config", "check"], &[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let printed = String::from_utf8(ok.stdout).unwrap();
    assert!(printed.contains("hs.test") && !printed.contains("supersecret"), "{printed}");

    // Environment overrides are validated too; every problem is named.
    let bad = ext(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[("TINCAN_EXT_SMS__BACKEND", "webhook"), ("TINCAN_EXT_LIMITS__BLOCKED_PREFIXES", "[\"44\"]")],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(err.contains("sms.webhook_url") && err.contains("limits.blocked_prefixes"), "{err}");

    std::fs::write(&file, "sever_name = \"typo\"\n").unwrap();
    let typo = ext(&["--config", file.to_str().unwrap(), "config", "check"], &[]);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("sever_name"));
}

#[test]
fn registration_prints_the_appservice_file() {
    let out = ext(
        &["registration"],
        &[
            ("TINCAN_EXT_SERVER_NAME", "hs.test"),
            ("TINCAN_EXT_HOMESERVER__BACKEND", "appservice"),
            ("TINCAN_EXT_HOMESERVER__AS_TOKEN", "astok"),
            ("TINCAN_EXT_HOMESERVER__HS_TOKEN", "hstok"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reg["as_token"], "astok");
    assert_eq!(reg["namespaces"]["users"][0]["regex"], "@tc_.*:hs\\.test");
}
