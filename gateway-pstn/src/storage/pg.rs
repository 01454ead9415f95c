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

/// Many reservations in one statement: per account, one conditional UPDATE holds the sum of its holds only if
/// the balance minus the open holds covers it, and the holds of the accounts it covered are inserted. Their ids
/// are drawn from the table's sequence first, so each returned hold is matched to its request.
async fn reserve_all_statement(
    repo: &mut PgRepository,
    holds: &[crate::storage::NewHold<'_>],
) -> crate::storage::Result<Vec<Option<crate::storage::StoredHold>>> {
    use sqlx::Row as _;
    let mut out = vec![None; holds.len()];
    if holds.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "WITH req AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
             $6::text[], $7::bigint[], $8::bigint[]) WITH ORDINALITY \
             AS r(account_id, principal, amount, service, destination, rate, created_at, expires_at, ord)), \
         a AS (UPDATE accounts SET held = accounts.held + s.total \
             FROM (SELECT account_id, CAST(SUM(amount) AS BIGINT) AS total FROM req GROUP BY account_id) AS s \
             WHERE accounts.id = s.account_id AND accounts.kind <> 'system' AND NOT accounts.disabled \
               AND accounts.balance - accounts.held >= s.total RETURNING accounts.id), \
         n AS (SELECT req.*, nextval(pg_get_serial_sequence('holds', 'id')) AS hold_id \
             FROM req JOIN a ON a.id = req.account_id), \
         i AS (INSERT INTO holds (id, account_id, principal, amount, state, service, destination, rate, \
               created_at, expires_at) \
             SELECT hold_id, account_id, principal, amount, 'open', service, destination, rate, created_at, \
               expires_at FROM n ORDER BY ord RETURNING {}) \
         SELECT n.ord, i.* FROM i JOIN n ON n.hold_id = i.id",
        super::sql::HOLD_COLUMNS
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(holds.iter().map(|h| h.account.0).collect::<Vec<_>>())
        .bind(holds.iter().map(|h| h.principal).collect::<Vec<_>>())
        .bind(holds.iter().map(|h| h.amount.micros()).collect::<Vec<_>>())
        .bind(holds.iter().map(|h| h.service.as_str()).collect::<Vec<_>>())
        .bind(holds.iter().map(|h| h.destination).collect::<Vec<_>>())
        .bind(holds.iter().map(|h| h.rate).collect::<Vec<_>>())
        .bind(holds.iter().map(|h| h.now_ms).collect::<Vec<_>>())
        .bind(holds.iter().map(|h| h.expires_at_ms).collect::<Vec<_>>())
        .fetch_all(&mut *repo.tx)
        .await?;
    for row in &rows {
        let ord: i64 = row.try_get("ord")?;
        let slot = usize::try_from(ord - 1).ok().and_then(|i| out.get_mut(i));
        *slot.ok_or(super::sql::corrupt("holds", "id"))? = Some(hold_from_row(row)?);
    }
    Ok(out)
}

/// Many settlements and releases in one statement: the holds still open are closed, their accounts' held sums
/// (and, by what was charged, balances) lowered once per account, and each settlement's charge entry and its
/// two legs inserted.
async fn close_all_statement(
    repo: &mut PgRepository,
    closings: &[crate::storage::Closing<'_>],
    now_ms: i64,
) -> crate::storage::Result<Vec<Option<crate::storage::StoredHold>>> {
    use crate::storage::Closing;
    if closings.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "WITH req AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
             $6::text[], $7::bigint[], $8::text[]) \
             AS r(id, account_id, state, charged, units, carrier, revenue, reference)), \
         h AS (UPDATE holds SET state = req.state, charged = req.charged, units = req.units, \
               carrier = req.carrier, closed_at = $9 \
             FROM req WHERE holds.id = req.id AND holds.account_id = req.account_id AND holds.state = 'open' \
             RETURNING {}, req.revenue, req.reference), \
         t AS (UPDATE accounts SET held = accounts.held - s.amount, balance = accounts.balance - s.charged \
             FROM (SELECT account_id, CAST(SUM(amount) AS BIGINT) AS amount, \
                 CAST(COALESCE(SUM(charged), 0) AS BIGINT) AS charged FROM h GROUP BY account_id) AS s \
             WHERE accounts.id = s.account_id), \
         e AS (INSERT INTO entries (kind, reference, memo, hold_id, created_at) \
             SELECT 'charge', h.reference, '', h.id, $9 FROM h WHERE h.state = 'settled' ORDER BY h.id \
             RETURNING id, hold_id), \
         l AS (INSERT INTO legs (entry_id, account_id, amount) \
             SELECT e.id, x.account_id, x.amount FROM e JOIN h ON h.id = e.hold_id, \
               LATERAL (VALUES (1, h.account_id, -h.charged), (2, h.revenue, h.charged)) AS x(n, account_id, amount) \
             ORDER BY e.id, x.n) \
         SELECT * FROM h",
        super::sql::HOLD_COLUMNS.split(", ").map(|c| format!("holds.{c}")).collect::<Vec<_>>().join(", ")
    );
    let n = closings.len();
    let (mut state, mut charged, mut units, mut carrier, mut revenue, mut reference) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for c in closings {
        match c {
            Closing::Settle { id, charged: ch, usage, carrier: ca, revenue: r } => {
                state.push("settled");
                charged.push(Some(ch.micros()));
                units.push(*usage);
                carrier.push(*ca);
                revenue.push(Some(r.0));
                reference.push(Some(id.to_string()));
            }
            Closing::Release { .. } => {
                state.push("released");
                charged.push(None);
                units.push(None);
                carrier.push(None);
                revenue.push(None);
                reference.push(None);
            }
        }
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(closings.iter().map(|c| c.id().seq).collect::<Vec<_>>())
        .bind(closings.iter().map(|c| c.id().account.0).collect::<Vec<_>>())
        .bind(state)
        .bind(charged)
        .bind(units)
        .bind(carrier)
        .bind(revenue)
        .bind(reference)
        .bind(now_ms)
        .fetch_all(&mut *repo.tx)
        .await?;
    let mut closed = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let h = hold_from_row(row)?;
        closed.insert(h.id, h);
    }
    Ok(closings.iter().map(|c| closed.remove(&c.id())).collect())
}

/// Many holds by id, one statement.
async fn get_holds_statement(
    repo: &mut PgRepository,
    ids: &[crate::charging::HoldId],
) -> crate::storage::Result<Vec<crate::storage::StoredHold>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {} FROM holds WHERE id = ANY($1::bigint[])", super::sql::HOLD_COLUMNS);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids.iter().map(|id| id.seq).collect::<Vec<_>>())
        .fetch_all(&mut *repo.tx)
        .await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let h = hold_from_row(row)?;
        // A hold id names its account: one naming another account is not this hold.
        if ids.contains(&h.id) {
            found.push(h);
        }
    }
    Ok(found)
}

/// Many idempotency records, one statement.
async fn get_records_statement(
    repo: &mut PgRepository,
    keys: &[(&str, &str)],
) -> crate::storage::Result<Vec<Option<crate::storage::IdempotentResponse>>> {
    use sqlx::Row as _;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT i.principal, i.key, i.op, i.fingerprint, i.response \
         FROM unnest($1::text[], $2::text[]) AS k(principal, key) \
         JOIN idempotency i ON i.principal = k.principal AND i.key = k.key",
    )
    .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .fetch_all(&mut *repo.tx)
    .await?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        let id: (String, String) = (r.try_get("principal")?, r.try_get("key")?);
        let record = crate::storage::IdempotentResponse {
            op: r.try_get("op")?,
            fingerprint: r.try_get("fingerprint")?,
            response: r.try_get("response")?,
        };
        found.insert(id, record);
    }
    Ok(keys.iter().map(|(p, k)| found.remove(&((*p).to_owned(), (*k).to_owned()))).collect())
}

/// Records many answers, one statement.
async fn put_records_statement(
    repo: &mut PgRepository,
    records: &[(&str, &str, crate::storage::IdempotentResponse)],
    now_ms: i64,
) -> crate::storage::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO idempotency (principal, key, op, fingerprint, response, created_at) \
         SELECT principal, key, op, fingerprint, response, $6 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
           AS r(principal, key, op, fingerprint, response)",
    )
    .bind(records.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.2.op.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.2.fingerprint.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.2.response.as_str()).collect::<Vec<_>>())
    .bind(now_ms)
    .execute(&mut *repo.tx)
    .await
    .map_err(|e| super::sql::duplicate_or(e, "idempotency key"))?;
    Ok(())
}

/// An unclaimed run, locked against a claim until the transaction ends. At READ COMMITTED a concurrent claim
/// either waits for this transaction, or this statement waits for the claim's and then re-checks the newest
/// row (and finds it claimed).
const OWN_RUN: &str = "SELECT 1 FROM gateway_runs WHERE run_id = $1 AND claimed_by IS NULL FOR SHARE";

super::sql::impl_repositories!(PgRepository);
