//! A running `serve` follows changes written by others: `numbers import` and direct storage writes beside it on
//! one SQLite data dir, and a second `serve` node on the same PostgreSQL database; signatures the refresher
//! re-makes are written back to storage; and a gap in the journal is waited for, then skipped.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::json;
use tincan_common::SystemClock;
use tincan_directory::storage::{self, Storage};
use tincan_enum_core::E164;

use crate::harness::{APEX, Directory, cli_env, delv, owner, query, signed_answer};

const KEY: &str = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY";

/// How long a change made elsewhere may take to be answered (the follower reads every 250 ms by default).
const PATIENCE: Duration = Duration::from_secs(10);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn line(n: &str, user: &str) -> String {
    json!({"e164": n, "services": [{"type": "matrix", "uri": format!("matrix:u/{user}:hs.test")}], "ed25519": KEY})
        .to_string()
}

/// Polls until `name`'s `rtype` is answered signed (`present`) or not answered at all (`!present`).
async fn wait_for(dns: SocketAddr, name: &str, rtype: RecordType, present: bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = query(dns, name, rtype).await;
        let has = r.answers.iter().any(|a| a.record_type() == rtype);
        if (present && signed_answer(&r, rtype)) || (!present && !has) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {rtype}: still {} after {PATIENCE:?}: {r:?}",
            if present { "not answered signed" } else { "answered" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `name`'s NAPTR set names `user`.
async fn wait_for_user(dns: SocketAddr, name: &str, user: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = query(dns, name, RecordType::NAPTR).await;
        let records: String = r.answers.iter().map(|a| a.to_string()).collect();
        if signed_answer(&r, RecordType::NAPTR) && records.contains(&format!("u/{user}:")) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} does not name {user} after {PATIENCE:?}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// delv validates `name`'s `rtype` against the trust anchor from `keys ds` (run with `env`).
fn delv_validates(dir: &Path, env: &[(&str, &str)], dns: SocketAddr, name: &str, rtype: &str) -> String {
    let out = cli_env(dir, &["keys", "ds"], env);
    assert!(out.status.success(), "keys ds: {}", text(&out.stderr));
    let ds = text(&out.stdout);
    let f: Vec<&str> = ds.split_whitespace().collect();
    let anchor = dir.join("anchor.conf");
    std::fs::write(
        &anchor,
        format!("trust-anchors {{ \"{APEX}\" static-ds {} {} {} \"{}\"; }};\n", f[3], f[4], f[5], f[6]),
    )
    .unwrap();
    let out = delv(dns, &anchor, name, rtype);
    assert!(out.contains("; fully validated"), "{out}");
    out
}

async fn open(url: &str) -> Arc<dyn Storage> {
    storage::open(url, Arc::new(SystemClock)).await.unwrap()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("directory.sqlite3").display())
}

/// A sample from the `/metrics` text.
async fn metric(d: &Directory, series: &str) -> Option<u64> {
    let text = d.http.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Polls `/metrics` until `series` reaches `at_least` (counters are bumped just after the change they count);
/// returns its value.
async fn wait_metric(d: &Directory, series: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = metric(d, series).await.unwrap_or(0);
        if v >= at_least {
            return v;
        }
        assert!(Instant::now() < deadline, "{series} is {v} after {PATIENCE:?}, expected at least {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_imported_beside_a_running_server_are_answered_signed_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_env(dir.path(), &["provider", "add", "acme", "--prefix", "+44"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let d = Directory::start(dir.path()).await;
    let numbers: Vec<String> = (0..12).map(|i| format!("+4420794620{i:02}")).collect();
    let file = dir.path().join("numbers.jsonl");
    let lines: Vec<String> = numbers.iter().map(|n| line(n, "first")).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out =
        cli_env(dir.path(), &["numbers", "import", "--provider", "acme", "--batch", "5", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    for n in &numbers {
        wait_for(d.dns, &owner(n), RecordType::NAPTR, true).await;
    }
    wait_for(d.dns, &owner(&numbers[0]), RecordType::TXT, true).await;
    let out = delv_validates(dir.path(), &[], d.dns, &owner(&numbers[3]), "NAPTR");
    assert!(out.contains("u/first:"), "{out}");
    delv_validates(dir.path(), &[], d.dns, &owner(&numbers[3]), "TXT");

    // A second import changes one number; a delete made by another process (here, the test's own storage
    // handle) disappears.
    std::fs::write(&file, line(&numbers[1], "second")).unwrap();
    let out = cli_env(dir.path(), &["numbers", "import", "--provider", "acme", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for_user(d.dns, &owner(&numbers[1]), "second").await;
    let s = open(&sqlite_url(dir.path())).await;
    let mut tx = s.begin().await.unwrap();
    assert!(tx.numbers().delete(&E164::parse(&numbers[2]).unwrap(), None).await.unwrap().is_some());
    tx.commit().await.unwrap();
    drop(s);
    wait_for(d.dns, &owner(&numbers[2]), RecordType::NAPTR, false).await;
    wait_for(d.dns, &owner(&numbers[2]), RecordType::TXT, false).await;
    wait_for(d.dns, &owner(&numbers[4]), RecordType::NAPTR, true).await;
    let applied = wait_metric(&d, "tincan_directory_follower_changes_total", 14).await;
    assert_eq!(applied, 14, "12 imported, 1 changed, 1 deleted");

    // Its own API writes are answered at once and the follower's reading them back changes nothing more.
    let token = d.add_provider("beta", &["+49"]);
    let r = d
        .http
        .put(d.url("/v1/numbers/+4915112345678"))
        .bearer_auth(&token)
        .json(&json!({"services": [{"type": "matrix", "uri": "matrix:u/api:hs.test"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    wait_for(d.dns, &owner("+4915112345678"), RecordType::NAPTR, true).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(metric(&d, "tincan_directory_follower_changes_total").await.unwrap(), applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_database_answer_each_others_writes() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("TINCAN_DIRECTORY_DATABASE__URL", pg.url())];
    let out = cli_env(dir_a.path(), &["provider", "add", "acme", "--prefix", "+44"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let a = Directory::start_with(dir_a.path(), &env).await;
    let b = Directory::start_with(dir_b.path(), &env).await;

    let number = "+442079463001";
    let body = json!({"services": [{"type": "matrix", "uri": "matrix:u/alice:hs.test"}]});
    let r = a.http.put(a.url(&format!("/v1/numbers/{number}"))).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = a.http.put(a.url(&format!("/v1/numbers/{number}/key"))).bearer_auth(&token).json(&json!({"ed25519": KEY}));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 200);
    wait_for(b.dns, &owner(number), RecordType::NAPTR, true).await;
    wait_for(b.dns, &owner(number), RecordType::TXT, true).await;
    let out = delv_validates(dir_b.path(), &env, b.dns, &owner(number), "NAPTR");
    assert!(out.contains("u/alice:"), "{out}");

    let r = b.http.delete(b.url(&format!("/v1/numbers/{number}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    wait_for(b.dns, &owner(number), RecordType::NAPTR, false).await;
    wait_for(a.dns, &owner(number), RecordType::NAPTR, false).await;
    wait_for(a.dns, &owner(number), RecordType::TXT, false).await;
    wait_metric(&b, "tincan_directory_follower_changes_total", 1).await;
    wait_metric(&a, "tincan_directory_follower_changes_total", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_signatures_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    // Signatures valid 40 s, re-made once less than 36 s remain: the refresher (every second) re-makes them
    // within a few seconds of each signing.
    let env = [
        ("TINCAN_DIRECTORY_DNS__ZONE__SIGNATURE_VALIDITY", "40"),
        ("TINCAN_DIRECTORY_DNS__ZONE__SIGNATURE_REFRESH", "36"),
        ("TINCAN_DIRECTORY_DNS__SERVER__REFRESH_INTERVAL_SECS", "1"),
    ];
    let d = Directory::start_with(dir.path(), &env).await;
    let token = d.add_provider("acme", &["+44"]);
    let number = E164::parse("+442079464001").unwrap();
    let body = json!({"services": [{"type": "matrix", "uri": "matrix:u/alice:hs.test"}]});
    let r = d.http.put(d.url(&format!("/v1/numbers/{number}"))).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = d.http.put(d.url(&format!("/v1/numbers/{number}/key"))).bearer_auth(&token).json(&json!({"ed25519": KEY}));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 200);

    let s = open(&sqlite_url(dir.path())).await;
    let stored = || async {
        let mut tx = s.begin().await.unwrap();
        let mut rows = tx.numbers().current(std::slice::from_ref(&number)).await.unwrap();
        assert_eq!(rows.len(), 1);
        rows.remove(0)
    };
    let first = stored().await;
    assert!(first.signed.is_some(), "signed at the write");
    let deadline = Instant::now() + Duration::from_secs(30);
    let later = loop {
        let now = stored().await;
        if now.signed != first.signed {
            break now;
        }
        assert!(Instant::now() < deadline, "stored signatures unchanged after 30 s\n{}", d.guard.log_tail(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((&later.record, later.version), (&first.record, first.version), "only the signatures changed");
    wait_metric(&d, "tincan_directory_refreshed_signatures_stored_total{result=\"stored\"}", 1).await;
    assert!(d.guard.log_tail(200).contains("signatures refreshed"));
}

/// A journal cut short by hand (a version missing before the ones not yet applied): the follower waits
/// `GAP_PATIENCE` steps for it (a write still committing would fill it), publishing nothing past it, then
/// applies what follows; the number whose entry is gone stays unpublished until it changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_journal_is_waited_for_then_skipped() {
    use tincan_directory::api::WriteLock;
    use tincan_directory::dns::KeyAlgorithm;
    use tincan_directory::follow::{FollowError, Follower, GAP_PATIENCE};
    use tincan_directory::metrics::FollowCounters;
    use tincan_directory::storage::TokenHash;
    use tincan_enum_core::ServiceType;

    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let storage = open(&url).await;
    let mut tx = storage.begin().await.unwrap();
    let acme = tx.providers().add("acme", TokenHash::of("t"), &[]).await.unwrap().id;
    let applied = tx.journal().current_version().await.unwrap();
    tx.commit().await.unwrap();
    let zone = crate::dns_support::zone_with(Arc::new(SystemClock), KeyAlgorithm::EcdsaP256Sha256, &[]);
    let counters = Arc::new(FollowCounters::default());
    let mut follower =
        Follower::new(storage.clone(), zone.clone(), zone.clone(), WriteLock::default(), counters, applied);

    let numbers = ["+442079460101", "+442079460102", "+442079460103"];
    for (i, n) in numbers.iter().enumerate() {
        let r = crate::dns_support::record(n, &[(ServiceType::Matrix, &format!("matrix:u/u{i}:hs.test"))], None);
        let mut tx = storage.begin().await.unwrap();
        tx.numbers().put(&r, acme).await.unwrap();
        tx.commit().await.unwrap();
    }
    // The first new entry goes missing.
    let mut raw = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let gone = sqlx::query("DELETE FROM journal WHERE version = $1").bind(applied + 1).execute(&mut raw).await;
    assert_eq!(gone.unwrap().rows_affected(), 1);
    drop(raw);

    let published = |n: &str| zone.get(&E164::parse(n).unwrap()).is_some();
    for step in 1..GAP_PATIENCE {
        match follower.catch_up().await {
            Err(FollowError::Gap { expected, found }) => {
                assert_eq!((expected, found), (applied + 1, applied + 2), "step {step}")
            }
            other => panic!("step {step}: expected the gap to be waited for, got {other:?}"),
        }
        assert!(numbers.iter().all(|n| !published(n)), "step {step}: nothing past the gap is published");
        assert_eq!(follower.applied(), applied);
    }
    assert_eq!(follower.catch_up().await.unwrap(), 2, "after the wait, what follows the gap is applied");
    assert_eq!(follower.applied(), applied + 3);
    assert!(!published(numbers[0]) && published(numbers[1]) && published(numbers[2]));
    assert_eq!(follower.catch_up().await.unwrap(), 0, "and nothing twice");
}
