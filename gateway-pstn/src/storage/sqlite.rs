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

/// Many reservations, per account in the order they first appear: one conditional UPDATE holds the sum of the
/// account's holds only if the balance minus the open holds covers it, then its holds are inserted. SQLite runs
/// in the process, so a statement per hold costs no round trip; the write lock keeps everything else out.
async fn reserve_all_statement(
    repo: &mut SqliteRepository,
    holds: &[crate::storage::NewHold<'_>],
) -> crate::storage::Result<Vec<Option<crate::storage::StoredHold>>> {
    let mut out = vec![None; holds.len()];
    let mut accounts: Vec<crate::charging::AccountId> = Vec::new();
    for h in holds {
        if !accounts.contains(&h.account) {
            accounts.push(h.account);
        }
    }
    for account in accounts {
        let mine: Vec<usize> = (0..holds.len()).filter(|&i| holds[i].account == account).collect();
        let Some(total) = mine.iter().try_fold(0i64, |s, &i| s.checked_add(holds[i].amount.micros())) else {
            continue;
        };
        let r = sqlx::query(
            "UPDATE accounts SET held = held + $2 \
             WHERE id = $1 AND kind <> 'system' AND NOT disabled AND balance - held >= $2",
        )
        .bind(account.0)
        .bind(total)
        .execute(&mut *repo.tx)
        .await?;
        if r.rows_affected() != 1 {
            continue;
        }
        let sql = format!(
            "INSERT INTO holds (account_id, principal, amount, state, service, destination, rate, created_at, \
               expires_at) VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8) RETURNING {}",
            super::sql::HOLD_COLUMNS
        );
        for i in mine {
            let h = &holds[i];
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(h.account.0)
                .bind(h.principal)
                .bind(h.amount.micros())
                .bind(h.service.as_str())
                .bind(h.destination)
                .bind(h.rate)
                .bind(h.now_ms)
                .bind(h.expires_at_ms)
                .fetch_one(&mut *repo.tx)
                .await?;
            out[i] = Some(hold_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Many settlements and releases, one hold after another with the single-hold statements (in the process: no
/// round trips to save).
async fn close_all_statement(
    repo: &mut SqliteRepository,
    closings: &[crate::storage::Closing<'_>],
    now_ms: i64,
) -> crate::storage::Result<Vec<Option<crate::storage::StoredHold>>> {
    use crate::charging::HoldState;
    use crate::storage::{Close, Closing, EntryKind, NewEntry};
    let mut out = Vec::with_capacity(closings.len());
    for c in closings {
        let close = match c {
            Closing::Settle { charged, usage, carrier, .. } => {
                Close { state: HoldState::Settled, charged: Some(*charged), usage: *usage, carrier: *carrier, now_ms }
            }
            Closing::Release { .. } => {
                Close { state: HoldState::Released, charged: None, usage: None, carrier: None, now_ms }
            }
        };
        let closed = crate::storage::HoldRepository::close(repo, c.id(), &close).await?;
        if let (Some(_), Closing::Settle { id, charged, revenue, .. }) = (&closed, c) {
            let reference = id.to_string();
            let legs = [(id.account, -*charged), (*revenue, *charged)];
            let entry =
                NewEntry { kind: EntryKind::Charge, reference: &reference, hold: Some(*id), memo: "", legs: &legs };
            crate::storage::JournalRepository::post(repo, &entry).await?;
        }
        out.push(closed);
    }
    Ok(out)
}

/// Many holds by id, one after another.
async fn get_holds_statement(
    repo: &mut SqliteRepository,
    ids: &[crate::charging::HoldId],
) -> crate::storage::Result<Vec<crate::storage::StoredHold>> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.extend(crate::storage::HoldRepository::get(repo, *id).await?);
    }
    Ok(found)
}

/// Many idempotency records, one after another.
async fn get_records_statement(
    repo: &mut SqliteRepository,
    keys: &[(&str, &str)],
) -> crate::storage::Result<Vec<Option<crate::storage::IdempotentResponse>>> {
    let mut found = Vec::with_capacity(keys.len());
    for (principal, key) in keys {
        found.push(crate::storage::IdempotencyRepository::get(repo, principal, key).await?);
    }
    Ok(found)
}

/// Records many answers, one after another.
async fn put_records_statement(
    repo: &mut SqliteRepository,
    records: &[(&str, &str, crate::storage::IdempotentResponse)],
    now_ms: i64,
) -> crate::storage::Result<()> {
    for (principal, key, record) in records {
        crate::storage::IdempotencyRepository::put(repo, principal, key, record, now_ms).await?;
    }
    Ok(())
}

/// An unclaimed run. Every writing transaction holds SQLite's only write lock (`BEGIN IMMEDIATE`), so no claim
/// can come between this read and the transaction's end.
const OWN_RUN: &str = "SELECT 1 FROM gateway_runs WHERE run_id = $1 AND claimed_by IS NULL";

super::sql::impl_repositories!(SqliteRepository);
