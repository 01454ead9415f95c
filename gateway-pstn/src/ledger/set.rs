//! A batch of reservations, settlements and releases applied with a handful of statements whatever its size,
//! instead of several statements per request (each a round trip to PostgreSQL, one after another on a hot
//! account's worker): one read of the batch's idempotency records, one read of the holds it closes, one
//! statement closing them (each settlement with its journal entry), one conditional statement reserving (per
//! account: all of its reservations or none), one write of the answers.
//!
//! Every decision still rests on a conditional statement in the database: a hold is closed only while it is
//! open, an account's reservations are held only if its available balance covers their sum. A reservation
//! whose account did not cover the batch's sum is then tried alone, as a lone request is ([`ops::reserve`]),
//! so a batch refuses exactly the reservations that do not fit.
//!
//! Order: a batch's settlements and releases are applied before its reservations. They only give money back,
//! so no reservation is refused because of the reordering; and the requests of a batch were all waiting at
//! once, none answered, so this is an order they could have arrived in. A batch with anything else (extends,
//! expiries, reservations under fraud limits, which read the account's activity), or with one idempotency key
//! or one hold twice, is applied request by request instead ([`ops::apply`]).

use std::collections::{HashMap, HashSet};

use super::batch::{Job, Op, Outcome};
use super::{Learned, Ledger, LedgerError, check_open, hold_view, ops};
use crate::charging::{ChargeError, Hold, HoldId, HoldState, Settlement};
use crate::money::Amount;
use crate::storage::{Closing, IdempotentResponse, NewHold, Repository, StorageError, SystemAccount};

/// What each request of a batch is, for its idempotency record.
pub(super) struct Plan {
    /// Per job: its operation's name and its request's fingerprint.
    keyed: Vec<(&'static str, String)>,
}

/// The plan for applying `jobs` together, or `None` when they must go one by one.
pub(super) fn plan(jobs: &[Job]) -> Option<Plan> {
    let mut keys = HashSet::with_capacity(jobs.len());
    let mut holds = HashSet::new();
    let mut keyed = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (principal, key, hold, op, fp) = match &job.op {
            Op::Reserve(r) if !r.limits.any() => {
                (&r.principal, &r.req.idempotency_key, None, "reserve", ops::reserve_fingerprint(&r.req))
            }
            Op::Settle { principal, req, .. } => {
                (principal, &req.idempotency_key, Some(req.hold), "settle", ops::settle_fingerprint(req))
            }
            Op::Release { principal, req, .. } => {
                (principal, &req.idempotency_key, Some(req.hold), "release", ops::release_fingerprint(req))
            }
            Op::Reserve(_) | Op::Extend { .. } | Op::Expire(_) => return None,
        };
        if !keys.insert((principal.as_str(), key.as_str())) || hold.is_some_and(|h| !holds.insert(h)) {
            return None;
        }
        keyed.push((op, fp));
    }
    Some(Plan { keyed })
}

/// Applies the planned batch in `tx`: one answer per job, in order. A storage failure fails the whole batch
/// (the caller rolls it back).
pub(super) async fn apply(
    ledger: &Ledger,
    tx: &mut dyn Repository,
    learned: &mut Learned,
    jobs: &[Job],
    plan: &Plan,
    now: i64,
) -> Result<Vec<Result<Outcome, ChargeError>>, StorageError> {
    let mut answers: Vec<Option<Result<Outcome, ChargeError>>> = vec![None; jobs.len()];

    // Requests made before: their recorded answers.
    let keys: Vec<(&str, &str)> = jobs.iter().map(|j| principal_and_key(&j.op)).collect();
    let records = tx.idempotency().get_many(&keys).await?;
    for (i, record) in records.into_iter().enumerate() {
        if let Some(record) = record {
            // Already recorded (or a conflict, never recorded): not recorded again below.
            answers[i] = Some(replayed(&record, plan.keyed[i].0, &plan.keyed[i].1)?);
        }
    }
    let fresh: Vec<bool> = answers.iter().map(Option::is_none).collect();

    // Settlements and releases: checked against their holds, then closed together.
    let closing: Vec<usize> = (0..jobs.len())
        .filter(|&i| answers[i].is_none() && matches!(jobs[i].op, Op::Settle { .. } | Op::Release { .. }))
        .collect();
    let mut closings = Vec::with_capacity(closing.len());
    let mut closed_by = Vec::with_capacity(closing.len());
    if !closing.is_empty() {
        let ids: Vec<HoldId> = closing.iter().filter_map(|&i| hold_of(&jobs[i].op)).collect();
        let holds: HashMap<HoldId, _> = tx.holds().get_many(&ids).await?.into_iter().map(|h| (h.id, h)).collect();
        for &i in &closing {
            let c = match &jobs[i].op {
                Op::Settle { principal, req, used, currency } => {
                    let checked =
                        holds.get(&req.hold).ok_or(LedgerError::from(ChargeError::HoldNotFound)).and_then(|h| {
                            check_open(h, principal, now)?;
                            ops::settle_price(h, *used)
                        });
                    match checked {
                        Ok(charged) => {
                            let revenue = ledger.system_account(tx, learned, SystemAccount::Revenue, *currency).await?;
                            let usage = req.seconds.or(req.segments).map(i64::from);
                            let carrier = req.carrier.as_deref();
                            closed_by.push((i, *currency));
                            Closing::Settle { id: req.hold, charged, usage, carrier, revenue }
                        }
                        Err(e) => {
                            answers[i] = Some(Err(refusal(e)?));
                            continue;
                        }
                    }
                }
                Op::Release { principal, req, currency } => {
                    // Releasing an expired hold is what its expiry does anyway: allowed.
                    let checked = holds
                        .get(&req.hold)
                        .ok_or(ChargeError::HoldNotFound)
                        .and_then(|h| check_open(h, principal, i64::MIN));
                    if let Err(e) = checked {
                        answers[i] = Some(Err(e));
                        continue;
                    }
                    closed_by.push((i, *currency));
                    Closing::Release { id: req.hold }
                }
                _ => continue,
            };
            closings.push(c);
        }
    }
    let closed = tx.holds().close_all(&closings, now).await?;
    for ((c, (i, currency)), closed) in closings.iter().zip(closed_by).zip(closed) {
        answers[i] = Some(match (closed, c) {
            (Some(h), Closing::Settle { charged, .. }) => Ok(Outcome::Settlement(Settlement {
                hold: hold_view(&h, currency)?,
                charged: *charged,
                released: Amount::from_micros(h.amount.micros() - charged.micros()),
            })),
            (Some(h), Closing::Release { .. }) => Ok(Outcome::Hold(hold_view(&h, currency)?)),
            // Closed meanwhile by another node.
            (None, _) => {
                let state = tx.holds().get(c.id()).await?.map_or(HoldState::Released, |h| h.state);
                Err(ChargeError::HoldClosed(state))
            }
        });
    }

    // Calls' reservations from a run another node took over are refused first, with nothing written: its calls
    // are settled by the claimer, which would not see theirs (checked once per run, which stays as checked
    // until the commit).
    let mut runs: HashMap<&str, bool> = HashMap::new();
    let mut dialogs: HashSet<&str> = HashSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let Op::Reserve(r) = &job.op else { continue };
        let Some(live) = r.live.as_deref().filter(|_| answers[i].is_none()) else { continue };
        let own = match runs.get(live.run_id.as_str()) {
            Some(own) => *own,
            None => {
                let own = tx.live_calls().own_run(&live.run_id).await?;
                runs.insert(&live.run_id, own);
                own
            }
        };
        if !own {
            answers[i] = Some(Err(ChargeError::RunTakenOver));
            continue;
        }
        // The same SIP dialog taken by another call (another node carries the same INVITE), or twice here.
        if let Some(dialog) = live.sip_dialog.as_deref()
            && (!dialogs.insert(dialog) || tx.live_calls().dialog_taken(dialog, &live.call_id).await?)
        {
            answers[i] = Some(Err(ChargeError::CallElsewhere));
        }
    }

    // Reservations: per account, all of them with one conditional statement if its balance covers their sum.
    let reserving: Vec<usize> =
        (0..jobs.len()).filter(|&i| answers[i].is_none() && matches!(jobs[i].op, Op::Reserve(_))).collect();
    if !reserving.is_empty() {
        let reservations: Vec<_> = reserving
            .iter()
            .filter_map(|&i| match &jobs[i].op {
                Op::Reserve(r) => Some(r),
                _ => None,
            })
            .collect();
        let rates: Vec<Option<String>> = reservations
            .iter()
            .map(|r| r.rate.as_ref().map(|rate| serde_json::to_string(rate).expect("rates serialise")))
            .collect();
        let new: Vec<NewHold<'_>> = reservations
            .iter()
            .zip(&rates)
            .map(|(r, rate)| NewHold {
                account: r.account,
                principal: &r.principal,
                amount: r.amount,
                service: r.req.service,
                destination: r.req.destination.as_str(),
                rate: rate.as_deref(),
                now_ms: now,
                expires_at_ms: now + r.ttl_ms,
            })
            .collect();
        let made = tx.holds().reserve_all(&new).await?;
        for ((&i, r), made) in reserving.iter().zip(&reservations).zip(made) {
            let answer = match made {
                Some(stored) => {
                    ops::open_live(tx, r, &stored).await?;
                    Ok(hold_view(&stored, r.currency)?)
                }
                // Its account did not cover the batch's sum: this one alone, in arrival order.
                None => match ops::reserve(tx, r, now).await {
                    Ok(hold) => Ok(hold),
                    Err(e) => Err(refusal(e)?),
                },
            };
            answers[i] = Some(answer.map(Outcome::Hold));
        }
    }

    // The answers of the requests applied now, recorded for their retries.
    let mut records = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        if !fresh[i] {
            continue;
        }
        if let Some(Ok(outcome)) = answer {
            let (op, fp) = &plan.keyed[i];
            let (principal, key) = keys[i];
            let response = match outcome {
                Outcome::Hold(h) => serde_json::to_string(h),
                Outcome::Settlement(s) => serde_json::to_string(s),
            }
            .expect("answers always serialise");
            records.push((
                principal,
                key,
                IdempotentResponse { op: (*op).to_owned(), fingerprint: fp.clone(), response },
            ));
        }
    }
    tx.idempotency().put_many(&records, now).await?;

    Ok(answers.into_iter().map(|a| a.unwrap_or(Err(ChargeError::Unavailable("not applied".into())))).collect())
}

fn principal_and_key(op: &Op) -> (&str, &str) {
    match op {
        Op::Reserve(r) => (&r.principal, r.req.idempotency_key.as_str()),
        Op::Settle { principal, req, .. } => (principal, req.idempotency_key.as_str()),
        Op::Release { principal, req, .. } => (principal, req.idempotency_key.as_str()),
        Op::Extend { principal, req, .. } => (principal, req.idempotency_key.as_str()),
        Op::Expire(_) => ("", ""),
    }
}

fn hold_of(op: &Op) -> Option<HoldId> {
    match op {
        Op::Settle { req, .. } => Some(req.hold),
        Op::Release { req, .. } => Some(req.hold),
        _ => None,
    }
}

/// The recorded answer to a repeated request; a conflict if its key was used for another request.
fn replayed(record: &IdempotentResponse, op: &str, fp: &str) -> Result<Result<Outcome, ChargeError>, StorageError> {
    if record.op != op || record.fingerprint != fp {
        return Ok(Err(ChargeError::IdempotencyConflict));
    }
    let corrupt = |_| StorageError::Corrupt { table: "idempotency", column: "response" };
    Ok(Ok(match op {
        "settle" => Outcome::Settlement(serde_json::from_str::<Settlement>(&record.response).map_err(corrupt)?),
        _ => Outcome::Hold(serde_json::from_str::<Hold>(&record.response).map_err(corrupt)?),
    }))
}

/// A refusal as the caller's answer; a storage failure fails the batch.
fn refusal(e: LedgerError) -> Result<ChargeError, StorageError> {
    match e {
        LedgerError::Charge(c) => Ok(c),
        LedgerError::Storage(s) => Err(s),
    }
}
