//! The SMS bridge's state: the durable outbox, inbound parts waiting for their siblings, the provider's numbers
//! and who holds them, and opt-outs — behind one repository trait per aggregate, with two backends
//! ([`SqliteStore`], [`PgStore`]) that pass one [`conformance`] suite.
//!
//! Work happens in a transaction: [`Store::begin`] → act through the repositories → [`Repository::commit`];
//! dropping a [`Repository`] without committing rolls it back. The SQL is written once (`sql.rs`) and stamped
//! out for both drivers; only the migrations differ (one folder per backend, embedded with `sqlx::migrate!`).
//!
//! This is a database of its own, not the core's: the core migrates its schema with its own migration history.

pub mod conformance;
mod pg;
mod sql;
mod sqlite;

pub use pg::PgStore;
pub use sqlite::SqliteStore;

use crate::protocol::dlr::DeliveryState;
use crate::protocol::reassembly::InboundCoding;
use crate::protocol::segment::Coding;
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite:… or postgres://…")]
    UnsupportedUrl(String),
    /// A stored value does not parse (edited by hand, or written by a newer version).
    #[error("corrupt value in {table}.{column}: {value:?}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The stored text.
        value: String,
    },
}

/// Store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens (and migrates) the database at `url`: `sqlite:PATH` (created if missing) or `postgres://…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// A database holding the bridge's state.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Begins a transaction. Dropping the result without [`Repository::commit`] rolls it back.
    async fn begin(&self) -> Result<Box<dyn Repository>>;
}

/// One transaction, giving access to every repository.
#[async_trait]
pub trait Repository: Send {
    /// Outgoing messages and their segments.
    fn outbox(&mut self) -> &mut dyn OutboxRepository;
    /// Parts of inbound long messages.
    fn inbound(&mut self) -> &mut dyn InboundRepository;
    /// The provider's numbers and conversations' senders.
    fn numbers(&mut self) -> &mut dyn NumberRepository;
    /// Opt-outs.
    fn opt_outs(&mut self) -> &mut dyn OptOutRepository;
    /// Outgoing MMS.
    fn mms(&mut self) -> &mut dyn MmsRepository;
    /// Makes every change of this transaction durable.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// An outgoing message's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A segment's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub i64);

/// Where an outgoing message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    /// Stored; not every segment has a `submit_sm_resp` yet.
    Queued,
    /// Every segment accepted by an SMSC.
    Submitted,
    /// Every segment reported delivered.
    Delivered,
    /// A segment was refused or reported undelivered ([`StoredMessage::reason`] says why).
    Failed,
}

impl MessageState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Submitted => "submitted",
            MessageState::Delivered => "delivered",
            MessageState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => MessageState::Queued,
            "submitted" => MessageState::Submitted,
            "delivered" => MessageState::Delivered,
            "failed" => MessageState::Failed,
            _ => return None,
        })
    }
}

/// Where the charge of a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BillingState {
    /// Nothing to charge (the bridge runs free).
    Free,
    /// Money is held; settle or release once the message leaves the queue.
    Held,
    /// Charged.
    Settled,
    /// Given back (nothing was sent).
    Released,
}

impl BillingState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BillingState::Free => "free",
            BillingState::Held => "held",
            BillingState::Settled => "settled",
            BillingState::Released => "released",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "free" => BillingState::Free,
            "held" => BillingState::Held,
            "settled" => BillingState::Settled,
            "released" => BillingState::Released,
            _ => return None,
        })
    }
}

/// One `submit_sm` to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegment {
    /// `short_message`: header (for a part) and text.
    pub short_message: Vec<u8>,
    /// `esm_class`.
    pub esm_class: u8,
    /// `data_coding`.
    pub data_coding: u8,
}

impl NewSegment {
    /// The short messages of `text`: its coding, and each part with UDHI set where it has a header.
    pub fn split(
        text: &str,
        reference: crate::protocol::udh::Reference,
    ) -> Result<(Coding, Vec<NewSegment>), crate::protocol::segment::SegmentError> {
        let s = crate::protocol::segment::segment(text, reference)?;
        let segments = s
            .segments
            .iter()
            .map(|p| NewSegment {
                short_message: p.short_message(),
                esm_class: if p.has_udh() { crate::link::pdu::UDHI } else { 0 },
                data_coding: s.coding.data_coding(),
            })
            .collect();
        Ok((s.coding, segments))
    }
}

/// A message to store in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The Matrix event it comes from (the outbox holds each event once).
    pub event_id: String,
    /// The Matrix user who sent it.
    pub sender: String,
    /// The number it goes out from (E.164).
    pub source: String,
    /// The number it goes to (E.164).
    pub destination: String,
    /// Its coding.
    pub coding: Coding,
    /// Its short messages, in order.
    pub segments: Vec<NewSegment>,
    /// The ledger hold paying for it, when billed.
    pub hold: Option<String>,
    /// The price of one segment (decimal text), when billed.
    pub unit_price: Option<String>,
}

/// What [`OutboxRepository::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The message.
    pub id: MessageId,
    /// `false` when the event was already in the outbox (nothing written).
    pub created: bool,
}

/// An outgoing message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// The Matrix event.
    pub event_id: String,
    /// The Matrix user who sent it.
    pub sender: String,
    /// From.
    pub source: String,
    /// To.
    pub destination: String,
    /// Coding.
    pub coding: Coding,
    /// How many segments.
    pub parts: u32,
    /// Where it is.
    pub state: MessageState,
    /// Why it failed, for [`MessageState::Failed`].
    pub reason: Option<String>,
    /// The state last reported to Matrix.
    pub reported_state: Option<MessageState>,
    /// The ledger hold.
    pub hold: Option<String>,
    /// Price per segment.
    pub unit_price: Option<String>,
    /// Where the charge is.
    pub billing: BillingState,
    /// Segments an SMSC accepted.
    pub submitted_parts: u32,
    /// When it was stored (Unix ms).
    pub created_at: i64,
}

/// A segment handed to a link for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutSegment {
    /// Its id.
    pub id: SegmentId,
    /// Its message.
    pub message_id: MessageId,
    /// 1-based part number.
    pub seq: u32,
    /// From.
    pub source: String,
    /// To.
    pub destination: String,
    /// `short_message`.
    pub short_message: Vec<u8>,
    /// `esm_class`.
    pub esm_class: u8,
    /// `data_coding`.
    pub data_coding: u8,
    /// Claims so far, this one included.
    pub attempts: u32,
    /// Earlier attempts whose outcome was unknown (the link dropped or the bridge died before the response):
    /// when this one succeeds, the SMSC may hold a duplicate.
    pub uncertain: u32,
}

/// The outbox.
#[async_trait]
pub trait OutboxRepository: Send {
    /// Stores a message and its segments, unless its event is already stored.
    async fn enqueue(&mut self, message: &NewMessage, now_ms: i64) -> Result<Enqueued>;
    /// The message of a Matrix event.
    async fn by_event(&mut self, event_id: &str) -> Result<Option<StoredMessage>>;
    /// A message.
    async fn message(&mut self, id: MessageId) -> Result<Option<StoredMessage>>;
    /// Takes up to `limit` segments due at `now_ms`, oldest first, and marks them being sent (one more
    /// attempt each). Segments of a failed message are not taken.
    async fn claim(&mut self, now_ms: i64, limit: u32) -> Result<Vec<OutSegment>>;
    /// At start: segments left being sent by a process that died go back to the queue, each counted as an
    /// uncertain attempt. Returns how many.
    async fn requeue_unfinished(&mut self, now_ms: i64) -> Result<u64>;
    /// An SMSC accepted a segment under `smsc_message_id`.
    async fn submitted(&mut self, id: SegmentId, smsc: &str, smsc_message_id: &str, now_ms: i64) -> Result<()>;
    /// A segment goes back to the queue until `next_attempt_ms`; `uncertain` when the SMSC may have it.
    async fn retry(&mut self, id: SegmentId, next_attempt_ms: i64, error: &str, uncertain: bool) -> Result<()>;
    /// A segment was refused for good: its message fails with `reason`.
    async fn fail(&mut self, id: SegmentId, reason: &str, now_ms: i64) -> Result<()>;
    /// Records a delivery receipt for the segment an SMSC knows under one of `smsc_message_ids`; returns its
    /// message when found. The message becomes delivered when all its segments are, failed when one fails.
    async fn receipt(
        &mut self,
        smsc_message_ids: &[String],
        state: DeliveryState,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<MessageId>>;
    /// Messages whose state changed since it was last reported to Matrix, oldest first.
    async fn unreported(&mut self, limit: u32) -> Result<Vec<StoredMessage>>;
    /// Records that `state` was reported.
    async fn mark_reported(&mut self, id: MessageId, state: MessageState) -> Result<()>;
    /// Held messages that left the queue (submitted, delivered or failed): their charge is due.
    async fn billing_due(&mut self, limit: u32) -> Result<Vec<StoredMessage>>;
    /// Records where a message's charge went.
    async fn set_billing(&mut self, id: MessageId, billing: BillingState) -> Result<()>;
    /// Segments not yet accepted or refused.
    async fn pending_segments(&mut self) -> Result<u64>;
    /// Segments sent again after an uncertain attempt that an SMSC then accepted: the most duplicates the
    /// SMSCs can hold.
    async fn possible_duplicates(&mut self) -> Result<u64>;
}

/// A part of an inbound long message, stored until its message is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// The sender.
    pub source: String,
    /// Our number it was sent to.
    pub destination: String,
    /// The concatenation reference.
    pub reference: u16,
    /// Parts in the message.
    pub total: u8,
    /// This part's number.
    pub seq: u8,
    /// How to read the payload.
    pub coding: InboundCoding,
    /// The text octets.
    pub payload: Vec<u8>,
    /// When it arrived (Unix ms).
    pub received_at: i64,
}

/// Parts of inbound long messages.
#[async_trait]
pub trait InboundRepository: Send {
    /// Stores a part; `false` when it was already stored (the SMSC sent it again).
    async fn add_part(&mut self, part: &StoredPart) -> Result<bool>;
    /// Every stored part, oldest first (to rebuild the reassembler at start).
    async fn parts(&mut self) -> Result<Vec<StoredPart>>;
    /// The smallest row id of a message's parts: a stable name for it across restarts.
    async fn first_part_id(
        &mut self,
        source: &str,
        destination: &str,
        reference: u16,
        total: u8,
    ) -> Result<Option<i64>>;
    /// Forgets a message's parts (it went to Matrix).
    async fn remove(&mut self, source: &str, destination: &str, reference: u16, total: u8) -> Result<u64>;
}

/// One of the provider's numbers held by a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldNumber {
    /// The number.
    pub number: String,
    /// Whether new conversations send from it.
    pub is_default: bool,
}

/// The provider's numbers (DIDs): who holds which, and which one each conversation sends from.
#[async_trait]
pub trait NumberRepository: Send {
    /// Adds the pool's numbers that are not stored yet (never takes one away from its holder).
    async fn add_to_pool(&mut self, numbers: &[String]) -> Result<u64>;
    /// Gives `user` a free number from the pool (the default when it is the first); `None` when the pool is
    /// exhausted.
    async fn assign(&mut self, user: &str, now_ms: i64) -> Result<Option<String>>;
    /// The numbers `user` holds, sorted.
    async fn held_by(&mut self, user: &str) -> Result<Vec<HeldNumber>>;
    /// Makes `number` the default of `user`; `false` when the user does not hold it.
    async fn set_default(&mut self, user: &str, number: &str) -> Result<bool>;
    /// Who holds `number`.
    async fn holder(&mut self, number: &str) -> Result<Option<String>>;
    /// The number the conversation of `user` with `remote` sends from.
    async fn conversation(&mut self, user: &str, remote: &str) -> Result<Option<String>>;
    /// Sets it.
    async fn set_conversation(&mut self, user: &str, remote: &str, number: &str) -> Result<()>;
}

/// Recipients who sent STOP.
#[async_trait]
pub trait OptOutRepository: Send {
    /// Records that `remote` stopped messages from `number` with `keyword`.
    async fn stop(&mut self, remote: &str, number: &str, keyword: &str, now_ms: i64) -> Result<()>;
    /// Records that `remote` takes messages from `number` again; `false` when it had not stopped them.
    async fn start(&mut self, remote: &str, number: &str) -> Result<bool>;
    /// Whether `remote` stopped messages from `number`.
    async fn is_stopped(&mut self, remote: &str, number: &str) -> Result<bool>;
}

/// Where an outgoing MMS is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmsState {
    /// The carrier was asked (or is about to be) and no answer is recorded.
    Sending,
    /// The carrier took it ([`StoredMms::sid`]).
    Sent,
    /// The carrier refused it ([`StoredMms::reason`]).
    Failed,
}

impl MmsState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MmsState::Sending => "sending",
            MmsState::Sent => "sent",
            MmsState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sending" => MmsState::Sending,
            "sent" => MmsState::Sent,
            "failed" => MmsState::Failed,
            _ => return None,
        })
    }
}

/// An MMS about to be handed to the carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMms {
    /// The Matrix event it comes from (one row per event).
    pub event_id: String,
    /// The Matrix user who sent it.
    pub sender: String,
    /// The number it goes to (E.164).
    pub destination: String,
    /// The ledger hold paying for it, when billed.
    pub hold: Option<String>,
}

/// An outgoing MMS as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMms {
    /// The Matrix event.
    pub event_id: String,
    /// The Matrix user who sent it.
    pub sender: String,
    /// To.
    pub destination: String,
    /// Where it is.
    pub state: MmsState,
    /// Times the carrier was asked (or about to be), this one included.
    pub attempts: u32,
    /// The carrier's id, for [`MmsState::Sent`].
    pub sid: Option<String>,
    /// Why it failed, for [`MmsState::Failed`].
    pub reason: Option<String>,
    /// The ledger hold.
    pub hold: Option<String>,
    /// Where the charge is.
    pub billing: BillingState,
}

/// What [`MmsRepository::attempt`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MmsAttempt {
    /// Never asked before: go ahead.
    First,
    /// Asked before without a recorded answer (the bridge died, or the carrier did not answer): going ahead may
    /// give the carrier a second copy; `earlier` attempts were made.
    Again {
        /// Attempts before this one.
        earlier: u32,
    },
    /// Answered before: do not ask again.
    Done(StoredMms),
}

/// Outgoing MMS. The carrier's API has no idempotency key, so the row is written (and committed) before the
/// carrier is asked, and its answer right after: an event handed over again is answered from the row.
#[async_trait]
pub trait MmsRepository: Send {
    /// The MMS of a Matrix event.
    async fn by_event(&mut self, event_id: &str) -> Result<Option<StoredMms>>;
    /// Records an attempt (a new row, or one more attempt on a row still sending) and says what was there.
    async fn attempt(&mut self, mms: &NewMms, now_ms: i64) -> Result<MmsAttempt>;
    /// The carrier took it under `sid`.
    async fn sent(&mut self, event_id: &str, sid: &str, now_ms: i64) -> Result<()>;
    /// The carrier refused it.
    async fn failed(&mut self, event_id: &str, reason: &str, now_ms: i64) -> Result<()>;
    /// Held MMS the carrier answered: their charge is due.
    async fn billing_due(&mut self, limit: u32) -> Result<Vec<StoredMms>>;
    /// Records where an MMS's charge went.
    async fn set_billing(&mut self, event_id: &str, billing: BillingState) -> Result<()>;
    /// Attempts after an earlier one without an answer, on MMS the carrier then took: the most duplicates the
    /// carrier can hold.
    async fn possible_duplicates(&mut self) -> Result<u64>;
}
