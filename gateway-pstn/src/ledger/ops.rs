//! One hold request applied inside a worker's transaction. A refused request writes nothing: its first write
//! is a conditional statement that matched no row, or it undoes its writes to a savepoint.

use super::batch::{Op, Outcome, Usage};
use super::local::rating;
use super::{Learned, Ledger, LedgerError, check_open, fingerprint, hold_view, record, replay};
use crate::charging::{ChargeError, HoldState, ServiceKind, Settlement};
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
        Op::Reserve { principal, req, account, currency, amount, ttl_ms, rate, limits } => {
            let fp = fingerprint("reserve", &serde_json::to_string(req).expect("requests serialise"));
            if let Some(hold) = replay(tx, principal, &req.idempotency_key, "reserve", &fp).await? {
                return Ok(Outcome::Hold(hold));
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
            let destination = req.destination.as_str();
            let rate_json = rate.as_ref().map(|r| serde_json::to_string(r).expect("rates serialise"));
            let new = NewHold {
                account: *account,
                principal,
                amount: *amount,
                service: req.service,
                destination,
                rate: rate_json.as_deref(),
                now_ms: now,
                expires_at_ms: now + ttl_ms,
            };
            let mut stored = tx.holds().reserve(&new).await?;
            if stored.is_none() {
                // Expired holds release themselves: if any still count against the balance, release them now
                // and ask once more.
                let expired = tx.holds().expired(now, Some(*account), 1000).await?;
                if !expired.is_empty() {
                    for id in expired {
                        let close =
                            Close { state: HoldState::Expired, charged: None, usage: None, carrier: None, now_ms: now };
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
            let hold = hold_view(&stored, *currency)?;
            record(tx, principal, &req.idempotency_key, "reserve", &fp, &hold, now).await?;
            Ok(Outcome::Hold(hold))
        }
        Op::Extend { principal, req, more, ttl_ms, currency } => {
            let body = serde_json::to_string(req).expect("requests serialise");
            let fp = fingerprint("extend", &format!("{}|{body}", req.hold));
            if let Some(hold) = replay(tx, principal, &req.idempotency_key, "extend", &fp).await? {
                return Ok(Outcome::Hold(hold));
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
            let body = serde_json::to_string(req).expect("requests serialise");
            let fp = fingerprint("settle", &format!("{}|{body}", req.hold));
            if let Some(s) = replay(tx, principal, &req.idempotency_key, "settle", &fp).await? {
                return Ok(Outcome::Settlement(s));
            }
            let h = tx.holds().get(req.hold).await?.ok_or(ChargeError::HoldNotFound)?;
            check_open(&h, principal, now)?;
            let charged = &match (*used, h.service) {
                (Usage::Amount(a), _) => a,
                (Usage::Seconds(s), ServiceKind::Voice) => hold_rate(&h)?.call_price(s).map_err(rating)?,
                (Usage::Segments(n), ServiceKind::Sms) => hold_rate(&h)?.sms_price(n).map_err(rating)?,
                _ => return Err(ChargeError::Invalid("seconds settle voice holds, segments SMS holds".into()).into()),
            };
            if *charged > h.amount {
                return Err(ChargeError::ExceedsHold.into());
            }
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
            let fp = fingerprint("release", &req.hold.to_string());
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

/// The rate a hold was priced at; holds reserved by amount have none.
fn hold_rate(h: &StoredHold) -> Result<Rate, LedgerError> {
    let raw = h.rate.as_deref().ok_or(ChargeError::NoRate)?;
    Ok(serde_json::from_str(raw)
        .map_err(|_| crate::storage::StorageError::Corrupt { table: "holds", column: "rate" })?)
}
