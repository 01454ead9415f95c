//! The directory's storage: providers, numbers, DNSSEC keys and the change journal, behind one repository trait
//! per aggregate, with two backends ([`SqliteStorage`], [`PgStorage`]) that pass one [`conformance`] suite.
//!
//! Work happens in a transaction: [`Storage::begin`] → act through the repositories → [`Repository::commit`].
//! Dropping a [`Repository`] without committing rolls everything back, so a failed request writes nothing.
//! Every change to a number takes the next zone version and appends one entry to the journal in the same
//! transaction; versions are gap-free and in commit order (a one-row counter serialises writers).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tincan_common::Clock;
use tincan_enum_core::{E164, NumberRecord};
use tincan_translog::{Frontier, Hash, LogEntry, SignedTreeHead};

pub mod conformance;
mod pg;
mod sql;
mod sqlite;

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
    /// A unique value (a provider name or token) is already taken.
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

/// Storage results.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

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

/// A database holding the directory's state.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Begins a transaction. Dropping the result without [`Repository::commit`] rolls it back.
    async fn begin(&self) -> Result<Box<dyn Repository>>;

    /// Begins a transaction that only reads (one consistent snapshot). Backends whose [`Storage::begin`] takes
    /// a write lock up front (SQLite) begin this one without it, so readers polling often (the journal
    /// follower, zone transfers) never hold up writers. Writing through it is a bug.
    async fn begin_read(&self) -> Result<Box<dyn Repository>> {
        self.begin().await
    }
}

/// One transaction, giving access to every repository.
#[async_trait]
pub trait Repository: Send {
    /// Numbers (each write also appends to the journal).
    fn numbers(&mut self) -> &mut dyn NumberRepository;
    /// Providers and their credentials.
    fn providers(&mut self) -> &mut dyn ProviderRepository;
    /// DNSSEC keys.
    fn keys(&mut self) -> &mut dyn KeyRepository;
    /// The change journal (read-only: it is written by [`NumberRepository`]).
    fn journal(&mut self) -> &mut dyn JournalRepository;
    /// The transparency log (number changes are appended by [`NumberRepository`]; key changes by the caller).
    fn log(&mut self) -> &mut dyn LogRepository;
    /// Port requests (numbers moving between providers).
    fn ports(&mut self) -> &mut dyn PortRepository;
    /// Makes every change of this transaction durable.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A provider's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ProviderId(pub i64);

/// A number as stored: what DNS publishes plus who holds it and when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNumber {
    /// The published record.
    pub record: NumberRecord,
    /// The provider holding the number.
    pub provider: ProviderId,
    /// The zone version of its last change.
    pub version: i64,
    /// When it was first registered.
    pub created_at: SystemTime,
    /// When it last changed.
    pub updated_at: SystemTime,
}

/// One number as [`NumberRepository::scan`] reads it: the number, its holder and its stored signed form, and
/// nothing else (a start-up load reads the records of the few without a usable signed form with
/// [`NumberRepository::current`]). With SQLite each value read is an allocation sqlx hands across threads, and
/// at a million numbers reading the records as well dominated start-up.
#[derive(Debug, Clone, Copy)]
pub struct NumberRow<'a> {
    /// The number as stored (`+` and digits).
    pub e164: &'a str,
    /// The provider holding it.
    pub provider: ProviderId,
    /// Its signed DNS form, if stored ([`crate::dns::SignedEntry::as_bytes`]).
    pub signed: Option<&'a [u8]>,
}

impl NumberRow<'_> {
    /// The number, parsed.
    pub fn number(&self) -> Result<E164> {
        sql::parse_number(self.e164, "numbers")
    }
}

/// A number as it is now, with its stored signed form: what a process following the journal publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentNumber {
    /// The published record.
    pub record: NumberRecord,
    /// The zone version of its last change.
    pub version: i64,
    /// Its signed DNS form, if stored ([`crate::dns::SignedEntry::as_bytes`]).
    pub signed: Option<Vec<u8>>,
}

/// New signatures for a number, to store only while it is still at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureUpdate {
    /// The number.
    pub number: E164,
    /// The version the signatures were made for.
    pub version: i64,
    /// The signed DNS form ([`crate::dns::SignedEntry::as_bytes`]).
    pub signed: Vec<u8>,
}

/// How many numbers [`NumberRepository::current`] asks the database for in one statement.
pub const CURRENT_CHUNK: usize = 500;

/// Numbers and their records.
#[async_trait]
pub trait NumberRepository: Send {
    /// The number, if registered.
    async fn get(&mut self, number: &E164) -> Result<Option<StoredNumber>>;
    /// Creates or replaces the number's record, held by `provider`; takes the next version and journals it.
    /// Any stored signed form is cleared (use [`NumberRepository::put_signed`] to store it with the record).
    async fn put(&mut self, record: &NumberRecord, provider: ProviderId) -> Result<StoredNumber> {
        self.put_signed(record, provider, None).await
    }
    /// [`NumberRepository::put`], storing `signed` (the zone's signed form of the record) with it.
    async fn put_signed(
        &mut self,
        record: &NumberRecord,
        provider: ProviderId,
        signed: Option<&[u8]>,
    ) -> Result<StoredNumber>;
    /// Moves the number to `to` with `record` (the gaining provider's routes and key), taking the next version
    /// and journalling it like [`NumberRepository::put_signed`], but logged as a [`LogEntry::Port`] naming both
    /// providers (`from` and `to` with their names).
    async fn port_signed(
        &mut self,
        record: &NumberRecord,
        from: (ProviderId, &str),
        to: (ProviderId, &str),
        signed: Option<&[u8]>,
    ) -> Result<StoredNumber>;
    /// Calls `each` for every registered number, streaming (a start-up load of millions of numbers never holds
    /// them all); returns how many there were.
    async fn scan(&mut self, each: &mut (dyn for<'r> FnMut(NumberRow<'r>) -> Result<()> + Send)) -> Result<u64>;
    /// Removes the number (journalled); returns what was removed, `None` if it was not registered.
    async fn delete(&mut self, number: &E164, provider: Option<ProviderId>) -> Result<Option<StoredNumber>>;
    /// Every registered number, ordered by number.
    async fn all(&mut self) -> Result<Vec<StoredNumber>>;
    /// At most `limit` registered numbers after `after` (exclusive; from the start when `None`), ordered by
    /// number: one page of a listing whose cursor is the last number of the previous page.
    async fn page(&mut self, after: Option<&E164>, limit: u32) -> Result<Vec<StoredNumber>>;
    /// How many numbers are registered.
    async fn count(&mut self) -> Result<u64>;
    /// The registered ones among `numbers`, with their versions and stored signed forms, in no particular
    /// order (numbers not registered are left out).
    async fn current(&mut self, numbers: &[E164]) -> Result<Vec<CurrentNumber>>;
    /// Stores re-made signatures: each update's signed form replaces the stored one only if the number is still
    /// at the update's version (a newer change keeps its own). Neither takes a version nor journals: the
    /// records did not change. Returns how many numbers were updated.
    async fn store_signatures(&mut self, updates: &[SignatureUpdate]) -> Result<u64>;
}

/// Where a port request is. Only `pending` ones can change; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    /// Filed, the losing provider's window is open.
    Pending,
    /// Completed: the number moved (released by the losing provider, or its window ended without an objection).
    Completed,
    /// The losing provider objected (with a reason); the number stayed.
    Objected,
    /// Withdrawn by the gaining provider, or void because the number changed holder or was removed meanwhile.
    Cancelled,
}

/// Why a losing provider objects to a port: a fixed list, as in regulated number portability (an objection
/// without one of these is refused, and none of them is "we would rather keep the customer").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectionReason {
    /// The number is not in service at the losing provider (no subscriber holds it there).
    NotInService,
    /// The request does not match the subscriber (another person, another account).
    SubscriberMismatch,
    /// The subscriber set a registration lock at the losing provider and did not authorise the port there.
    RegistrationLocked,
    /// The losing provider has evidence of fraud (a SIM swap, a stolen device) on this number.
    FraudSuspected,
    /// Another change of the number is in progress at the losing provider (the subscriber is closing the
    /// account, say).
    ChangeInProgress,
}

impl ObjectionReason {
    /// Every reason, in the order documented.
    pub const ALL: [ObjectionReason; 5] = [
        ObjectionReason::NotInService,
        ObjectionReason::SubscriberMismatch,
        ObjectionReason::RegistrationLocked,
        ObjectionReason::FraudSuspected,
        ObjectionReason::ChangeInProgress,
    ];
}

/// A request to move a number between providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    /// Database id.
    pub id: i64,
    /// The number.
    pub number: E164,
    /// The provider holding the number when the request was filed.
    pub losing: ProviderId,
    /// The provider taking it.
    pub gaining: ProviderId,
    /// What the gaining provider publishes for the number once it moves.
    pub services: Vec<tincan_enum_core::Service>,
    /// The key it publishes then (the subscriber's master key at the gaining provider), if known yet.
    pub key: Option<tincan_enum_core::MasterKey>,
    /// Where it is.
    pub state: PortState,
    /// The losing provider's reason, when it objected.
    pub reason: Option<ObjectionReason>,
    /// When it was filed.
    pub filed_at: SystemTime,
    /// When the losing provider's window ends (the port completes then without an objection).
    pub window_ends_at: SystemTime,
    /// When it left `pending`.
    pub closed_at: Option<SystemTime>,
}

/// A port request as filed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPort {
    /// The number.
    pub number: E164,
    /// Its holder now.
    pub losing: ProviderId,
    /// The provider filing.
    pub gaining: ProviderId,
    /// What it will publish.
    pub services: Vec<tincan_enum_core::Service>,
    /// The key it will publish, if known.
    pub key: Option<tincan_enum_core::MasterKey>,
    /// When the losing provider's window ends.
    pub window_ends_at: SystemTime,
}

/// Port requests.
#[async_trait]
pub trait PortRepository: Send {
    /// Files a request (`pending`, filed now); [`StorageError::Duplicate`] when the number has an open one.
    async fn file(&mut self, port: &NewPort) -> Result<PortRequest>;
    /// Replaces a pending request's services and key (the gaining provider learns the key after filing);
    /// false when it is not pending.
    async fn amend(
        &mut self,
        id: i64,
        services: &[tincan_enum_core::Service],
        key: Option<tincan_enum_core::MasterKey>,
    ) -> Result<bool>;
    /// The request with this id.
    async fn get(&mut self, id: i64) -> Result<Option<PortRequest>>;
    /// The number's pending request, if any.
    async fn open_for(&mut self, number: &E164) -> Result<Option<PortRequest>>;
    /// The requests `provider` is losing or gaining side of (only pending ones if `open_only`), oldest first,
    /// at most `limit`.
    async fn for_provider(&mut self, provider: ProviderId, open_only: bool, limit: u32) -> Result<Vec<PortRequest>>;
    /// Closes a pending request in `state` (with `reason` for an objection) at now; false when it was not
    /// pending (someone closed it first: only one close ever wins).
    async fn close(&mut self, id: i64, state: PortState, reason: Option<ObjectionReason>) -> Result<bool>;
    /// Pending requests whose window ended at or before `now`, oldest window first, at most `limit`.
    async fn due(&mut self, now: SystemTime, limit: u32) -> Result<Vec<PortRequest>>;
}

/// A prefix a provider may serve: `+` and 1 to 15 digits, e.g. `+44` or `+4420`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix(String);

/// Why a string is not a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a prefix is '+' and 1 to 15 digits, like +44")]
pub struct PrefixError;

impl Prefix {
    /// Whether `number` lies under this prefix.
    pub fn covers(&self, number: &E164) -> bool {
        number.as_str().starts_with(&self.0)
    }

    /// Whether the two prefixes share numbers (one is the start of the other, or they are equal).
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.0.starts_with(&other.0) || other.0.starts_with(&self.0)
    }

    /// The prefix, with its `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let digits = s.strip_prefix('+').ok_or(PrefixError)?;
        if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Prefix(s.to_owned()))
        } else {
            Err(PrefixError)
        }
    }
}

impl TryFrom<String> for Prefix {
    type Error = PrefixError;
    fn try_from(s: String) -> Result<Self, PrefixError> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a provider's bearer token; only the hash is stored.
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

/// A provider allowed to write numbers under its prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Database id.
    pub id: ProviderId,
    /// Unique name, e.g. `acme-telecom`.
    pub name: String,
    /// The hash of its bearer token.
    pub token_hash: TokenHash,
    /// The prefixes it may serve, sorted.
    pub prefixes: Vec<Prefix>,
    /// When it was added.
    pub created_at: SystemTime,
}

impl Provider {
    /// Whether the provider may serve `number` (it lies under one of its prefixes).
    pub fn serves(&self, number: &E164) -> bool {
        self.prefixes.iter().any(|p| p.covers(number))
    }
}

/// Providers and their credentials.
#[async_trait]
pub trait ProviderRepository: Send {
    /// Adds a provider; [`StorageError::Duplicate`] when the name or token is taken.
    async fn add(&mut self, name: &str, token_hash: TokenHash, prefixes: &[Prefix]) -> Result<Provider>;
    /// The provider whose token hashes to `hash` (the stored hash is compared again in constant time).
    async fn by_token_hash(&mut self, hash: &TokenHash) -> Result<Option<Provider>>;
    /// The provider with this id.
    async fn by_id(&mut self, id: ProviderId) -> Result<Option<Provider>>;
    /// The provider with this name.
    async fn by_name(&mut self, name: &str) -> Result<Option<Provider>>;
    /// Every provider, ordered by name.
    async fn list(&mut self) -> Result<Vec<Provider>>;
    /// Replaces the provider's prefixes (none: it can no longer write any number).
    async fn set_prefixes(&mut self, id: ProviderId, prefixes: &[Prefix]) -> Result<()>;
    /// Makes every other transaction that calls this, and every write of providers' prefixes, wait until this
    /// one ends, so a check of the prefixes already taken (`provider add`'s overlap check) still holds when this
    /// transaction adds its own. For a transaction from [`Storage::begin`]; on SQLite it holds the database's write
    /// lock already (`BEGIN IMMEDIATE`), on PostgreSQL it locks the prefixes table (`SHARE ROW EXCLUSIVE`).
    async fn lock_prefixes(&mut self) -> Result<()>;
}

/// Whether a DNSSEC key signs the DNSKEY RRset (KSK) or the other RRsets (ZSK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Key-signing key: its DS goes to the parent.
    Ksk,
    /// Zone-signing key.
    Zsk,
}

/// The DNSSEC algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256, algorithm 13 (the default).
    #[default]
    EcdsaP256,
    /// Ed25519, algorithm 15.
    Ed25519,
}

/// Where a key is in its life (RFC 6781 / RFC 7583 rollovers: a ZSK by pre-publication goes
/// `published → active → inactive → retired`; a KSK by double-DS goes `staged → active → retiring → retired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in DNSKEY and signing.
    Active,
    /// Published in DNSKEY but not signing yet (ZSK pre-publication during a rollover).
    Published,
    /// A ZSK that signed before: still in DNSKEY, not signing, until its signatures are gone from caches.
    Inactive,
    /// A new KSK whose DS the parent must publish; not in DNSKEY yet (double-DS).
    Staged,
    /// An old KSK replaced in DNSKEY; its DS stays at the parent until cached DNSKEY sets expire.
    Retiring,
    /// No longer published.
    Retired,
}

macro_rules! text_enum {
    ($t:ty, $table:literal, $column:literal, $($v:path => $s:literal),+) => {
        impl $t {
            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($v => $s),+ }
            }
            fn parse_stored(s: &str) -> Result<Self> {
                match s { $($s => Ok($v),)+ _ => Err(StorageError::Corrupt { table: $table, column: $column }) }
            }
        }
    };
}
text_enum!(PortState, "port_requests", "state", PortState::Pending => "pending",
    PortState::Completed => "completed", PortState::Objected => "objected", PortState::Cancelled => "cancelled");
text_enum!(ObjectionReason, "port_requests", "reason", ObjectionReason::NotInService => "not_in_service",
    ObjectionReason::SubscriberMismatch => "subscriber_mismatch",
    ObjectionReason::RegistrationLocked => "registration_locked", ObjectionReason::FraudSuspected => "fraud_suspected",
    ObjectionReason::ChangeInProgress => "change_in_progress");
text_enum!(KeyRole, "dnssec_keys", "role", KeyRole::Ksk => "ksk", KeyRole::Zsk => "zsk");
text_enum!(KeyAlgorithm, "dnssec_keys", "algorithm", KeyAlgorithm::EcdsaP256 => "ecdsap256",
    KeyAlgorithm::Ed25519 => "ed25519");
text_enum!(KeyState, "dnssec_keys", "state", KeyState::Active => "active", KeyState::Published => "published",
    KeyState::Inactive => "inactive", KeyState::Staged => "staged", KeyState::Retiring => "retiring",
    KeyState::Retired => "retired");

/// A DNSSEC private key of one zone.
#[derive(Clone, PartialEq, Eq)]
pub struct DnssecKey {
    /// Database id.
    pub id: i64,
    /// The zone apex, fully qualified and lowercase (`e164.tincan.test.`).
    pub apex: String,
    /// KSK or ZSK.
    pub role: KeyRole,
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// The private key, PKCS#8 DER.
    pub pkcs8: Vec<u8>,
    /// Its state.
    pub state: KeyState,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it entered its current state.
    pub changed_at: SystemTime,
}

impl fmt::Debug for DnssecKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnssecKey")
            .field("id", &self.id)
            .field("apex", &self.apex)
            .field("role", &self.role)
            .field("algorithm", &self.algorithm)
            .field("state", &self.state)
            .field("changed_at", &self.changed_at)
            .finish_non_exhaustive()
    }
}

/// DNSSEC keys.
#[async_trait]
pub trait KeyRepository: Send {
    /// Stores a new key.
    async fn add(
        &mut self,
        apex: &str,
        role: KeyRole,
        algorithm: KeyAlgorithm,
        pkcs8: &[u8],
        state: KeyState,
    ) -> Result<DnssecKey>;
    /// Every key of the zone (all states), oldest first.
    async fn for_apex(&mut self, apex: &str) -> Result<Vec<DnssecKey>>;
    /// Changes a key's state (and its `changed_at` to now); false when there is no such key.
    async fn set_state(&mut self, id: i64, state: KeyState) -> Result<bool>;
}

/// One change to one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The zone version this change created.
    pub version: i64,
    /// The number.
    pub number: E164,
    /// The record before (`None`: newly registered).
    pub old: Option<NumberRecord>,
    /// The record after (`None`: deleted).
    pub new: Option<NumberRecord>,
    /// The provider that made the change, if one did.
    pub provider: Option<ProviderId>,
    /// When.
    pub at: SystemTime,
}

/// The append-only change journal (IXFR and the transparency log are built from it).
#[async_trait]
pub trait JournalRepository: Send {
    /// The current zone version (0 before the first change).
    async fn current_version(&mut self) -> Result<i64>;
    /// Entries with a version greater than `after`, oldest first, at most `limit`.
    async fn since(&mut self, after: i64, limit: u32) -> Result<Vec<JournalEntry>>;
}

/// One leaf of the transparency log as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLeaf {
    /// Its index, from 0.
    pub index: u64,
    /// The entry's text exactly as logged (see [`LogEntry`]).
    pub entry: String,
    /// `leaf_hash(entry)` as computed when it was appended.
    pub leaf_hash: Hash,
    /// The number it names, if any (for access control and lookups by number).
    pub number: Option<E164>,
}

/// The append-only transparency log: leaves, the tree's right edge, signed tree heads and the log's key.
#[async_trait]
pub trait LogRepository: Send {
    /// Appends `entry` in this transaction; returns its leaf index.
    async fn append(&mut self, entry: &LogEntry) -> Result<u64>;
    /// The tree's size and right edge (its root is the log's current root).
    async fn frontier(&mut self) -> Result<Frontier>;
    /// The leaf hashes of leaves `start..end`, in order.
    async fn leaf_hashes(&mut self, start: u64, end: u64) -> Result<Vec<Hash>>;
    /// Leaves `start..end`, in order, at most `limit`.
    async fn leaves(&mut self, start: u64, end: u64, limit: u32) -> Result<Vec<LogLeaf>>;
    /// The newest leaf naming `number` (only below `below` leaves, and of zone version `version` if given).
    async fn find(&mut self, number: &E164, version: Option<i64>, below: u64) -> Result<Option<LogLeaf>>;
    /// The signed tree head of the largest tree signed so far.
    async fn latest_sth(&mut self) -> Result<Option<SignedTreeHead>>;
    /// Stores a signed tree head (a second one for the same size is ignored).
    async fn store_sth(&mut self, sth: &SignedTreeHead) -> Result<()>;
    /// The log's Ed25519 signing seed, if one was made (the first one stored: nodes racing at first start all
    /// end up with the same key).
    async fn signing_seed(&mut self) -> Result<Option<[u8; 32]>>;
    /// Stores a signing seed (only the first one stored is ever used).
    async fn add_signing_seed(&mut self, seed: &[u8; 32]) -> Result<()>;
}
