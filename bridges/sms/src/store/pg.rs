//! The PostgreSQL backend, for operators who keep state in PostgreSQL.

use sqlx::postgres::{PgPool, PgPoolOptions};

type Db = sqlx::Postgres;

/// Bridge state in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str) -> super::Result<PgStore> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }
}

#[async_trait::async_trait]
impl super::Store for PgStore {
    async fn begin(&self) -> super::Result<Box<dyn super::Repository>> {
        let tx = self.pool.begin().await?;
        Ok(Box::new(PgRepository { tx }))
    }
}

/// One PostgreSQL transaction.
struct PgRepository {
    tx: sqlx::Transaction<'static, Db>,
}

super::sql::impl_repositories!(PgRepository);
