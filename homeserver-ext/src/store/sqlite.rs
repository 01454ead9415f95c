//! SQLite backend (the embedded default).

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;

/// Everything in one SQLite file (or `sqlite::memory:`).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `url` (`sqlite://path?mode=rwc`), creating the file if asked, and runs migrations.
    pub async fn connect(url: &str) -> super::Result<Self> {
        // WAL with `synchronous = NORMAL`: a commit is durable once it is in the WAL file, which is synced at
        // checkpoints rather than at every commit. Nothing committed is lost when the process crashes or is
        // killed (the WAL is in the OS's page cache and replayed at the next open), and the database is never
        // corrupted; a power loss or OS crash can roll back the last transactions committed before it. FULL
        // (SQLite's default) synced the WAL at every commit: six fsyncs per sign-up.
        let options = SqliteConnectOptions::from_str(url)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        // An in-memory database exists per connection: keep exactly one.
        let max = if url.contains(":memory:") { 1 } else { 4 };
        // A connection to a file cannot go stale the way a network connection can: no ping (one more trip to the
        // connection's worker thread) before each statement's checkout. The pool still tests it on release.
        let pool =
            SqlitePoolOptions::new().max_connections(max).test_before_acquire(false).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

// The lock is SQLite's write lock, which the UPDATE takes; its RETURNING subquery reads under it. No row (no
// pepper yet) returns nothing.
super::impl_store!(
    SqliteStore,
    sqlx::Sqlite,
    Some(
        "UPDATE peppers SET created_at = created_at WHERE id = 1 \
         RETURNING (SELECT pepper FROM peppers ORDER BY id DESC LIMIT 1)"
    )
);
super::oidc::impl_oidc_store!(SqliteStore, sqlx::Sqlite);
super::ports::impl_ports_store!(SqliteStore, sqlx::Sqlite);
