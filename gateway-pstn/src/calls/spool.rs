//! The call records and hold settlements the database did not take when a call ended (an outage, a pool that
//! could not connect in time), kept on the node's own disk until it does: one file per step, written and
//! flushed (`fsync`, the file and its directory) before the call goes on, so neither a database outage nor a
//! crash afterwards loses a record or a charge.
//!
//! A replay applies the files in the order they were written, and stops at the first the database still does
//! not take (so a call's settlement never lands before its record). Every step is safe to apply twice: a record
//! is unique per call and attempt (a second one is a duplicate, dropped), a settlement or release carries the
//! call's own idempotency key (the ledger answers a repeat with the first answer, or refuses a different one).
//! So a replay after a crash in its middle, or of a call another node settled meanwhile (it took over this
//! node's run), charges nothing twice.
//!
//! On start the node replays its spool before it settles the calls its earlier process left, so a call that
//! ended during an outage keeps its own record (its real end), not one made from the last heartbeat.
//! A step the database refuses for good (not an outage: a constraint) is moved aside to `rejected/` and logged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::charging::{AccountId, ChargeError, Charging, HoldId, ReleaseRequest, SettleRequest};
use crate::storage::{CallRecord, Storage, StorageError};

/// One step of a call kept for the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Entry {
    /// A call detail record.
    Record {
        /// The record.
        record: CallRecord,
    },
    /// A hold settled.
    Settle {
        /// The hold's account.
        account: AccountId,
        /// The hold's number.
        seq: i64,
        /// The settlement (its `hold` is not serialised: `account` and `seq` say it).
        request: SettleRequest,
    },
    /// A hold released.
    Release {
        /// The hold's account.
        account: AccountId,
        /// The hold's number.
        seq: i64,
        /// The release.
        request: ReleaseRequest,
    },
}

impl Entry {
    /// A settlement to keep.
    pub fn settle(request: &SettleRequest) -> Entry {
        Entry::Settle { account: request.hold.account, seq: request.hold.seq, request: request.clone() }
    }

    /// A release to keep.
    pub fn release(request: &ReleaseRequest) -> Entry {
        Entry::Release { account: request.hold.account, seq: request.hold.seq, request: request.clone() }
    }

    fn call_id(&self) -> &str {
        match self {
            Entry::Record { record } => &record.call_id,
            Entry::Settle { request, .. } => key_call(request.idempotency_key.as_str()),
            Entry::Release { request, .. } => key_call(request.idempotency_key.as_str()),
        }
    }
}

/// The call of an idempotency key `CALL:step`.
fn key_call(key: &str) -> &str {
    key.split_once(':').map_or(key, |(c, _)| c)
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Steps the database took (or had already).
    pub applied: u32,
    /// Steps refused for good, moved to `rejected/`.
    pub rejected: u32,
    /// Steps still waiting (the database did not take the first of them).
    pub waiting: u32,
}

/// The spool directory of one node.
#[derive(Debug)]
pub(super) struct Spool {
    dir: PathBuf,
    /// The clock the files are named by (their order across restarts).
    clock: std::sync::Arc<dyn tincan_common::Clock>,
    next: AtomicU64,
    /// One replay at a time.
    replaying: tokio::sync::Mutex<()>,
}

/// How an entry's step went.
enum Applied {
    Done,
    Rejected(String),
    /// Not now (the database is away); try again later.
    Later(String),
}

impl Spool {
    /// Opens (creates) the spool at `dir`; files left half-written by a crash (never committed) are removed.
    pub fn open(dir: PathBuf, clock: std::sync::Arc<dyn tincan_common::Clock>) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir.join("rejected"))?;
        for f in std::fs::read_dir(&dir)? {
            let path = f?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Spool { dir, clock, next: AtomicU64::new(0), replaying: tokio::sync::Mutex::new(()) })
    }

    /// Keeps `entry` durably (on disk, flushed, before this returns).
    pub async fn put(&self, entry: &Entry) -> std::io::Result<()> {
        let body = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        // Named by time, then by a counter: the order of the writes, also across restarts.
        let ms = crate::storage::unix_ms(self.clock.now());
        let name = format!("{ms:015}-{:09}", self.next.fetch_add(1, Ordering::Relaxed));
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_durably(&dir, &name, &body)).await.map_err(std::io::Error::other)?
    }

    /// The files waiting, oldest first.
    pub fn waiting(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Applies the waiting steps in order, until one is not taken yet.
    pub async fn replay(&self, storage: &dyn Storage, charging: &dyn Charging) -> std::io::Result<Replayed> {
        let _one = self.replaying.lock().await;
        let files = self.waiting()?;
        let mut done = Replayed::default();
        for (i, path) in files.iter().enumerate() {
            let entry: Entry = match std::fs::read(path).map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, file = %path.display(), "a spooled call step does not parse; set aside");
                    self.set_aside(path)?;
                    done.rejected += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match apply(&entry, storage, charging).await {
                Applied::Done => {
                    std::fs::remove_file(path)?;
                    done.applied += 1;
                }
                Applied::Rejected(why) => {
                    tracing::error!(call = %entry.call_id(), %why, file = %path.display(),
                        "the database refused a spooled call step for good; set aside in rejected/");
                    self.set_aside(path)?;
                    done.rejected += 1;
                }
                Applied::Later(why) => {
                    tracing::debug!(call = %entry.call_id(), %why, "spooled call steps wait for the database");
                    done.waiting = u32::try_from(files.len() - i).unwrap_or(u32::MAX);
                    break;
                }
            }
        }
        if done.applied + done.rejected > 0 {
            tracing::info!(?done, "spooled call steps replayed");
        }
        Ok(done)
    }

    fn set_aside(&self, path: &Path) -> std::io::Result<()> {
        let name = path.file_name().expect("a spool file has a name");
        std::fs::rename(path, self.dir.join("rejected").join(name))
    }
}

/// Writes `body` to `dir/name.json` so that it is there after a crash: a temporary file, flushed, renamed, and
/// the directory flushed.
fn write_durably(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(format!("{name}.json")))?;
    std::fs::File::open(dir)?.sync_all()
}

async fn apply(entry: &Entry, storage: &dyn Storage, charging: &dyn Charging) -> Applied {
    match entry {
        Entry::Record { record } => {
            let result = async {
                let mut tx = storage.begin().await?;
                tx.call_records().add(record).await?;
                tx.commit().await
            }
            .await;
            match result {
                // Stored before (the first try committed after all, or another node recorded it).
                Ok(()) | Err(StorageError::Duplicate(_)) => Applied::Done,
                Err(e) if refused_for_good(&e) => Applied::Rejected(e.to_string()),
                Err(e) => Applied::Later(e.to_string()),
            }
        }
        Entry::Settle { account, seq, request } => {
            let req = SettleRequest { hold: HoldId { account: *account, seq: *seq }, ..request.clone() };
            money(charging.settle(&req).await.map(|s| s.charged.to_string()), &req.hold, "settled")
        }
        Entry::Release { account, seq, request } => {
            let req = ReleaseRequest { hold: HoldId { account: *account, seq: *seq }, ..request.clone() };
            money(charging.release(&req).await.map(|_| String::new()), &req.hold, "released")
        }
    }
}

/// A settlement's or release's outcome: done when the ledger took it or answers that the hold is closed (by
/// this step's first try, by another node's takeover, by its expiry).
fn money(result: Result<String, ChargeError>, hold: &HoldId, what: &str) -> Applied {
    match result {
        Ok(charged) => {
            tracing::info!(%hold, %charged, "a spooled hold step is {what}");
            Applied::Done
        }
        Err(e) if e.is_retryable() => Applied::Later(e.to_string()),
        Err(e @ (ChargeError::HoldExpired | ChargeError::HoldClosed(crate::charging::HoldState::Expired))) => {
            tracing::error!(%hold, error = %e, "a spooled settlement found its hold expired: not charged");
            Applied::Done
        }
        Err(e @ (ChargeError::HoldClosed(_) | ChargeError::IdempotencyConflict)) => {
            tracing::warn!(%hold, error = %e, "a spooled hold step was done elsewhere (a takeover); dropped");
            Applied::Done
        }
        Err(e) => Applied::Rejected(e.to_string()),
    }
}

/// Whether the database refused a write itself (a constraint), rather than could not be reached.
fn refused_for_good(e: &StorageError) -> bool {
    match e {
        StorageError::Database(sqlx::Error::Database(d)) => !e.is_transient() && d.code().is_some(),
        StorageError::Corrupt { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::CallResult;

    fn record(call: &str, attempt: u32) -> CallRecord {
        CallRecord {
            id: 0,
            call_id: call.into(),
            attempt,
            account_id: AccountId(3),
            hold_seq: Some(7),
            destination: "+4930123456".into(),
            carrier: Some("cheap".into()),
            result: CallResult::Answered,
            sip_status: 200,
            reason: "Caller Hung Up".into(),
            q850_cause: Some(16),
            started_at_ms: 1_000,
            answered_at_ms: Some(2_000),
            ended_at_ms: 6_000,
            billed_seconds: Some(4),
            price: Some("0.04".parse().unwrap()),
            cost: None,
            currency: "EUR".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn steps_are_kept_in_the_order_written_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock: std::sync::Arc<dyn tincan_common::Clock> = std::sync::Arc::new(tincan_common::SystemClock);
        let spool = Spool::open(dir.path().join("spool"), clock.clone()).unwrap();
        let settle = SettleRequest {
            idempotency_key: crate::charging::IdempotencyKey::new("run-1:settle").unwrap(),
            hold: HoldId { account: AccountId(3), seq: 7 },
            amount: None,
            seconds: Some(4),
            segments: None,
            carrier: Some("cheap".into()),
        };
        let entries = [
            Entry::Record { record: record("run-1", 1) },
            Entry::Record { record: record("run-1", 2) },
            Entry::settle(&settle),
        ];
        for e in &entries {
            spool.put(e).await.unwrap();
        }
        // A write a crash cut short is not a step.
        std::fs::write(dir.path().join("spool").join("000000000000001-000000000.tmp"), b"{\"kind\":").unwrap();
        let again = Spool::open(dir.path().join("spool"), clock).unwrap();
        let read: Vec<Entry> = again
            .waiting()
            .unwrap()
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect();
        // (A settlement's hold is kept beside its request, which leaves it out.)
        assert_eq!(read[..2], entries[..2]);
        assert_eq!(std::fs::read_dir(dir.path().join("spool")).unwrap().count(), 4, "three steps and rejected/");
        match &read[2] {
            Entry::Settle { account, seq, request } => {
                assert_eq!((*account, *seq, request.seconds), (AccountId(3), 7, Some(4)));
                assert_eq!(entries[2].call_id(), "run-1");
            }
            other => panic!("{other:?}"),
        }
    }
}
