//! SQLite backend (the embedded default).

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;

/// Everything in one SQLite file (or `sqlite::memory:`).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `url` (`sqlite://path?mode=rwc`), creating the file if asked, and runs migrations.
    pub async fn connect(url: &str) -> super::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        // An in-memory database exists per connection: keep exactly one.
        let max = if url.contains(":memory:") { 1 } else { 4 };
        let pool = SqlitePoolOptions::new().max_connections(max).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

super::impl_store!(SqliteStore, sqlx::Sqlite);
super::oidc::impl_oidc_store!(SqliteStore, sqlx::Sqlite);
super::ports::impl_ports_store!(SqliteStore, sqlx::Sqlite);
