//! One hold request applied inside a worker's transaction. A refused request writes nothing: its first write
//! is a conditional statement that matched no row, or it undoes its writes to a savepoint.

use super::batch::{Op, Outcome, Reservation, Usage};
use super::local::rating;
use super::{Learned, Ledger, LedgerError, check_open, fingerprint, hold_view, record, replay};
use crate::charging::{ChargeError, Hold, HoldState, ServiceKind, Settlement};
use crate::fraud::Activity;
use crate::money::Amount;
use crate::rating::Rate;
use crate::storage::StoredHold;
use crate::storage::{Close, EntryKind, ExtendOutcome, NewEntry, NewHold, Repository, SystemAccount};

pub(super) async fn apply(
    ledger: &Ledger,
    tx: &mut dyn Repository,
    learned: &mut Learned,
    op: &Op,
    now: i64,
) -> Result<Outcome, LedgerError> {
    match op {
        Op::Reserve(r) => {
            let fp = reserve_fingerprint(&r.req);
            if let Some(hold) = replay(tx, &r.principal, &r.req.idempotency_key, "reserve", &fp).await? {
                return Ok(Outcome::Hold(hold));
            }
            let hold = reserve(tx, r, now).await?;
            record(tx, &r.principal, &r.req.idempotency_key, "reserve", &fp, &hold, now).await?;
            Ok(Outcome::Hold(hold))
        }
        Op::Extend { principal, req, more, ttl_ms, currency, run } => {
            let body = serde_json::to_string(req).expect("requests serialise");
            let fp = fingerprint("extend", &format!("{}|{body}", req.hold));
            if let Some(hold) = replay(tx, principal, &req.idempotency_key, "extend", &fp).await? {
                return Ok(Outcome::Hold(hold));
            }
            // A call's process that another node claimed holds no more for it: that node settles the call from
            // what it had confirmed (kept so until this transaction ends, as for a first hold).
            if let Some(run) = run
                && !tx.live_calls().own_run(run).await?
            {
                return Err(ChargeError::RunTakenOver.into());
            }
            let h = tx.holds().get(req.hold).await?.ok_or(ChargeError::HoldNotFound)?;
            check_open(&h, principal, now)?;
            let more = match *more {
                Usage::Amount(a) => a,
                Usage::Seconds(s) if h.service == ServiceKind::Voice => {
                    hold_rate(&h)?.extension_price(s).map_err(rating)?
                }
                _ => return Err(ChargeError::Invalid("seconds extend voice holds only".into()).into()),
            };
            tx.savepoint().await?;
            match tx.holds().extend(req.hold, more, now + ttl_ms).await? {
                ExtendOutcome::Extended => tx.release_savepoint().await?,
                refused => {
                    tx.rollback_to_savepoint().await?;
                    return Err(match refused {
                        ExtendOutcome::InsufficientFunds => ChargeError::InsufficientFunds,
                        _ => ChargeError::HoldClosed(h.state),
                    }
                    .into());
                }
            }
            let h = tx.holds().get(req.hold).await?.ok_or(ChargeError::HoldNotFound)?;
            let hold = hold_view(&h, *currency)?;
            record(tx, principal, &req.idempotency_key, "extend", &fp, &hold, now).await?;
            Ok(Outcome::Hold(hold))
        }
        Op::Settle { principal, req, used, currency } => {
            let fp = settle_fingerprint(req);
            if let Some(s) = replay(tx, principal, &req.idempotency_key, "settle", &fp).await? {
                return Ok(Outcome::Settlement(s));
            }
            let h = tx.holds().get(req.hold).await?.ok_or(ChargeError::HoldNotFound)?;
            check_open(&h, principal, now)?;
            let charged = &settle_price(&h, *used)?;
            let close = Close {
                state: HoldState::Settled,
                charged: Some(*charged),
                usage: req.seconds.or(req.segments).map(i64::from),
                carrier: req.carrier.as_deref(),
                now_ms: now,
            };
            // Conditional on the hold still being open: a concurrent node may have closed it meanwhile.
            let Some(closed) = tx.holds().close(req.hold, &close).await? else {
                let state = tx.holds().get(req.hold).await?.map_or(HoldState::Released, |h| h.state);
                return Err(ChargeError::HoldClosed(state).into());
            };
            let revenue = ledger.system_account(tx, learned, SystemAccount::Revenue, *currency).await?;
            let reference = req.hold.to_string();
            let legs = [(req.hold.account, -*charged), (revenue, *charged)];
            let entry = NewEntry {
                kind: EntryKind::Charge,
                reference: &reference,
                hold: Some(req.hold),
                memo: "",
                legs: &legs,
            };
            tx.journal().post(&entry).await?;
            let settlement = Settlement {
                hold: hold_view(&closed, *currency)?,
                charged: *charged,
                released: Amount::from_micros(closed.amount.micros() - charged.micros()),
            };
            record(tx, principal, &req.idempotency_key, "settle", &fp, &settlement, now).await?;
            Ok(Outcome::Settlement(settlement))
        }
        Op::Release { principal, req, currency } => {
            let fp = release_fingerprint(req);
            if let Some(hold) = replay(tx, principal, &req.idempotency_key, "release", &fp).await? {
                return Ok(Outcome::Hold(hold));
            }
            let h = tx.holds().get(req.hold).await?.ok_or(ChargeError::HoldNotFound)?;
            // Releasing an expired hold is what its expiry does anyway: allowed.
            check_open(&h, principal, i64::MIN)?;
            let close = Close { state: HoldState::Released, charged: None, usage: None, carrier: None, now_ms: now };
            let Some(closed) = tx.holds().close(req.hold, &close).await? else {
                let state = tx.holds().get(req.hold).await?.map_or(HoldState::Released, |h| h.state);
                return Err(ChargeError::HoldClosed(state).into());
            };
            let hold = hold_view(&closed, *currency)?;
            record(tx, principal, &req.idempotency_key, "release", &fp, &hold, now).await?;
            Ok(Outcome::Hold(hold))
        }
        Op::Expire(id) => {
            let h = tx.holds().get(*id).await?.ok_or(ChargeError::HoldNotFound)?;
            if h.state != HoldState::Open {
                return Err(ChargeError::HoldClosed(h.state).into());
            }
            if h.expires_at_ms > now {
                // Extended since the sweep read it.
                return Err(ChargeError::Invalid("not expired".into()).into());
            }
            let close = Close { state: HoldState::Expired, charged: None, usage: None, carrier: None, now_ms: now };
            let closed = tx.holds().close(*id, &close).await?.ok_or(ChargeError::HoldClosed(HoldState::Expired))?;
            let currency = ledger.resolve(&crate::charging::AccountRef::Id { account_id: id.account }).await?.1;
            Ok(Outcome::Hold(hold_view(&closed, currency)?))
        }
    }
}

/// A reservation's writes (its idempotency record aside): for a call, its run checked to be still its own (see
/// [`LiveCallRepository::own_run`](crate::storage::LiveCallRepository::own_run)) and its SIP dialog not taken
/// by another call (another node carries the same INVITE); the account's limits checked,
/// then one conditional statement; refused with nothing written when the run was taken over, or when the
/// available balance does not cover it once expired holds still counted against it are released.
pub(super) async fn reserve(tx: &mut dyn Repository, r: &Reservation, now: i64) -> Result<Hold, LedgerError> {
    let Reservation { principal, req, account, currency, amount, ttl_ms, rate, limits, live } = r;
    if let Some(live) = live {
        if !tx.live_calls().own_run(&live.run_id).await? {
            return Err(ChargeError::RunTakenOver.into());
        }
        if let Some(dialog) = &live.sip_dialog
            && tx.live_calls().dialog_taken(dialog, &live.call_id).await?
        {
            return Err(ChargeError::CallElsewhere.into());
        }
    }
    if limits.any() {
        let held = tx.accounts().get(*account).await?.ok_or(ChargeError::AccountNotFound)?.held;
        let activity = Activity {
            open_holds: tx.holds().open_count(*account).await?,
            held,
            charged_hour: tx.holds().charged_since(*account, now - 3_600_000).await?,
            charged_day: tx.holds().charged_since(*account, now - 86_400_000).await?,
        };
        limits.check(&activity, *amount)?;
    }
    let rate_json = rate.as_ref().map(|r| serde_json::to_string(r).expect("rates serialise"));
    let new = NewHold {
        account: *account,
        principal,
        amount: *amount,
        service: req.service,
        destination: req.destination.as_str(),
        rate: rate_json.as_deref(),
        now_ms: now,
        expires_at_ms: now + ttl_ms,
    };
    let mut stored = tx.holds().reserve(&new).await?;
    if stored.is_none() {
        // Expired holds release themselves: if any still count against the balance, release them now and ask
        // once more.
        let expired = tx.holds().expired(now, Some(*account), 1000).await?;
        if !expired.is_empty() {
            for id in expired {
                let close = Close { state: HoldState::Expired, charged: None, usage: None, carrier: None, now_ms: now };
                tx.holds().close(id, &close).await?;
            }
            stored = tx.holds().reserve(&new).await?;
        }
    }
    let Some(stored) = stored else {
        let a = tx.accounts().get(*account).await?;
        return Err(match a {
            Some(a) if a.disabled => ChargeError::AccountDisabled,
            Some(_) => ChargeError::InsufficientFunds,
            None => ChargeError::AccountNotFound,
        }
        .into());
    };
    open_live(tx, r, &stored).await?;
    Ok(hold_view(&stored, *currency)?)
}

/// The live-call row of a call whose first hold `stored` was just made, in the hold's transaction: the call is
/// in the database exactly when its hold is, with one commit (a crash-recovering restart finds both or neither).
pub(super) async fn open_live(
    tx: &mut dyn Repository,
    r: &Reservation,
    stored: &StoredHold,
) -> Result<(), crate::storage::StorageError> {
    let Some(live) = &r.live else { return Ok(()) };
    let call = crate::storage::LiveCall { account_id: stored.id.account, hold_seq: stored.id.seq, ..(**live).clone() };
    tx.live_calls().open(&call).await
}

/// What a settlement charges: its amount, or its usage priced at the hold's rate; refused above the hold.
pub(super) fn settle_price(h: &StoredHold, used: Usage) -> Result<Amount, LedgerError> {
    let charged = match (used, h.service) {
        (Usage::Amount(a), _) => a,
        (Usage::Seconds(s), ServiceKind::Voice) => hold_rate(h)?.call_price(s).map_err(rating)?,
        (Usage::Segments(n), ServiceKind::Sms) => hold_rate(h)?.sms_price(n).map_err(rating)?,
        (Usage::Segments(n), ServiceKind::Mms) => hold_rate(h)?.mms_price(n).map_err(rating)?,
        _ => return Err(ChargeError::Invalid("seconds settle voice holds, segments SMS and MMS holds".into()).into()),
    };
    if charged > h.amount {
        return Err(ChargeError::ExceedsHold.into());
    }
    Ok(charged)
}

/// The fingerprint of a settlement request.
pub(super) fn settle_fingerprint(req: &crate::charging::SettleRequest) -> String {
    let body = serde_json::to_string(req).expect("requests serialise");
    fingerprint("settle", &format!("{}|{body}", req.hold))
}

/// The fingerprint of a release request.
pub(super) fn release_fingerprint(req: &crate::charging::ReleaseRequest) -> String {
    fingerprint("release", &req.hold.to_string())
}

/// The fingerprint of a reservation request.
pub(super) fn reserve_fingerprint(req: &crate::charging::ReserveRequest) -> String {
    fingerprint("reserve", &serde_json::to_string(req).expect("requests serialise"))
}

/// The rate a hold was priced at; holds reserved by amount have none.
fn hold_rate(h: &StoredHold) -> Result<Rate, LedgerError> {
    let raw = h.rate.as_deref().ok_or(ChargeError::NoRate)?;
    Ok(serde_json::from_str(raw)
        .map_err(|_| crate::storage::StorageError::Corrupt { table: "holds", column: "rate" })?)
}
