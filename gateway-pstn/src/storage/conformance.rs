//! The storage conformance suite: written once, run against every backend (SQLite and PostgreSQL) by the
//! integration tests. Each check takes a freshly migrated, empty storage whose clock is `clock`.

use std::sync::Arc;
use std::time::Duration;

use tincan_common::{Clock, MockClock};

use super::{
    AccountKind, CallRecord, CallResult, Close, Closing, EntryKind, ExtendOutcome, IdempotentResponse, LiveCall,
    NewAccount, NewEntry, NewHold, Scope, Storage, StorageError, SystemAccount, TokenHash, unix_ms,
};
use crate::charging::{AccountId, HoldState, ServiceKind};
use crate::money::{Amount, Currency};

/// Runs every check in order on one empty storage.
pub async fn run(shared: Arc<dyn Storage>, clock: &Arc<MockClock>) {
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let (storage, clock) = (&*shared, &**clock);
    accounts(storage).await;
    journal(storage).await;
    holds(storage, clock).await;
    rollback_on_drop(storage).await;
    idempotency(storage).await;
    many_at_once(storage, clock).await;
    tokens(storage, clock).await;
    rates_carriers_and_limits(storage).await;
    check_finds_tampering(storage).await;
    call_records(storage).await;
    live_calls(storage).await;
    run_claims(storage).await;
    claimed_runs_start_no_calls(&shared, clock_dyn.clone()).await;
    one_call_per_sip_dialog(&shared, clock_dyn).await;
}

fn eur() -> Currency {
    "EUR".parse().unwrap()
}

fn amt(s: &str) -> Amount {
    s.parse().unwrap()
}

fn user(id: &str) -> NewAccount {
    NewAccount {
        kind: AccountKind::User,
        name: "+447400123001".into(),
        user_id: Some(id.into()),
        number: Some("+447400123001".into()),
        currency: eur(),
    }
}

async fn accounts(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    let a = tx.accounts().create(&user("@alice:hs.test")).await.unwrap();
    assert_eq!((a.balance, a.held, a.disabled, a.kind), (Amount::ZERO, Amount::ZERO, false, AccountKind::User));
    let dup = tx.accounts().create(&user("@alice:hs.test")).await;
    assert!(matches!(dup, Err(StorageError::Duplicate("account"))), "{dup:?}");
    drop(tx);

    let mut tx = storage.begin().await.unwrap();
    let a = tx.accounts().create(&user("@alice:hs.test")).await.unwrap();
    let b = tx
        .accounts()
        .create(&NewAccount {
            kind: AccountKind::Business,
            name: "Acme".into(),
            user_id: None,
            number: None,
            currency: eur(),
        })
        .await
        .unwrap();
    let rev = tx.accounts().system(SystemAccount::Revenue, eur()).await.unwrap();
    assert_eq!(tx.accounts().system(SystemAccount::Revenue, eur()).await.unwrap(), rev, "one per kind and currency");
    let usd = tx.accounts().system(SystemAccount::Revenue, "USD".parse().unwrap()).await.unwrap();
    assert_ne!(usd, rev);
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.accounts().by_user("@alice:hs.test").await.unwrap().unwrap(), a);
    assert_eq!(tx.accounts().get(b.id).await.unwrap().unwrap(), b);
    assert!(tx.accounts().get(AccountId(987_654)).await.unwrap().is_none());
    assert_eq!(tx.accounts().get(rev).await.unwrap().unwrap().kind, AccountKind::System);
    let listed = tx.accounts().list(None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|x| x.id).collect::<Vec<_>>(), [a.id, b.id], "system accounts are not listed");
    assert_eq!(tx.accounts().list(Some(a.id), 10).await.unwrap(), std::slice::from_ref(&b));
    assert_eq!(tx.accounts().lock(a.id).await.unwrap(), Some((Amount::ZERO, Amount::ZERO)));
    assert_eq!(tx.accounts().lock(rev).await.unwrap(), None, "system accounts are not locked for reserving");
    assert!(tx.accounts().set_disabled(b.id, true).await.unwrap());
    assert!(tx.accounts().get(b.id).await.unwrap().unwrap().disabled);
    assert!(!tx.accounts().set_disabled(AccountId(987_654), true).await.unwrap());
    tx.commit().await.unwrap();
}

async fn journal(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    let a = tx.accounts().by_user("@alice:hs.test").await.unwrap().unwrap().id;
    let vouchers = tx.accounts().system(SystemAccount::Vouchers, eur()).await.unwrap();
    let legs = [(a, amt("10.00")), (vouchers, amt("-10.00"))];
    let e1 = tx
        .journal()
        .post(&NewEntry { kind: EntryKind::Voucher, reference: "batch-1", hold: None, memo: "top-up", legs: &legs })
        .await
        .unwrap();
    let unbalanced = [(a, amt("1.00")), (vouchers, amt("-0.99"))];
    let bad = tx
        .journal()
        .post(&NewEntry { kind: EntryKind::Voucher, reference: "x", hold: None, memo: "", legs: &unbalanced })
        .await;
    assert!(matches!(bad, Err(StorageError::Corrupt { .. })), "legs must sum to zero: {bad:?}");
    let one = [(a, Amount::ZERO)];
    let bad = tx
        .journal()
        .post(&NewEntry { kind: EntryKind::Voucher, reference: "x", hold: None, memo: "", legs: &one })
        .await;
    assert!(bad.is_err(), "an entry has two legs at least");
    let legs = [(a, amt("2.50")), (vouchers, amt("-2.50"))];
    let e2 = tx
        .journal()
        .post(&NewEntry { kind: EntryKind::Voucher, reference: "batch-2", hold: None, memo: "", legs: &legs })
        .await
        .unwrap();
    assert!(e2 > e1);
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    let acc = tx.accounts().get(a).await.unwrap().unwrap();
    assert_eq!(acc.balance, amt("12.50"), "the running balance follows the legs");
    assert_eq!(tx.journal().sum(a).await.unwrap(), amt("12.50"));
    assert_eq!(tx.journal().sum(vouchers).await.unwrap(), amt("-12.50"), "system balances are summed");
    assert_eq!(tx.accounts().get(vouchers).await.unwrap().unwrap().balance, Amount::ZERO, "and not kept");
    let h = tx.journal().history(a, None, 10).await.unwrap();
    assert_eq!(h.iter().map(|i| (i.entry_id, i.amount)).collect::<Vec<_>>(), [(e2, amt("2.50")), (e1, amt("10"))]);
    assert_eq!((h[1].kind, h[1].reference.as_str(), h[1].memo.as_str()), (EntryKind::Voucher, "batch-1", "top-up"));
    let page = tx.journal().history(a, Some(h[0].id), 10).await.unwrap();
    assert_eq!(page, h[1..], "the page after the cursor");
    assert!(tx.journal().check().await.unwrap().problems.is_empty());
}

async fn holds(storage: &dyn Storage, clock: &MockClock) {
    let now = unix_ms(Clock::now(clock));
    let mut tx = storage.begin().await.unwrap();
    let a = tx.accounts().by_user("@alice:hs.test").await.unwrap().unwrap().id; // balance 12.50
    let new = |amount: &str| NewHold {
        account: a,
        principal: "svc:sms",
        amount: amt(amount),
        service: ServiceKind::Sms,
        destination: "+4915112345678",
        rate: Some("{}"),
        now_ms: now,
        expires_at_ms: now + 60_000,
    };
    let h1 = tx.holds().reserve(&new("10.00")).await.unwrap().expect("covered");
    assert_eq!((h1.id.account, h1.amount, h1.state, h1.expires_at_ms), (a, amt("10"), HoldState::Open, now + 60_000));
    assert!(tx.holds().reserve(&new("2.51")).await.unwrap().is_none(), "12.50 - 10.00 does not cover 2.51");
    let h2 = tx.holds().reserve(&new("2.50")).await.unwrap().expect("exactly covered");
    assert!(tx.holds().reserve(&new("0.000001")).await.unwrap().is_none(), "nothing left");
    let acc = tx.accounts().get(a).await.unwrap().unwrap();
    assert_eq!((acc.balance, acc.held, acc.available()), (amt("12.50"), amt("12.50"), Amount::ZERO));
    assert_eq!(tx.holds().open_count(a).await.unwrap(), 2);
    assert_eq!(tx.holds().get(h1.id).await.unwrap().unwrap(), h1);
    let mut other = h1.id;
    other.account = AccountId(a.0 + 1000);
    assert!(tx.holds().get(other).await.unwrap().is_none(), "a hold id names its account");

    assert_eq!(tx.holds().extend(h2.id, amt("0.01"), now + 120_000).await.unwrap(), ExtendOutcome::InsufficientFunds);
    drop(tx);

    let mut tx = storage.begin().await.unwrap();
    let h1 = tx.holds().reserve(&new("10.00")).await.unwrap().unwrap();
    let settle = Close {
        state: HoldState::Settled,
        charged: Some(amt("4.00")),
        usage: Some(2),
        carrier: Some("c1"),
        now_ms: now,
    };
    let closed = tx.holds().close(h1.id, &settle).await.unwrap().unwrap();
    assert_eq!(
        (closed.state, closed.charged, closed.usage, closed.carrier.as_deref()),
        (HoldState::Settled, Some(amt("4")), Some(2), Some("c1"))
    );
    assert!(tx.holds().close(h1.id, &settle).await.unwrap().is_none(), "closed once");
    assert_eq!(tx.accounts().get(a).await.unwrap().unwrap().held, Amount::ZERO, "closing gives the hold back");
    let rev = tx.accounts().system(SystemAccount::Revenue, eur()).await.unwrap();
    let reference = h1.id.to_string();
    let legs = [(a, amt("-4.00")), (rev, amt("4.00"))];
    tx.journal()
        .post(&NewEntry { kind: EntryKind::Charge, reference: &reference, hold: Some(h1.id), memo: "", legs: &legs })
        .await
        .unwrap();
    assert_eq!(tx.accounts().get(a).await.unwrap().unwrap().balance, amt("8.50"));
    let h3 = tx.holds().reserve(&new("1.00")).await.unwrap().unwrap();
    assert_eq!(tx.holds().extend(h3.id, amt("2.00"), now + 120_000).await.unwrap(), ExtendOutcome::Extended);
    let h3 = tx.holds().get(h3.id).await.unwrap().unwrap();
    assert_eq!((h3.amount, h3.expires_at_ms), (amt("3.00"), now + 120_000));
    assert_eq!(tx.accounts().get(a).await.unwrap().unwrap().held, amt("3.00"));
    assert_eq!(tx.holds().extend(h1.id, Amount::ZERO, now).await.unwrap(), ExtendOutcome::NotOpen);
    tx.commit().await.unwrap();

    clock.advance(Duration::from_secs(61));
    let mut tx = storage.begin().await.unwrap();
    let later = unix_ms(Clock::now(clock));
    assert!(tx.holds().expired(later, None, 10).await.unwrap().is_empty(), "h3 was extended to 120 s");
    let expired = tx.holds().expired(now + 120_000, Some(a), 10).await.unwrap();
    assert_eq!(expired, [h3.id]);
    assert!(tx.holds().expired(now + 120_000, Some(AccountId(a.0 + 1000)), 10).await.unwrap().is_empty());
    let expire = Close { state: HoldState::Expired, charged: None, usage: None, carrier: None, now_ms: later };
    tx.holds().close(h3.id, &expire).await.unwrap().unwrap();
    assert_eq!(tx.holds().open_count(a).await.unwrap(), 0);
    assert_eq!(tx.holds().charged_since(a, now).await.unwrap(), amt("4.00"));
    assert_eq!(tx.holds().charged_since(a, now + 1).await.unwrap(), Amount::ZERO);
    let cdrs = tx.holds().settled(a, None, 10).await.unwrap();
    assert_eq!(cdrs.iter().map(|h| h.id).collect::<Vec<_>>(), [h1.id]);
    let report = tx.journal().check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    tx.commit().await.unwrap();
}

async fn rollback_on_drop(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    tx.accounts().create(&user("@gone:hs.test")).await.unwrap();
    drop(tx);
    let mut tx = storage.begin().await.unwrap();
    assert!(tx.accounts().by_user("@gone:hs.test").await.unwrap().is_none());

    // A savepoint undoes only what followed it.
    tx.accounts().create(&user("@kept:hs.test")).await.unwrap();
    tx.savepoint().await.unwrap();
    tx.accounts().create(&user("@undone:hs.test")).await.unwrap();
    tx.rollback_to_savepoint().await.unwrap();
    tx.savepoint().await.unwrap();
    tx.accounts().create(&user("@released:hs.test")).await.unwrap();
    tx.release_savepoint().await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = storage.begin_read().await.unwrap();
    assert!(tx.accounts().by_user("@kept:hs.test").await.unwrap().is_some());
    assert!(tx.accounts().by_user("@undone:hs.test").await.unwrap().is_none());
    assert!(tx.accounts().by_user("@released:hs.test").await.unwrap().is_some());
}

async fn idempotency(storage: &dyn Storage) {
    let rec = IdempotentResponse { op: "reserve".into(), fingerprint: "f".into(), response: "{\"x\":1}".into() };
    let mut tx = storage.begin().await.unwrap();
    assert!(tx.idempotency().get("svc:a", "k1").await.unwrap().is_none());
    tx.idempotency().put("svc:a", "k1", &rec, 1).await.unwrap();
    tx.idempotency().put("svc:b", "k1", &rec, 1).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.idempotency().get("svc:a", "k1").await.unwrap().unwrap(), rec);
    let again = tx.idempotency().put("svc:a", "k1", &rec, 2).await.unwrap_err();
    assert!(again.is_transient(), "a key taken meanwhile means: run the write again ({again})");
}

/// The many-row forms the hold workers use for a batch: `reserve_all` holds an account's holds all or none,
/// `close_all` does what `close` and `post` do, the many-row reads find what the one-row reads find.
async fn many_at_once(storage: &dyn Storage, clock: &MockClock) {
    let now = unix_ms(Clock::now(clock));
    let mut tx = storage.begin().await.unwrap();
    let business = |name: &str| NewAccount {
        kind: AccountKind::Business,
        name: name.into(),
        user_id: None,
        number: None,
        currency: eur(),
    };
    let a = tx.accounts().create(&business("many a")).await.unwrap().id;
    let b = tx.accounts().create(&business("many b")).await.unwrap().id;
    let c = tx.accounts().create(&business("many c")).await.unwrap().id;
    let vouchers = tx.accounts().system(SystemAccount::Vouchers, eur()).await.unwrap();
    for (account, amount) in [(a, "5.00"), (b, "1.00"), (c, "5.00")] {
        let legs = [(account, amt(amount)), (vouchers, -amt(amount))];
        let entry = NewEntry { kind: EntryKind::Voucher, reference: "many", hold: None, memo: "", legs: &legs };
        tx.journal().post(&entry).await.unwrap();
    }
    assert!(tx.accounts().set_disabled(c, true).await.unwrap());
    let hold = |account, amount: &str| NewHold {
        account,
        principal: "svc:many",
        amount: amt(amount),
        service: ServiceKind::Voice,
        destination: "+4930123456",
        rate: None,
        now_ms: now,
        expires_at_ms: now + 60_000,
    };
    assert!(tx.holds().reserve_all(&[]).await.unwrap().is_empty());
    let asked = [hold(a, "2.00"), hold(b, "0.60"), hold(a, "3.00"), hold(b, "0.60"), hold(c, "1.00")];
    let made = tx.holds().reserve_all(&asked).await.unwrap();
    let which: Vec<bool> = made.iter().map(Option::is_some).collect();
    // a's 5.00 covers 2.00 + 3.00 exactly; b's 1.00 covers each 0.60 but not both, so neither; c is disabled.
    assert_eq!(which, [true, false, true, false, false]);
    let (h1, h2) = (made[0].clone().unwrap(), made[2].clone().unwrap());
    for (h, new) in [(&h1, &asked[0]), (&h2, &asked[2])] {
        assert_eq!(
            (h.id.account, h.amount, h.state, h.principal.as_str(), h.created_at_ms, h.expires_at_ms),
            (a, new.amount, HoldState::Open, "svc:many", now, now + 60_000)
        );
        assert_eq!(tx.holds().get(h.id).await.unwrap().as_ref(), Some(h), "each answer is its own row");
    }
    let held = |acc: crate::storage::Account| (acc.balance, acc.held);
    assert_eq!(held(tx.accounts().get(a).await.unwrap().unwrap()), (amt("5.00"), amt("5.00")));
    assert_eq!(held(tx.accounts().get(b).await.unwrap().unwrap()), (amt("1.00"), Amount::ZERO), "nothing held");
    assert_eq!(tx.holds().open_count(b).await.unwrap(), 0, "and no hold written");
    assert_eq!(tx.holds().open_count(c).await.unwrap(), 0);

    let mut elsewhere = h1.id;
    elsewhere.account = b;
    let mut got = tx.holds().get_many(&[h2.id, elsewhere, h1.id]).await.unwrap();
    got.sort_by_key(|h| h.id);
    assert_eq!(got, [h1.clone(), h2.clone()], "a hold id names its account");

    let revenue = tx.accounts().system(SystemAccount::Revenue, eur()).await.unwrap();
    let revenue_before = tx.journal().sum(revenue).await.unwrap();
    assert!(tx.holds().close_all(&[], now).await.unwrap().is_empty());
    let closings = [
        Closing::Settle { id: h1.id, charged: amt("1.50"), usage: Some(90), carrier: Some("c1"), revenue },
        Closing::Release { id: h2.id },
    ];
    let closed = tx.holds().close_all(&closings, now + 5).await.unwrap();
    let settled = closed[0].clone().expect("h1 was open");
    assert_eq!(
        (
            settled.state,
            settled.amount,
            settled.charged,
            settled.usage,
            settled.carrier.as_deref(),
            settled.closed_at_ms
        ),
        (HoldState::Settled, amt("2.00"), Some(amt("1.50")), Some(90), Some("c1"), Some(now + 5))
    );
    let released = closed[1].clone().expect("h2 was open");
    assert_eq!((released.state, released.charged), (HoldState::Released, None));
    assert_eq!(tx.holds().close_all(&closings, now + 6).await.unwrap(), [None, None], "closed once");
    assert_eq!(held(tx.accounts().get(a).await.unwrap().unwrap()), (amt("3.50"), Amount::ZERO));
    assert_eq!(tx.journal().sum(a).await.unwrap(), amt("3.50"), "the charge is a journal entry");
    assert_eq!(tx.journal().sum(revenue).await.unwrap(), revenue_before.checked_add(amt("1.50")).unwrap());
    let last = &tx.journal().history(a, None, 1).await.unwrap()[0];
    assert_eq!((last.kind, last.amount, last.reference.clone()), (EntryKind::Charge, amt("-1.50"), h1.id.to_string()));
    let report = tx.journal().check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let rec = |r: &str| IdempotentResponse { op: "settle".into(), fingerprint: "f".into(), response: r.into() };
    tx.idempotency().put_many(&[], now).await.unwrap();
    tx.idempotency().put_many(&[("svc:many", "k1", rec("1")), ("svc:many", "k2", rec("2"))], now).await.unwrap();
    let got = tx.idempotency().get_many(&[("svc:many", "k2"), ("svc:other", "k1"), ("svc:many", "k1")]).await.unwrap();
    assert_eq!(got, [Some(rec("2")), None, Some(rec("1"))]);
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    let again = tx.idempotency().put_many(&[("svc:many", "k3", rec("3")), ("svc:many", "k1", rec("1"))], now).await;
    assert!(again.unwrap_err().is_transient(), "a key taken meanwhile means: run the write again");
}

async fn tokens(storage: &dyn Storage, clock: &MockClock) {
    let now = unix_ms(Clock::now(clock));
    let mut tx = storage.begin().await.unwrap();
    let a = tx.accounts().by_user("@alice:hs.test").await.unwrap().unwrap().id;
    let svc = tx.tokens().add(TokenHash::of("t-svc"), Scope::Service, "sms-bridge", None, None, now).await.unwrap();
    let usr = tx
        .tokens()
        .add(TokenHash::of("t-usr"), Scope::User, "@alice:hs.test", Some(a), Some(now + 1000), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.tokens().by_hash(&TokenHash::of("t-svc"), now).await.unwrap().unwrap(), svc);
    assert_eq!(tx.tokens().by_hash(&TokenHash::of("t-usr"), now).await.unwrap().unwrap(), usr);
    assert!(tx.tokens().by_hash(&TokenHash::of("t-usr"), now + 1000).await.unwrap().is_none(), "expired");
    assert!(tx.tokens().by_hash(&TokenHash::of("t-x"), now).await.unwrap().is_none());
    assert_eq!(tx.tokens().list().await.unwrap(), std::slice::from_ref(&svc), "user tokens are not listed");
    assert!(tx.tokens().delete(svc.id).await.unwrap());
    assert!(tx.tokens().by_hash(&TokenHash::of("t-svc"), now).await.unwrap().is_none());
    let dup = tx.tokens().add(TokenHash::of("t-usr"), Scope::Service, "x", None, None, now).await;
    assert!(matches!(dup, Err(StorageError::Duplicate("token"))), "{dup:?}");
}

/// `check` must see a settled hold whose charge was never posted.
async fn check_finds_tampering(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    assert!(tx.journal().check().await.unwrap().problems.is_empty());
    let a = tx.accounts().by_user("@alice:hs.test").await.unwrap().unwrap().id;
    let new = NewHold {
        account: a,
        principal: "svc:sms",
        amount: amt("0.50"),
        service: ServiceKind::Voice,
        destination: "+4915112345678",
        rate: None,
        now_ms: 0,
        expires_at_ms: 1,
    };
    let h = tx.holds().reserve(&new).await.unwrap().unwrap();
    let settle = Close { state: HoldState::Settled, charged: Some(amt("0.50")), usage: None, carrier: None, now_ms: 2 };
    tx.holds().close(h.id, &settle).await.unwrap().unwrap();
    let report = tx.journal().check().await.unwrap();
    assert_eq!(report.problems.len(), 1, "a settled hold without its charge entry: {:?}", report.problems);
    assert!(report.problems[0].contains(&format!("hold {}", h.id.seq)), "{:?}", report.problems);
}

async fn rates_carriers_and_limits(storage: &dyn Storage) {
    let deck = crate::rating::parse_csv(
        "prefix,description,connect_fee,per_minute,increments,per_sms\n\
         49,Germany,0,0.012,60/60,0.07\n\
         49151,Germany mobile,0.01,0.045,30/6,\n",
    )
    .unwrap();
    let mut tx = storage.begin().await.unwrap();
    tx.rates().replace("default", &deck).await.unwrap();
    tx.rates().replace("gold", &crate::rating::RateDeck::new([deck.lookup("49").unwrap().clone()])).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.rates().deck("default").await.unwrap(), deck, "a deck round-trips");
    assert_eq!(tx.rates().lookup("default", "4915112345678").await.unwrap().unwrap().description, "Germany mobile");
    assert_eq!(tx.rates().lookup("default", "4930123456").await.unwrap().unwrap().description, "Germany");
    assert_eq!(tx.rates().lookup("gold", "4915112345678").await.unwrap().unwrap().description, "Germany", "per plan");
    assert!(tx.rates().lookup("default", "12025550143").await.unwrap().is_none());
    assert!(tx.rates().lookup("nosuch", "4930123456").await.unwrap().is_none());
    assert_eq!(tx.rates().plans().await.unwrap(), [("default".to_owned(), 2), ("gold".to_owned(), 1)]);
    tx.rates().replace("gold", &crate::rating::RateDeck::default()).await.unwrap();
    assert!(tx.rates().lookup("gold", "4930123456").await.unwrap().is_none(), "replace drops the old deck");

    let a = tx.accounts().by_user("@alice:hs.test").await.unwrap().unwrap();
    assert_eq!(a.plan, "default");
    assert!(tx.accounts().set_plan(a.id, "gold").await.unwrap());
    assert_eq!(tx.accounts().get(a.id).await.unwrap().unwrap().plan, "gold");

    let cheap = tx.carriers().add("cheap", super::CarrierKind::Sip, 5, 30).await.unwrap();
    let dear = tx.carriers().add("dear", super::CarrierKind::Sip, 1, 10).await.unwrap();
    let smsc = tx.carriers().add("smsc", super::CarrierKind::Smsc, 1, 10).await.unwrap();
    tx.carriers().replace_deck(cheap.id, &deck).await.unwrap();
    tx.carriers()
        .replace_deck(dear.id, &crate::rating::RateDeck::new([deck.lookup("49").unwrap().clone()]))
        .await
        .unwrap();
    tx.carriers().replace_deck(smsc.id, &deck).await.unwrap();
    let mut found = tx.carriers().candidates(super::CarrierKind::Sip, "4915112345678").await.unwrap();
    found.sort_by(|x, y| x.carrier.name.cmp(&y.carrier.name));
    let got: Vec<(&str, &str)> = found.iter().map(|r| (r.carrier.name.as_str(), r.cost.prefix.as_str())).collect();
    assert_eq!(got, [("cheap", "49151"), ("dear", "49")], "each carrier's longest prefix, SIP trunks only");
    assert!(tx.carriers().set_enabled(cheap.id, false).await.unwrap());
    let found = tx.carriers().candidates(super::CarrierKind::Sip, "4915112345678").await.unwrap();
    assert_eq!(found.len(), 1, "disabled carriers are not candidates");
    assert_eq!(tx.carriers().by_name("dear").await.unwrap().unwrap(), dear);
    assert_eq!(tx.carriers().list().await.unwrap().len(), 3);

    assert_eq!(tx.limits().get(a.id).await.unwrap(), super::Limits::default());
    let limits = super::Limits {
        max_open_holds: Some(2),
        max_spend_hour: Some(amt("5")),
        max_spend_day: None,
        opt_in: vec!["881".into()],
        blocked: vec!["33".into()],
    };
    tx.limits().set(a.id, &limits).await.unwrap();
    tx.limits().set(a.id, &limits).await.unwrap();
    assert_eq!(tx.limits().get(a.id).await.unwrap(), limits);
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    assert!(matches!(
        tx.carriers().add("cheap", super::CarrierKind::Sip, 1, 1).await,
        Err(StorageError::Duplicate("carrier"))
    ));
}

async fn call_records(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    let a = tx.accounts().create(&user("@calls:hs.test")).await.unwrap();
    let b = tx.accounts().create(&user("@other-calls:hs.test")).await.unwrap();
    let failed = CallRecord {
        id: 0,
        call_id: "run1-7".into(),
        attempt: 1,
        account_id: a.id,
        hold_seq: Some(41),
        destination: "+4930123456".into(),
        carrier: Some("cheap".into()),
        result: CallResult::Failed,
        sip_status: 503,
        reason: "Service Unavailable, \"try later\"".into(),
        q850_cause: Some(41),
        started_at_ms: 1_000,
        answered_at_ms: None,
        ended_at_ms: 1_200,
        billed_seconds: None,
        price: None,
        cost: None,
        currency: eur(),
    };
    let answered = CallRecord {
        attempt: 2,
        carrier: Some("dear".into()),
        result: CallResult::Answered,
        sip_status: 200,
        reason: "OK".into(),
        q850_cause: Some(16),
        answered_at_ms: Some(1_500),
        ended_at_ms: 4_500,
        billed_seconds: Some(3),
        price: Some(amt("0.03")),
        cost: Some(amt("0.000450")),
        ..failed.clone()
    };
    let refused = CallRecord {
        call_id: "run1-8".into(),
        attempt: 0,
        account_id: b.id,
        hold_seq: None,
        carrier: None,
        result: CallResult::Refused,
        sip_status: 402,
        ..failed.clone()
    };
    let ids = [
        tx.call_records().add(&failed).await.unwrap(),
        tx.call_records().add(&answered).await.unwrap(),
        tx.call_records().add(&refused).await.unwrap(),
    ];
    assert!(ids[0] < ids[1] && ids[1] < ids[2]);
    let dup = tx.call_records().add(&failed).await;
    assert!(matches!(dup, Err(StorageError::Duplicate("call record"))), "{dup:?}");
    drop(tx);
    // The duplicate failed the transaction on PostgreSQL: write again and commit.
    let mut tx = storage.begin().await.unwrap();
    let a = tx.accounts().create(&user("@calls:hs.test")).await.unwrap();
    let b = tx.accounts().create(&user("@other-calls:hs.test")).await.unwrap();
    let failed = CallRecord { account_id: a.id, ..failed };
    let answered = CallRecord { account_id: a.id, ..answered };
    let refused = CallRecord { account_id: b.id, ..refused };
    for r in [&failed, &answered, &refused] {
        tx.call_records().add(r).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut tx = storage.begin_read().await.unwrap();
    let of_a = tx.call_records().list(Some(a.id), 0, 10).await.unwrap();
    let strip = |r: &CallRecord| CallRecord { id: 0, ..r.clone() };
    assert_eq!(of_a.iter().map(strip).collect::<Vec<_>>(), [failed.clone(), answered.clone()]);
    let all = tx.call_records().list(None, 0, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    let after_first = tx.call_records().list(None, all[0].id, 1).await.unwrap();
    assert_eq!(after_first.iter().map(strip).collect::<Vec<_>>(), std::slice::from_ref(&answered));
    // The portal's list: one account's newest first, at most `limit`.
    let newest = tx.call_records().recent(a.id, 10).await.unwrap();
    assert_eq!(newest.iter().map(strip).collect::<Vec<_>>(), [answered.clone(), failed.clone()]);
    let last = tx.call_records().recent(a.id, 1).await.unwrap();
    assert_eq!(last.iter().map(strip).collect::<Vec<_>>(), [answered]);
    assert_eq!(
        all[0].csv_row().split(',').nth(9),
        Some("\"Service Unavailable"),
        "a reason with a comma is quoted: {}",
        all[0].csv_row()
    );
    assert!(all[1].csv_row().ends_with(",3,0.03,0.00045,EUR"), "{}", all[1].csv_row());
    assert_eq!(tx.call_records().get("run1-7", 2).await.unwrap().as_ref(), Some(&all[1]));
    assert_eq!(tx.call_records().get("run1-7", 3).await.unwrap(), None);
}

async fn live_calls(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    let a = tx.accounts().create(&user("@live:hs.test")).await.unwrap();
    tx.live_calls().start_run("old", "node-a", 1_000).await.unwrap();
    tx.live_calls().start_run("other", "node-b", 1_000).await.unwrap();
    let call = LiveCall {
        run_id: "old".into(),
        account_id: a.id,
        hold_seq: 9,
        ..LiveCall::incoming("old-1", "+4930123456", eur(), 1_100)
    };
    tx.live_calls().open(&call).await.unwrap();
    tx.live_calls().open(&LiveCall { call_id: "old-2".into(), ..call.clone() }).await.unwrap();
    tx.live_calls().attempt("old-1", 1, "cheap", 1_200).await.unwrap();
    tx.live_calls().answered("old-1", 1_300, 60).await.unwrap();
    tx.live_calls().paid("old-1", 120).await.unwrap();
    tx.live_calls().heartbeat("old", 5_000).await.unwrap();
    // A heartbeat never moves back.
    tx.live_calls().heartbeat("old", 4_000).await.unwrap();
    tx.live_calls().ended("old-2", 5_500).await.unwrap();
    tx.live_calls().ended("old-2", 6_000).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    tx.live_calls().start_run("new", "node-a", 7_000).await.unwrap();
    let dup = tx.live_calls().start_run("new", "node-a", 7_000).await;
    assert!(matches!(dup, Err(StorageError::Duplicate("gateway run"))), "{dup:?}");
    drop(tx);
    let mut tx = storage.begin().await.unwrap();
    tx.live_calls().start_run("new", "node-a", 7_000).await.unwrap();
    let stale = tx.live_calls().stale_runs("node-a", "new").await.unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!((stale[0].run_id.as_str(), stale[0].heartbeat_at_ms), ("old", 5_000));
    let calls = tx.live_calls().of_run("old").await.unwrap();
    let answered = LiveCall {
        attempt: 1,
        carrier: Some("cheap".into()),
        attempt_started_at_ms: Some(1_200),
        answered_at_ms: Some(1_300),
        paid_seconds: 120,
        ..call.clone()
    };
    let ended = LiveCall { call_id: "old-2".into(), ended_at_ms: Some(5_500), ..call.clone() };
    assert_eq!(calls, [answered, ended]);
    tx.live_calls().close("old-1").await.unwrap();
    tx.live_calls().close("old-2").await.unwrap();
    tx.live_calls().forget_run("old").await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = storage.begin_read().await.unwrap();
    assert!(tx.live_calls().of_run("old").await.unwrap().is_empty());
    assert!(tx.live_calls().stale_runs("node-a", "new").await.unwrap().is_empty());
    assert_eq!(tx.live_calls().stale_runs("node-b", "new").await.unwrap().len(), 1);
}

/// A silent run is claimed by exactly one other run, only while no live run holds it; a claimed run's heartbeat
/// says it is no longer its own.
async fn run_claims(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    tx.live_calls().start_run("dead", "node-x", 10_000).await.unwrap();
    tx.live_calls().start_run("a", "node-y", 10_000).await.unwrap();
    tx.live_calls().start_run("b", "node-z", 10_000).await.unwrap();
    assert!(tx.live_calls().heartbeat("dead", 12_000).await.unwrap());
    assert!(tx.live_calls().heartbeat("a", 20_000).await.unwrap());
    assert!(tx.live_calls().heartbeat("b", 20_000).await.unwrap());
    // The same time again still answers that the run is its own.
    assert!(tx.live_calls().heartbeat("b", 20_000).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    let silent = tx.live_calls().silent_runs("a", 15_000).await.unwrap();
    let ids: Vec<&str> = silent.iter().map(|r| r.run_id.as_str()).collect();
    assert!(ids.contains(&"dead") && !ids.contains(&"a") && !ids.contains(&"b"), "{silent:?}");
    let dead = silent.iter().find(|r| r.run_id == "dead").unwrap();
    assert_eq!((dead.node.as_str(), dead.heartbeat_at_ms, dead.claimed_by.as_deref()), ("node-x", 12_000, None));
    // A live run cannot be claimed, nor can a run claim itself.
    assert!(!tx.live_calls().claim_run("b", "a", 15_000, 15_000, 21_000).await.unwrap());
    assert!(!tx.live_calls().claim_run("dead", "dead", 15_000, 15_000, 21_000).await.unwrap());
    tx.commit().await.unwrap();

    // Two survivors claim the dead run at once: one gets it.
    let claim = |claimer: &'static str| async move {
        let mut tx = storage.begin().await.unwrap();
        let got = tx.live_calls().claim_run("dead", claimer, 15_000, 15_000, 21_000).await.unwrap();
        tx.commit().await.unwrap();
        (claimer, got)
    };
    let (x, y) = futures::join!(claim("a"), claim("b"));
    assert!(x.1 != y.1, "exactly one claim holds: {x:?} {y:?}");
    let (winner, loser) = if x.1 { (x.0, y.0) } else { (y.0, x.0) };

    let mut tx = storage.begin().await.unwrap();
    // Its claimer claiming again still holds it; the other run cannot take it while the claimer is alive.
    assert!(tx.live_calls().claim_run("dead", winner, 15_000, 15_000, 22_000).await.unwrap());
    assert!(!tx.live_calls().claim_run("dead", loser, 15_000, 15_000, 22_000).await.unwrap());
    // The dead run's heartbeat (a stalled process coming back) is refused: the run is no longer its own.
    assert!(!tx.live_calls().heartbeat("dead", 23_000).await.unwrap());
    let runs = tx.live_calls().silent_runs(loser, 15_000).await.unwrap();
    let dead = runs.iter().find(|r| r.run_id == "dead").unwrap();
    assert_eq!((dead.heartbeat_at_ms, dead.claimed_by.as_deref()), (12_000, Some(winner)));
    // The claimer dies in turn (silent since 20 s): the other may take the dead run over from it.
    assert!(tx.live_calls().heartbeat(loser, 40_000).await.unwrap());
    assert!(tx.live_calls().claim_run("dead", loser, 35_000, 35_000, 40_000).await.unwrap());
    assert!(!tx.live_calls().claim_run("dead", winner, 35_000, 35_000, 40_000).await.unwrap());
    // A node's restarted process claims its earlier run however recent its heartbeat, but not from a live claimer.
    tx.live_calls().start_run("a2", "node-y", 40_000).await.unwrap();
    assert!(!tx.live_calls().claim_run("dead", "a2", i64::MAX, 35_000, 40_000).await.unwrap());
    // (Which runs are its node's is the caller's business: here the live-looking one it names.)
    assert!(tx.live_calls().claim_run(loser, "a2", i64::MAX, 35_000, 40_000).await.unwrap());
    for run in ["dead", "a", "b", "a2"] {
        tx.live_calls().forget_run(run).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// A run another run has claimed starts no call: a call's first hold under it is refused with nothing written
/// (no hold, nothing held, no live row), in a batch as alone, while calls of runs still their own go on. A
/// transaction that found its run its own keeps it so: a claim made meanwhile waits for its commit, so the
/// claimer then sees the call it started.
async fn claimed_runs_start_no_calls(storage: &Arc<dyn Storage>, clock: Arc<dyn Clock>) {
    use crate::charging::{AccountRef, IdempotencyKey, ReserveRequest};
    let now = unix_ms(clock.now());
    let mut tx = storage.begin().await.unwrap();
    tx.live_calls().start_run("fenced", "node-f", now - 60_000).await.unwrap();
    tx.live_calls().start_run("taker", "node-t", now).await.unwrap();
    assert!(tx.live_calls().own_run("fenced").await.unwrap());
    assert!(tx.live_calls().claim_run("fenced", "taker", now, now - 30_000, now).await.unwrap());
    tx.commit().await.unwrap();

    let ledger = crate::ledger::Ledger::start(storage.clone(), clock, crate::ledger::LedgerConfig::default());
    let acct = ledger.create_business("fenced calls", eur()).await.unwrap().id;
    let seed = IdempotencyKey::new("fenced-seed").unwrap();
    ledger.credit("t", &seed, acct, amt("1.00"), EntryKind::Adjustment, "seed", "").await.unwrap();
    let svc = ledger.charging("svc:pstn");
    let req = |call: &str| ReserveRequest {
        idempotency_key: IdempotencyKey::new(format!("{call}:reserve")).unwrap(),
        account: AccountRef::Id { account_id: acct },
        service: ServiceKind::Voice,
        destination: "+4930123456".parse().unwrap(),
        amount: Some(amt("0.10")),
        seconds: None,
        segments: None,
        ttl_secs: Some(60),
    };
    let row =
        |call: &str, run: &str| LiveCall { run_id: run.into(), ..LiveCall::incoming(call, "+4930123456", eur(), now) };
    let alone = svc.reserve_for(&req("fenced-1"), Some(row("fenced-1", "fenced"))).await;
    assert!(matches!(alone, Err(crate::charging::ChargeError::RunTakenOver)), "{alone:?}");
    // A run that is gone (forgotten once its calls were settled) starts none either.
    let gone = svc.reserve_for(&req("gone-1"), Some(row("gone-1", "gone"))).await;
    assert!(matches!(gone, Err(crate::charging::ChargeError::RunTakenOver)), "{gone:?}");
    // At once, one worker batch: the taken-over run's calls refused, the claimer's made.
    let (r2, r3, r4) = (req("fenced-2"), req("taker-1"), req("fenced-3"));
    let (b, c, d) = futures::join!(
        svc.reserve_for(&r2, Some(row("fenced-2", "fenced"))),
        svc.reserve_for(&r3, Some(row("taker-1", "taker"))),
        svc.reserve_for(&r4, Some(row("fenced-3", "fenced"))),
    );
    assert!(matches!(b, Err(crate::charging::ChargeError::RunTakenOver)), "{b:?}");
    assert!(matches!(d, Err(crate::charging::ChargeError::RunTakenOver)), "{d:?}");
    let made = c.unwrap();
    // An account under fraud limits has its requests applied one by one: refused there too.
    let limited = ledger.create_business("fenced calls, limited", eur()).await.unwrap().id;
    let seed = IdempotencyKey::new("fenced-seed-limited").unwrap();
    ledger.credit("t", &seed, limited, amt("1.00"), EntryKind::Adjustment, "seed", "").await.unwrap();
    ledger.set_limits(limited, super::Limits { max_open_holds: Some(5), ..Default::default() }).await.unwrap();
    let one_by_one = ReserveRequest { account: AccountRef::Id { account_id: limited }, ..req("fenced-4") };
    let e = svc.reserve_for(&one_by_one, Some(row("fenced-4", "fenced"))).await;
    assert!(matches!(e, Err(crate::charging::ChargeError::RunTakenOver)), "{e:?}");
    let mut tx = storage.begin_read().await.unwrap();
    assert_eq!(tx.holds().open_count(limited).await.unwrap(), 0, "nothing held for the limited account");
    assert_eq!(tx.accounts().get(limited).await.unwrap().unwrap().held, Amount::ZERO);
    drop(tx);
    let mut tx = storage.begin_read().await.unwrap();
    assert!(tx.live_calls().of_run("fenced").await.unwrap().is_empty(), "no live row under the taken-over run");
    assert!(tx.live_calls().of_run("gone").await.unwrap().is_empty());
    assert_eq!(tx.holds().open_count(acct).await.unwrap(), 1, "only the claimer's call holds");
    assert_eq!(tx.accounts().get(acct).await.unwrap().unwrap().held, amt("0.10"));
    let rows = tx.live_calls().of_run("taker").await.unwrap();
    assert_eq!(rows.iter().map(|r| (r.call_id.as_str(), r.hold_seq)).collect::<Vec<_>>(), [("taker-1", made.id.seq)]);
    drop(tx);

    // A transaction that found its run its own keeps it so until it ends: a claim waits, then sees its call.
    let mut tx = storage.begin().await.unwrap();
    tx.live_calls().start_run("slow", "node-s", now - 60_000).await.unwrap();
    tx.commit().await.unwrap();
    let mut starting = storage.begin().await.unwrap();
    assert!(starting.live_calls().own_run("slow").await.unwrap());
    let claim = tokio::spawn({
        let storage = storage.clone();
        async move {
            let mut tx = storage.begin().await.unwrap();
            let got = tx.live_calls().claim_run("slow", "taker", now, now - 30_000, now).await.unwrap();
            let calls = tx.live_calls().of_run("slow").await.unwrap();
            tx.commit().await.unwrap();
            (got, calls)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!claim.is_finished(), "a claim waits for a transaction starting a call under the run");
    let call = LiveCall { account_id: acct, hold_seq: made.id.seq, ..row("slow-1", "slow") };
    starting.live_calls().open(&call).await.unwrap();
    starting.commit().await.unwrap();
    let (got, calls) = claim.await.unwrap();
    assert!(got, "the claim holds once the call's transaction committed");
    assert_eq!(calls, [call], "and the claimer sees the call");
    let mut tx = storage.begin().await.unwrap();
    assert!(!tx.live_calls().own_run("slow").await.unwrap(), "claimed: no more calls");
    drop(tx);

    // Extensions: a claimed run's (or a forgotten run's) are refused at once with nothing held — not only once
    // the claimer has closed the hold; the claimer's own go through.
    let extend = |key: &str| crate::charging::ExtendRequest {
        idempotency_key: IdempotencyKey::new(key).unwrap(),
        hold: made.id,
        amount: Some(amt("0.05")),
        seconds: None,
        ttl_secs: Some(60),
    };
    for (key, run) in [("slow-1:extend.1", "slow"), ("fenced-9:extend.1", "fenced"), ("gone-9:extend.1", "gone")] {
        let e = svc.extend_for(&extend(key), Some(run)).await;
        assert!(matches!(e, Err(crate::charging::ChargeError::RunTakenOver)), "{run}: {e:?}");
    }
    let mut tx = storage.begin_read().await.unwrap();
    assert_eq!(tx.accounts().get(acct).await.unwrap().unwrap().held, amt("0.10"), "nothing more held");
    assert_eq!(tx.holds().get(made.id).await.unwrap().unwrap().amount, amt("0.10"));
    drop(tx);
    let more = svc.extend_for(&extend("taker-1:extend.1"), Some("taker")).await.unwrap();
    assert_eq!(more.amount, amt("0.15"), "the claimer's own call extends");

    let mut tx = storage.begin().await.unwrap();
    for run in ["fenced", "taker", "slow"] {
        tx.live_calls().forget_run(run).await.unwrap();
    }
    tx.live_calls().close("taker-1").await.unwrap();
    tx.live_calls().close("slow-1").await.unwrap();
    tx.commit().await.unwrap();
}

/// The same INVITE reaching two nodes (a proxy failing over from a node slow to answer) starts one call: the
/// second call's first hold for the same SIP dialog is refused with nothing written, alone, at once with the
/// first, and after the first call ended; a dialog pruned by age is free again.
async fn one_call_per_sip_dialog(storage: &Arc<dyn Storage>, clock: Arc<dyn Clock>) {
    use crate::charging::{AccountRef, ChargeError, IdempotencyKey, ReserveRequest};
    let now = unix_ms(clock.now());
    let mut tx = storage.begin().await.unwrap();
    tx.live_calls().start_run("node-1", "n1", now).await.unwrap();
    tx.live_calls().start_run("node-2", "n2", now).await.unwrap();
    tx.commit().await.unwrap();
    let ledger = crate::ledger::Ledger::start(storage.clone(), clock, crate::ledger::LedgerConfig::default());
    let acct = ledger.create_business("dialog calls", eur()).await.unwrap().id;
    let seed = IdempotencyKey::new("dialog-seed").unwrap();
    ledger.credit("t", &seed, acct, amt("1.00"), EntryKind::Adjustment, "seed", "").await.unwrap();
    let svc = ledger.charging("svc:pstn");
    let req = |call: &str| ReserveRequest {
        idempotency_key: IdempotencyKey::new(format!("{call}:reserve")).unwrap(),
        account: AccountRef::Id { account_id: acct },
        service: ServiceKind::Voice,
        destination: "+4930123456".parse().unwrap(),
        amount: Some(amt("0.10")),
        seconds: None,
        segments: None,
        ttl_secs: Some(60),
    };
    let row = |call: &str, run: &str, dialog: &str| LiveCall {
        run_id: run.into(),
        sip_dialog: Some(dialog.into()),
        ..LiveCall::incoming(call, "+4930123456", eur(), now)
    };
    let held = || async {
        let mut tx = storage.begin_read().await.unwrap();
        (tx.accounts().get(acct).await.unwrap().unwrap().held, tx.holds().open_count(acct).await.unwrap())
    };

    let first = svc.reserve_for(&req("node-1-1"), Some(row("node-1-1", "node-1", "dlg-a"))).await.unwrap();
    let again = svc.reserve_for(&req("node-2-1"), Some(row("node-2-1", "node-2", "dlg-a"))).await;
    assert!(matches!(again, Err(ChargeError::CallElsewhere)), "{again:?}");
    assert_eq!(held().await, (amt("0.10"), 1), "nothing held for the second copy");
    let mut tx = storage.begin_read().await.unwrap();
    assert!(tx.live_calls().of_run("node-2").await.unwrap().is_empty(), "no live row for the second copy");
    drop(tx);
    // The same call's own reservation again (a retry with its key) is its first answer, not a refusal.
    let retry = svc.reserve_for(&req("node-1-1"), Some(row("node-1-1", "node-1", "dlg-a"))).await.unwrap();
    assert_eq!(retry.id, first.id);
    // At once from both nodes: one call, whichever.
    let (r12, r22) = (req("node-1-2"), req("node-2-2"));
    let (x, y) = futures::join!(
        svc.reserve_for(&r12, Some(row("node-1-2", "node-1", "dlg-b"))),
        svc.reserve_for(&r22, Some(row("node-2-2", "node-2", "dlg-b"))),
    );
    let refused = [&x, &y].iter().filter(|r| matches!(r, Err(ChargeError::CallElsewhere))).count();
    assert_eq!((x.is_ok() as u8 + y.is_ok() as u8, refused), (1, 1), "{x:?} {y:?}");
    assert_eq!(held().await, (amt("0.20"), 2));
    // Ended (its live row closed), the dialog is still taken: a late copy starts nothing.
    let mut tx = storage.begin().await.unwrap();
    tx.live_calls().close("node-1-1").await.unwrap();
    tx.commit().await.unwrap();
    let late = svc.reserve_for(&req("node-2-3"), Some(row("node-2-3", "node-2", "dlg-a"))).await;
    assert!(matches!(late, Err(ChargeError::CallElsewhere)), "{late:?}");
    // Pruned by age, it is free again; a call without a dialog never meets one.
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.live_calls().prune_dialogs(now).await.unwrap(), 0, "none before its time");
    assert_eq!(tx.live_calls().prune_dialogs(now + 1).await.unwrap(), 2);
    tx.commit().await.unwrap();
    svc.reserve_for(&req("node-2-4"), Some(row("node-2-4", "node-2", "dlg-a"))).await.unwrap();
    let plain = LiveCall { run_id: "node-2".into(), ..LiveCall::incoming("node-2-5", "+4930123456", eur(), now) };
    svc.reserve_for(&req("node-2-5"), Some(plain)).await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    for call in ["node-1-2", "node-2-2", "node-2-4", "node-2-5"] {
        tx.live_calls().close(call).await.unwrap();
    }
    tx.live_calls().forget_run("node-1").await.unwrap();
    tx.live_calls().forget_run("node-2").await.unwrap();
    tx.live_calls().prune_dialogs(i64::MAX).await.unwrap();
    tx.commit().await.unwrap();
}
