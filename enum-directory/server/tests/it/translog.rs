//! The transparency log over the real binary: tree heads signed with the log key, inclusion and consistency
//! proofs verifying over the API, who may read entries, start-up refusing a head its leaves do not produce,
//! and `audit` passing on an honest directory and failing,
//! naming the number, when a stored log entry or a published record is changed behind the log's back.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tincan_testkit::ChildGuard;
use tincan_testkit::ports::free_port;
use tincan_translog::wire::{ConsistencyProof, Entries, InclusionProof, SthResponse};
use tincan_translog::{LogEntry, TreeHeadVerifier};

use crate::harness::{Directory, bin, ds};

const AUDITOR: &str = "auditor-token-1";
const ENV: &[(&str, &str)] = &[("TINCAN_DIRECTORY_LOG__AUDITOR_TOKENS", "[auditor-token-1]")];

async fn put(d: &Directory, token: &str, number: &str, user: &str) {
    let body = json!({"services": [{"type": "matrix", "uri": format!("matrix:u/{user}:hs.test")}]});
    let r = d.http.put(d.url(&format!("/v1/numbers/{number}"))).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

async fn sth(d: &Directory) -> SthResponse {
    let r = d.http.get(d.url("/v1/log/sth")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn get(d: &Directory, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = d.http.get(d.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn audit(d: &Directory, extra: &[&str]) -> Output {
    let anchor = ds(&d.data_dir).remove(0);
    let url = format!("http://{}", d.api);
    let dns = d.dns.to_string();
    let mut args = vec!["audit", "--url", &url, "--dns", &dns, "--anchor", &anchor];
    args.extend_from_slice(extra);
    bin().args(&args).env("RUST_LOG", "warn").output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

async fn sqlite(data_dir: &Path, sql: &str) {
    let url = format!("sqlite://{}", data_dir.join("directory.sqlite3").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
    pool.close().await;
}

async fn has_column(data_dir: &Path, table: &str, column: &str) -> bool {
    let url = format!("sqlite://{}", data_dir.join("directory.sqlite3").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{column}'");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n > 0
}

#[tokio::test]
async fn proofs_verify_over_the_api_and_entries_need_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start_with(dir.path(), ENV).await;
    let acme = d.add_provider("acme", &["+44"]);
    let beta = d.add_provider("beta", &["+49"]);

    let first = sth(&d).await;
    let key = TreeHeadVerifier::from_base64(&first.log_key).unwrap();
    key.verify(&first.sth).unwrap();
    assert_eq!(first.sth.head.tree_size, 2, "the zone's first KSK and ZSK are logged");

    put(&d, &acme, "+442079460001", "alice").await;
    put(&d, &beta, "+4915112345678", "bob").await;
    put(&d, &acme, "+442079460001", "alice2").await;
    let second = sth(&d).await;
    key.verify(&second.sth).unwrap();
    assert_eq!(second.sth.head.tree_size, 5);
    assert_eq!(sth(&d).await, second, "a size is signed once");

    // Inclusion: the newest entry of a number, or a given version's.
    let (status, body) = get(&d, "/v1/log/proof/inclusion?number=%2B442079460001", None).await;
    assert_eq!(status, 200, "{body}");
    let p: InclusionProof = serde_json::from_value(body).unwrap();
    key.verify(&p.sth).unwrap();
    p.verify().unwrap();
    match LogEntry::parse(&p.entry).unwrap() {
        LogEntry::Number { record: Some(r), .. } => assert_eq!(r.services[0].uri(), "matrix:u/alice2:hs.test"),
        other => panic!("{other:?}"),
    }
    let (_, body) = get(&d, "/v1/log/proof/inclusion?number=%2B442079460001&version=1", None).await;
    let old: InclusionProof = serde_json::from_value(body).unwrap();
    old.verify().unwrap();
    assert_eq!(old.index, 2);
    let (status, _) = get(&d, "/v1/log/proof/inclusion?number=%2B12025550143", None).await;
    assert_eq!(status, 404);
    let (status, body) = get(&d, "/v1/log/proof/inclusion?number=banana", None).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("invalid_number")));

    // Consistency between the two heads, and the typed errors.
    let (status, body) = get(&d, "/v1/log/proof/consistency?from=2&to=5", None).await;
    assert_eq!(status, 200, "{body}");
    let c: ConsistencyProof = serde_json::from_value(body).unwrap();
    c.verify_between(&first.sth, &second.sth).unwrap();
    let (status, body) = get(&d, "/v1/log/proof/consistency?from=5&to=2", None).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("log_out_of_range")));
    let (status, body) = get(&d, "/v1/log/proof/consistency?from=1&to=99", None).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("log_out_of_range")));
    let (status, body) = get(&d, "/v1/log/proof/consistency?to=2", None).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("invalid_query")));

    // Entries: not without a token; a provider sees its own entries and the key changes; an auditor all.
    let (status, _) = get(&d, "/v1/log/entries", None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&d, "/v1/log/entries", Some("wrong")).await;
    assert_eq!(status, 401);
    let clear = |body: Value| -> Vec<bool> {
        let e: Entries = serde_json::from_value(body).unwrap();
        e.entries.iter().map(|e| e.entry.is_some()).collect()
    };
    let (status, body) = get(&d, "/v1/log/entries?start=0&end=5", Some(&acme)).await;
    assert_eq!(status, 200);
    assert_eq!(clear(body), [true, true, true, false, true], "beta's entry is only a leaf hash to acme");
    let (_, body) = get(&d, "/v1/log/entries", Some(AUDITOR)).await;
    assert_eq!(clear(body), [true; 5]);
    // The auditor reads beta's entry itself: bob's number and record, made by beta, verifying against its leaf.
    let (_, body) = get(&d, "/v1/log/entries?start=3&end=4", Some(AUDITOR)).await;
    let e: Entries = serde_json::from_value(body).unwrap();
    let [only] = &e.entries[..] else { panic!("one entry asked for: {e:?}") };
    assert_eq!(only.index, 3);
    let entry = only.entry.as_deref().expect("in clear for the auditor");
    assert_eq!(only.leaf_hash, tincan_translog::leaf_hash(entry.as_bytes()));
    match LogEntry::parse(entry).unwrap() {
        LogEntry::Number { number, record: Some(r), provider, .. } => {
            assert_eq!(number.as_str(), "+4915112345678");
            assert_eq!(r.services[0].uri(), "matrix:u/bob:hs.test");
            assert_eq!(provider, Some(2), "beta, the second provider added");
        }
        other => panic!("not bob's entry: {other:?}"),
    }
}

#[tokio::test]
async fn audit_passes_then_names_the_number_of_an_altered_entry_or_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Directory::start_with(dir.path(), ENV).await;
    let acme = d.add_provider("acme", &["+44"]);
    put(&d, &acme, "+442079460001", "alice").await;
    put(&d, &acme, "+442079460002", "bob").await;
    put(&d, &acme, "+442079460003", "carol").await;
    let r = d.http.delete(d.url("/v1/numbers/+442079460003")).bearer_auth(&acme).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let saved = dir.path().join("sth.json");
    let saved_arg = saved.to_str().unwrap();
    let out = audit(&d, &["--token", AUDITOR, "--save-sth", saved_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 numbers checked in DNS"), "{}", text(&out));

    // More changes: consistent with the saved head; a provider's token checks its own numbers.
    put(&d, &acme, "+442079460004", "dave").await;
    let out = audit(&d, &["--token", &acme, "--from-sth", saved_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("consistent with the saved head of 6"), "{}", text(&out));
    // Without a token, only the numbers named are checked.
    let out = audit(&d, &["--number", "+442079460001", "--number", "+442079460009"]);
    assert!(out.status.success(), "{}", text(&out));

    // A stored entry altered behind the log's back.
    sqlite(&d.data_dir, "UPDATE translog SET entry = replace(entry, 'alice', 'mallory') WHERE e164 = '+442079460001'")
        .await;
    let out = audit(&d, &["--token", AUDITOR]);
    assert!(!out.status.success(), "audit passed over an altered entry");
    assert!(text(&out).contains("+442079460001"), "{}", text(&out));
    sqlite(&d.data_dir, "UPDATE translog SET entry = replace(entry, 'mallory', 'alice') WHERE e164 = '+442079460001'")
        .await;
    let out = audit(&d, &["--token", AUDITOR]);
    assert!(out.status.success(), "restored: {}", text(&out));

    // A published record changed in storage behind the log's back (and served after a restart; any signed copy
    // kept with the row is dropped so the directory signs the altered record).
    let cached = if has_column(&d.data_dir, "numbers", "signed").await { ", signed = NULL" } else { "" };
    sqlite(
        &d.data_dir,
        &format!(
            "UPDATE numbers SET services = replace(services, 'bob', 'mallory'){cached} WHERE e164 = '+442079460002'"
        ),
    )
    .await;
    assert!(d.guard.stop().expect("stopped").success());
    drop(d);
    let d = Directory::start_with(dir.path(), ENV).await;
    let out = audit(&d, &["--token", AUDITOR]);
    assert!(!out.status.success(), "audit passed over an altered record");
    let t = text(&out);
    assert!(t.contains("+442079460002") && t.contains("mallory"), "{t}");
    // Even without a token, naming the number finds it.
    let out = audit(&d, &["--number", "+442079460002"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("+442079460002"), "{}", text(&out));
}

/// Copies the live database to `to` (`VACUUM INTO`, an online backup).
async fn backup(data_dir: &Path, to: &Path) {
    let url = format!("sqlite://{}", data_dir.join("directory.sqlite3").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let sql = format!("VACUUM INTO '{}'", to.display());
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    pool.close().await;
}

/// Replaces the data dir's database with `file` whose `table` is taken from `other` (a partial restore).
async fn restore(data_dir: &Path, file: &Path, table: &str, other: &Path) {
    let db = data_dir.join("directory.sqlite3");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data_dir.join(format!("directory.sqlite3{suffix}")));
    }
    std::fs::copy(file, &db).unwrap();
    let url = format!("sqlite://{}", db.display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    for sql in [
        format!("ATTACH '{}' AS other", other.display()),
        format!("DELETE FROM {table}"),
        format!("INSERT INTO {table} SELECT * FROM other.{table}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
}

/// A restore that lost leaves a signed head covers stops start-up with an error naming both sizes (serving on
/// would fork the log); heads older than the leaves are fine, and the head signed then is the old one's root.
#[tokio::test]
async fn start_up_refuses_a_signed_head_the_stored_leaves_do_not_produce() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.sqlite3");
    let new = dir.path().join("new.sqlite3");
    let mut d = Directory::start_with(dir.path(), ENV).await;
    let acme = d.add_provider("acme", &["+44"]);
    put(&d, &acme, "+442079460001", "alice").await;
    assert_eq!(sth(&d).await.sth.head.tree_size, 3);
    backup(dir.path(), &old).await;
    put(&d, &acme, "+442079460002", "bob").await;
    put(&d, &acme, "+442079460003", "carol").await;
    let newest = sth(&d).await;
    assert_eq!(newest.sth.head.tree_size, 5);
    backup(dir.path(), &new).await;
    assert!(d.guard.stop().expect("stopped").success());
    drop(d);

    // The old backup's leaves with the newer heads: start-up fails, saying why.
    restore(dir.path(), &old, "translog_sth", &new).await;
    let mut cmd = bin();
    let (dns, api) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    cmd.args(["serve", "--data-dir", dir.path().to_str().unwrap(), "--dns", &dns, "--api", &api]);
    cmd.env("RUST_LOG", "info");
    let mut guard = ChildGuard::spawn_logged("tincan-directory", cmd, dir.path().join("refused.log")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = guard.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running with a head beyond its leaves\n{}", guard.log_tail(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = guard.log_tail(20);
    assert!(!status.success(), "{out}");
    assert!(out.contains("signed tree head (size 5) is not produced by the stored log (3 leaves)"), "{out}");
    drop(guard);

    // The newer leaves with the old heads: a consistent log, served; its next head has the same root as the
    // lost one of that size.
    restore(dir.path(), &new, "translog_sth", &old).await;
    let d = Directory::start_with(dir.path(), ENV).await;
    let head = sth(&d).await;
    assert_eq!((head.sth.head.tree_size, head.sth.head.root_hash), (5, newest.sth.head.root_hash));
}
