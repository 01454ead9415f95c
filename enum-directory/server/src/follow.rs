//! Keeping a running `serve` in step with storage it does not write alone.
//!
//! **The journal follower.** Every change to a number appends one entry to the change journal, whoever makes it:
//! this node's registrar API, `numbers import` in another process, or another `serve` node on the same
//! PostgreSQL database. [`Follower`] reads the journal past the version this node has applied (every
//! `database.follow_interval_ms`), loads the changed numbers' current rows and publishes them in the zone: with
//! the signatures stored with them when those fit the zone's keys, signed here otherwise. Publishing goes
//! through the same [`ZoneWriter`] as the API, so with zone transfer on, the secondaries are told (NOTIFY) and
//! the NSEC3 copy is re-made exactly as after an API change.
//!
//! The follower and the API take the same [`WriteLock`], so the zone sees changes in commit order: a row the
//! follower read is never published over a newer change the API published meanwhile. Applying is idempotent:
//! a number whose records the zone already publishes (this node's own API changes, or a change seen twice) is
//! left alone, so nothing is applied twice and nothing goes back. A read error or a gap in the journal is
//! logged and retried on the next tick; the server keeps answering from what it has.
//!
//! **Refreshed signatures.** When the zone re-makes a number's signatures (the periodic refresher, a key
//! rollover, or a query finding them stale) it hands the new entry to [`SignatureStore`]; [`store_refreshed`]
//! writes them back in batches, one transaction each, off the query threads, so a restart loads them instead of
//! signing again. The write is guarded by the number's version: a number changed meanwhile keeps its own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tincan_enum_core::E164;
use tokio::sync::mpsc;

use crate::api::{WriteLock, ZoneWriter};
use crate::dns::{RefreshedSink, SignedEntry, Zone, ZoneError};
use crate::metrics::FollowCounters;
use crate::storage::{CurrentNumber, SignatureUpdate, Storage, StorageError};

/// How many journal entries one step reads (one transaction, one publish into the zone).
const BATCH: u32 = 1000;

/// How many consecutive ticks a gap at the start of the unread journal is waited for before it is skipped
/// (versions are gap-free, so a gap that lasts is a journal cut short by hand; the numbers past it are still
/// applied from their current rows).
pub const GAP_PATIENCE: u32 = 40;

/// Why one follower step failed (it is retried on the next tick).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A change could not be signed.
    #[error("signing a change: {0}")]
    Sign(#[from] ZoneError),
    /// The signing task failed.
    #[error("the signing task failed: {0}")]
    Task(String),
    /// The journal does not continue at the next version.
    #[error("the journal has a gap: expected version {expected}, found {found}")]
    Gap {
        /// The version after the last one applied.
        expected: i64,
        /// The first version found.
        found: i64,
    },
}

/// Applies changes found in the journal to the zone (see the module docs).
pub struct Follower {
    storage: Arc<dyn Storage>,
    zone: Arc<Zone>,
    writer: Arc<dyn ZoneWriter>,
    writes: WriteLock,
    counters: Arc<FollowCounters>,
    applied: i64,
    gap_ticks: u32,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("applied", &self.applied).finish_non_exhaustive()
    }
}

impl Follower {
    /// A follower of `storage`'s journal from version `applied` on (what the zone was loaded at), reading rows
    /// and signing for `zone`, publishing through `writer` under `writes` (the API's lock).
    pub fn new(
        storage: Arc<dyn Storage>,
        zone: Arc<Zone>,
        writer: Arc<dyn ZoneWriter>,
        writes: WriteLock,
        counters: Arc<FollowCounters>,
        applied: i64,
    ) -> Follower {
        Follower { storage, zone, writer, writes, counters, applied, gap_ticks: 0 }
    }

    /// The last journal version applied.
    pub fn applied(&self) -> i64 {
        self.applied
    }

    /// Catches up every `every` until `stopped` resolves; failures are logged and retried on the next tick.
    pub async fn run(mut self, every: Duration, stopped: impl Future<Output = ()>) {
        let work = async {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.catch_up().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(changed = n, version = self.applied, "applied changes made elsewhere"),
                    Err(e @ FollowError::Gap { .. }) => {
                        tracing::warn!(error = %e, "journal follower waits for the missing versions")
                    }
                    Err(e) => tracing::error!(error = %e, version = self.applied, "journal follower failed; retrying"),
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = stopped => {}
        }
    }

    /// Applies every journal entry past the last one applied; returns how many numbers changed in the zone.
    pub async fn catch_up(&mut self) -> Result<u64, FollowError> {
        let mut changed = 0;
        loop {
            let (n, more) = self.step().await?;
            changed += n;
            if !more {
                return Ok(changed);
            }
        }
    }

    /// One batch: how many numbers changed, and whether there may be more to read.
    async fn step(&mut self) -> Result<(u64, bool), FollowError> {
        // In order with the API's own writes: nothing the API publishes meanwhile can be overwritten by an
        // older row read here.
        let _order = self.writes.lock().await;
        let mut tx = self.storage.begin_read().await?;
        let mut entries = tx.journal().since(self.applied, BATCH).await?;
        let full = entries.len() == BATCH as usize;
        let Some(first) = entries.first().map(|e| e.version) else { return Ok((0, false)) };
        let expected = self.applied + 1;
        if first != expected {
            self.gap_ticks += 1;
            if self.gap_ticks < GAP_PATIENCE {
                return Err(FollowError::Gap { expected, found: first });
            }
            tracing::error!(expected, found = first, "the journal lacks versions; applying what follows them");
        }
        self.gap_ticks = 0;
        // Only a contiguous run: a later gap is waited for by the next step.
        let contiguous =
            entries.windows(2).position(|w| w[1].version != w[0].version + 1).map_or(entries.len(), |i| i + 1);
        let more = full || contiguous < entries.len();
        entries.truncate(contiguous);
        let last = entries.last().map_or(self.applied, |e| e.version);
        let mut numbers: Vec<E164> = entries.into_iter().map(|e| e.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let rows = tx.numbers().current(&numbers).await?;
        drop(tx);
        let zone = self.zone.clone();
        // Signing what came without usable signatures is CPU work: off the async threads.
        let changes = tokio::task::spawn_blocking(move || prepare_all(&zone, numbers, rows))
            .await
            .map_err(|e| FollowError::Task(e.to_string()))??;
        let n = if changes.is_empty() { 0 } else { self.writer.publish_many(changes) as u64 };
        self.applied = last;
        self.counters.applied(n);
        Ok((n, more))
    }
}

/// What to publish for each of `numbers` (absent from `rows`: deleted); numbers already published as they are
/// are left out.
fn prepare_all(
    zone: &Zone,
    numbers: Vec<E164>,
    rows: Vec<CurrentNumber>,
) -> Result<Vec<(E164, Option<SignedEntry>)>, ZoneError> {
    let rows: HashMap<&E164, &CurrentNumber> = rows.iter().map(|r| (&r.record.number, r)).collect();
    let mut out = Vec::new();
    for number in numbers {
        let stored = rows.get(&number).map(|r| (&r.record, r.signed.as_deref()));
        if let Some(entry) = zone.prepare(&number, stored)? {
            out.push((number, entry));
        }
    }
    Ok(out)
}

/// How many refreshed entries wait for storing at most; more are dropped (and signed again after a restart)
/// unless the refresher, which may wait, made them.
const QUEUE: usize = 50_000;

/// How many refreshed entries are stored in one transaction.
const STORE_BATCH: usize = 1000;

/// The zone's [`RefreshedSink`]: queues refreshed entries for [`store_refreshed`].
#[derive(Debug)]
pub struct SignatureStore {
    queue: mpsc::Sender<(E164, SignedEntry)>,
    counters: Arc<FollowCounters>,
}

impl RefreshedSink for SignatureStore {
    fn refreshed(&self, number: E164, entry: SignedEntry, may_wait: bool) {
        match self.queue.try_send((number, entry)) {
            Ok(()) => {}
            // The refresher runs on a blocking thread: it waits rather than lose work.
            Err(mpsc::error::TrySendError::Full(item)) if may_wait => {
                let _ = self.queue.blocking_send(item);
            }
            Err(mpsc::error::TrySendError::Full(_)) => self.counters.dropped(),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Makes `zone` hand its refreshed entries to a queue, and returns the task storing them (until `stopped`).
pub fn store_refreshed(
    storage: Arc<dyn Storage>,
    zone: Arc<Zone>,
    counters: Arc<FollowCounters>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    zone.set_refreshed_sink(Box::new(SignatureStore { queue: tx, counters: counters.clone() }));
    async move {
        let work = async {
            let mut batch = Vec::with_capacity(STORE_BATCH);
            while rx.recv_many(&mut batch, STORE_BATCH).await > 0 {
                let items = std::mem::take(&mut batch);
                let count = items.len();
                match store_batch(&*storage, &zone, items).await {
                    Ok(n) => {
                        counters.persisted(n);
                        tracing::debug!(refreshed = count, stored = n, "refreshed signatures stored");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, numbers = count, "storing refreshed signatures failed; they are made again after a restart")
                    }
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = stopped => {}
        }
    }
}

/// Stores one batch of refreshed entries in one transaction: each only if the number still has the records the
/// entry publishes, at the version read here (the update re-checks it).
async fn store_batch(storage: &dyn Storage, zone: &Zone, items: Vec<(E164, SignedEntry)>) -> Result<u64, StorageError> {
    // The newest entry of each number.
    let mut latest: HashMap<E164, SignedEntry> = HashMap::with_capacity(items.len());
    for (number, entry) in items {
        latest.insert(number, entry);
    }
    let numbers: Vec<E164> = latest.keys().cloned().collect();
    let mut tx = storage.begin().await?;
    let rows = tx.numbers().current(&numbers).await?;
    let updates: Vec<SignatureUpdate> = rows
        .into_iter()
        .filter_map(|row| {
            let entry = latest.get(&row.record.number)?;
            zone.publishes(&row.record, entry).then(|| SignatureUpdate {
                number: row.record.number,
                version: row.version,
                signed: entry.as_bytes().to_vec(),
            })
        })
        .collect();
    let n = tx.numbers().store_signatures(&updates).await?;
    tx.commit().await?;
    Ok(n)
}
