//! One store conformance suite, run against SQLite and PostgreSQL.

use tincan_sms::store::{PgStore, SqliteStore, conformance};
use tincan_testkit::Postgres;

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&format!("sqlite:{}", dir.path().join("sms.db").display())).await.unwrap();
    conformance::run(&store).await;
}

#[tokio::test]
async fn postgres_store_conforms() {
    let Some(pg) = Postgres::create().await else { return };
    let store = PgStore::open(pg.url()).await.unwrap();
    conformance::run(&store).await;
}
