//! The PostgreSQL backend, for several gateway nodes sharing one database. Transactions run at READ
//! COMMITTED: every decision that must see concurrent writers is one conditional UPDATE on the row it
//! concerns, which PostgreSQL re-checks against the newest committed row after waiting for its lock.

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions};
use tincan_common::Clock;

type Db = sqlx::Postgres;

/// Gateway storage in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStorage {
    pool: PgPool,
    clock: Arc<dyn Clock>,
}

impl PgStorage {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> super::Result<PgStorage> {
        let pool = PgPoolOptions::new().max_connections(16).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStorage { pool, clock })
    }
}

#[async_trait::async_trait]
impl super::Storage for PgStorage {
    async fn begin(&self) -> super::Result<Box<dyn super::Repository>> {
        let tx = self.pool.begin().await?;
        Ok(Box::new(PgRepository { tx, clock: self.clock.clone() }))
    }

    fn backend(&self) -> super::Backend {
        super::Backend::Postgres
    }
}

/// One PostgreSQL transaction.
struct PgRepository {
    tx: sqlx::Transaction<'static, Db>,
    clock: Arc<dyn Clock>,
}

/// The reservation: one statement that raises the account's held sum only if its balance minus its open holds
/// covers the amount, and inserts the hold only if it did, returning the hold (its id and expiry).
async fn reserve_statement(
    tx: &mut sqlx::Transaction<'static, Db>,
    hold: &crate::storage::NewHold<'_>,
) -> crate::storage::Result<Option<crate::storage::StoredHold>> {
    let sql = format!(
        "WITH a AS (UPDATE accounts SET held = held + $2 \
           WHERE id = $1 AND kind <> 'system' AND NOT disabled AND balance - held >= $2 RETURNING id) \
         INSERT INTO holds (account_id, principal, amount, state, service, destination, rate, created_at, \
           expires_at) \
         SELECT a.id, $3, $2, 'open', $4, $5, $6, $7, $8 FROM a RETURNING {}",
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
    row.as_ref().map(hold_from_row).transpose()
}

super::sql::impl_repositories!(PgRepository);
