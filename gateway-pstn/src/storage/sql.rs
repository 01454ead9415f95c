//! The SQL both backends share. The statements are portable (`$n` parameters, `RETURNING`, `CAST`), so the
//! repository code is written once here and stamped out for each backend by [`impl_repositories!`]; the
//! backends differ in how they connect, begin and migrate, and in the reservation statement (each backend's
//! `reserve_statement`).

use super::{Result, StorageError};
use crate::money::{Amount, Currency};

pub(super) fn corrupt(table: &'static str, column: &'static str) -> StorageError {
    StorageError::Corrupt { table, column }
}

pub(super) fn currency(s: &str, table: &'static str) -> Result<Currency> {
    s.parse().map_err(|_| corrupt(table, "currency"))
}

pub(super) fn amount(micros: i64) -> Amount {
    Amount::from_micros(micros)
}

pub(super) fn duplicate_or(e: sqlx::Error, what: &'static str) -> StorageError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StorageError::Duplicate(what),
        _ => StorageError::Database(e),
    }
}

/// The columns of a hold, in the order `hold_from_row` reads them.
pub(super) const HOLD_COLUMNS: &str = "id, account_id, principal, amount, state, service, destination, rate, \
                                       created_at, expires_at, closed_at, charged, units, carrier";

pub(super) const ACCOUNT_COLUMNS: &str =
    "id, kind, name, user_id, number, currency, balance, held, disabled, plan, created_at";

pub(super) const RATE_COLUMNS: &str =
    "prefix, description, connect_fee, per_minute, first_incr, next_incr, per_sms, per_mms";

/// `$first, $first+1, …` for `n` values: an IN list of bind parameters.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A row of `rates` or `carrier_rates`, as stored (micro-units, increments in seconds).
pub(super) struct RateRow {
    pub(super) prefix: String,
    pub(super) description: String,
    pub(super) connect_fee: i64,
    pub(super) per_minute: Option<i64>,
    pub(super) first: i32,
    pub(super) next: i32,
    pub(super) per_sms: Option<i64>,
    pub(super) per_mms: Option<i64>,
}

impl RateRow {
    /// The rate it stores.
    pub(super) fn into_rate(self) -> Result<crate::rating::Rate> {
        let inc = |v: i32| u32::try_from(v).ok().filter(|v| *v >= 1).ok_or(corrupt("rates", "increments"));
        Ok(crate::rating::Rate {
            prefix: self.prefix,
            description: self.description,
            connect_fee: Amount::from_micros(self.connect_fee),
            per_minute: self.per_minute.map(Amount::from_micros),
            increments: crate::rating::Increments { first: inc(self.first)?, next: inc(self.next)? },
            per_segment: self.per_sms.map(Amount::from_micros),
            per_mms: self.per_mms.map(Amount::from_micros),
        })
    }
}

/// Implements [`Repository`](super::Repository) and every repository trait for `$repo`, a struct with a field
/// `tx: sqlx::Transaction<'static, Db>` and a field `clock: Arc<dyn Clock>`, whose module defines `Db`,
/// `async fn reserve_statement(tx, &NewHold) -> Result<Option<StoredHold>>`, `OWN_RUN` (the statement that finds
/// an unclaimed run and keeps it so until the transaction ends),
/// and the many-row statements `reserve_all_statement`, `close_all_statement`, `get_holds_statement`,
/// `get_records_statement` and `put_records_statement` (PostgreSQL: one statement each, over arrays; SQLite,
/// in the process: the one-row statements in turn).
macro_rules! impl_repositories {
    ($repo:ident) => {
        use async_trait::async_trait;
        use sqlx::Row as _;
        use $crate::charging::{AccountId, HoldId, HoldState, ServiceKind};
        use $crate::money::Amount;
        use $crate::storage::sql::{
            ACCOUNT_COLUMNS, HOLD_COLUMNS, RATE_COLUMNS, RateRow, amount, corrupt, currency, duplicate_or,
            placeholders,
        };
        use $crate::storage::{
            Account, AccountKind, AccountRepository, ApiToken, CheckReport, Close, Closing, EntryKind, ExtendOutcome,
            HistoryItem, HoldRepository, IdempotencyRepository, IdempotentResponse, JournalRepository, NewAccount,
            NewEntry, NewHold, Repository, Result, Scope, StoredHold, SystemAccount, TokenHash, TokenRepository,
            Carrier, CarrierKind, CarrierRepository, CarrierRoute, LimitRepository, Limits, RateRepository,
            VoucherBatch, VoucherRepository, CallRecord, CallRecordRepository, CallResult, GatewayRun, LiveCall,
            LiveCallRepository,
        };

        fn batch_from_row(row: &Row) -> Result<VoucherBatch> {
            let cur: String = row.try_get("currency")?;
            Ok(VoucherBatch {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                amount: amount(row.try_get("amount")?),
                currency: currency(&cur, "voucher_batches")?,
                count: row.try_get::<i32, _>("count")?.max(0) as u32,
                expires_at_ms: row.try_get("expires_at")?,
            })
        }
        use $crate::rating::{Rate, RateDeck};

        fn rate_from_row(row: &Row) -> Result<Rate> {
            RateRow {
                prefix: row.try_get("prefix")?,
                description: row.try_get("description")?,
                connect_fee: row.try_get("connect_fee")?,
                per_minute: row.try_get("per_minute")?,
                first: row.try_get("first_incr")?,
                next: row.try_get("next_incr")?,
                per_sms: row.try_get("per_sms")?,
                per_mms: row.try_get("per_mms")?,
            }
            .into_rate()
        }

        fn carrier_from_row(row: &Row) -> Result<Carrier> {
            let kind: String = row.try_get("kind")?;
            Ok(Carrier {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                kind: CarrierKind::parse_stored(&kind)?,
                priority: row.try_get("priority")?,
                max_concurrent: row.try_get("max_concurrent")?,
                enabled: row.try_get("enabled")?,
            })
        }

        type Row = <Db as sqlx::Database>::Row;

        pub(super) fn hold_from_row(row: &Row) -> Result<StoredHold> {
            let state: String = row.try_get("state")?;
            let service: String = row.try_get("service")?;
            Ok(StoredHold {
                id: HoldId { account: AccountId(row.try_get("account_id")?), seq: row.try_get("id")? },
                principal: row.try_get("principal")?,
                amount: amount(row.try_get("amount")?),
                state: HoldState::parse(&state).ok_or(corrupt("holds", "state"))?,
                service: service.parse::<ServiceKind>().map_err(|_| corrupt("holds", "service"))?,
                destination: row.try_get("destination")?,
                rate: row.try_get("rate")?,
                created_at_ms: row.try_get("created_at")?,
                expires_at_ms: row.try_get("expires_at")?,
                closed_at_ms: row.try_get("closed_at")?,
                charged: row.try_get::<Option<i64>, _>("charged")?.map(amount),
                usage: row.try_get("units")?,
                carrier: row.try_get("carrier")?,
            })
        }

        fn account_from_row(row: &Row) -> Result<Account> {
            let kind: String = row.try_get("kind")?;
            let cur: String = row.try_get("currency")?;
            Ok(Account {
                id: AccountId(row.try_get("id")?),
                kind: AccountKind::parse_stored(&kind)?,
                name: row.try_get("name")?,
                user_id: row.try_get("user_id")?,
                number: row.try_get("number")?,
                currency: currency(&cur, "accounts")?,
                balance: amount(row.try_get("balance")?),
                held: amount(row.try_get("held")?),
                disabled: row.try_get("disabled")?,
                plan: row.try_get("plan")?,
                created_at_ms: row.try_get("created_at")?,
            })
        }

        fn token_from_row(row: &Row) -> Result<ApiToken> {
            let scope: String = row.try_get("scope")?;
            Ok(ApiToken {
                id: row.try_get("id")?,
                scope: Scope::parse_stored(&scope)?,
                subject: row.try_get("subject")?,
                account: row.try_get::<Option<i64>, _>("account_id")?.map(AccountId),
                expires_at_ms: row.try_get("expires_at")?,
            })
        }

        impl $repo {
            fn now_ms(&self) -> i64 {
                $crate::storage::unix_ms(self.clock.now())
            }

            async fn one_i64(&mut self, sql: &'static str) -> Result<i64> {
                Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut *self.tx).await?)
            }
        }

        #[async_trait]
        impl Repository for $repo {
            fn accounts(&mut self) -> &mut dyn AccountRepository {
                self
            }
            fn journal(&mut self) -> &mut dyn JournalRepository {
                self
            }
            fn holds(&mut self) -> &mut dyn HoldRepository {
                self
            }
            fn idempotency(&mut self) -> &mut dyn IdempotencyRepository {
                self
            }
            fn tokens(&mut self) -> &mut dyn TokenRepository {
                self
            }
            fn rates(&mut self) -> &mut dyn RateRepository {
                self
            }
            fn carriers(&mut self) -> &mut dyn CarrierRepository {
                self
            }
            fn limits(&mut self) -> &mut dyn LimitRepository {
                self
            }
            fn vouchers(&mut self) -> &mut dyn VoucherRepository {
                self
            }
            fn call_records(&mut self) -> &mut dyn CallRecordRepository {
                self
            }
            fn live_calls(&mut self) -> &mut dyn LiveCallRepository {
                self
            }
            async fn savepoint(&mut self) -> Result<()> {
                sqlx::query("SAVEPOINT op").execute(&mut *self.tx).await?;
                Ok(())
            }
            async fn rollback_to_savepoint(&mut self) -> Result<()> {
                sqlx::query("ROLLBACK TO SAVEPOINT op").execute(&mut *self.tx).await?;
                sqlx::query("RELEASE SAVEPOINT op").execute(&mut *self.tx).await?;
                Ok(())
            }
            async fn release_savepoint(&mut self) -> Result<()> {
                sqlx::query("RELEASE SAVEPOINT op").execute(&mut *self.tx).await?;
                Ok(())
            }
            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait]
        impl AccountRepository for $repo {
            async fn create(&mut self, new: &NewAccount) -> Result<Account> {
                let sql = format!(
                    "INSERT INTO accounts (kind, name, user_id, number, currency, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ACCOUNT_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(new.kind.as_str())
                    .bind(&new.name)
                    .bind(&new.user_id)
                    .bind(&new.number)
                    .bind(new.currency.as_str())
                    .bind(self.now_ms())
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(|e| duplicate_or(e, "account"))?;
                account_from_row(&row)
            }

            async fn get(&mut self, id: AccountId) -> Result<Option<Account>> {
                let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(account_from_row).transpose()
            }

            async fn by_user(&mut self, user_id: &str) -> Result<Option<Account>> {
                let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE user_id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(account_from_row).transpose()
            }

            async fn system(&mut self, which: SystemAccount, cur: $crate::money::Currency) -> Result<AccountId> {
                let find = "SELECT id FROM accounts WHERE kind = 'system' AND name = $1 AND currency = $2";
                if let Some(id) = sqlx::query_scalar::<_, i64>(find)
                    .bind(which.name())
                    .bind(cur.as_str())
                    .fetch_optional(&mut *self.tx)
                    .await?
                {
                    return Ok(AccountId(id));
                }
                sqlx::query(
                    "INSERT INTO accounts (kind, name, currency, created_at) VALUES ('system', $1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(which.name())
                .bind(cur.as_str())
                .bind(self.now_ms())
                .execute(&mut *self.tx)
                .await?;
                let id = sqlx::query_scalar::<_, i64>(find)
                    .bind(which.name())
                    .bind(cur.as_str())
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok(AccountId(id))
            }

            async fn lock(&mut self, id: AccountId) -> Result<Option<(Amount, Amount)>> {
                // A no-op update takes the row lock and, on PostgreSQL under READ COMMITTED, returns the newest
                // committed row (the same re-check a conditional UPDATE gets): a portable SELECT … FOR UPDATE.
                let row = sqlx::query(
                    "UPDATE accounts SET balance = balance WHERE id = $1 AND kind <> 'system' RETURNING balance, held",
                )
                .bind(id.0)
                .fetch_optional(&mut *self.tx)
                .await?;
                Ok(match row {
                    Some(r) => Some((amount(r.try_get("balance")?), amount(r.try_get("held")?))),
                    None => None,
                })
            }

            async fn list(&mut self, after: Option<AccountId>, limit: u32) -> Result<Vec<Account>> {
                let sql = format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE kind <> 'system' AND id > $1 ORDER BY id LIMIT $2"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(after.map_or(0, |a| a.0))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(account_from_row).collect()
            }

            async fn set_plan(&mut self, id: AccountId, plan: &str) -> Result<bool> {
                let r = sqlx::query("UPDATE accounts SET plan = $2 WHERE id = $1 AND kind <> 'system'")
                    .bind(id.0)
                    .bind(plan)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn set_disabled(&mut self, id: AccountId, disabled: bool) -> Result<bool> {
                let r = sqlx::query("UPDATE accounts SET disabled = $2 WHERE id = $1")
                    .bind(id.0)
                    .bind(disabled)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(r.rows_affected() == 1)
            }
        }

        #[async_trait]
        impl JournalRepository for $repo {
            async fn post(&mut self, entry: &NewEntry<'_>) -> Result<i64> {
                let total = entry.legs.iter().try_fold(0i64, |s, (_, a)| s.checked_add(a.micros()));
                if total != Some(0) || entry.legs.len() < 2 {
                    return Err(corrupt("legs", "amount"));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO entries (kind, reference, memo, hold_id, created_at) VALUES ($1, $2, $3, $4, $5) \
                     RETURNING id",
                )
                .bind(entry.kind.as_str())
                .bind(entry.reference)
                .bind(entry.memo)
                .bind(entry.hold.map(|h| h.seq))
                .bind(self.now_ms())
                .fetch_one(&mut *self.tx)
                .await?;
                for (account, amt) in entry.legs {
                    sqlx::query("INSERT INTO legs (entry_id, account_id, amount) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(account.0)
                        .bind(amt.micros())
                        .execute(&mut *self.tx)
                        .await?;
                    sqlx::query("UPDATE accounts SET balance = balance + $2 WHERE id = $1 AND kind <> 'system'")
                        .bind(account.0)
                        .bind(amt.micros())
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(id)
            }

            async fn history(
                &mut self,
                account: AccountId,
                before: Option<i64>,
                limit: u32,
            ) -> Result<Vec<HistoryItem>> {
                let rows = sqlx::query(
                    "SELECT l.id, l.entry_id, e.kind, l.amount, e.reference, e.memo, e.created_at \
                     FROM legs l JOIN entries e ON e.id = l.entry_id \
                     WHERE l.account_id = $1 AND l.id < $2 ORDER BY l.id DESC LIMIT $3",
                )
                .bind(account.0)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|r| {
                        let kind: String = r.try_get("kind")?;
                        Ok(HistoryItem {
                            id: r.try_get("id")?,
                            entry_id: r.try_get("entry_id")?,
                            kind: EntryKind::parse_stored(&kind)?,
                            amount: amount(r.try_get("amount")?),
                            reference: r.try_get("reference")?,
                            memo: r.try_get("memo")?,
                            at_ms: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn sum(&mut self, account: AccountId) -> Result<Amount> {
                let s: i64 =
                    sqlx::query_scalar("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM legs WHERE account_id = $1")
                        .bind(account.0)
                        .fetch_one(&mut *self.tx)
                        .await?;
                Ok(amount(s))
            }

            async fn check(&mut self) -> Result<CheckReport> {
                let mut report = CheckReport::default();
                report.accounts = self.one_i64("SELECT COUNT(*) FROM accounts").await? as u64;
                report.entries = self.one_i64("SELECT COUNT(*) FROM entries").await? as u64;
                report.open_holds = self.one_i64("SELECT COUNT(*) FROM holds WHERE state = 'open'").await? as u64;
                let unbalanced = sqlx::query(
                    "SELECT e.id, CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) AS total, COUNT(l.id) AS n \
                     FROM entries e LEFT JOIN legs l ON l.entry_id = e.id GROUP BY e.id \
                     HAVING COALESCE(SUM(l.amount), 0) <> 0 OR COUNT(l.id) < 2 ORDER BY e.id LIMIT 100",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                for r in &unbalanced {
                    let (id, total, n): (i64, i64, i64) = (r.try_get("id")?, r.try_get("total")?, r.try_get("n")?);
                    report.problems.push(format!("entry {id}: {n} legs summing to {}", amount(total)));
                }
                let mixed = sqlx::query(
                    "SELECT l.entry_id FROM legs l JOIN accounts a ON a.id = l.account_id \
                     GROUP BY l.entry_id HAVING COUNT(DISTINCT a.currency) > 1 ORDER BY l.entry_id LIMIT 100",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                for r in &mixed {
                    let id: i64 = r.try_get("entry_id")?;
                    report.problems.push(format!("entry {id}: legs in more than one currency"));
                }
                let total = self.one_i64("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM legs").await?;
                if total != 0 {
                    report.problems.push(format!("all legs sum to {}, not zero", amount(total)));
                }
                let accounts = sqlx::query(
                    "SELECT a.id, a.balance, a.held, \
                       (SELECT CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) FROM legs l WHERE l.account_id = a.id) \
                         AS legs, \
                       (SELECT CAST(COALESCE(SUM(h.amount), 0) AS BIGINT) FROM holds h \
                         WHERE h.account_id = a.id AND h.state = 'open') AS holds, \
                       (SELECT CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) FROM legs l JOIN entries e \
                         ON e.id = l.entry_id WHERE l.account_id = a.id AND e.kind = 'debt') AS debt \
                     FROM accounts a WHERE a.kind <> 'system' ORDER BY a.id",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                for r in &accounts {
                    let id: i64 = r.try_get("id")?;
                    let (balance, held): (i64, i64) = (r.try_get("balance")?, r.try_get("held")?);
                    let (legs, holds, debt): (i64, i64, i64) =
                        (r.try_get("legs")?, r.try_get("holds")?, r.try_get("debt")?);
                    if balance != legs {
                        report.problems.push(format!(
                            "account {id}: balance {} but its legs sum to {}",
                            amount(balance),
                            amount(legs)
                        ));
                    }
                    if held != holds {
                        report.problems.push(format!(
                            "account {id}: held {} but its open holds sum to {}",
                            amount(held),
                            amount(holds)
                        ));
                    }
                    // Only debt entries (negative legs) may leave a balance below what it holds.
                    if balance - held < debt {
                        report.problems.push(format!(
                            "account {id}: balance {} below its holds {} beyond its debt entries {}",
                            amount(balance),
                            amount(held),
                            amount(debt)
                        ));
                    }
                }
                let holds = sqlx::query(
                    "SELECT h.id, h.charged, \
                       (SELECT COUNT(*) FROM entries e WHERE e.hold_id = h.id AND e.kind = 'charge') AS n, \
                       (SELECT CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) FROM entries e JOIN legs l \
                         ON l.entry_id = e.id WHERE e.hold_id = h.id AND e.kind = 'charge' \
                         AND l.account_id = h.account_id) AS debited \
                     FROM holds h WHERE h.state = 'settled' \
                       AND ((SELECT COUNT(*) FROM entries e WHERE e.hold_id = h.id AND e.kind = 'charge') <> 1 \
                         OR (SELECT CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) FROM entries e JOIN legs l \
                           ON l.entry_id = e.id WHERE e.hold_id = h.id AND e.kind = 'charge' \
                           AND l.account_id = h.account_id) <> -h.charged) \
                     ORDER BY h.id LIMIT 100",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                for r in &holds {
                    let id: i64 = r.try_get("id")?;
                    let n: i64 = r.try_get("n")?;
                    let charged: Option<i64> = r.try_get("charged")?;
                    let debited: i64 = r.try_get("debited")?;
                    report.problems.push(format!(
                        "hold {id}: settled for {} but {n} charge entries debit {}",
                        amount(charged.unwrap_or(0)),
                        amount(-debited)
                    ));
                }
                let stray = self
                    .one_i64(
                        "SELECT COUNT(*) FROM entries e WHERE e.kind = 'charge' AND (e.hold_id IS NULL OR NOT EXISTS \
                         (SELECT 1 FROM holds h WHERE h.id = e.hold_id AND h.state = 'settled'))",
                    )
                    .await?;
                if stray != 0 {
                    report.problems.push(format!("{stray} charge entries without a settled hold"));
                }
                Ok(report)
            }
        }

        #[async_trait]
        impl HoldRepository for $repo {
            async fn reserve(&mut self, hold: &NewHold<'_>) -> Result<Option<StoredHold>> {
                reserve_statement(&mut self.tx, hold).await
            }

            async fn reserve_all(&mut self, holds: &[NewHold<'_>]) -> Result<Vec<Option<StoredHold>>> {
                reserve_all_statement(self, holds).await
            }

            async fn close_all(&mut self, closings: &[Closing<'_>], now_ms: i64) -> Result<Vec<Option<StoredHold>>> {
                close_all_statement(self, closings, now_ms).await
            }

            async fn get_many(&mut self, ids: &[HoldId]) -> Result<Vec<StoredHold>> {
                get_holds_statement(self, ids).await
            }

            async fn get(&mut self, id: HoldId) -> Result<Option<StoredHold>> {
                let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1 AND account_id = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id.seq)
                    .bind(id.account.0)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.as_ref().map(hold_from_row).transpose()
            }

            async fn extend(&mut self, id: HoldId, more: Amount, expires_at_ms: i64) -> Result<ExtendOutcome> {
                let r = sqlx::query(
                    "UPDATE holds SET amount = amount + $3, expires_at = $4 \
                     WHERE id = $1 AND account_id = $2 AND state = 'open'",
                )
                .bind(id.seq)
                .bind(id.account.0)
                .bind(more.micros())
                .bind(expires_at_ms)
                .execute(&mut *self.tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(ExtendOutcome::NotOpen);
                }
                let r = sqlx::query(
                    "UPDATE accounts SET held = held + $2 WHERE id = $1 AND NOT disabled AND balance - held >= $2",
                )
                .bind(id.account.0)
                .bind(more.micros())
                .execute(&mut *self.tx)
                .await?;
                Ok(if r.rows_affected() == 1 { ExtendOutcome::Extended } else { ExtendOutcome::InsufficientFunds })
            }

            async fn close(&mut self, id: HoldId, close: &Close<'_>) -> Result<Option<StoredHold>> {
                let sql = format!(
                    "UPDATE holds SET state = $3, charged = $4, units = $5, carrier = $6, closed_at = $7 \
                     WHERE id = $1 AND account_id = $2 AND state = 'open' RETURNING {HOLD_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id.seq)
                    .bind(id.account.0)
                    .bind(close.state.as_str())
                    .bind(close.charged.map(Amount::micros))
                    .bind(close.usage)
                    .bind(close.carrier)
                    .bind(close.now_ms)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let hold = hold_from_row(&row)?;
                sqlx::query("UPDATE accounts SET held = held - $2 WHERE id = $1")
                    .bind(id.account.0)
                    .bind(hold.amount.micros())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(Some(hold))
            }

            async fn expired(&mut self, now_ms: i64, account: Option<AccountId>, limit: u32) -> Result<Vec<HoldId>> {
                let rows = sqlx::query(
                    "SELECT id, account_id FROM holds WHERE state = 'open' AND expires_at <= $1 \
                     AND ($2 = 0 OR account_id = $2) ORDER BY expires_at LIMIT $3",
                )
                .bind(now_ms)
                .bind(account.map_or(0, |a| a.0))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|r| Ok(HoldId { account: AccountId(r.try_get("account_id")?), seq: r.try_get("id")? }))
                    .collect()
            }

            async fn open_total(&mut self) -> Result<u64> {
                Ok(self.one_i64("SELECT COUNT(*) FROM holds WHERE state = 'open'").await? as u64)
            }

            async fn open_count(&mut self, account: AccountId) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM holds WHERE account_id = $1 AND state = 'open'")
                    .bind(account.0)
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok(n as u64)
            }

            async fn charged_since(&mut self, account: AccountId, since_ms: i64) -> Result<Amount> {
                let s: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(charged), 0) AS BIGINT) FROM holds \
                     WHERE account_id = $1 AND state = 'settled' AND closed_at >= $2",
                )
                .bind(account.0)
                .bind(since_ms)
                .fetch_one(&mut *self.tx)
                .await?;
                Ok(amount(s))
            }

            async fn settled(&mut self, account: AccountId, before: Option<i64>, limit: u32) -> Result<Vec<StoredHold>> {
                let sql = format!(
                    "SELECT {HOLD_COLUMNS} FROM holds WHERE account_id = $1 AND state = 'settled' AND id < $2 \
                     ORDER BY id DESC LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account.0)
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(hold_from_row).collect()
            }
        }

        #[async_trait]
        impl IdempotencyRepository for $repo {
            async fn get(&mut self, principal: &str, key: &str) -> Result<Option<IdempotentResponse>> {
                let row = sqlx::query(
                    "SELECT op, fingerprint, response FROM idempotency WHERE principal = $1 AND key = $2",
                )
                .bind(principal)
                .bind(key)
                .fetch_optional(&mut *self.tx)
                .await?;
                Ok(match row {
                    Some(r) => Some(IdempotentResponse {
                        op: r.try_get("op")?,
                        fingerprint: r.try_get("fingerprint")?,
                        response: r.try_get("response")?,
                    }),
                    None => None,
                })
            }

            async fn get_many(&mut self, keys: &[(&str, &str)]) -> Result<Vec<Option<IdempotentResponse>>> {
                get_records_statement(self, keys).await
            }

            async fn put_many(&mut self, records: &[(&str, &str, IdempotentResponse)], now_ms: i64) -> Result<()> {
                put_records_statement(self, records, now_ms).await
            }

            async fn put(&mut self, principal: &str, key: &str, record: &IdempotentResponse, now_ms: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO idempotency (principal, key, op, fingerprint, response, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(principal)
                .bind(key)
                .bind(&record.op)
                .bind(&record.fingerprint)
                .bind(&record.response)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await
                .map_err(|e| duplicate_or(e, "idempotency key"))?;
                Ok(())
            }
        }

        #[async_trait]
        impl TokenRepository for $repo {
            async fn add(
                &mut self,
                hash: TokenHash,
                scope: Scope,
                subject: &str,
                account: Option<AccountId>,
                expires_at_ms: Option<i64>,
                now_ms: i64,
            ) -> Result<ApiToken> {
                let row = sqlx::query(
                    "INSERT INTO api_tokens (token_hash, scope, subject, account_id, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, scope, subject, account_id, expires_at",
                )
                .bind(&hash.0[..])
                .bind(scope.as_str())
                .bind(subject)
                .bind(account.map(|a| a.0))
                .bind(expires_at_ms)
                .bind(now_ms)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(|e| duplicate_or(e, "token"))?;
                token_from_row(&row)
            }

            async fn by_hash(&mut self, hash: &TokenHash, now_ms: i64) -> Result<Option<ApiToken>> {
                let row = sqlx::query(
                    "SELECT id, token_hash, scope, subject, account_id, expires_at FROM api_tokens \
                     WHERE token_hash = $1 AND (expires_at IS NULL OR expires_at > $2)",
                )
                .bind(&hash.0[..])
                .bind(now_ms)
                .fetch_optional(&mut *self.tx)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let stored: Vec<u8> = row.try_get("token_hash")?;
                let stored: [u8; 32] = stored.try_into().map_err(|_| corrupt("api_tokens", "token_hash"))?;
                if !TokenHash(stored).matches(hash) {
                    return Ok(None);
                }
                token_from_row(&row).map(Some)
            }

            async fn list(&mut self) -> Result<Vec<ApiToken>> {
                let rows = sqlx::query(
                    "SELECT id, scope, subject, account_id, expires_at FROM api_tokens \
                     WHERE scope <> 'user' ORDER BY id",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(token_from_row).collect()
            }

            async fn delete(&mut self, id: i64) -> Result<bool> {
                let r = sqlx::query("DELETE FROM api_tokens WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
                Ok(r.rows_affected() == 1)
            }
        }

        impl $repo {
            async fn insert_rates(&mut self, table: &'static str, owner: &'static str, key: RateKey<'_>, deck: &RateDeck) -> Result<()> {
                let sql = format!(
                    "INSERT INTO {table} ({owner}, {RATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                );
                for r in deck.rates() {
                    let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                    let q = match key {
                        RateKey::Plan(p) => q.bind(p.to_owned()),
                        RateKey::Carrier(c) => q.bind(c),
                    };
                    q.bind(&r.prefix)
                        .bind(&r.description)
                        .bind(r.connect_fee.micros())
                        .bind(r.per_minute.map(Amount::micros))
                        .bind(r.increments.first as i32)
                        .bind(r.increments.next as i32)
                        .bind(r.per_segment.map(Amount::micros))
                        .bind(r.per_mms.map(Amount::micros))
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(())
            }
        }

        #[derive(Clone, Copy)]
        enum RateKey<'a> {
            Plan(&'a str),
            Carrier(i64),
        }

        #[async_trait]
        impl RateRepository for $repo {
            async fn replace(&mut self, plan: &str, deck: &RateDeck) -> Result<()> {
                sqlx::query("DELETE FROM rates WHERE plan = $1").bind(plan).execute(&mut *self.tx).await?;
                self.insert_rates("rates", "plan", RateKey::Plan(plan), deck).await
            }

            async fn deck(&mut self, plan: &str) -> Result<RateDeck> {
                let sql = format!("SELECT {RATE_COLUMNS} FROM rates WHERE plan = $1");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(plan).fetch_all(&mut *self.tx).await?;
                Ok(RateDeck::new(rows.iter().map(rate_from_row).collect::<Result<Vec<_>>>()?))
            }

            async fn lookup(&mut self, plan: &str, digits: &str) -> Result<Option<Rate>> {
                let prefixes: Vec<&str> = $crate::rating::prefixes_of(digits).collect();
                if prefixes.is_empty() {
                    return Ok(None);
                }
                let sql = format!(
                    "SELECT {RATE_COLUMNS} FROM rates WHERE plan = $1 AND prefix IN ({}) \
                     ORDER BY LENGTH(prefix) DESC LIMIT 1",
                    placeholders(2, prefixes.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(plan);
                for p in &prefixes {
                    q = q.bind(*p);
                }
                let row = q.fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(rate_from_row).transpose()
            }

            async fn plans(&mut self) -> Result<Vec<(String, u64)>> {
                let rows = sqlx::query("SELECT plan, COUNT(*) AS n FROM rates GROUP BY plan ORDER BY plan")
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(|r| Ok((r.try_get("plan")?, r.try_get::<i64, _>("n")? as u64))).collect()
            }
        }

        #[async_trait]
        impl CarrierRepository for $repo {
            async fn add(&mut self, name: &str, kind: CarrierKind, priority: i32, max_concurrent: i32) -> Result<Carrier> {
                let row = sqlx::query(
                    "INSERT INTO carriers (name, kind, priority, max_concurrent, created_at) VALUES ($1, $2, $3, $4, $5) \
                     RETURNING id, name, kind, priority, max_concurrent, enabled",
                )
                .bind(name)
                .bind(kind.as_str())
                .bind(priority)
                .bind(max_concurrent)
                .bind(self.now_ms())
                .fetch_one(&mut *self.tx)
                .await
                .map_err(|e| duplicate_or(e, "carrier"))?;
                carrier_from_row(&row)
            }

            async fn by_name(&mut self, name: &str) -> Result<Option<Carrier>> {
                let row = sqlx::query(
                    "SELECT id, name, kind, priority, max_concurrent, enabled FROM carriers WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&mut *self.tx)
                .await?;
                row.as_ref().map(carrier_from_row).transpose()
            }

            async fn list(&mut self) -> Result<Vec<Carrier>> {
                let rows =
                    sqlx::query("SELECT id, name, kind, priority, max_concurrent, enabled FROM carriers ORDER BY name")
                        .fetch_all(&mut *self.tx)
                        .await?;
                rows.iter().map(carrier_from_row).collect()
            }

            async fn set_enabled(&mut self, id: i64, enabled: bool) -> Result<bool> {
                let r = sqlx::query("UPDATE carriers SET enabled = $2 WHERE id = $1")
                    .bind(id)
                    .bind(enabled)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn replace_deck(&mut self, id: i64, deck: &RateDeck) -> Result<()> {
                sqlx::query("DELETE FROM carrier_rates WHERE carrier_id = $1").bind(id).execute(&mut *self.tx).await?;
                self.insert_rates("carrier_rates", "carrier_id", RateKey::Carrier(id), deck).await
            }

            async fn candidates(&mut self, kind: CarrierKind, digits: &str) -> Result<Vec<CarrierRoute>> {
                let prefixes: Vec<&str> = $crate::rating::prefixes_of(digits).collect();
                if prefixes.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT c.id, c.name, c.kind, c.priority, c.max_concurrent, c.enabled, \
                       r.prefix, r.description, r.connect_fee, r.per_minute, r.first_incr, r.next_incr, r.per_sms, r.per_mms \
                     FROM carriers c JOIN carrier_rates r ON r.carrier_id = c.id \
                     WHERE c.enabled AND c.kind = $1 AND r.prefix IN ({}) ORDER BY c.id, LENGTH(r.prefix) DESC",
                    placeholders(2, prefixes.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(kind.as_str());
                for p in &prefixes {
                    q = q.bind(*p);
                }
                let rows = q.fetch_all(&mut *self.tx).await?;
                let mut out: Vec<CarrierRoute> = Vec::new();
                for row in &rows {
                    let carrier = carrier_from_row(row)?;
                    // Rows come longest prefix first per carrier: keep the first of each.
                    if out.last().is_some_and(|r| r.carrier.id == carrier.id) {
                        continue;
                    }
                    out.push(CarrierRoute { carrier, cost: rate_from_row(row)? });
                }
                Ok(out)
            }
        }

        fn call_record_from_row(row: &Row) -> Result<CallRecord> {
            let result: String = row.try_get("result")?;
            let cur: String = row.try_get("currency")?;
            let small = |v: i64, col: &'static str| u32::try_from(v).map_err(|_| corrupt("call_records", col));
            Ok(CallRecord {
                id: row.try_get("id")?,
                call_id: row.try_get("call_id")?,
                attempt: small(row.try_get::<i32, _>("attempt")?.into(), "attempt")?,
                account_id: AccountId(row.try_get("account_id")?),
                hold_seq: row.try_get("hold_id")?,
                destination: row.try_get("destination")?,
                carrier: row.try_get("carrier")?,
                result: CallResult::parse_stored(&result)?,
                sip_status: u16::try_from(row.try_get::<i32, _>("sip_status")?)
                    .map_err(|_| corrupt("call_records", "sip_status"))?,
                reason: row.try_get("reason")?,
                q850_cause: row
                    .try_get::<Option<i32>, _>("q850_cause")?
                    .map(|c| u16::try_from(c).map_err(|_| corrupt("call_records", "q850_cause")))
                    .transpose()?,
                started_at_ms: row.try_get("started_at")?,
                answered_at_ms: row.try_get("answered_at")?,
                ended_at_ms: row.try_get("ended_at")?,
                billed_seconds: row
                    .try_get::<Option<i64>, _>("billed_seconds")?
                    .map(|s| small(s, "billed_seconds"))
                    .transpose()?,
                price: row.try_get::<Option<i64>, _>("price")?.map(amount),
                cost: row.try_get::<Option<i64>, _>("cost")?.map(amount),
                currency: currency(&cur, "call_records")?,
            })
        }

        #[async_trait]
        impl CallRecordRepository for $repo {
            async fn add(&mut self, r: &CallRecord) -> Result<i64> {
                let id = sqlx::query_scalar::<_, i64>(
                    "INSERT INTO call_records (call_id, attempt, account_id, hold_id, destination, carrier, result, \
                     sip_status, reason, q850_cause, started_at, answered_at, ended_at, billed_seconds, price, cost, \
                     currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                     RETURNING id",
                )
                .bind(&r.call_id)
                .bind(i32::try_from(r.attempt).unwrap_or(i32::MAX))
                .bind(r.account_id.0)
                .bind(r.hold_seq)
                .bind(&r.destination)
                .bind(r.carrier.as_deref())
                .bind(r.result.as_str())
                .bind(i32::from(r.sip_status))
                .bind(&r.reason)
                .bind(r.q850_cause.map(i32::from))
                .bind(r.started_at_ms)
                .bind(r.answered_at_ms)
                .bind(r.ended_at_ms)
                .bind(r.billed_seconds.map(i64::from))
                .bind(r.price.map(Amount::micros))
                .bind(r.cost.map(Amount::micros))
                .bind(r.currency.as_str())
                .fetch_one(&mut *self.tx)
                .await
                .map_err(|e| duplicate_or(e, "call record"))?;
                Ok(id)
            }

            async fn get(&mut self, call_id: &str, attempt: u32) -> Result<Option<CallRecord>> {
                let row = sqlx::query("SELECT * FROM call_records WHERE call_id = $1 AND attempt = $2")
                    .bind(call_id)
                    .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.as_ref().map(call_record_from_row).transpose()
            }

            async fn list(&mut self, account: Option<AccountId>, after: i64, limit: u32) -> Result<Vec<CallRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM call_records WHERE ($1 IS NULL OR account_id = $1) AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(account.map(|a| a.0))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(call_record_from_row).collect()
            }

            async fn recent(&mut self, account: AccountId, limit: u32) -> Result<Vec<CallRecord>> {
                let rows = sqlx::query("SELECT * FROM call_records WHERE account_id = $1 ORDER BY id DESC LIMIT $2")
                    .bind(account.0)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(call_record_from_row).collect()
            }
        }

        fn live_call_from_row(row: &Row) -> Result<LiveCall> {
            let cur: String = row.try_get("currency")?;
            let small = |v: i64, col: &'static str| u32::try_from(v).map_err(|_| corrupt("live_calls", col));
            Ok(LiveCall {
                call_id: row.try_get("call_id")?,
                run_id: row.try_get("run_id")?,
                account_id: AccountId(row.try_get("account_id")?),
                hold_seq: row.try_get("hold_id")?,
                destination: row.try_get("destination")?,
                currency: currency(&cur, "live_calls")?,
                started_at_ms: row.try_get("started_at")?,
                attempt: small(row.try_get::<i32, _>("attempt")?.into(), "attempt")?,
                carrier: row.try_get("carrier")?,
                attempt_started_at_ms: row.try_get("attempt_started_at")?,
                answered_at_ms: row.try_get("answered_at")?,
                paid_seconds: small(row.try_get("paid_seconds")?, "paid_seconds")?,
                ended_at_ms: row.try_get("ended_at")?,
                sip_dialog: None,
            })
        }

        fn gateway_run_from_row(r: &Row) -> Result<GatewayRun> {
            Ok(GatewayRun {
                run_id: r.try_get("run_id")?,
                node: r.try_get("node")?,
                heartbeat_at_ms: r.try_get("heartbeat_at")?,
                claimed_by: r.try_get("claimed_by")?,
            })
        }

        #[async_trait]
        impl LiveCallRepository for $repo {
            async fn start_run(&mut self, run_id: &str, node: &str, now_ms: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO gateway_runs (run_id, node, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)",
                )
                .bind(run_id)
                .bind(node)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await
                .map_err(|e| duplicate_or(e, "gateway run"))?;
                Ok(())
            }

            async fn heartbeat(&mut self, run_id: &str, at_ms: i64) -> Result<bool> {
                // Matches the run's row whenever it is unclaimed (a heartbeat never moves back), so the count
                // says whether the run is still its own.
                let done = sqlx::query(
                    "UPDATE gateway_runs SET heartbeat_at = CASE WHEN heartbeat_at < $2 THEN $2 ELSE heartbeat_at END \
                     WHERE run_id = $1 AND claimed_by IS NULL",
                )
                .bind(run_id)
                .bind(at_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn stale_runs(&mut self, node: &str, current: &str) -> Result<Vec<GatewayRun>> {
                let rows = sqlx::query(
                    "SELECT run_id, node, heartbeat_at, claimed_by FROM gateway_runs WHERE node = $1 AND run_id <> $2 \
                     ORDER BY started_at, run_id",
                )
                .bind(node)
                .bind(current)
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(gateway_run_from_row).collect()
            }

            async fn silent_runs(&mut self, current: &str, stale_before_ms: i64) -> Result<Vec<GatewayRun>> {
                let rows = sqlx::query(
                    "SELECT run_id, node, heartbeat_at, claimed_by FROM gateway_runs \
                     WHERE run_id <> $1 AND heartbeat_at < $2 ORDER BY heartbeat_at, run_id",
                )
                .bind(current)
                .bind(stale_before_ms)
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(gateway_run_from_row).collect()
            }

            async fn claim_run(
                &mut self,
                run_id: &str,
                claimer: &str,
                stale_before_ms: i64,
                alive_since_ms: i64,
                now_ms: i64,
            ) -> Result<bool> {
                // One statement: PostgreSQL re-checks the condition on the newest row after waiting for a
                // concurrent claim, so of two survivors claiming at once one matches and the other does not.
                let done = sqlx::query(
                    "UPDATE gateway_runs SET claimed_by = $2, claimed_at = $5 \
                     WHERE run_id = $1 AND run_id <> $2 AND heartbeat_at < $3 \
                     AND (claimed_by IS NULL OR claimed_by = $2 OR NOT EXISTS ( \
                         SELECT 1 FROM gateway_runs c WHERE c.run_id = gateway_runs.claimed_by \
                         AND c.heartbeat_at >= $4 AND c.claimed_by IS NULL))",
                )
                .bind(run_id)
                .bind(claimer)
                .bind(stale_before_ms)
                .bind(alive_since_ms)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn forget_run(&mut self, run_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM gateway_runs WHERE run_id = $1").bind(run_id).execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn own_run(&mut self, run_id: &str) -> Result<bool> {
                let row = sqlx::query(OWN_RUN).bind(run_id).fetch_optional(&mut *self.tx).await?;
                Ok(row.is_some())
            }

            async fn open(&mut self, c: &LiveCall) -> Result<()> {
                sqlx::query(
                    "INSERT INTO live_calls (call_id, run_id, account_id, hold_id, destination, currency, started_at, \
                     attempt, carrier, attempt_started_at, answered_at, paid_seconds, ended_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (call_id) DO NOTHING",
                )
                .bind(&c.call_id)
                .bind(&c.run_id)
                .bind(c.account_id.0)
                .bind(c.hold_seq)
                .bind(&c.destination)
                .bind(c.currency.as_str())
                .bind(c.started_at_ms)
                .bind(i32::try_from(c.attempt).unwrap_or(i32::MAX))
                .bind(c.carrier.as_deref())
                .bind(c.attempt_started_at_ms)
                .bind(c.answered_at_ms)
                .bind(i64::from(c.paid_seconds))
                .bind(c.ended_at_ms)
                .execute(&mut *self.tx)
                .await?;
                if let Some(dialog) = &c.sip_dialog {
                    // Taken already by this call: nothing; by another (a node taking it at once): a duplicate.
                    sqlx::query(
                        "INSERT INTO sip_dialogs (dialog, call_id, created_at) SELECT $1, $2, $3 \
                         WHERE NOT EXISTS (SELECT 1 FROM sip_dialogs WHERE dialog = $1 AND call_id = $2)",
                    )
                    .bind(dialog)
                    .bind(&c.call_id)
                    .bind(c.started_at_ms)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| duplicate_or(e, "sip dialog"))?;
                }
                Ok(())
            }

            async fn dialog_taken(&mut self, dialog: &str, call_id: &str) -> Result<bool> {
                let row = sqlx::query("SELECT call_id FROM sip_dialogs WHERE dialog = $1")
                    .bind(dialog)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                Ok(match row {
                    Some(r) => r.try_get::<String, _>("call_id")? != call_id,
                    None => false,
                })
            }

            async fn prune_dialogs(&mut self, before_ms: i64) -> Result<u64> {
                let done = sqlx::query("DELETE FROM sip_dialogs WHERE created_at < $1")
                    .bind(before_ms)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn attempt(&mut self, call_id: &str, attempt: u32, carrier: &str, at_ms: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE live_calls SET attempt = $2, carrier = $3, attempt_started_at = $4 WHERE call_id = $1",
                )
                .bind(call_id)
                .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
                .bind(carrier)
                .bind(at_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn answered(&mut self, call_id: &str, at_ms: i64, paid_seconds: u32) -> Result<()> {
                sqlx::query("UPDATE live_calls SET answered_at = $2, paid_seconds = $3 WHERE call_id = $1")
                    .bind(call_id)
                    .bind(at_ms)
                    .bind(i64::from(paid_seconds))
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn paid(&mut self, call_id: &str, paid_seconds: u32) -> Result<()> {
                sqlx::query("UPDATE live_calls SET paid_seconds = $2 WHERE call_id = $1")
                    .bind(call_id)
                    .bind(i64::from(paid_seconds))
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn ended(&mut self, call_id: &str, at_ms: i64) -> Result<()> {
                sqlx::query("UPDATE live_calls SET ended_at = $2 WHERE call_id = $1 AND ended_at IS NULL")
                    .bind(call_id)
                    .bind(at_ms)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn close(&mut self, call_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM live_calls WHERE call_id = $1").bind(call_id).execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn of_run(&mut self, run_id: &str) -> Result<Vec<LiveCall>> {
                let rows = sqlx::query("SELECT * FROM live_calls WHERE run_id = $1 ORDER BY call_id")
                    .bind(run_id)
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(live_call_from_row).collect()
            }
        }

        #[async_trait]
        impl LimitRepository for $repo {
            async fn get(&mut self, account: AccountId) -> Result<Limits> {
                let row = sqlx::query(
                    "SELECT max_open_holds, max_spend_hour, max_spend_day, opt_in, blocked FROM account_limits \
                     WHERE account_id = $1",
                )
                .bind(account.0)
                .fetch_optional(&mut *self.tx)
                .await?;
                let Some(row) = row else { return Ok(Limits::default()) };
                let list = |col: &'static str, s: String| {
                    serde_json::from_str::<Vec<String>>(&s).map_err(|_| corrupt("account_limits", col))
                };
                Ok(Limits {
                    max_open_holds: row.try_get::<Option<i32>, _>("max_open_holds")?.map(|n| n.max(0) as u32),
                    max_spend_hour: row.try_get::<Option<i64>, _>("max_spend_hour")?.map(amount),
                    max_spend_day: row.try_get::<Option<i64>, _>("max_spend_day")?.map(amount),
                    opt_in: list("opt_in", row.try_get("opt_in")?)?,
                    blocked: list("blocked", row.try_get("blocked")?)?,
                })
            }

            async fn set(&mut self, account: AccountId, limits: &Limits) -> Result<()> {
                sqlx::query("DELETE FROM account_limits WHERE account_id = $1")
                    .bind(account.0)
                    .execute(&mut *self.tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO account_limits (account_id, max_open_holds, max_spend_hour, max_spend_day, opt_in, \
                     blocked) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(account.0)
                .bind(limits.max_open_holds.map(|n| n.min(i32::MAX as u32) as i32))
                .bind(limits.max_spend_hour.map(Amount::micros))
                .bind(limits.max_spend_day.map(Amount::micros))
                .bind(serde_json::to_string(&limits.opt_in).expect("strings serialise"))
                .bind(serde_json::to_string(&limits.blocked).expect("strings serialise"))
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl VoucherRepository for $repo {
            async fn create_batch(
                &mut self,
                name: &str,
                value: Amount,
                cur: $crate::money::Currency,
                codes: &[TokenHash],
                expires_at_ms: Option<i64>,
            ) -> Result<VoucherBatch> {
                let row = sqlx::query(
                    "INSERT INTO voucher_batches (name, amount, currency, count, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, name, amount, currency, count, expires_at",
                )
                .bind(name)
                .bind(value.micros())
                .bind(cur.as_str())
                .bind(codes.len() as i32)
                .bind(expires_at_ms)
                .bind(self.now_ms())
                .fetch_one(&mut *self.tx)
                .await?;
                let batch = batch_from_row(&row)?;
                for c in codes {
                    sqlx::query("INSERT INTO vouchers (code_hash, batch_id) VALUES ($1, $2)")
                        .bind(&c.0[..])
                        .bind(batch.id)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(|e| duplicate_or(e, "voucher code"))?;
                }
                Ok(batch)
            }

            async fn find(&mut self, code: &TokenHash) -> Result<Option<(VoucherBatch, Option<(AccountId, i64)>)>> {
                let row = sqlx::query(
                    "SELECT v.code_hash, v.redeemed_by, v.redeemed_at, b.id, b.name, b.amount, b.currency, b.count, \
                       b.expires_at FROM vouchers v JOIN voucher_batches b ON b.id = v.batch_id WHERE v.code_hash = $1",
                )
                .bind(&code.0[..])
                .fetch_optional(&mut *self.tx)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let stored: Vec<u8> = row.try_get("code_hash")?;
                let stored: [u8; 32] = stored.try_into().map_err(|_| corrupt("vouchers", "code_hash"))?;
                if !TokenHash(stored).matches(code) {
                    return Ok(None);
                }
                let by: Option<i64> = row.try_get("redeemed_by")?;
                let at: Option<i64> = row.try_get("redeemed_at")?;
                Ok(Some((batch_from_row(&row)?, by.map(|b| (AccountId(b), at.unwrap_or(0))))))
            }

            async fn mark_used(&mut self, code: &TokenHash, account: AccountId, now_ms: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE vouchers SET redeemed_by = $2, redeemed_at = $3 WHERE code_hash = $1 AND redeemed_by IS NULL",
                )
                .bind(&code.0[..])
                .bind(account.0)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn batches(&mut self) -> Result<Vec<(VoucherBatch, u32)>> {
                let rows = sqlx::query(
                    "SELECT b.id, b.name, b.amount, b.currency, b.count, b.expires_at, \
                       (SELECT COUNT(*) FROM vouchers v WHERE v.batch_id = b.id AND v.redeemed_by IS NOT NULL) AS used \
                     FROM voucher_batches b ORDER BY b.id DESC",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(|r| Ok((batch_from_row(r)?, r.try_get::<i64, _>("used")? as u32))).collect()
            }
        }
    };
}

pub(super) use impl_repositories;
