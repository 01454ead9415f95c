//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server is the machine's PostgreSQL (`TINCAN_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the test is skipped with a message,
//! except under `CI=true`, where that is a failure.

use rand::RngCore;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The admin connection URL.
pub fn admin_url() -> String {
    std::env::var("TINCAN_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test; dropped (with its connections) when this value is dropped.
#[derive(Debug)]
pub struct Postgres {
    name: String,
    url: String,
}

impl Postgres {
    /// Creates `tincan_test_<random>`. `None` means PostgreSQL is unreachable and the test should return
    /// early (skip); under `CI=true` this panics instead.
    pub async fn create() -> Option<Postgres> {
        let admin = admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) if crate::in_ci() => panic!("PostgreSQL at {admin} is unreachable in CI: {e}"),
            Err(e) => {
                eprintln!("SKIPPED: PostgreSQL at {admin} is unreachable ({e}); set CI=true to make this fail");
                return None;
            }
        };
        let mut r = [0u8; 8];
        rand::rng().fill_bytes(&mut r);
        let name = format!("tincan_test_{}", hex::encode(r));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
        Some(Postgres { url: format!("{base}/{name}"), name })
    }

    /// The connection URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside an async runtime: do the async work on a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin_url()).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(done, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
