//! [`LocalCharging`]: the charging interface of the in-process ledger, for one caller. Requests are checked
//! and priced here (rates, destination rules), then applied by the account's hold worker.

use std::sync::Arc;

use super::batch::{Op, Outcome, Reservation, Usage};
use super::{Ledger, LedgerError};
use crate::charging::{
    AccountRef, ChargeError, Charging, ExtendRequest, Hold, Quote, QuoteRequest, ReleaseRequest, ReserveRequest,
    ServiceKind, SettleRequest, Settlement,
};
use crate::fraud::Policy;
use crate::money::Amount;
use crate::rating::{Rate, RatingError};
use crate::storage::LiveCall;

/// The charging interface of the in-process ledger, for one caller.
#[derive(Debug, Clone)]
pub struct LocalCharging {
    pub(super) ledger: Arc<Ledger>,
    pub(super) principal: String,
}

pub(super) fn rating(e: RatingError) -> ChargeError {
    match e {
        RatingError::NotOffered => ChargeError::NoRate,
        RatingError::Money(m) => ChargeError::Invalid(m.to_string()),
    }
}

fn usage(
    service: ServiceKind,
    amount: Option<Amount>,
    seconds: Option<u32>,
    segments: Option<u32>,
) -> Result<Usage, ChargeError> {
    match (amount, seconds, segments, service) {
        (Some(a), None, None, _) if a.is_negative() => Err(ChargeError::Invalid("amount: not negative".into())),
        (Some(a), None, None, _) => Ok(Usage::Amount(a)),
        (None, Some(s), None, ServiceKind::Voice) => Ok(Usage::Seconds(s)),
        (None, None, Some(n), ServiceKind::Sms | ServiceKind::Mms) => Ok(Usage::Segments(n)),
        _ => Err(ChargeError::Invalid(
            "give exactly one of amount, seconds (voice) or segments (sms: segments, mms: messages)".into(),
        )),
    }
}

impl LocalCharging {
    /// [`Charging::reserve`] for a call: the hold and the call's live row (`live`, its account and hold
    /// filled in here) are written in one transaction, so the call costs one commit before it may go on and a
    /// restart after a crash finds the call exactly when its hold exists.
    pub async fn reserve_for(&self, req: &ReserveRequest, live: Option<LiveCall>) -> Result<Hold, ChargeError> {
        let asked = usage(req.service, req.amount, req.seconds, req.segments)?;
        let ttl_ms = self.ledger.ttl_ms(req.ttl_secs)?;
        let (account, currency) = self.ledger.resolve(&req.account).await?;
        // Destination rules first: a blocked destination is refused as blocked, whatever its price.
        let limits = self.policy_check(account, req.destination.digits()).await?;
        let (amount, rate): (Amount, Option<Rate>) = match asked {
            Usage::Amount(a) if !a.is_positive() => return Err(ChargeError::Invalid("amount: above zero".into())),
            Usage::Amount(a) => (a, None),
            Usage::Seconds(_) | Usage::Segments(_) => {
                let full = self.ledger.account(&req.account).await?;
                let rate = self.ledger.rate(&full, &req.destination).await?.ok_or(ChargeError::NoRate)?;
                let price = match asked {
                    Usage::Seconds(s) => rate.call_price(s),
                    Usage::Segments(n) if req.service == ServiceKind::Mms => rate.mms_price(n),
                    Usage::Segments(n) => rate.sms_price(n),
                    Usage::Amount(a) => Ok(a),
                };
                (price.map_err(rating)?, Some(rate))
            }
        };
        let op = Op::Reserve(Reservation {
            principal: self.principal.clone(),
            req: req.clone(),
            account,
            currency,
            amount,
            ttl_ms,
            rate: rate.map(Box::new),
            limits,
            live: live.map(Box::new),
        });
        self.outcome_hold(account, op).await
    }

    /// [`Charging::extend`] for a call carried by the gateway process `run`: refused with
    /// [`ChargeError::RunTakenOver`], nothing written, once another node has claimed that process (its calls are
    /// being settled there), checked in the extension's own transaction as a call's first hold is.
    pub(crate) async fn extend_for(&self, req: &ExtendRequest, run: Option<&str>) -> Result<Hold, ChargeError> {
        let more = match (req.amount, req.seconds) {
            (Some(a), None) if !a.is_negative() => Usage::Amount(a),
            (None, Some(s)) => Usage::Seconds(s),
            (None, None) => Usage::Amount(Amount::ZERO),
            _ => return Err(ChargeError::Invalid("give amount (zero or more) or seconds, not both".into())),
        };
        let ttl_ms = self.ledger.ttl_ms(req.ttl_secs)?;
        let currency = hold_currency(&self.ledger, req.hold.account).await?;
        let run = run.map(str::to_owned);
        let op = Op::Extend { principal: self.principal.clone(), req: req.clone(), more, ttl_ms, currency, run };
        self.outcome_hold(req.hold.account, op).await
    }

    async fn outcome_hold(&self, account: crate::charging::AccountId, op: Op) -> Result<Hold, ChargeError> {
        match self.ledger.submit(account, op).await? {
            Outcome::Hold(h) => Ok(h),
            Outcome::Settlement(_) => Err(ChargeError::Unavailable("unexpected answer".into())),
        }
    }

    async fn policy_check(
        &self,
        account: crate::charging::AccountId,
        digits: &str,
    ) -> Result<crate::fraud::ActivityLimits, LedgerError> {
        let limits = self.ledger.limits(account).await?;
        let global = self.ledger.fraud();
        let policy = Policy { global: &global, account: &limits };
        policy.check_destination(digits)?;
        Ok(policy.activity())
    }
}

#[async_trait::async_trait]
impl Charging for LocalCharging {
    async fn quote(&self, req: &QuoteRequest) -> Result<Quote, ChargeError> {
        let account = self.ledger.account(&req.account).await?;
        if account.disabled {
            return Err(ChargeError::AccountDisabled);
        }
        match (req.service, req.seconds, req.segments) {
            (ServiceKind::Voice, _, None) | (ServiceKind::Sms | ServiceKind::Mms, None, _) => {}
            _ => return Err(ChargeError::Invalid("seconds go with voice, segments with sms and mms".into())),
        }
        self.policy_check(account.id, req.destination.digits()).await?;
        let rate = self.ledger.rate(&account, &req.destination).await?.ok_or(ChargeError::NoRate)?;
        let available = account.available();
        let (amount, max_seconds, max_segments) = match req.service {
            ServiceKind::Voice => (
                req.seconds.map(|s| rate.call_price(s)).transpose().map_err(rating)?,
                Some(rate.max_seconds(available).map_err(rating)?),
                None,
            ),
            ServiceKind::Sms => (
                req.segments.map(|n| rate.sms_price(n)).transpose().map_err(rating)?,
                None,
                Some(rate.max_segments(available).map_err(rating)?),
            ),
            ServiceKind::Mms => (
                req.segments.map(|n| rate.mms_price(n)).transpose().map_err(rating)?,
                None,
                Some(rate.max_mms(available).map_err(rating)?),
            ),
        };
        Ok(Quote {
            currency: account.currency,
            prefix: format!("+{}", rate.prefix),
            description: rate.description.clone(),
            connect_fee: rate.connect_fee,
            per_minute: rate.per_minute.unwrap_or_default(),
            first_increment: rate.increments.first,
            next_increment: rate.increments.next,
            per_segment: rate.per_segment.unwrap_or_default(),
            per_mms: rate.per_mms.unwrap_or_default(),
            amount,
            available,
            max_seconds,
            max_segments,
        })
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<Hold, ChargeError> {
        self.reserve_for(req, None).await
    }

    async fn extend(&self, req: &ExtendRequest) -> Result<Hold, ChargeError> {
        self.extend_for(req, None).await
    }

    async fn settle(&self, req: &SettleRequest) -> Result<Settlement, ChargeError> {
        let used = match (req.amount, req.seconds, req.segments) {
            (Some(a), None, None) if !a.is_negative() => Usage::Amount(a),
            (None, Some(s), None) => Usage::Seconds(s),
            (None, None, Some(n)) => Usage::Segments(n),
            _ => {
                return Err(ChargeError::Invalid(
                    "give exactly one of amount (zero or more), seconds or segments".into(),
                ));
            }
        };
        if req.carrier.as_ref().is_some_and(|c| c.is_empty() || c.len() > 100) {
            return Err(ChargeError::Invalid("carrier: 1 to 100 characters".into()));
        }
        let currency = hold_currency(&self.ledger, req.hold.account).await?;
        let op = Op::Settle { principal: self.principal.clone(), req: req.clone(), used, currency };
        match self.ledger.submit(req.hold.account, op).await? {
            Outcome::Settlement(s) => Ok(s),
            Outcome::Hold(_) => Err(ChargeError::Unavailable("unexpected answer".into())),
        }
    }

    async fn release(&self, req: &ReleaseRequest) -> Result<Hold, ChargeError> {
        let currency = hold_currency(&self.ledger, req.hold.account).await?;
        let op = Op::Release { principal: self.principal.clone(), req: req.clone(), currency };
        self.outcome_hold(req.hold.account, op).await
    }
}

/// The currency of the account a hold id names (an unknown account: no such hold).
async fn hold_currency(
    ledger: &Ledger,
    account: crate::charging::AccountId,
) -> Result<crate::money::Currency, ChargeError> {
    match ledger.resolve(&AccountRef::Id { account_id: account }).await {
        Ok((_, c)) => Ok(c),
        Err(LedgerError::Charge(ChargeError::AccountNotFound)) => Err(ChargeError::HoldNotFound),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charging::IdempotencyKey;
    use crate::ledger::LedgerConfig;
    use crate::storage::EntryKind;

    fn row(call_id: &str) -> LiveCall {
        LiveCall { run_id: "run".into(), ..LiveCall::incoming(call_id, "+4930123456", "EUR".parse().unwrap(), 1) }
    }

    /// A call's live row is written with its first hold, in the hold's transaction, and only if the hold is
    /// made: alone, in a batch with other calls' holds, and not at all for a refused one.
    #[tokio::test]
    async fn a_calls_live_row_is_written_exactly_with_its_hold() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("g.sqlite3").display());
        let clock: Arc<dyn tincan_common::Clock> = Arc::new(tincan_common::SystemClock);
        let storage = crate::storage::open(&url, clock.clone()).await.unwrap();
        let deck = "prefix,description,connect_fee,per_minute,increments,per_sms\n49,Germany,0,0.60,1/1,\n";
        let mut tx = storage.begin().await.unwrap();
        tx.rates().replace("default", &crate::rating::parse_csv(deck).unwrap()).await.unwrap();
        tx.live_calls().start_run("run", "node", 1).await.unwrap();
        tx.commit().await.unwrap();
        let ledger = Ledger::start(storage.clone(), clock, LedgerConfig::default());
        let acct = ledger.create_business("caller", "EUR".parse().unwrap()).await.unwrap().id;
        let seed = IdempotencyKey::new("seed").unwrap();
        // 0.30 pays three 10 s holds at 0.01 a second, not a fourth.
        ledger.credit("t", &seed, acct, "0.30".parse().unwrap(), EntryKind::Adjustment, "seed", "").await.unwrap();
        let svc = ledger.charging("svc:pstn");
        let req = |call: &str| ReserveRequest {
            idempotency_key: IdempotencyKey::new(format!("{call}:reserve")).unwrap(),
            account: AccountRef::Id { account_id: acct },
            service: ServiceKind::Voice,
            destination: "+4930123456".parse().unwrap(),
            amount: None,
            seconds: Some(10),
            segments: None,
            ttl_secs: Some(60),
        };
        let alone = svc.reserve_for(&req("c1"), Some(row("c1"))).await.unwrap();
        // Three at once: one worker batch, two of which fit.
        let (r2, r3, r4) = (req("c2"), req("c3"), req("c4"));
        let (b, c, d) = tokio::join!(
            svc.reserve_for(&r2, Some(row("c2"))),
            svc.reserve_for(&r3, Some(row("c3"))),
            svc.reserve_for(&r4, Some(row("c4"))),
        );
        let made: Vec<_> = [b, c, d].into_iter().filter_map(Result::ok).collect();
        assert_eq!(made.len(), 2, "0.30 pays three holds of 0.10");

        let mut tx = storage.begin_read().await.unwrap();
        let rows = tx.live_calls().of_run("run").await.unwrap();
        assert_eq!(rows.len(), 3, "a row per hold made, none for the refused one: {rows:?}");
        let mut holds: Vec<i64> = std::iter::once(&alone).chain(&made).map(|h| h.id.seq).collect();
        let mut seqs: Vec<i64> = rows.iter().map(|r| r.hold_seq).collect();
        holds.sort_unstable();
        seqs.sort_unstable();
        assert_eq!(seqs, holds, "each row names its own hold");
        assert!(rows.iter().all(|r| r.account_id == acct && r.run_id == "run"));
        assert_eq!(rows.iter().find(|r| r.hold_seq == alone.id.seq).unwrap().call_id, "c1");
    }
}
