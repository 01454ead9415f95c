//! What the gateway knows of its calls in progress, kept in the database so that a restart after a crash
//! (`kill -9`, a power loss) can settle them: each call holding credit has a row from its first hold to its
//! settlement or release, and the process (the *run*) confirms all of its calls up once a second with one
//! heartbeat.
//!
//! A call's row is written by the ledger in the transaction of its first hold (one commit before the call may
//! go on to a carrier, and the row exists exactly when the hold does); what happens to it later goes through
//! this module's writer. One writer task applies the updates in order, many per transaction. The order is
//! what makes the heartbeat exact: a call's end is queued the moment the call loop sees it, under the same
//! lock as the heartbeat's time is read, so a committed heartbeat at `t` means every call of the run whose end
//! was not committed before it was still up at `t`. A crash loses at most the updates after the last commit, and then
//! also the heartbeats after them: what survives is always true.
//!
//! On start, [`recover`] settles the calls of the node's earlier runs: an answered call is charged for its
//! seconds up to its end if that was stored, else up to its run's last heartbeat rounded down (never past the
//! last confirmed second, never past what its holds paid), and gets an `answered` record saying so; a call
//! that was not answered has its hold released and a `failed` record. Their media sessions at rtpengine are
//! deleted. A hold that expired before the restart was released by its expiry: its record says so and
//! nothing is charged.
//!
//! Nodes sharing a database also settle each other's calls: [`watch`] looks every few seconds for runs of any
//! node silent for `calls.takeover_after_secs` and settles their calls the same way (records saying `Gateway
//! Node Down`), so a node that died and does not come back leaves no call unrecorded and no hold open beyond
//! its expiry. Whoever settles a dead run's calls — its own node restarted, or a surviving node — first claims
//! the run with one conditional statement (only while no live run holds it), so one run settles them; the
//! settlements and records use the dead run's own keys, so even a second settler could charge nothing twice.
//! A run that finds itself claimed (it was silent that long but is not dead: a stalled process, a lost
//! database) stops taking calls (503, OPTIONS too, so a dispatcher moves traffic away) and must be restarted.
//! It may find it out only at its next heartbeat, so the claim also fences its calls in the database: a call's
//! first hold and live row are written only in a transaction that finds the run unclaimed and keeps it so until
//! its commit (a claim waits for it), so every call the claimer does not see was refused with nothing held.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Switch;
use super::policy::{self, billed_seconds};
use super::spool::Entry;
use crate::charging::{ChargeError, Charging, HoldId, HoldState, IdempotencyKey, ReleaseRequest, SettleRequest};
use crate::storage::{CallRecord, CallResult, GatewayRun, LiveCall, Storage, StorageError, unix_ms};

/// How often a run confirms its calls up.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Most updates per transaction.
const MAX_BATCH: usize = 512;

/// One update of the live calls.
#[derive(Debug)]
enum Op {
    Attempt { call_id: String, attempt: u32, carrier: String, at_ms: i64 },
    Answered { call_id: String, at_ms: i64, paid: u32 },
    Paid { call_id: String, paid: u32 },
    Ended { call_id: String, at_ms: i64 },
    Close { call_id: String },
    Heartbeat { at_ms: i64 },
}

/// The live calls of this run: the queue to the writer task.
pub(super) struct Live {
    run_id: String,
    queue: mpsc::UnboundedSender<Op>,
    /// Taken while a timestamp is read and its update queued, so that the queue's order is the time order.
    order: Mutex<()>,
    clock: Arc<dyn tincan_common::Clock>,
    /// Set when the run's heartbeat finds it claimed by another run: its calls are settled elsewhere.
    taken_over: Arc<AtomicBool>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("run_id", &self.run_id).finish_non_exhaustive()
    }
}

impl Live {
    /// Registers the run (`run_id` of `node`) and starts its writer and heartbeat.
    pub async fn start(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn tincan_common::Clock>,
        run_id: String,
        node: &str,
    ) -> Result<Arc<Live>, StorageError> {
        let mut tx = storage.begin().await?;
        tx.live_calls().start_run(&run_id, node, unix_ms(clock.now())).await?;
        tx.commit().await?;
        let (queue, rx) = mpsc::unbounded_channel();
        let taken_over = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer(storage, run_id.clone(), rx, taken_over.clone()));
        let live = Arc::new(Live { run_id, queue, order: Mutex::new(()), clock, taken_over });
        let weak = Arc::downgrade(&live);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(live) = weak.upgrade() else { return };
                live.send_timed(|at_ms| Op::Heartbeat { at_ms });
            }
        });
        Ok(live)
    }

    fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    /// Whether another run claimed this one (it was silent past the takeover time): its calls are being
    /// settled elsewhere and it must take no more.
    pub fn taken_over(&self) -> bool {
        self.taken_over.load(Ordering::Relaxed)
    }

    /// A call's first hold was refused because another run claimed this one: from now on every call and
    /// keep-alive is refused, as when the heartbeat finds it.
    pub fn found_taken_over(&self) {
        note_taken_over(&self.taken_over, &self.run_id);
    }

    fn send(&self, op: Op) {
        let _ = self.queue.send(op);
    }

    /// Queues `op` made with the time now, in time order with every other timed update.
    fn send_timed(&self, op: impl FnOnce(i64) -> Op) -> i64 {
        let _order = self.order.lock().expect("live order lock");
        let at = self.now_ms();
        let _ = self.queue.send(op(at));
        at
    }

    /// The row of a call of this run, for the ledger to write with the call's first hold (its account and
    /// hold are filled in there), so the call is in the database before any carrier sees it.
    pub fn row(&self, call: LiveCall) -> LiveCall {
        LiveCall { run_id: self.run_id.clone(), ..call }
    }

    /// Attempt `attempt` on `carrier` starts.
    pub fn attempt(&self, call_id: &str, attempt: u32, carrier: &str, at_ms: i64) {
        self.send(Op::Attempt { call_id: call_id.to_owned(), attempt, carrier: carrier.to_owned(), at_ms });
    }

    /// The carrier answered at `at_ms`; the holds pay `paid` seconds.
    pub fn answered(&self, call_id: &str, at_ms: i64, paid: u32) {
        self.send(Op::Answered { call_id: call_id.to_owned(), at_ms, paid });
    }

    /// The holds now pay `paid` seconds.
    pub fn paid(&self, call_id: &str, paid: u32) {
        self.send(Op::Paid { call_id: call_id.to_owned(), paid });
    }

    /// The call ended now.
    pub fn ended(&self, call_id: &str) {
        self.send_timed(|at_ms| Op::Ended { call_id: call_id.to_owned(), at_ms });
    }

    /// The call's record is stored and its hold closed.
    pub fn close(&self, call_id: &str) {
        self.send(Op::Close { call_id: call_id.to_owned() });
    }
}

/// Applies the queued updates in order, as many as are waiting per transaction (at most [`MAX_BATCH`]). A
/// failed transaction is run again (every update can be applied twice) until the database takes it, however
/// long it is away: nothing is dropped, since a lost update would make a crash settle a call from less than
/// was known (an answer lost: the call released unpaid; an end lost: billed to a later heartbeat). Updates
/// queued meanwhile wait behind the failed ones, in order; of the heartbeats waiting only the newest is kept
/// (one transaction commits them together, so the earlier ones say nothing more), so a long outage grows the
/// queue only by the calls' own updates.
async fn writer(
    storage: Arc<dyn Storage>,
    run_id: String,
    mut rx: mpsc::UnboundedReceiver<Op>,
    taken_over: Arc<AtomicBool>,
) {
    let mut pending: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    let mut failures = 0u32;
    loop {
        if pending.is_empty() {
            if rx.recv_many(&mut pending, MAX_BATCH).await == 0 {
                return;
            }
        } else {
            // Whatever came in while the database was away goes behind what waits.
            while let Ok(op) = rx.try_recv() {
                pending.push(op);
            }
        }
        keep_newest_heartbeat(&mut pending);
        let n = pending.len().min(MAX_BATCH);
        match apply(&*storage, &run_id, &pending[..n]).await {
            Ok(own) => {
                if !own {
                    note_taken_over(&taken_over, &run_id);
                }
                if failures >= GIVE_NOTICE_AFTER {
                    tracing::info!(failures, "live calls written again after the database came back");
                }
                failures = 0;
                pending.drain(..n);
            }
            Err(e) => {
                failures += 1;
                if failures == GIVE_NOTICE_AFTER || failures.is_multiple_of(100) {
                    tracing::error!(error = %e, failures, updates = pending.len(),
                        "live calls cannot be written; kept in memory and tried again until the database takes them");
                } else {
                    tracing::warn!(error = %e, failures, "writing live calls failed; again");
                }
                tokio::time::sleep(Duration::from_millis(50 << (failures - 1).min(5))).await;
            }
        }
    }
}

/// Failures in a row after which the writer says (at error level) that the database is away.
const GIVE_NOTICE_AFTER: u32 = 8;

/// Drops every heartbeat in `ops` but the last (which stays where it is): applied in one transaction, the
/// earlier ones add nothing to what the last one says.
fn keep_newest_heartbeat(ops: &mut Vec<Op>) {
    let Some(last) = ops.iter().rposition(|op| matches!(op, Op::Heartbeat { .. })) else { return };
    let mut i = 0;
    ops.retain(|op| {
        let keep = !matches!(op, Op::Heartbeat { .. }) || i == last;
        i += 1;
        keep
    });
}

/// Marks the run taken over (found by its heartbeat or by a call's first hold), saying so once.
fn note_taken_over(taken_over: &AtomicBool, run_id: &str) {
    if !taken_over.swap(true, Ordering::Relaxed) {
        tracing::error!(
            run = %run_id,
            "this run was claimed by another node (its heartbeat was late past calls.takeover_after_secs): \
             its calls are settled there; refusing new calls — restart this node"
        );
    }
}

/// Applies `jobs`; false when a heartbeat among them found the run no longer its own.
async fn apply(storage: &dyn Storage, run_id: &str, jobs: &[Op]) -> Result<bool, StorageError> {
    let mut own = true;
    let mut tx = storage.begin().await?;
    let r = tx.live_calls();
    for job in jobs {
        match job {
            Op::Attempt { call_id, attempt, carrier, at_ms } => r.attempt(call_id, *attempt, carrier, *at_ms).await?,
            Op::Answered { call_id, at_ms, paid } => r.answered(call_id, *at_ms, *paid).await?,
            Op::Paid { call_id, paid } => r.paid(call_id, *paid).await?,
            Op::Ended { call_id, at_ms } => r.ended(call_id, *at_ms).await?,
            Op::Close { call_id } => r.close(call_id).await?,
            Op::Heartbeat { at_ms } => own &= r.heartbeat(run_id, *at_ms).await?,
        }
    }
    tx.commit().await?;
    Ok(own)
}

/// How the calls of the node's earlier runs were settled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Answered calls charged for their confirmed seconds.
    pub settled: u32,
    /// Calls not answered: their holds released.
    pub released: u32,
    /// Holds that had expired (released by their expiry): nothing charged.
    pub expired: u32,
    /// Media sessions deleted at rtpengine.
    pub media_deleted: u32,
}

/// Why a run's calls are settled by another run: their records say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The node started again after its earlier process died.
    Restarted,
    /// Another node took over the calls of a node silent past the takeover time.
    NodeDown,
}

impl Why {
    fn phrase(self) -> &'static str {
        match self {
            Why::Restarted => "Gateway Restarted",
            Why::NodeDown => "Gateway Node Down",
        }
    }

    fn after(self) -> &'static str {
        match self {
            Why::Restarted => "Ended; Settled After A Gateway Restart",
            Why::NodeDown => "Ended; Settled By Another Gateway Node",
        }
    }
}

/// The takeover time in ms: how long a run may be silent and still count as alive (also for the claims of
/// its own node's restart when takeovers are off, 0, where the default counts).
fn takeover_ms(sw: &Switch) -> i64 {
    let secs = match sw.config.takeover_after_secs {
        0 => super::CallsConfig::default().takeover_after_secs,
        s => s,
    };
    i64::from(secs) * 1000
}

/// Settles the calls of the node's runs other than this one (see the module's documentation), deletes their
/// media sessions, and forgets those runs. A run another live run has claimed is left to it. Safe to run again
/// after a crash in the middle.
pub(super) async fn recover(sw: &Switch, node: &str) -> Result<Recovered, StorageError> {
    let storage = sw.ledger.storage().clone();
    let stale = {
        let mut tx = storage.begin_read().await?;
        tx.live_calls().stale_runs(node, &sw.run_id).await?
    };
    let mut done = Recovered::default();
    for run in stale {
        // The node's other runs are dead (this is the node's process now) however recent their heartbeat.
        if claim(sw, &run, i64::MAX).await? {
            recover_run(sw, &run, Why::Restarted, &mut done).await?;
        }
    }
    Ok(done)
}

/// Claims `run` for this run, if its heartbeat is before `stale_before_ms` and no live run holds it.
async fn claim(sw: &Switch, run: &GatewayRun, stale_before_ms: i64) -> Result<bool, StorageError> {
    let storage = sw.ledger.storage();
    let now = unix_ms(sw.ledger.clock().now());
    let mut tx = storage.begin().await?;
    let claimed =
        tx.live_calls().claim_run(&run.run_id, &sw.run_id, stale_before_ms, now - takeover_ms(sw), now).await?;
    tx.commit().await?;
    if !claimed {
        tracing::info!(run = %run.run_id, node = %run.node, claimed_by = ?run.claimed_by, "run held by another; left to it");
    }
    Ok(claimed)
}

/// Every few seconds, settles the calls of runs of any node silent past `calls.takeover_after_secs` (0: never).
/// Runs until the switch is dropped or this run is taken over itself.
pub(super) async fn watch(sw: std::sync::Weak<Switch>) {
    let every = {
        let Some(sw) = sw.upgrade() else { return };
        if sw.config.takeover_after_secs == 0 {
            return;
        }
        Duration::from_secs(u64::from(sw.config.takeover_after_secs / 3).clamp(1, 5))
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sw) = sw.upgrade() else { return };
        if sw.live.taken_over() {
            return;
        }
        match take_over(&sw).await {
            Ok(done) if done != Recovered::default() => tracing::info!(?done, "calls of silent nodes taken over"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "taking over the calls of silent nodes failed; tried again"),
        }
    }
}

/// One look for silent runs: claims each and settles its calls.
pub(super) async fn take_over(sw: &Switch) -> Result<Recovered, StorageError> {
    let storage = sw.ledger.storage().clone();
    let stale_before = unix_ms(sw.ledger.clock().now()) - takeover_ms(sw);
    let silent = {
        let mut tx = storage.begin_read().await?;
        tx.live_calls().silent_runs(&sw.run_id, stale_before).await?
    };
    let mut done = Recovered::default();
    for run in silent {
        // (A run this one claimed before and did not finish, e.g. after a database error, is settled again.)
        if run.claimed_by.as_deref() != Some(sw.run_id.as_str()) && !claim(sw, &run, stale_before).await? {
            continue;
        }
        tracing::warn!(run = %run.run_id, node = %run.node, heartbeat_at_ms = run.heartbeat_at_ms,
            "a gateway node stopped confirming its calls: taking them over");
        let why = if run.node == sw.config.node_name() { Why::Restarted } else { Why::NodeDown };
        recover_run(sw, &run, why, &mut done).await?;
    }
    Ok(done)
}

/// Settles the calls of `run` (claimed by this run), deletes their media sessions, and forgets the run.
async fn recover_run(sw: &Switch, run: &GatewayRun, why: Why, done: &mut Recovered) -> Result<(), StorageError> {
    let storage = sw.ledger.storage().clone();
    let calls = {
        let mut tx = storage.begin_read().await?;
        tx.live_calls().of_run(&run.run_id).await?
    };
    tracing::info!(run = %run.run_id, node = %run.node, calls = calls.len(), heartbeat_at_ms = run.heartbeat_at_ms,
        ?why, "settling the calls of a dead run");
    for call in &calls {
        match recover_call(sw, call, run.heartbeat_at_ms, why).await? {
            Outcome::Settled => done.settled += 1,
            Outcome::Released => done.released += 1,
            Outcome::Expired => done.expired += 1,
        }
        if let Some(ng) = &sw.ng {
            // Deleting a call rtpengine no longer holds is not an error.
            match ng.delete(&format!("pstn-{}", call.call_id)).await {
                Ok(()) => done.media_deleted += 1,
                Err(e) => tracing::warn!(error = %e, call = %call.call_id, "rtpengine delete failed"),
            }
        }
        let mut tx = storage.begin().await?;
        tx.live_calls().close(&call.call_id).await?;
        tx.commit().await?;
    }
    if let Some(ng) = &sw.ng {
        // Sessions of calls that had not reached the database (opened in the moment before their row).
        let prefix = format!("pstn-{}-", run.run_id);
        match ng.list(100_000).await {
            Ok(ids) => {
                for id in ids.iter().filter(|id| id.starts_with(&prefix)) {
                    if ng.delete(id).await.is_ok() {
                        done.media_deleted += 1;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "rtpengine list failed; stale sessions end by its timeout"),
        }
    }
    let mut tx = storage.begin().await?;
    tx.live_calls().forget_run(&run.run_id).await?;
    tx.commit().await?;
    Ok(())
}

enum Outcome {
    Settled,
    Released,
    Expired,
}

/// The seconds a call that was up when its run last confirmed it is billed: from the answer to the end if it
/// was stored (rounded as every call is), else to the last heartbeat rounded down; never more than paid.
pub(super) fn recovered_seconds(answered_at_ms: i64, ended_at_ms: Option<i64>, heartbeat_at_ms: i64, paid: u32) -> u32 {
    match ended_at_ms {
        Some(end) => billed_seconds(u64::try_from(end - answered_at_ms).unwrap_or(0), paid),
        None => {
            let up = u64::try_from(heartbeat_at_ms - answered_at_ms).unwrap_or(0) / 1000;
            u32::try_from(up).unwrap_or(u32::MAX).min(paid)
        }
    }
}

async fn recover_call(sw: &Switch, call: &LiveCall, heartbeat_at_ms: i64, why: Why) -> Result<Outcome, StorageError> {
    let storage = sw.ledger.storage();
    let now = unix_ms(sw.ledger.clock().now());
    let hold_id = HoldId { account: call.account_id, seq: call.hold_seq };
    let hold = {
        let mut tx = storage.begin_read().await?;
        tx.holds().get(hold_id).await?
    };
    let Some(hold) = hold else {
        tracing::error!(call = %call.call_id, hold = %hold_id, "a live call's hold does not exist");
        return Ok(Outcome::Expired);
    };
    let template = CallRecord {
        id: 0,
        call_id: call.call_id.clone(),
        attempt: call.attempt,
        account_id: call.account_id,
        hold_seq: Some(call.hold_seq),
        destination: call.destination.clone(),
        carrier: call.carrier.clone(),
        result: CallResult::Failed,
        sip_status: 500,
        reason: why.phrase().into(),
        q850_cause: Some(41),
        started_at_ms: call.attempt_started_at_ms.unwrap_or(call.started_at_ms),
        answered_at_ms: None,
        ended_at_ms: call.ended_at_ms.unwrap_or(heartbeat_at_ms).max(call.started_at_ms),
        billed_seconds: None,
        price: None,
        cost: None,
        currency: call.currency,
    };
    // The record of this attempt may have been stored before the crash (then the hold may be closed too).
    let stored = {
        let mut tx = storage.begin_read().await?;
        tx.call_records().get(&call.call_id, call.attempt).await?
    };
    let usable = hold.state == HoldState::Open && hold.expires_at_ms > now;
    let key =
        |what: &str| IdempotencyKey::new(format!("{}:{what}", call.call_id)).expect("call ids use the key alphabet");
    // A step the database does not take in time goes to the spool, and the call's later steps after it.
    let spooled = AtomicBool::new(false);
    let Some(answered_at) = call.answered_at_ms else {
        if stored.is_none() {
            super::records::store(sw, &template, &spooled).await;
        }
        if hold.state == HoldState::Open {
            let req = ReleaseRequest { idempotency_key: key("release"), hold: hold_id };
            release_or_log(sw, &req, &spooled).await;
        }
        return Ok(Outcome::Released);
    };
    let seconds = match &stored {
        Some(r) => r.billed_seconds.unwrap_or(0),
        None => recovered_seconds(answered_at, call.ended_at_ms, heartbeat_at_ms, call.paid_seconds),
    };
    if stored.is_none() {
        let rate = hold.rate.as_deref().and_then(|r| serde_json::from_str::<crate::rating::Rate>(r).ok());
        let price = if usable { rate.as_ref().and_then(|r| r.call_price(seconds).ok()) } else { None };
        let cost = match (&call.carrier, tincan_enum_core::E164::parse(&call.destination).ok()) {
            (Some(name), Some(destination)) => sw
                .ledger
                .routes(&destination, crate::charging::ServiceKind::Voice)
                .await
                .ok()
                .and_then(|routes| routes.into_iter().find(|r| &r.carrier.name == name))
                .and_then(|r| r.cost.call_price(seconds).ok()),
            _ => None,
        };
        let reason = match (usable, call.ended_at_ms) {
            (false, _) => format!("{}; Hold Expired, Not Charged", why.phrase()),
            (true, Some(_)) => why.after().to_owned(),
            (true, None) => format!("{}; Billed To The Last Confirmed Second", why.phrase()),
        };
        let record = CallRecord {
            result: CallResult::Answered,
            sip_status: 200,
            reason,
            q850_cause: Some(policy::q850_cause(200)),
            answered_at_ms: Some(answered_at),
            ended_at_ms: call.ended_at_ms.unwrap_or(heartbeat_at_ms).max(answered_at),
            billed_seconds: Some(if usable { seconds } else { 0 }),
            price: Some(price.unwrap_or(crate::money::Amount::ZERO)),
            cost: if usable { cost } else { None },
            ..template
        };
        super::records::store(sw, &record, &spooled).await;
    }
    if hold.state != HoldState::Open {
        // Settled before the crash (its record was stored first), or released by its expiry.
        return Ok(if hold.state == HoldState::Settled { Outcome::Settled } else { Outcome::Expired });
    }
    if !usable {
        // Its expiry releases it (the sweeper); nothing can be charged on an expired hold.
        let req = ReleaseRequest { idempotency_key: key("release"), hold: hold_id };
        release_or_log(sw, &req, &spooled).await;
        return Ok(Outcome::Expired);
    }
    let req = SettleRequest {
        idempotency_key: key("settle"),
        hold: hold_id,
        amount: None,
        seconds: Some(seconds),
        segments: None,
        carrier: call.carrier.clone(),
    };
    if spooled.load(Ordering::Relaxed) {
        sw.keep(&Entry::settle(&req), &spooled).await;
        return Ok(Outcome::Settled);
    }
    match sw.charging.settle(&req).await {
        Ok(s) => {
            tracing::info!(call = %call.call_id, seconds, charged = %s.charged, "call settled after a restart");
            Ok(Outcome::Settled)
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(call = %call.call_id, error = %e, seconds, "settling a call after a restart: spooled");
            sw.keep(&Entry::settle(&req), &spooled).await;
            Ok(Outcome::Settled)
        }
        Err(e) => {
            tracing::error!(call = %call.call_id, error = %e, seconds, "settling a call after a restart failed");
            Ok(Outcome::Expired)
        }
    }
}

async fn release_or_log(sw: &Switch, req: &ReleaseRequest, spooled: &AtomicBool) {
    if spooled.load(Ordering::Relaxed) {
        return sw.keep(&Entry::release(req), spooled).await;
    }
    match sw.charging.release(req).await {
        Ok(_) | Err(ChargeError::HoldClosed(_)) => {}
        Err(e) if e.is_retryable() => sw.keep(&Entry::release(req), spooled).await,
        Err(e) => tracing::warn!(error = %e, hold = %req.hold, "releasing a hold after a restart failed; it expires"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_up_at_the_crash_is_billed_to_its_last_confirmed_second() {
        // Answered at 10.0 s, last heartbeat at 17.9 s: 7 whole seconds confirmed.
        assert_eq!(recovered_seconds(10_000, None, 17_900, 60), 7);
        // Never past what its holds paid.
        assert_eq!(recovered_seconds(10_000, None, 100_000, 60), 60);
        // Answered after the last heartbeat: nothing confirmed.
        assert_eq!(recovered_seconds(10_000, None, 9_000, 60), 0);
        // Its end was stored: billed as any call (rounded, at least 1).
        assert_eq!(recovered_seconds(10_000, Some(14_600), 20_000, 60), 5);
        assert_eq!(recovered_seconds(10_000, Some(10_100), 20_000, 60), 1);
    }

    #[test]
    fn of_the_heartbeats_waiting_only_the_newest_is_kept_where_it_was() {
        let ended = |id: &str| Op::Ended { call_id: id.into(), at_ms: 5 };
        let mut ops = vec![
            Op::Heartbeat { at_ms: 1 },
            ended("a"),
            Op::Heartbeat { at_ms: 2 },
            ended("b"),
            Op::Heartbeat { at_ms: 3 },
            Op::Close { call_id: "a".into() },
        ];
        keep_newest_heartbeat(&mut ops);
        let kinds: Vec<String> = ops.iter().map(|op| format!("{op:?}")).collect();
        assert_eq!(
            kinds,
            [
                r#"Ended { call_id: "a", at_ms: 5 }"#,
                r#"Ended { call_id: "b", at_ms: 5 }"#,
                "Heartbeat { at_ms: 3 }",
                r#"Close { call_id: "a" }"#,
            ]
        );
        let mut none = vec![ended("c")];
        keep_newest_heartbeat(&mut none);
        assert_eq!(none.len(), 1);
    }
}
