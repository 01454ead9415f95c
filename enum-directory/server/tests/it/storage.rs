//! The storage conformance suite, once per backend.

use std::sync::Arc;

use tincan_common::MockClock;
use tincan_directory::storage::{self, conformance};

#[tokio::test]
async fn sqlite_passes_the_storage_suite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(MockClock::at(1_700_000_000));
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    let s = storage::open(&url, clock.clone()).await.unwrap();
    conformance::run(&*s, &clock).await;
}

#[tokio::test]
async fn postgres_passes_the_storage_suite() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let clock = Arc::new(MockClock::at(1_700_000_000));
    let s = storage::open(pg.url(), clock.clone()).await.unwrap();
    conformance::run(&*s, &clock).await;
}

/// Issue 14 item 17 under concurrency: `provider add` locks the prefixes, lists them, checks the new ones against
/// them and adds. A second add doing the same while the first is not committed must wait for it and then see its
/// prefix; on PostgreSQL (READ COMMITTED) it used to see none and pass the overlap check too.
async fn a_second_prefix_check_waits_for_the_first_add(s: Arc<dyn storage::Storage>) {
    let mut first = s.begin().await.unwrap();
    first.providers().lock_prefixes().await.unwrap();
    assert!(first.providers().list().await.unwrap().is_empty());
    first.providers().add("first", storage::TokenHash::of("t1"), &["+44".parse().unwrap()]).await.unwrap();
    let second = tokio::spawn(async move {
        let mut tx = s.begin().await.unwrap();
        tx.providers().lock_prefixes().await.unwrap();
        let taken = tx.providers().list().await.unwrap();
        taken.into_iter().flat_map(|p| p.prefixes).map(|p| p.as_str().to_owned()).collect::<Vec<_>>()
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "the second check ran while the first add was not committed");
    first.commit().await.unwrap();
    let taken = tokio::time::timeout(std::time::Duration::from_secs(10), second).await.unwrap().unwrap();
    assert_eq!(taken, ["+44"], "the second check sees the first add's prefix");
}

#[tokio::test]
async fn sqlite_serialises_provider_prefix_checks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    let s = storage::open(&url, Arc::new(MockClock::at(1_700_000_000))).await.unwrap();
    a_second_prefix_check_waits_for_the_first_add(s).await;
}

#[tokio::test]
async fn postgres_serialises_provider_prefix_checks() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let s = storage::open(pg.url(), Arc::new(MockClock::at(1_700_000_000))).await.unwrap();
    a_second_prefix_check_waits_for_the_first_add(s).await;
}

#[tokio::test]
async fn sqlite_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(MockClock::at(1_700_000_000));
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    {
        let s = storage::open(&url, clock.clone()).await.unwrap();
        let mut tx = s.begin().await.unwrap();
        tx.providers().add("p", storage::TokenHash::of("t"), &["+44".parse().unwrap()]).await.unwrap();
        tx.commit().await.unwrap();
    }
    let s = storage::open(&url, clock).await.unwrap();
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.providers().list().await.unwrap().len(), 1, "migrations run once, data kept");
}

#[tokio::test]
async fn unknown_url_schemes_are_refused() {
    let clock = Arc::new(MockClock::at(0));
    let err = storage::open("mysql://x", clock).await.unwrap_err();
    assert!(matches!(err, storage::StorageError::UnsupportedUrl(_)), "{err}");
}
