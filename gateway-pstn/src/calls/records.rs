//! The call detail records of one call: one per carrier attempt (answered, busy, failed, cancelled) and one
//! for a call refused before any carrier, each stored before the call's hold is settled or released (so a
//! hold a call made always has its record, whatever happens to the process next).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::spool::Entry;
use crate::charging::AccountId;
use crate::money::{Amount, Currency};
use crate::storage::{CallRecord, CallResult, Storage, unix_ms};

/// What every record of one call shares, and the attempts counted so far.
#[derive(Debug, Clone)]
pub(super) struct Records {
    template: CallRecord,
    attempts: u32,
}

/// How one leg ended, for its record.
#[derive(Debug, Clone)]
pub(super) struct Ended {
    /// The carrier tried, if any.
    pub carrier: Option<String>,
    /// How it ended.
    pub result: CallResult,
    /// The leg's SIP final status (200 when answered).
    pub sip_status: u16,
    /// Its phrase, or why the gateway gave up on it.
    pub reason: String,
    /// The Q.850 cause.
    pub cause: u16,
    /// When it started (INVITE sent, or the call refused), Unix ms.
    pub started_at_ms: i64,
}

/// The money of an answered leg.
#[derive(Debug, Clone, Copy)]
pub(super) struct Billed {
    /// When it was answered, Unix ms.
    pub answered_at_ms: i64,
    /// Seconds billed.
    pub seconds: u32,
    /// What the account pays.
    pub price: Amount,
    /// What the carrier charges.
    pub cost: Option<Amount>,
}

impl Records {
    /// The records of the call `call_id` to `destination`, paid by `account` in `currency`.
    pub fn new(call_id: &str, account: AccountId, currency: Currency, destination: &str) -> Self {
        Records {
            template: CallRecord {
                id: 0,
                call_id: call_id.to_owned(),
                attempt: 0,
                account_id: account,
                hold_seq: None,
                destination: destination.to_owned(),
                carrier: None,
                result: CallResult::Refused,
                sip_status: 0,
                reason: String::new(),
                q850_cause: None,
                started_at_ms: 0,
                answered_at_ms: None,
                ended_at_ms: 0,
                billed_seconds: None,
                price: None,
                cost: None,
                currency,
            },
            attempts: 0,
        }
    }

    /// The call's hold, once made.
    pub fn set_hold(&mut self, seq: i64) {
        self.template.hold_seq = Some(seq);
    }

    /// Carrier attempts recorded (or begun) so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The number of the next carrier attempt (1, 2, …).
    pub fn next_attempt(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    /// The record of attempt `attempt` (0: the call refused before any carrier) that ended at `ended_at_ms`.
    pub fn record(&self, attempt: u32, ended: Ended, billed: Option<Billed>, ended_at_ms: i64) -> CallRecord {
        CallRecord {
            attempt,
            carrier: ended.carrier,
            result: ended.result,
            sip_status: ended.sip_status,
            reason: ended.reason,
            q850_cause: Some(ended.cause),
            started_at_ms: ended.started_at_ms,
            answered_at_ms: billed.map(|b| b.answered_at_ms),
            ended_at_ms,
            billed_seconds: billed.map(|b| b.seconds),
            price: billed.map(|b| b.price),
            cost: billed.and_then(|b| b.cost),
            ..self.template.clone()
        }
    }
}

/// Unix ms now by the ledger's clock.
pub(super) fn now_ms(clock: &dyn tincan_common::Clock) -> i64 {
    unix_ms(clock.now())
}

/// How long a call waits for the database to take one of its records (or a settlement) before it keeps it in
/// the spool instead (a pool that cannot connect would otherwise keep it waiting for its acquire timeout).
pub(super) const DATABASE_WITHIN: Duration = Duration::from_secs(3);

/// Stores `record`: in the database, retrying a transient failure for up to [`DATABASE_WITHIN`]; else in the
/// node's spool (durably, before this returns), from which it reaches the database once it is back. A call
/// that spooled a step (`spooled`, set here) spools its later steps too, so they reach the database in order.
pub(super) async fn store(sw: &super::Switch, record: &CallRecord, spooled: &AtomicBool) {
    if !spooled.load(Ordering::Relaxed) {
        match tokio::time::timeout(DATABASE_WITHIN, insert(&**sw.ledger.storage(), record)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => tracing::warn!(error = %e, call = %record.call_id, attempt = record.attempt,
                "storing a call record failed; spooled"),
            Err(_) => tracing::warn!(call = %record.call_id, attempt = record.attempt,
                "the database did not take a call record in time; spooled"),
        }
    }
    sw.keep(&Entry::Record { record: record.clone() }, spooled).await;
}

/// One record into the database; a second copy (the first try committed after all) is no error.
async fn insert(storage: &dyn Storage, record: &CallRecord) -> Result<(), crate::storage::StorageError> {
    let mut attempt = 0u32;
    loop {
        let result = async {
            let mut tx = storage.begin().await?;
            tx.call_records().add(record).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) | Err(crate::storage::StorageError::Duplicate(_)) => return Ok(()),
            Err(e) if e.is_transient() && attempt < 4 => {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
