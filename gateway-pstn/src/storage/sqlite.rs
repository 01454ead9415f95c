//! The SQLite backend (the embedded default): one file, WAL, writers serialised by `BEGIN IMMEDIATE`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tincan_common::Clock;

type Db = sqlx::Sqlite;

/// Gateway storage in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
}

impl SqliteStorage {
    /// Opens `sqlite://PATH` (creating the file if missing) and migrates it.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> super::Result<SqliteStorage> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed charge survives a power loss, not only a crash of the process.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStorage { pool, clock })
    }
}

#[async_trait::async_trait]
impl super::Storage for SqliteStorage {
    async fn begin(&self) -> super::Result<Box<dyn super::Repository>> {
        // IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes can fail
        // with SQLITE_BUSY instead of waiting when another writer committed in between.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteRepository { tx, clock: self.clock.clone() }))
    }

    async fn begin_read(&self) -> super::Result<Box<dyn super::Repository>> {
        let tx = self.pool.begin_with("BEGIN DEFERRED").await?;
        Ok(Box::new(SqliteRepository { tx, clock: self.clock.clone() }))
    }

    fn backend(&self) -> super::Backend {
        super::Backend::Sqlite
    }
}

/// One SQLite transaction.
struct SqliteRepository {
    tx: sqlx::Transaction<'static, Db>,
    clock: Arc<dyn Clock>,
}

/// The reservation: one conditional statement inserts the hold only if the account's balance minus its open
/// holds covers the amount, returning the hold (its id and expiry); the held sum is then raised in the same
/// transaction, which holds SQLite's only write lock (`BEGIN IMMEDIATE`), so nothing can come between.
async fn reserve_statement(
    tx: &mut sqlx::Transaction<'static, Db>,
    hold: &crate::storage::NewHold<'_>,
) -> crate::storage::Result<Option<crate::storage::StoredHold>> {
    let sql = format!(
        "INSERT INTO holds (account_id, principal, amount, state, service, destination, rate, created_at, \
           expires_at) \
         SELECT id, $3, $2, 'open', $4, $5, $6, $7, $8 FROM accounts \
           WHERE id = $1 AND kind <> 'system' AND NOT disabled AND balance - held >= $2 \
         RETURNING {}",
        super::sql::HOLD_COLUMNS
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(hold.account.0)
        .bind(hold.amount.micros())
        .bind(hold.principal)
        .bind(hold.service.as_str())
        .bind(hold.destination)
        .bind(hold.rate)
        .bind(hold.now_ms)
        .bind(hold.expires_at_ms)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    sqlx::query("UPDATE accounts SET held = held + $2 WHERE id = $1")
        .bind(hold.account.0)
        .bind(hold.amount.micros())
        .execute(&mut **tx)
        .await?;
    hold_from_row(&row).map(Some)
}

super::sql::impl_repositories!(SqliteRepository);
