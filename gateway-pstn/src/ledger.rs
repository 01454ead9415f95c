//! The ledger's rules on top of [`crate::storage`]: accounts, reservations (reserve, extend, settle, release,
//! expiry), credits and debits, each write idempotent by its key.
//!
//! Holds are written by per-account-shard workers ([`batch`]): each worker takes every request queued for its
//! accounts and applies them in **one** transaction, so under load one commit (one disk flush) serves many
//! reservations and settlements. A batch of reservations, settlements and releases takes a handful of set
//! statements whatever its size ([`set`]: settlements first, then each account's reservations together);
//! any other batch is applied request by request, in the order they arrived ([`ops`]). Each
//! request inside a batch is refused without writing anything (a conditional statement that matched no row,
//! or a savepoint rolled back), so one refusal never spoils its neighbours; a database failure rolls the whole
//! batch back and it is run again (every request in it is idempotent). Correctness does not rest on the
//! workers: every decision is a conditional statement in the database, so several gateway nodes may share one
//! PostgreSQL database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tincan_common::Clock;
use tokio::sync::{mpsc, oneshot};

use tincan_enum_core::E164;

use crate::charging::{AccountId, AccountRef, ChargeError, Hold, HoldState, IdempotencyKey, ServiceKind};
use crate::fraud::FraudConfig;
use crate::metrics::LedgerMetrics;
use crate::money::{Amount, Currency};
use crate::rating::Rate;
use crate::storage::{
    Account, AccountKind, CarrierKind, CarrierRoute, DEFAULT_PLAN, EntryKind, IdempotentResponse, Limits, NewAccount,
    NewEntry, Repository, Storage, StorageError, StoredHold, SystemAccount, unix_ms,
};

mod batch;
mod local;
mod ops;
mod set;

pub use local::LocalCharging;

/// The ledger's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Hold workers (PostgreSQL; SQLite always has one, as it has one writer). Default 4.
    pub writers: usize,
    /// Most requests one worker applies in one transaction. Default 256.
    pub max_batch: usize,
    /// A hold's lifetime when the request names none, in seconds. Default 120.
    pub default_ttl_secs: u32,
    /// The longest hold lifetime a request may ask for, in seconds. Default 86400.
    pub max_ttl_secs: u32,
    /// How often expired holds are released, in milliseconds. Default 1000.
    pub sweep_interval_ms: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            writers: 4,
            max_batch: 256,
            default_ttl_secs: 120,
            max_ttl_secs: 86_400,
            sweep_interval_ms: 1000,
        }
    }
}

impl LedgerConfig {
    /// Problems with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=64).contains(&self.writers) {
            p.push("ledger.writers: 1 to 64".into());
        }
        if !(1..=10_000).contains(&self.max_batch) {
            p.push("ledger.max_batch: 1 to 10000".into());
        }
        if self.default_ttl_secs == 0 || self.default_ttl_secs > self.max_ttl_secs {
            p.push("ledger.default_ttl_secs: at least 1 and at most ledger.max_ttl_secs".into());
        }
        if self.sweep_interval_ms == 0 {
            p.push("ledger.sweep_interval_ms: at least 1".into());
        }
        p
    }
}

/// Why a ledger operation outside the charging interface failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A charging rule refused it.
    #[error(transparent)]
    Charge(#[from] ChargeError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<LedgerError> for ChargeError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Charge(c) => c,
            LedgerError::Storage(s) => storage_unavailable(&s),
        }
    }
}

pub(crate) fn storage_unavailable(e: &StorageError) -> ChargeError {
    tracing::error!(error = %e, "ledger storage failure");
    ChargeError::Unavailable("storage failure".into())
}

/// The ledger: accounts, holds and journal entries, with the rules that keep them right.
pub struct Ledger {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
    workers: Vec<mpsc::Sender<batch::Job>>,
    cache: Cache,
    metrics: Arc<LedgerMetrics>,
    fraud: RwLock<Arc<FraudConfig>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("storage", &self.storage).field("config", &self.config).finish()
    }
}

/// System account ids a transaction looked up or created, cached by [`Ledger::remember`] after its commit.
#[derive(Default)]
pub(crate) struct Learned(Vec<((SystemAccount, Currency), AccountId)>);

/// Facts that never change once written: which account a user has, an account's currency, the system
/// accounts' ids.
#[derive(Default)]
struct Cache {
    users: RwLock<HashMap<String, AccountId>>,
    currencies: RwLock<HashMap<AccountId, Currency>>,
    system: RwLock<HashMap<(SystemAccount, Currency), AccountId>>,
    /// Each account's own fraud limits and when they were read (Unix ms).
    limits: RwLock<HashMap<AccountId, (i64, Arc<Limits>)>>,
}

/// How long an account's limits are read from memory before the database is asked again (a change made on
/// another node applies within this time; on this node at once).
const LIMITS_TTL_MS: i64 = 5_000;

impl Ledger {
    /// Starts the ledger's hold workers (on the current Tokio runtime).
    pub fn start(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>, config: LedgerConfig) -> Arc<Ledger> {
        Self::start_with_metrics(storage, clock, config, Arc::default())
    }

    /// [`Ledger::start`], counting into `metrics`.
    pub fn start_with_metrics(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        config: LedgerConfig,
        metrics: Arc<LedgerMetrics>,
    ) -> Arc<Ledger> {
        let writers = match storage.backend() {
            crate::storage::Backend::Sqlite => 1,
            crate::storage::Backend::Postgres => config.writers.max(1),
        };
        Arc::new_cyclic(|weak| {
            let workers = (0..writers)
                .map(|_| {
                    let (tx, rx) = mpsc::channel(config.max_batch * 16);
                    tokio::spawn(batch::worker(weak.clone(), rx));
                    tx
                })
                .collect();
            Ledger { storage, clock, config, workers, cache: Cache::default(), metrics, fraud: RwLock::default() }
        })
    }

    /// Sets the fraud limits for every account.
    pub fn set_fraud(&self, fraud: FraudConfig) {
        *self.fraud.write().expect("fraud lock") = Arc::new(fraud);
    }

    pub(crate) fn fraud(&self) -> Arc<FraudConfig> {
        self.fraud.read().expect("fraud lock").clone()
    }

    /// The account's own fraud limits.
    pub async fn limits(&self, account: AccountId) -> Result<Arc<Limits>, LedgerError> {
        let now = self.now_ms();
        if let Some((at, l)) = self.cache.limits.read().expect("cache lock").get(&account)
            && now - at < LIMITS_TTL_MS
        {
            return Ok(l.clone());
        }
        let mut tx = self.storage.begin_read().await?;
        let l = Arc::new(tx.limits().get(account).await?);
        self.cache.limits.write().expect("cache lock").insert(account, (now, l.clone()));
        Ok(l)
    }

    /// Sets the account's own fraud limits.
    pub async fn set_limits(&self, account: AccountId, limits: Limits) -> Result<(), LedgerError> {
        if let Some(bad) = limits.opt_in.iter().chain(&limits.blocked).find(|p| !crate::fraud::is_prefix(p)) {
            return Err(ChargeError::Invalid(format!("{bad:?} is not a prefix of 1 to 15 digits")).into());
        }
        let mut tx = self.storage.begin().await?;
        tx.accounts().get(account).await?.filter(|a| a.kind.is_customer()).ok_or(ChargeError::AccountNotFound)?;
        tx.limits().set(account, &limits).await?;
        tx.commit().await?;
        self.cache.limits.write().expect("cache lock").insert(account, (self.now_ms(), Arc::new(limits)));
        Ok(())
    }

    /// The rate of `destination` for the account: its plan's longest prefix, else the default plan's.
    pub async fn rate(&self, account: &Account, destination: &E164) -> Result<Option<Rate>, LedgerError> {
        let mut tx = self.storage.begin_read().await?;
        if let Some(r) = tx.rates().lookup(&account.plan, destination.digits()).await? {
            return Ok(Some(r));
        }
        if account.plan != DEFAULT_PLAN {
            return Ok(tx.rates().lookup(DEFAULT_PLAN, destination.digits()).await?);
        }
        Ok(None)
    }

    /// The carriers that can carry `service` to `destination`, in the order to try them (least cost, then
    /// priority).
    pub async fn routes(&self, destination: &E164, service: ServiceKind) -> Result<Vec<CarrierRoute>, LedgerError> {
        let mut tx = self.storage.begin_read().await?;
        let found = tx.carriers().candidates(CarrierKind::for_service(service), destination.digits()).await?;
        Ok(crate::routing::order(found, service))
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<LedgerMetrics> {
        &self.metrics
    }

    /// The charging interface for a caller: `principal` scopes its idempotency keys and its holds (a service's
    /// name, `user:<account>` for a user).
    pub fn charging(self: &Arc<Self>, principal: impl Into<String>) -> LocalCharging {
        LocalCharging { ledger: self.clone(), principal: principal.into() }
    }

    pub(crate) fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    /// The user's account, created (in `currency`) on first use.
    pub async fn user_account(
        &self,
        user_id: &str,
        number: Option<&str>,
        currency: Currency,
    ) -> Result<Account, LedgerError> {
        let mut tx = self.storage.begin().await?;
        if let Some(a) = tx.accounts().by_user(user_id).await? {
            return Ok(a);
        }
        let new = NewAccount {
            kind: AccountKind::User,
            name: number.unwrap_or(user_id).to_owned(),
            user_id: Some(user_id.to_owned()),
            number: number.map(str::to_owned),
            currency,
        };
        match tx.accounts().create(&new).await {
            Ok(a) => {
                tx.commit().await?;
                Ok(a)
            }
            // Created meanwhile by a concurrent first request (PostgreSQL; SQLite serialises them).
            Err(e) if e.is_transient() => {
                drop(tx);
                let mut tx = self.storage.begin_read().await?;
                Ok(tx.accounts().by_user(user_id).await?.ok_or(e)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a business account.
    pub async fn create_business(&self, name: &str, currency: Currency) -> Result<Account, LedgerError> {
        if name.trim().is_empty() || name.len() > 200 {
            return Err(ChargeError::Invalid("a business name is 1 to 200 characters".into()).into());
        }
        let mut tx = self.storage.begin().await?;
        let new =
            NewAccount { kind: AccountKind::Business, name: name.to_owned(), user_id: None, number: None, currency };
        let a = tx.accounts().create(&new).await?;
        tx.commit().await?;
        Ok(a)
    }

    /// The account, as it is now.
    pub async fn account(&self, which: &AccountRef) -> Result<Account, LedgerError> {
        let mut tx = self.storage.begin_read().await?;
        let a = match which {
            AccountRef::User { user_id } => tx.accounts().by_user(user_id).await?,
            AccountRef::Id { account_id } => tx.accounts().get(*account_id).await?,
        };
        a.filter(|a| a.kind.is_customer()).ok_or(ChargeError::AccountNotFound.into())
    }

    /// The account's id and currency, from the cache when known.
    pub(crate) async fn resolve(&self, which: &AccountRef) -> Result<(AccountId, Currency), LedgerError> {
        let cached = match which {
            AccountRef::User { user_id } => self.cache.users.read().expect("cache lock").get(user_id).copied(),
            AccountRef::Id { account_id } => Some(*account_id),
        };
        if let Some(id) = cached
            && let Some(c) = self.cache.currencies.read().expect("cache lock").get(&id)
        {
            return Ok((id, *c));
        }
        let a = self.account(which).await?;
        if let Some(u) = &a.user_id {
            self.cache.users.write().expect("cache lock").insert(u.clone(), a.id);
        }
        self.cache.currencies.write().expect("cache lock").insert(a.id, a.currency);
        Ok((a.id, a.currency))
    }

    /// The id of a system account (created when missing, in `tx`). An id is cached only once the row is
    /// known to be committed: one read from the cache or an earlier commit, or [`Ledger::remember`] after the
    /// caller's commit with what `learned` collected. Caching an id from a transaction still open let another
    /// transaction post legs to a row it could not see yet (PostgreSQL: a foreign-key violation under
    /// concurrent first settlements), or to a row that a rolled-back transaction never kept.
    pub(crate) async fn system_account(
        &self,
        tx: &mut dyn Repository,
        learned: &mut Learned,
        which: SystemAccount,
        currency: Currency,
    ) -> Result<AccountId, StorageError> {
        if let Some(id) = self.cache.system.read().expect("cache lock").get(&(which, currency)) {
            return Ok(*id);
        }
        let id = tx.accounts().system(which, currency).await?;
        learned.0.push(((which, currency), id));
        Ok(id)
    }

    /// Caches the system account ids a transaction looked up, once it has committed.
    pub(crate) fn remember(&self, learned: Learned) {
        if learned.0.is_empty() {
            return;
        }
        self.cache.system.write().expect("cache lock").extend(learned.0);
    }

    /// Credits a customer account from one of the provider's system accounts (a voucher, a payment, an
    /// operator's adjustment), once per `(principal, key)`; returns the entry id.
    #[allow(clippy::too_many_arguments)]
    pub async fn credit(
        &self,
        principal: &str,
        key: &IdempotencyKey,
        account: AccountId,
        amount: Amount,
        kind: EntryKind,
        reference: &str,
        memo: &str,
    ) -> Result<i64, LedgerError> {
        if !amount.is_positive() {
            return Err(ChargeError::Invalid("a credit is above zero".into()).into());
        }
        let from = match kind {
            EntryKind::Voucher => SystemAccount::Vouchers,
            EntryKind::Payment => SystemAccount::Payments,
            EntryKind::Adjustment => SystemAccount::Adjustments,
            _ => return Err(ChargeError::Invalid("not a credit".into()).into()),
        };
        let fingerprint =
            fingerprint("credit", &format!("{account}|{}|{}|{reference}", amount.micros(), kind.as_str()));
        let mut tx = self.storage.begin().await?;
        if let Some(done) = replay(&mut *tx, principal, key, "credit", &fingerprint).await? {
            return Ok(done);
        }
        let a =
            tx.accounts().get(account).await?.filter(|a| a.kind.is_customer()).ok_or(ChargeError::AccountNotFound)?;
        let mut learned = Learned::default();
        let system = self.system_account(&mut *tx, &mut learned, from, a.currency).await?;
        let legs = [(account, amount), (system, -amount)];
        let id = tx.journal().post(&NewEntry { kind, reference, hold: None, memo, legs: &legs }).await?;
        record(&mut *tx, principal, key, "credit", &fingerprint, &id, self.now_ms()).await?;
        tx.commit().await?;
        self.remember(learned);
        Ok(id)
    }

    /// Takes money back from a customer account (a refund or a chargeback), once per `(principal, key)`: as
    /// much as its available balance (balance minus open holds) covers goes back as a `kind` entry, and the
    /// rest is written as an explicit debt entry — the only way a customer balance goes below zero. Returns
    /// `(covered, debt)`.
    pub async fn take_back(
        &self,
        principal: &str,
        key: &IdempotencyKey,
        account: AccountId,
        amount: Amount,
        kind: EntryKind,
        reference: &str,
    ) -> Result<(Amount, Amount), LedgerError> {
        if !amount.is_positive() || !matches!(kind, EntryKind::Refund | EntryKind::Chargeback | EntryKind::Adjustment) {
            return Err(ChargeError::Invalid("a refund or chargeback of an amount above zero".into()).into());
        }
        let fingerprint =
            fingerprint("take_back", &format!("{account}|{}|{}|{reference}", amount.micros(), kind.as_str()));
        let mut tx = self.storage.begin().await?;
        if let Some(done) = replay(&mut *tx, principal, key, "take_back", &fingerprint).await? {
            return Ok(done);
        }
        let a =
            tx.accounts().get(account).await?.filter(|a| a.kind.is_customer()).ok_or(ChargeError::AccountNotFound)?;
        let (balance, held) = tx.accounts().lock(account).await?.ok_or(ChargeError::AccountNotFound)?;
        let available = (balance.micros() - held.micros()).max(0);
        let covered = Amount::from_micros(amount.micros().min(available));
        let debt = Amount::from_micros(amount.micros() - covered.micros());
        let to = if kind == EntryKind::Adjustment { SystemAccount::Adjustments } else { SystemAccount::Payments };
        let mut learned = Learned::default();
        let system = self.system_account(&mut *tx, &mut learned, to, a.currency).await?;
        for (k, part) in [(kind, covered), (EntryKind::Debt, debt)] {
            if part.is_positive() {
                let legs = [(account, -part), (system, part)];
                let memo = if k == EntryKind::Debt { "not covered by the balance: owed" } else { "" };
                tx.journal().post(&NewEntry { kind: k, reference, hold: None, memo, legs: &legs }).await?;
            }
        }
        record(&mut *tx, principal, key, "take_back", &fingerprint, &(covered, debt), self.now_ms()).await?;
        tx.commit().await?;
        self.remember(learned);
        Ok((covered, debt))
    }

    /// Releases holds whose expiry has passed (through their accounts' workers); returns how many.
    pub async fn sweep_expired(&self) -> Result<usize, LedgerError> {
        let now = self.now_ms();
        let expired = {
            let mut tx = self.storage.begin_read().await?;
            tx.holds().expired(now, None, 1000).await?
        };
        let n = expired.len();
        let waits: Vec<_> = expired.into_iter().map(|id| self.submit(id.account, batch::Op::Expire(id))).collect();
        for w in waits {
            let _ = w.await;
        }
        Ok(n)
    }

    /// Runs [`Ledger::sweep_expired`] every `sweep_interval_ms` until the ledger is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = Duration::from_millis(self.config.sweep_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(ledger) = weak.upgrade() else { return };
                if let Err(e) = ledger.sweep_expired().await {
                    tracing::warn!(error = %e, "releasing expired holds failed; will retry");
                }
            }
        })
    }

    /// Queues an operation on its account's worker and waits for the answer.
    async fn submit(&self, account: AccountId, op: batch::Op) -> Result<batch::Outcome, ChargeError> {
        let (reply, rx) = oneshot::channel();
        let shard = (account.0.unsigned_abs() % self.workers.len() as u64) as usize;
        self.workers[shard]
            .send(batch::Job { op, reply })
            .await
            .map_err(|_| ChargeError::Unavailable("the ledger is shutting down".into()))?;
        rx.await.map_err(|_| ChargeError::Unavailable("the ledger is shutting down".into()))?
    }

    fn ttl_ms(&self, ttl_secs: Option<u32>) -> Result<i64, ChargeError> {
        let ttl = ttl_secs.unwrap_or(self.config.default_ttl_secs);
        if ttl == 0 || ttl > self.config.max_ttl_secs {
            return Err(ChargeError::Invalid(format!("ttl_secs: 1 to {}", self.config.max_ttl_secs)));
        }
        Ok(i64::from(ttl) * 1000)
    }
}

/// SHA-256 (hex) of an operation and its request, to tell a repeated request from a different one under the
/// same key.
pub(crate) fn fingerprint(op: &str, request: &str) -> String {
    let mut h = Sha256::new();
    h.update(op.as_bytes());
    h.update([0]);
    h.update(request.as_bytes());
    hex::encode(h.finalize())
}

/// The recorded answer to `(principal, key)`, if this request was made before; a conflict if the key was used
/// for something else.
pub(crate) async fn replay<T: serde::de::DeserializeOwned>(
    tx: &mut dyn Repository,
    principal: &str,
    key: &IdempotencyKey,
    op: &str,
    fingerprint: &str,
) -> Result<Option<T>, LedgerError> {
    let Some(done) = tx.idempotency().get(principal, key.as_str()).await? else { return Ok(None) };
    if done.op != op || done.fingerprint != fingerprint {
        return Err(ChargeError::IdempotencyConflict.into());
    }
    let value = serde_json::from_str(&done.response)
        .map_err(|_| StorageError::Corrupt { table: "idempotency", column: "response" })?;
    Ok(Some(value))
}

/// Records the answer to `(principal, key)` in the write's transaction.
pub(crate) async fn record<T: Serialize>(
    tx: &mut dyn Repository,
    principal: &str,
    key: &IdempotencyKey,
    op: &str,
    fingerprint: &str,
    response: &T,
    now_ms: i64,
) -> Result<(), StorageError> {
    let response = serde_json::to_string(response).expect("answers always serialise");
    let record = IdempotentResponse { op: op.to_owned(), fingerprint: fingerprint.to_owned(), response };
    tx.idempotency().put(principal, key.as_str(), &record, now_ms).await
}

/// The public view of a stored hold.
pub(crate) fn hold_view(h: &StoredHold, currency: Currency) -> Result<Hold, StorageError> {
    Ok(Hold {
        id: h.id,
        account_id: h.id.account,
        currency,
        amount: h.amount,
        state: h.state,
        service: h.service,
        destination: tincan_enum_core::E164::parse(&h.destination)
            .map_err(|_| StorageError::Corrupt { table: "holds", column: "destination" })?,
        created_at_ms: h.created_at_ms,
        expires_at_ms: h.expires_at_ms,
        charged: h.charged,
    })
}

/// Whether a hold belongs to the caller and can still be acted on.
pub(crate) fn check_open(h: &StoredHold, principal: &str, now_ms: i64) -> Result<(), ChargeError> {
    if h.principal != principal {
        return Err(ChargeError::HoldNotFound);
    }
    if h.state != HoldState::Open {
        return Err(ChargeError::HoldClosed(h.state));
    }
    if h.expires_at_ms <= now_ms {
        return Err(ChargeError::HoldExpired);
    }
    Ok(())
}
