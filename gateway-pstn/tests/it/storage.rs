//! The storage conformance suite, once per backend.

use std::sync::Arc;

use tincan_common::MockClock;
use tincan_gateway::storage::{self, conformance};

#[tokio::test]
async fn sqlite_passes_the_storage_suite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(MockClock::at(1_700_000_000));
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    let s = storage::open(&url, clock.clone()).await.unwrap();
    conformance::run(s, &clock).await;
}

#[tokio::test]
async fn postgres_passes_the_storage_suite() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let clock = Arc::new(MockClock::at(1_700_000_000));
    let s = storage::open(pg.url(), clock.clone()).await.unwrap();
    conformance::run(s, &clock).await;
}

#[tokio::test]
async fn unknown_url_schemes_are_refused() {
    let clock = Arc::new(MockClock::at(0));
    let err = storage::open("mysql://x", clock).await.unwrap_err();
    assert!(matches!(err, storage::StorageError::UnsupportedUrl(_)), "{err}");
}
