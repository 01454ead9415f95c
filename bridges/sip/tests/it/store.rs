//! The SIP side's store conformance suite on SQLite and PostgreSQL.

use tincan_sip::store::{self, conformance};

#[tokio::test]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    for (i, check) in [0, 1].iter().enumerate() {
        let s = store::open(&format!("sqlite:{}", dir.path().join(format!("s{i}.db")).display())).await.unwrap();
        match check {
            0 => conformance::bindings(s.as_ref()).await,
            _ => conformance::media_sessions(s.as_ref()).await,
        }
    }
}

#[tokio::test]
async fn postgres_passes_the_suite() {
    for check in [0, 1] {
        let Some(pg) = tincan_testkit::Postgres::create().await else { return };
        let s = store::open(pg.url()).await.unwrap();
        match check {
            0 => conformance::bindings(s.as_ref()).await,
            _ => conformance::media_sessions(s.as_ref()).await,
        }
    }
}
