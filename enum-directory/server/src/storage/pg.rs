//! The PostgreSQL backend, for several directory nodes sharing one database.

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions};
use tincan_common::Clock;

type Db = sqlx::Postgres;

/// Directory storage in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStorage {
    pool: PgPool,
    clock: Arc<dyn Clock>,
}

impl PgStorage {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> super::Result<PgStorage> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
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
}

/// One PostgreSQL transaction.
struct PgRepository {
    tx: sqlx::Transaction<'static, Db>,
    clock: Arc<dyn Clock>,
}

impl PgRepository {
    /// [`super::ProviderRepository::lock_prefixes`]: conflicts with itself and with every insert, update and
    /// delete of the table, not with reads. (READ COMMITTED: the next statement sees what the holder committed.)
    const LOCK_PREFIXES: Option<&'static str> = Some("LOCK TABLE provider_prefixes IN SHARE ROW EXCLUSIVE MODE");
}

super::sql::impl_repositories!(PgRepository);
