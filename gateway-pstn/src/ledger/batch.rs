//! The hold workers: each applies the requests queued for its accounts, in arrival order, many per
//! transaction.

use std::sync::Weak;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{Learned, Ledger, LedgerError, ops, set};
use crate::charging::{
    AccountId, ChargeError, ExtendRequest, Hold, HoldId, ReleaseRequest, ReserveRequest, SettleRequest, Settlement,
};
use crate::fraud::ActivityLimits;
use crate::money::{Amount, Currency};
use crate::rating::Rate;
use crate::storage::{LiveCall, StorageError};

/// How often a batch is run again after a transient database failure before its requests fail.
const ATTEMPTS: usize = 5;

/// What a request charges or holds: an amount, or the price of a usage at the hold's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Amount(Amount),
    Seconds(u32),
    Segments(u32),
}

/// A reservation, checked and priced.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) principal: String,
    pub(crate) req: ReserveRequest,
    pub(crate) account: AccountId,
    pub(crate) currency: Currency,
    pub(crate) amount: Amount,
    pub(crate) ttl_ms: i64,
    pub(crate) rate: Option<Box<Rate>>,
    pub(crate) limits: ActivityLimits,
    /// The call this hold pays for, written in the hold's own transaction (its account and hold filled in).
    pub(crate) live: Option<Box<LiveCall>>,
}

/// A request to a worker.
#[derive(Debug)]
pub(crate) enum Op {
    Reserve(Reservation),
    Extend {
        principal: String,
        req: ExtendRequest,
        more: Usage,
        ttl_ms: i64,
        currency: Currency,
        /// For a call: the gateway process (run) carrying it, which must still be its own (not taken over).
        run: Option<String>,
    },
    Settle {
        principal: String,
        req: SettleRequest,
        used: Usage,
        currency: Currency,
    },
    Release {
        principal: String,
        req: ReleaseRequest,
        currency: Currency,
    },
    Expire(HoldId),
}

/// A worker's answer.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Hold(Hold),
    Settlement(Settlement),
}

pub(crate) struct Job {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Outcome, ChargeError>>,
}

/// Runs batches until the ledger is gone.
pub(crate) async fn worker(ledger: Weak<Ledger>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let Some(ledger) = ledger.upgrade() else { return };
        let mut jobs = vec![first];
        while jobs.len() < ledger.config.max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        run(&ledger, jobs).await;
    }
}

async fn run(ledger: &Ledger, jobs: Vec<Job>) {
    let started = Instant::now();
    match attempt(ledger, &jobs).await {
        Ok(outcomes) => {
            ledger.metrics.batch(jobs.len(), started.elapsed());
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                count(ledger, &job.op, &outcome);
                let _ = job.reply.send(outcome);
            }
        }
        Err(e) if jobs.len() > 1 => {
            // One request may be what fails (a corrupt row): run each alone so the others still get through.
            tracing::warn!(error = %e, jobs = jobs.len(), "batch failed; running its requests one by one");
            for job in jobs {
                let outcome = match attempt(ledger, std::slice::from_ref(&job)).await {
                    Ok(mut o) => o.pop().expect("one outcome per job"),
                    Err(e) => Err(super::storage_unavailable(&e)),
                };
                count(ledger, &job.op, &outcome);
                let _ = job.reply.send(outcome);
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(super::storage_unavailable(&e)));
            }
        }
    }
}

/// Runs every job in one transaction, again after transient failures.
async fn attempt(ledger: &Ledger, jobs: &[Job]) -> Result<Vec<Result<Outcome, ChargeError>>, StorageError> {
    let mut last = None;
    for n in 0..ATTEMPTS {
        if n > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2 << n)).await;
        }
        match once(ledger, jobs).await {
            Ok(o) => return Ok(o),
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, attempt = n, "batch hit a concurrent writer; running it again");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn once(ledger: &Ledger, jobs: &[Job]) -> Result<Vec<Result<Outcome, ChargeError>>, StorageError> {
    let mut tx = ledger.storage.begin().await?;
    let mut learned = Learned::default();
    let outcomes = match set::plan(jobs) {
        Some(plan) => set::apply(ledger, &mut *tx, &mut learned, jobs, &plan, ledger.now_ms()).await?,
        None => {
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in jobs {
                let now = ledger.now_ms();
                let outcome = match ops::apply(ledger, &mut *tx, &mut learned, &job.op, now).await {
                    Ok(o) => Ok(o),
                    Err(LedgerError::Charge(c)) => Err(c),
                    Err(LedgerError::Storage(e)) => return Err(e),
                };
                outcomes.push(outcome);
            }
            outcomes
        }
    };
    tx.commit().await?;
    ledger.remember(learned);
    Ok(outcomes)
}

fn count(ledger: &Ledger, op: &Op, outcome: &Result<Outcome, ChargeError>) {
    let m = &ledger.metrics;
    match (op, outcome) {
        (Op::Reserve(_), Ok(_)) => m.reserved(),
        (Op::Settle { .. }, Ok(_)) => m.settled(),
        (Op::Release { .. }, Ok(_)) => m.released(),
        (Op::Expire(_), Ok(_)) => m.expired(),
        (_, Err(e)) => m.rejected(e.code()),
        _ => {}
    }
}
