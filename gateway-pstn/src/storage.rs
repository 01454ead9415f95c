//! The gateway's storage: accounts, the double-entry journal, holds, idempotency records and API tokens,
//! behind one repository trait per aggregate, with two backends ([`SqliteStorage`], [`PgStorage`]) that pass
//! one [`conformance`] suite.
//!
//! Work happens in a transaction: [`Storage::begin`] → act through the repositories → [`Repository::commit`].
//! Dropping a [`Repository`] without committing rolls everything back.
//!
//! Money is stored as whole micro-units in 64-bit integers ([`Amount::micros`]), so both databases add and
//! compare exactly. A customer account (user or business) keeps its `balance` (the sum of its journal legs)
//! and `held` (the sum of its open holds) in its row, updated in the same transaction as the legs and holds, so
//! the reservation's condition is one statement on one row; `ledger check` proves both sums against the
//! journal and the holds. System accounts (revenue, vouchers, payments) keep no running balance — theirs is
//! summed from the journal when asked — so charging many customers never serialises on one system row.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tincan_common::Clock;

use crate::charging::{AccountId, HoldId, HoldState, ServiceKind};
use crate::money::{Amount, Currency};
use crate::rating::{Rate, RateDeck};

mod call_records;
pub mod conformance;
mod live_calls;
mod pg;
mod sql;
mod sqlite;

pub use call_records::{CSV_HEADER as CALL_RECORDS_CSV_HEADER, CallRecord, CallRecordRepository, CallResult};
pub use live_calls::{GatewayRun, LiveCall, LiveCallRepository};
pub use pg::PgStorage;
pub use sqlite::SqliteStorage;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL is neither `sqlite://…` nor `postgres://…`.
    #[error("unsupported database URL scheme in {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// A unique value is already taken.
    #[error("{0} already exists")]
    Duplicate(&'static str),
    /// A stored value does not parse (edited by hand, or written by a newer version).
    #[error("corrupt value in {table}.{column}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
}

impl StorageError {
    /// Whether the transaction failed only because a concurrent one won (a deadlock, a serialization failure,
    /// a unique key taken meanwhile by another node, SQLite busy): running it again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Duplicate(_) => true,
            StorageError::Database(sqlx::Error::Database(d)) => {
                d.is_unique_violation()
                    || matches!(d.code().as_deref(), Some("40001" | "40P01" | "55P03" | "5" | "6" | "517"))
            }
            StorageError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => true,
            _ => false,
        }
    }
}

/// Storage results.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Unix milliseconds of a time, as stored.
pub fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Which database a storage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (one writer at a time).
    Sqlite,
    /// PostgreSQL (row locks; several nodes may share it).
    Postgres,
}

/// Opens (and migrates) the database at `url`: `sqlite://PATH` (created if missing, WAL) or `postgres://…`.
pub async fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Arc<dyn Storage>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStorage::open(url, clock).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStorage::open(url, clock).await?))
    } else {
        Err(StorageError::UnsupportedUrl(url.to_owned()))
    }
}

/// A database holding the gateway's state.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Begins a transaction. Dropping the result without [`Repository::commit`] rolls it back.
    async fn begin(&self) -> Result<Box<dyn Repository>>;
    /// Begins a transaction that only reads (SQLite: without taking the write lock).
    async fn begin_read(&self) -> Result<Box<dyn Repository>> {
        self.begin().await
    }
    /// Which database this is.
    fn backend(&self) -> Backend;
}

/// One transaction, giving access to every repository.
#[async_trait]
pub trait Repository: Send {
    /// Accounts.
    fn accounts(&mut self) -> &mut dyn AccountRepository;
    /// The double-entry journal.
    fn journal(&mut self) -> &mut dyn JournalRepository;
    /// Holds (reservations).
    fn holds(&mut self) -> &mut dyn HoldRepository;
    /// Idempotency records of writes.
    fn idempotency(&mut self) -> &mut dyn IdempotencyRepository;
    /// API tokens.
    fn tokens(&mut self) -> &mut dyn TokenRepository;
    /// Rate decks (price plans).
    fn rates(&mut self) -> &mut dyn RateRepository;
    /// Carriers and their cost decks.
    fn carriers(&mut self) -> &mut dyn CarrierRepository;
    /// Per-account fraud limits.
    fn limits(&mut self) -> &mut dyn LimitRepository;
    /// Voucher batches and codes.
    fn vouchers(&mut self) -> &mut dyn VoucherRepository;
    /// Call detail records.
    fn call_records(&mut self) -> &mut dyn CallRecordRepository;
    /// Calls in progress and the processes carrying them.
    fn live_calls(&mut self) -> &mut dyn LiveCallRepository;
    /// Marks a point to undo to ([`Repository::rollback_to_savepoint`]) when a step of a multi-step write is
    /// refused; one level only.
    async fn savepoint(&mut self) -> Result<()>;
    /// Undoes everything since [`Repository::savepoint`].
    async fn rollback_to_savepoint(&mut self) -> Result<()>;
    /// Forgets the savepoint, keeping what was done.
    async fn release_savepoint(&mut self) -> Result<()>;
    /// Makes every change of this transaction durable.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// What an account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// A user's: their Matrix identity and number. Prepaid, never below zero but through a debt entry.
    User,
    /// A business's, created by an operator. Prepaid like a user's.
    Business,
    /// The provider's own books (revenue, voucher float, payments): no running balance, may be negative.
    System,
}

impl AccountKind {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::Business => "business",
            AccountKind::System => "system",
        }
    }

    fn parse_stored(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(AccountKind::User),
            "business" => Ok(AccountKind::Business),
            "system" => Ok(AccountKind::System),
            _ => Err(StorageError::Corrupt { table: "accounts", column: "kind" }),
        }
    }

    /// Whether the account keeps a running balance and can be reserved against.
    pub fn is_customer(self) -> bool {
        !matches!(self, AccountKind::System)
    }
}

/// The provider's own accounts, one of each per currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemAccount {
    /// What customers were charged.
    Revenue,
    /// The counterpart of voucher top-ups (credit sold through vouchers).
    Vouchers,
    /// The counterpart of card payments, refunds and chargebacks.
    Payments,
    /// Manual adjustments by operators.
    Adjustments,
}

impl SystemAccount {
    /// The account's name.
    pub fn name(self) -> &'static str {
        match self {
            SystemAccount::Revenue => "revenue",
            SystemAccount::Vouchers => "vouchers",
            SystemAccount::Payments => "payments",
            SystemAccount::Adjustments => "adjustments",
        }
    }
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// User, business or system.
    pub kind: AccountKind,
    /// Display name (business name, system account name, or the user's number).
    pub name: String,
    /// The Matrix user it belongs to (user accounts).
    pub user_id: Option<String>,
    /// The user's number, if known.
    pub number: Option<String>,
    /// Its currency: every amount on it is in this currency.
    pub currency: Currency,
    /// The sum of its legs (customer accounts; zero for system accounts, whose balance is summed on demand).
    pub balance: Amount,
    /// The sum of its open holds.
    pub held: Amount,
    /// Disabled accounts cannot reserve.
    pub disabled: bool,
    /// Its price plan (the rate deck it is rated by; `default` fills what the plan lacks).
    pub plan: String,
    /// When it was created (Unix ms).
    pub created_at_ms: i64,
}

impl Account {
    /// Balance minus open holds.
    pub fn available(&self) -> Amount {
        Amount::from_micros(self.balance.micros() - self.held.micros())
    }
}

/// A new customer account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// User or business.
    pub kind: AccountKind,
    /// Display name.
    pub name: String,
    /// The Matrix user (unique among accounts).
    pub user_id: Option<String>,
    /// The user's number.
    pub number: Option<String>,
    /// Its currency.
    pub currency: Currency,
}

/// Accounts.
#[async_trait]
pub trait AccountRepository: Send {
    /// Creates a customer account; [`StorageError::Duplicate`] when the user already has one.
    async fn create(&mut self, new: &NewAccount) -> Result<Account>;
    /// The account.
    async fn get(&mut self, id: AccountId) -> Result<Option<Account>>;
    /// The account of a Matrix user.
    async fn by_user(&mut self, user_id: &str) -> Result<Option<Account>>;
    /// The provider's own account of this kind and currency, created on first use.
    async fn system(&mut self, which: SystemAccount, currency: Currency) -> Result<AccountId>;
    /// Locks a customer account's row until commit and reads its balance and held sum as they are now (the
    /// newest committed values, also on PostgreSQL under concurrent writers); `None` if there is no such
    /// customer account.
    async fn lock(&mut self, id: AccountId) -> Result<Option<(Amount, Amount)>>;
    /// Customer accounts after `after`, by id, at most `limit`.
    async fn list(&mut self, after: Option<AccountId>, limit: u32) -> Result<Vec<Account>>;
    /// Enables or disables an account; false when there is no such account.
    async fn set_disabled(&mut self, id: AccountId, disabled: bool) -> Result<bool>;
    /// Moves an account to a price plan; false when there is no such account.
    async fn set_plan(&mut self, id: AccountId, plan: &str) -> Result<bool>;
}

/// What a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A settled hold: the customer pays revenue.
    Charge,
    /// Credit bought with a voucher.
    Voucher,
    /// Credit bought with a payment.
    Payment,
    /// A payment refunded to the customer: the credit goes back.
    Refund,
    /// A payment reversed by the card issuer: the credit goes back as far as the available balance allows.
    Chargeback,
    /// The part of a refund or chargeback the balance could not cover: the account owes it (the only way a
    /// customer balance goes below zero).
    Debt,
    /// A manual correction by an operator.
    Adjustment,
}

impl EntryKind {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Charge => "charge",
            EntryKind::Voucher => "voucher",
            EntryKind::Payment => "payment",
            EntryKind::Refund => "refund",
            EntryKind::Chargeback => "chargeback",
            EntryKind::Debt => "debt",
            EntryKind::Adjustment => "adjustment",
        }
    }

    fn parse_stored(s: &str) -> Result<Self> {
        Ok(match s {
            "charge" => EntryKind::Charge,
            "voucher" => EntryKind::Voucher,
            "payment" => EntryKind::Payment,
            "refund" => EntryKind::Refund,
            "chargeback" => EntryKind::Chargeback,
            "debt" => EntryKind::Debt,
            "adjustment" => EntryKind::Adjustment,
            _ => return Err(StorageError::Corrupt { table: "entries", column: "kind" }),
        })
    }
}

/// A journal entry to post: legs that sum to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry<'a> {
    /// What it records.
    pub kind: EntryKind,
    /// What it refers to (a hold id, a voucher batch, a payment event id).
    pub reference: &'a str,
    /// The hold it charges (charge entries).
    pub hold: Option<HoldId>,
    /// A note shown in the history.
    pub memo: &'a str,
    /// `(account, amount)`: positive credits the account, negative debits it.
    pub legs: &'a [(AccountId, Amount)],
}

/// One leg of an account's history, with its entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HistoryItem {
    /// The leg's id (the history's paging cursor).
    pub id: i64,
    /// The entry's id.
    pub entry_id: i64,
    /// What the entry records.
    pub kind: EntryKind,
    /// Positive: credited; negative: debited.
    pub amount: Amount,
    /// What it refers to.
    pub reference: String,
    /// The entry's note.
    pub memo: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// What `ledger check` found wrong; empty when the books are right.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// Accounts checked.
    pub accounts: u64,
    /// Entries checked.
    pub entries: u64,
    /// Open holds.
    pub open_holds: u64,
    /// Every problem, one line each.
    pub problems: Vec<String>,
}

/// The double-entry journal.
#[async_trait]
pub trait JournalRepository: Send {
    /// Posts an entry (its legs must sum to zero, else nothing is written and `Corrupt` is returned) and adds
    /// each leg to its customer account's balance; returns the entry id.
    async fn post(&mut self, entry: &NewEntry<'_>) -> Result<i64>;
    /// The account's legs, newest first, those with id below `before` (all when `None`), at most `limit`.
    async fn history(&mut self, account: AccountId, before: Option<i64>, limit: u32) -> Result<Vec<HistoryItem>>;
    /// The sum of the account's legs (its balance, computed).
    async fn sum(&mut self, account: AccountId) -> Result<Amount>;
    /// Checks the invariants: every entry's legs sum to zero; every customer account's balance is the sum of
    /// its legs and its held sum the sum of its open holds, and its balance covers its holds unless a debt
    /// entry explains it; every settled hold was charged by exactly one entry of its settled amount.
    async fn check(&mut self) -> Result<CheckReport>;
}

/// A hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHold {
    /// Its id.
    pub id: HoldId,
    /// Who made it (the idempotency scope of its requests).
    pub principal: String,
    /// What it holds.
    pub amount: Amount,
    /// Its state.
    pub state: HoldState,
    /// Voice or SMS.
    pub service: ServiceKind,
    /// The destination, E.164.
    pub destination: String,
    /// The rate it was priced at, if any (JSON of [`crate::rating::Rate`]).
    pub rate: Option<String>,
    /// When it was made (Unix ms).
    pub created_at_ms: i64,
    /// When it expires (Unix ms).
    pub expires_at_ms: i64,
    /// When it was closed (Unix ms).
    pub closed_at_ms: Option<i64>,
    /// What was charged.
    pub charged: Option<Amount>,
    /// Voice seconds or SMS segments charged.
    pub usage: Option<i64>,
    /// The carrier reported at settlement.
    pub carrier: Option<String>,
}

/// A hold to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHold<'a> {
    /// The account.
    pub account: AccountId,
    /// Who makes it.
    pub principal: &'a str,
    /// How much.
    pub amount: Amount,
    /// Voice or SMS.
    pub service: ServiceKind,
    /// E.164.
    pub destination: &'a str,
    /// The rate (JSON), if priced by the gateway.
    pub rate: Option<&'a str>,
    /// Now (Unix ms).
    pub now_ms: i64,
    /// When it expires (Unix ms).
    pub expires_at_ms: i64,
}

/// How a hold is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close<'a> {
    /// Settled, released or expired.
    pub state: HoldState,
    /// What is charged (settled only).
    pub charged: Option<Amount>,
    /// Seconds or segments charged.
    pub usage: Option<i64>,
    /// The carrier.
    pub carrier: Option<&'a str>,
    /// Now (Unix ms).
    pub now_ms: i64,
}

/// One of several holds to close at once ([`HoldRepository::close_all`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing<'a> {
    /// Settled: `charged` (at most the hold's amount) moves from the hold's account to `revenue` as a charge
    /// entry.
    Settle {
        /// The hold.
        id: HoldId,
        /// What is charged.
        charged: Amount,
        /// Seconds or segments charged.
        usage: Option<i64>,
        /// The carrier.
        carrier: Option<&'a str>,
        /// The system account credited with the charge.
        revenue: AccountId,
    },
    /// Released: nothing is charged.
    Release {
        /// The hold.
        id: HoldId,
    },
}

impl Closing<'_> {
    /// The hold it closes.
    pub fn id(&self) -> HoldId {
        match self {
            Closing::Settle { id, .. } | Closing::Release { id } => *id,
        }
    }
}

/// Holds.
#[async_trait]
pub trait HoldRepository: Send {
    /// Reserves with one conditional statement: holds `amount` only if the account's balance minus its open
    /// holds is at least `amount` (and it is an enabled customer account); `None` otherwise, with nothing
    /// written.
    async fn reserve(&mut self, hold: &NewHold<'_>) -> Result<Option<StoredHold>>;
    /// Reserves several holds at once. For each account among them, one conditional statement holds the sum of
    /// its holds only if the account's balance minus its open holds covers that sum (and it is an enabled
    /// customer account): all of that account's holds are made, or none. Returns the holds in `holds`' order,
    /// `None` for each hold of an account that was not covered (nothing written for it). PostgreSQL: one
    /// statement for all accounts.
    async fn reserve_all(&mut self, holds: &[NewHold<'_>]) -> Result<Vec<Option<StoredHold>>>;
    /// The hold.
    async fn get(&mut self, id: HoldId) -> Result<Option<StoredHold>>;
    /// The holds among `ids` that exist, in any order.
    async fn get_many(&mut self, ids: &[HoldId]) -> Result<Vec<StoredHold>>;
    /// Holds `more` on an open hold and moves its expiry, only if the account's available balance covers
    /// `more`; false with nothing written otherwise (use a savepoint: two rows change).
    async fn extend(&mut self, id: HoldId, more: Amount, expires_at_ms: i64) -> Result<ExtendOutcome>;
    /// Closes an open hold (settled, released or expired) and gives its amount back to the available balance;
    /// `None` if it was not open. The charge itself is posted to the journal by the caller.
    async fn close(&mut self, id: HoldId, close: &Close<'_>) -> Result<Option<StoredHold>>;
    /// Closes several open holds (each id once) at `now_ms`, giving their amounts back to the available balance
    /// and, for each settlement, posting its charge entry (the account −charged, the revenue account +charged,
    /// the account's balance lowered): what [`HoldRepository::close`] and [`JournalRepository::post`] do, for
    /// many holds (PostgreSQL: in one statement). Returns the closed holds in `closings`' order, `None` for one
    /// that was not open (nothing written for it).
    async fn close_all(&mut self, closings: &[Closing<'_>], now_ms: i64) -> Result<Vec<Option<StoredHold>>>;
    /// Open holds whose expiry is at or before `now_ms`, oldest first, at most `limit` (of `account` only if
    /// given).
    async fn expired(&mut self, now_ms: i64, account: Option<AccountId>, limit: u32) -> Result<Vec<HoldId>>;
    /// Open holds of every account.
    async fn open_total(&mut self) -> Result<u64>;
    /// Open holds of the account.
    async fn open_count(&mut self, account: AccountId) -> Result<u64>;
    /// What the account was charged since `since_ms`.
    async fn charged_since(&mut self, account: AccountId, since_ms: i64) -> Result<Amount>;
    /// Settled holds (call detail records) of the account, newest first, below `before`, at most `limit`.
    async fn settled(&mut self, account: AccountId, before: Option<i64>, limit: u32) -> Result<Vec<StoredHold>>;
}

/// What [`HoldRepository::extend`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendOutcome {
    /// Extended.
    Extended,
    /// The hold is not open.
    NotOpen,
    /// The available balance does not cover the extension.
    InsufficientFunds,
}

/// A write's recorded answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// The operation (`reserve`, `settle`…).
    pub op: String,
    /// SHA-256 of the request as first sent.
    pub fingerprint: String,
    /// The answer as first sent (JSON).
    pub response: String,
}

/// Idempotency records: the first answer to each `(principal, key)`.
#[async_trait]
pub trait IdempotencyRepository: Send {
    /// The answer recorded for the key.
    async fn get(&mut self, principal: &str, key: &str) -> Result<Option<IdempotentResponse>>;
    /// The answers recorded for many `(principal, key)` pairs, in their order.
    async fn get_many(&mut self, keys: &[(&str, &str)]) -> Result<Vec<Option<IdempotentResponse>>>;
    /// Records an answer (in the write's transaction). A key recorded meanwhile by a concurrent transaction is
    /// a transient error ([`StorageError::is_transient`]): run the write again and it finds this record.
    async fn put(&mut self, principal: &str, key: &str, record: &IdempotentResponse, now_ms: i64) -> Result<()>;
    /// Records many answers `(principal, key, answer)`, as [`IdempotencyRepository::put`] does one.
    async fn put_many(&mut self, records: &[(&str, &str, IdempotentResponse)], now_ms: i64) -> Result<()>;
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// A user: their own account (exchanged for a Matrix OpenID token).
    User,
    /// A service (SMS bridge, call routing): quote and holds on any account.
    Service,
    /// An operator: accounts, vouchers, rates, adjustments.
    Operator,
}

impl Scope {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Service => "service",
            Scope::Operator => "operator",
        }
    }

    fn parse_stored(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(Scope::User),
            "service" => Ok(Scope::Service),
            "operator" => Ok(Scope::Operator),
            _ => Err(StorageError::Corrupt { table: "api_tokens", column: "scope" }),
        }
    }
}

/// The SHA-256 of a bearer token; only the hash is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes a presented token.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// An API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub id: i64,
    /// What it may do.
    pub scope: Scope,
    /// The service's or operator's name, or the user's Matrix ID.
    pub subject: String,
    /// The user's account (user tokens).
    pub account: Option<AccountId>,
    /// When it stops working (Unix ms), if ever.
    pub expires_at_ms: Option<i64>,
}

/// API tokens.
#[async_trait]
pub trait TokenRepository: Send {
    /// Stores a token's hash.
    async fn add(
        &mut self,
        hash: TokenHash,
        scope: Scope,
        subject: &str,
        account: Option<AccountId>,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<ApiToken>;
    /// The token with this hash (compared again in constant time), if it has not expired at `now_ms`.
    async fn by_hash(&mut self, hash: &TokenHash, now_ms: i64) -> Result<Option<ApiToken>>;
    /// Service and operator tokens, by id.
    async fn list(&mut self) -> Result<Vec<ApiToken>>;
    /// Revokes a token; false if there was none.
    async fn delete(&mut self, id: i64) -> Result<bool>;
}

/// The plan every account falls back to.
pub const DEFAULT_PLAN: &str = "default";

/// Rate decks, one per price plan.
#[async_trait]
pub trait RateRepository: Send {
    /// Replaces the plan's whole deck.
    async fn replace(&mut self, plan: &str, deck: &RateDeck) -> Result<()>;
    /// The plan's deck.
    async fn deck(&mut self, plan: &str) -> Result<RateDeck>;
    /// The rate of the longest prefix of `digits` in the plan (not falling back).
    async fn lookup(&mut self, plan: &str, digits: &str) -> Result<Option<Rate>>;
    /// Every plan and how many prefixes it has.
    async fn plans(&mut self) -> Result<Vec<(String, u64)>>;
}

/// What a carrier carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CarrierKind {
    /// A SIP trunk (calls).
    Sip,
    /// An SMSC (SMS).
    Smsc,
}

impl CarrierKind {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CarrierKind::Sip => "sip",
            CarrierKind::Smsc => "smsc",
        }
    }

    /// The kind carrying a service (MMS goes through the SMS carriers: their cost decks' `per_mms`).
    pub fn for_service(service: ServiceKind) -> CarrierKind {
        match service {
            ServiceKind::Voice => CarrierKind::Sip,
            ServiceKind::Sms | ServiceKind::Mms => CarrierKind::Smsc,
        }
    }

    fn parse_stored(s: &str) -> Result<Self> {
        match s {
            "sip" => Ok(CarrierKind::Sip),
            "smsc" => Ok(CarrierKind::Smsc),
            _ => Err(StorageError::Corrupt { table: "carriers", column: "kind" }),
        }
    }
}

/// A carrier: a SIP trunk or an SMSC the provider buys termination from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Carrier {
    /// Its id.
    pub id: i64,
    /// Unique name (what routers configure their trunks by).
    pub name: String,
    /// SIP trunk or SMSC.
    pub kind: CarrierKind,
    /// Lower goes first among equal costs.
    pub priority: i32,
    /// The most calls (or SMS in flight) at once it accepts.
    pub max_concurrent: i32,
    /// Disabled carriers are not offered.
    pub enabled: bool,
}

/// A carrier that can carry a destination, with what it costs the provider there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CarrierRoute {
    /// The carrier.
    pub carrier: Carrier,
    /// Its cost for the destination (its longest matching prefix).
    pub cost: Rate,
}

/// Carriers and their cost decks.
#[async_trait]
pub trait CarrierRepository: Send {
    /// Adds a carrier; [`StorageError::Duplicate`] if the name is taken.
    async fn add(&mut self, name: &str, kind: CarrierKind, priority: i32, max_concurrent: i32) -> Result<Carrier>;
    /// The carrier of that name.
    async fn by_name(&mut self, name: &str) -> Result<Option<Carrier>>;
    /// Every carrier, by name.
    async fn list(&mut self) -> Result<Vec<Carrier>>;
    /// Enables or disables a carrier; false if there is none.
    async fn set_enabled(&mut self, id: i64, enabled: bool) -> Result<bool>;
    /// Replaces the carrier's whole cost deck.
    async fn replace_deck(&mut self, id: i64, deck: &RateDeck) -> Result<()>;
    /// Each enabled carrier of `kind` with its longest prefix matching `digits`, in no particular order.
    async fn candidates(&mut self, kind: CarrierKind, digits: &str) -> Result<Vec<CarrierRoute>>;
}

/// An account's own fraud limits (unset: the configured defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The most holds open at once.
    pub max_open_holds: Option<u32>,
    /// The most charged plus held within an hour.
    pub max_spend_hour: Option<Amount>,
    /// The most charged plus held within a day.
    pub max_spend_day: Option<Amount>,
    /// Prefixes (digits) this account opted in to, of those that need an opt-in.
    pub opt_in: Vec<String>,
    /// Prefixes (digits) blocked for this account, besides those blocked for all.
    pub blocked: Vec<String>,
}

/// Per-account fraud limits.
#[async_trait]
pub trait LimitRepository: Send {
    /// The account's limits (defaults when none were set).
    async fn get(&mut self, account: AccountId) -> Result<Limits>;
    /// Sets the account's limits.
    async fn set(&mut self, account: AccountId, limits: &Limits) -> Result<()>;
}

/// A batch of vouchers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct VoucherBatch {
    /// Its id.
    pub id: i64,
    /// The operator's name for it.
    pub name: String,
    /// What each code is worth.
    pub amount: Amount,
    /// In this currency.
    pub currency: Currency,
    /// How many codes it has.
    pub count: u32,
    /// When its codes stop working (Unix ms), if ever.
    pub expires_at_ms: Option<i64>,
}

/// Voucher batches and their codes (as hashes).
#[async_trait]
pub trait VoucherRepository: Send {
    /// Stores a batch and the hashes of its codes.
    async fn create_batch(
        &mut self,
        name: &str,
        amount: Amount,
        currency: Currency,
        codes: &[TokenHash],
        expires_at_ms: Option<i64>,
    ) -> Result<VoucherBatch>;
    /// The batch of a code, and who redeemed it when (if anyone did); the stored hash is compared again in
    /// constant time.
    async fn find(&mut self, code: &TokenHash) -> Result<Option<(VoucherBatch, Option<(AccountId, i64)>)>>;
    /// Marks an unused code used by `account`: one conditional statement; false if it was used already.
    async fn mark_used(&mut self, code: &TokenHash, account: AccountId, now_ms: i64) -> Result<bool>;
    /// Every batch, newest first, with how many codes were redeemed.
    async fn batches(&mut self) -> Result<Vec<(VoucherBatch, u32)>>;
}
