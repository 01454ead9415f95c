//! `numbers import`: a good file is imported and served signed after a restart without re-signing; a bad line
//! writes nothing; a rerun is idempotent; progress goes to stderr; SQLite and PostgreSQL.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::harness::{Directory, add_provider, cli_env, owner, query, signed_answer};

const KEY: &str = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY";

fn line(n: &str, user: &str, key: bool) -> String {
    let mut v = json!({"e164": n, "services": [
        {"type": "matrix", "uri": format!("matrix:u/{user}:hs.test")},
        {"type": "sip", "uri": format!("sip:{n}@sip.test")},
    ]});
    if key {
        v["ed25519"] = json!(KEY);
    }
    v.to_string()
}

/// Numbers +44207946100..+442079461(n-1), every third with a key.
fn good_file(dir: &Path, n: usize) -> std::path::PathBuf {
    let text: Vec<String> = (0..n).map(|i| line(&format!("+4420794610{i:02}"), &format!("u{i}"), i % 3 == 0)).collect();
    let path = dir.join("numbers.jsonl");
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

fn import(dir: &Path, file: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["numbers", "import", "--provider", "acme"];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    cli_env(dir, &args, env)
}

/// The log without terminal colour codes (`ESC [ … m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().take_while(|&c| c != 'm').for_each(drop);
        } else {
            out.push(c);
        }
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn serve_and_check(dir: &Path, env: &[(&str, &str)], n: usize) {
    let mut d = Directory::start_with(dir, env).await;
    for i in [0, n / 2, n - 1] {
        let r = query(d.dns, &owner(&format!("+4420794610{i:02}")), RecordType::NAPTR).await;
        assert!(signed_answer(&r, RecordType::NAPTR), "number {i}: {r:?}");
    }
    let r = query(d.dns, &owner("+442079461000"), RecordType::TXT).await;
    assert!(signed_answer(&r, RecordType::TXT), "key of number 0: {r:?}");
    // The signatures made at import were stored with the numbers: the start-up loads them, signs none.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = strip_ansi(&d.guard.log_tail(200));
        if log.contains("signatures loaded from storage") {
            assert!(log.contains(&format!("loaded_signed={n}")) && log.contains("to_sign=0"), "{log}");
            assert!(!log.contains("signatures refreshed"), "nothing re-signed at start: {log}");
            break;
        }
        assert!(Instant::now() < deadline, "no load line: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.guard.stop().expect("stopped").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_writes_signed_numbers_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    add_provider(dir.path(), "acme", &["+44"]);
    let file = good_file(dir.path(), 30);
    let out = import(dir.path(), &file, &["--batch", "7", "--progress-secs", "0"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("imported 30 numbers for acme: 30 added, 0 changed, 0 unchanged"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("validated 30 numbers") && stderr.contains("written 7/30"), "progress: {stderr}");
    assert!(stderr.contains("written 30/30"), "{stderr}");

    let out = import(dir.path(), &file, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 added, 0 changed, 30 unchanged"), "{}", text(&out.stdout));

    // One changed line: only it is rewritten; numbers without `ed25519` keep their key.
    let mut lines: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(str::to_owned).collect();
    lines[1] = line("+442079461001", "renamed", false);
    lines[3] = line("+442079461003", "u3", false);
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = import(dir.path(), &file, &[], &[]);
    assert!(text(&out.stdout).contains("0 added, 1 changed, 29 unchanged"), "{}", text(&out.stdout));

    serve_and_check(dir.path(), &[], 30).await;
}

#[tokio::test]
async fn a_bad_line_fails_the_import_naming_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    add_provider(dir.path(), "acme", &["+44"]);
    crate::harness::add_provider_shared(dir.path(), "other", &["+4420"]);
    let good = line("+442079461000", "a", true);
    let held = dir.path().join("held.jsonl");
    std::fs::write(&held, line("+442079461099", "x", false)).unwrap();
    let out = cli_env(dir.path(), &["numbers", "import", "--provider", "other", held.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let cases = [
        ("not json", "invalid_json"),
        (&line("+4420 7946 1001", "b", false), "invalid_number"),
        (&line("+4915112345678", "b", false), "outside_prefixes"),
        (&line("+442079461099", "b", false), "number_held_by_other_provider"),
        (r#"{"e164":"+442079461001","services":[{"type":"fax","uri":"tel:+1"}]}"#, "unknown_service_type"),
        (r#"{"e164":"+442079461001","services":[{"type":"matrix","uri":"http://x"}]}"#, "invalid_uri"),
        (r#"{"e164":"+442079461001","services":[]}"#, "no_services"),
        (
            r#"{"e164":"+442079461001","services":[{"type":"matrix","uri":"matrix:u/b:hs.test"}],"ed25519":"x"}"#,
            "invalid_key",
        ),
        (r#"{"e164":"+442079461001","services":[],"extra":1}"#, "invalid_json"),
        (&good, "already appears on line 1"),
    ];
    for (bad, expect) in cases {
        let file = dir.path().join("bad.jsonl");
        std::fs::write(&file, format!("{good}\n\n{bad}\n{}\n", line("+442079461002", "c", false))).unwrap();
        let out = import(dir.path(), &file, &["--batch", "1"], &[]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{bad}: accepted");
        assert!(stderr.contains("line 3:") && stderr.contains(expect), "{bad}: {stderr}");
    }
    assert!(import(dir.path(), &dir.path().join("missing.jsonl"), &[], &[]).status.code() == Some(1));
    let file = good_file(dir.path(), 3);
    let out = cli_env(dir.path(), &["numbers", "import", "--provider", "nobody", file.to_str().unwrap()], &[]);
    assert!(text(&out.stderr).contains("no provider named \"nobody\""), "{}", text(&out.stderr));

    // Nothing of the failed imports was written: all three numbers are new now.
    let out = import(dir.path(), &file, &[], &[]);
    assert!(text(&out.stdout).contains("3 added, 0 changed, 0 unchanged"), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_works_on_postgres() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = [("TINCAN_DIRECTORY_DATABASE__URL", pg.url())];
    let out = cli_env(dir.path(), &["provider", "add", "acme", "--prefix", "+44"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = good_file(dir.path(), 12);
    let out = import(dir.path(), &file, &["--batch", "5"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("12 added"), "{}", text(&out.stdout));
    let out = import(dir.path(), &file, &[], &env);
    assert!(text(&out.stdout).contains("12 unchanged"), "{}", text(&out.stdout));
    serve_and_check(dir.path(), &env, 12).await;
}
