//! The binary's own subcommands: `config check` and `registration`.

use std::process::Command;
use std::time::{Duration, Instant};

fn ext(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tincan-ext")).args(args).envs(env.iter().copied()).output().unwrap()
}

#[test]
fn config_check_reports_problems_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ext.toml");
    std::fs::write(&file, format!("{CHOSEN}[homeserver]\njwt_secret = \"supersecret-0123456789\"\n")).unwrap();
    let ok = ext(&["--config", file.to_str().unwrap(), "config", "check"], &[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let printed = String::from_utf8(ok.stdout).unwrap();
    assert!(printed.contains("hs.test") && !printed.contains("supersecret"), "{printed}");

    // Environment overrides are validated too; every problem is named.
    let bad = ext(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[("TINCAN_EXT_SMS__WEBHOOK_URL", "not a url"), ("TINCAN_EXT_LIMITS__BLOCKED_PREFIXES", "[\"44\"]")],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(err.contains("sms.webhook_url") && err.contains("limits.blocked_prefixes"), "{err}");

    std::fs::write(&file, "sever_name = \"typo\"\n").unwrap();
    let typo = ext(&["--config", file.to_str().unwrap(), "config", "check"], &[]);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("sever_name"));
}

/// What an operator must choose: the SMS backend, the code-hash key, the countries.
const CHOSEN: &str = "server_name = \"hs.test\"\n\
                      [limits]\nallowed_countries = [\"GB\"]\n\
                      [codes]\nsecret = \"test-only-code-secret-0123456789abcdef\"\n\
                      [sms]\nbackend = \"webhook\"\nwebhook_url = \"https://sms.example/send\"\n";

#[test]
fn the_sms_backend_must_be_chosen_and_the_dev_sink_needs_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ext.toml");
    let config = file.to_str().unwrap();
    // Not chosen: the config check says so.
    std::fs::write(&file, "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"supersecret-0123456789\"\n")
        .unwrap();
    let unset = ext(&["--config", config, "config", "check"], &[]);
    let err = String::from_utf8_lossy(&unset.stderr);
    assert!(!unset.status.success() && err.contains("sms.backend: not chosen"), "{err}");

    // The dev sink: refused without `serve --dev-sms`, before anything listens.
    let port = tincan_testkit::ports::free_port();
    std::fs::write(
        &file,
        format!(
            "{}listen = \"127.0.0.1:{port}\"\ndatabase_url = \"sqlite://{}?mode=rwc\"\n\
             [codes]\nsecret = \"test-only-code-secret-0123456789abcdef\"\n\
             [limits]\nallowed_countries = [\"*\"]\n\
             [homeserver]\njwt_secret = \"supersecret-0123456789\"\n[sms]\nbackend = \"dev\"\ndev_file = \"{}\"\n",
            "server_name = \"hs.test\"\n",
            dir.path().join("ext.db").display(),
            dir.path().join("sms.jsonl").display(),
        ),
    )
    .unwrap();
    let (status, log) = serve(&["--config", config, "serve"], Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve with the dev sink and no flag must not run: {status:?}\n{log}"
    );
    assert!(log.contains("--dev-sms"), "{log}");
    // With the flag it serves, and says at every start that codes are not sent: the first (a new database)
    // and the next, on the database the first made.
    for start in ["first", "second"] {
        let (status, log) = serve(&["--config", config, "serve", "--dev-sms"], Duration::from_secs(3));
        assert!(status.is_none(), "serve --dev-sms stopped at the {start} start: {status:?}\n{log}");
        assert!(log.contains("WARN") && log.contains("codes are NOT sent"), "no warning at the {start} start: {log}");
        assert!(dir.path().join("ext.db").exists(), "the {start} start made no database");
    }
}

/// Runs `tincan-ext ARGS` for at most `limit`: its exit status (`None` when still running, then killed) and
/// its output.
fn serve(args: &[&str], limit: Duration) -> (Option<std::process::ExitStatus>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tincan-ext"))
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::options().append(true).open(&out).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&out).unwrap())
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
            ("TINCAN_EXT_CODES__SECRET", "test-only-code-secret-0123456789abcdef"),
            ("TINCAN_EXT_SMS__BACKEND", "dev"),
            ("TINCAN_EXT_LIMITS__ALLOWED_COUNTRIES", "[\"*\"]"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reg = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = reg.lines().collect();
    assert!(lines.contains(&"as_token: \"astok\""), "{reg}");
    assert!(lines.contains(&"hs_token: \"hstok\""), "{reg}");
    assert!(lines.contains(&"      regex: \"@tc_.*:hs\\\\.test\""), "{reg}");
}
