//! The ledger's correctness acceptance: 1,000 reserve/settle cycles from many tasks on one balance, through two gateway nodes sharing the database. A
//! concurrent observer reads the account all the while and must never see its balance below zero nor below its
//! holds; afterwards the ledger invariants hold and the sum charged equals the sum of the settlements the
//! callers were told about (each counted once, although some were sent twice).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tincan_common::SystemClock;
use tincan_enum_core::E164;
use tincan_gateway::charging::{
    AccountRef, ChargeError, Charging, IdempotencyKey, ReleaseRequest, ReserveRequest, ServiceKind, SettleRequest,
};
use tincan_gateway::ledger::{Ledger, LedgerConfig};
use tincan_gateway::money::{Amount, Currency};
use tincan_gateway::storage::{self, EntryKind, Storage, SystemAccount};

const TASKS: u64 = 50;
const CYCLES: u64 = 20;
const START: &str = "100.00";

fn key(s: String) -> IdempotencyKey {
    IdempotencyKey::new(s).unwrap()
}

/// A fixed pseudo-random sequence, so a failure replays.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// `storages`: one per gateway node (each its own connection pool and hold workers), all on one database, so
/// the nodes' transactions race in the database itself.
async fn thousand_cycles(storages: [Arc<dyn Storage>; 2]) {
    let clock = Arc::new(SystemClock);
    let nodes = storages.clone().map(|s| Ledger::start(s, clock.clone(), LedgerConfig::default()));
    let (ledger, storage) = (nodes[0].clone(), storages[0].clone());
    let eur: Currency = "EUR".parse().unwrap();
    let account = ledger.create_business("hot line", eur).await.unwrap().id;
    let start: Amount = START.parse().unwrap();
    ledger.credit("test", &key("seed".into()), account, start, EntryKind::Adjustment, "seed", "").await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (storage, stop) = (storage.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut tx = storage.begin_read().await.unwrap();
                let a = tx.accounts().get(account).await.unwrap().unwrap();
                drop(tx);
                assert!(!a.balance.is_negative(), "balance below zero: {a:?}");
                assert!(!a.available().is_negative(), "holds above the balance: {a:?}");
                seen += 1;
                tokio::task::yield_now().await;
            }
            seen
        })
    };

    let charged_total = Arc::new(AtomicU64::new(0));
    let (settled, rejected, released) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let svc = nodes[(t % 2) as usize].charging("svc:test");
            let (charged_total, settled, rejected, released) =
                (charged_total.clone(), settled.clone(), rejected.clone(), released.clone());
            tokio::spawn(async move {
                for c in 0..CYCLES {
                    let r = mix(t * 1000 + c);
                    let amount = Amount::from_micros(10_000 + (r % 990_000) as i64); // 0.01 … 1.00
                    let reserve = ReserveRequest {
                        idempotency_key: key(format!("r-{t}-{c}")),
                        account: AccountRef::Id { account_id: account },
                        service: ServiceKind::Voice,
                        destination: E164::parse("+4930123456").unwrap(),
                        amount: Some(amount),
                        seconds: None,
                        segments: None,
                        ttl_secs: Some(600),
                    };
                    let hold = match svc.reserve(&reserve).await {
                        Ok(h) => h,
                        Err(ChargeError::InsufficientFunds) => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => panic!("reserve: {e}"),
                    };
                    assert_eq!(hold.amount, amount);
                    if r.is_multiple_of(7) {
                        let rel = ReleaseRequest { idempotency_key: key(format!("x-{t}-{c}")), hold: hold.id };
                        svc.release(&rel).await.unwrap();
                        released.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let charge = Amount::from_micros(amount.micros() * ((r >> 8) % 11) as i64 / 10);
                    let settle = SettleRequest {
                        idempotency_key: key(format!("s-{t}-{c}")),
                        hold: hold.id,
                        amount: Some(charge),
                        seconds: None,
                        segments: None,
                        carrier: None,
                    };
                    let s = svc.settle(&settle).await.unwrap();
                    assert_eq!((s.charged, s.charged.checked_add(s.released).unwrap()), (charge, amount));
                    if r.is_multiple_of(5) {
                        // A caller that lost the answer sends it again: same answer, charged once.
                        assert_eq!(svc.settle(&settle).await.unwrap(), s, "a repeat answers as the first did");
                    }
                    charged_total.fetch_add(charge.micros() as u64, Ordering::Relaxed);
                    settled.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let observations = observer.await.unwrap();

    let (settled, rejected, released) =
        (settled.load(Ordering::Relaxed), rejected.load(Ordering::Relaxed), released.load(Ordering::Relaxed));
    assert_eq!(settled + rejected + released, TASKS * CYCLES);
    assert!(rejected > 0 && settled > 100, "the balance ran out during the run: {settled} settled, {rejected} refused");
    assert!(observations > 100, "the observer looked {observations} times");

    let charged = Amount::from_micros(charged_total.load(Ordering::Relaxed) as i64);
    let mut tx = storage.begin_read().await.unwrap();
    let a = tx.accounts().get(account).await.unwrap().unwrap();
    assert_eq!(a.held, Amount::ZERO, "every hold closed");
    assert_eq!(a.balance, start.checked_sub(charged).unwrap(), "balance = start − what the callers were charged");
    let revenue = tx.accounts().system(SystemAccount::Revenue, eur).await.unwrap();
    assert_eq!(tx.journal().sum(revenue).await.unwrap(), charged, "revenue = the sum of the settlements");
    let report = tx.journal().check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    eprintln!(
        "{settled} settled, {released} released, {rejected} refused, charged {charged}, {observations} observations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_thousand_concurrent_cycles_never_overdraw() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    let a = storage::open(&url, Arc::new(SystemClock)).await.unwrap();
    let b = storage::open(&url, Arc::new(SystemClock)).await.unwrap();
    thousand_cycles([a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_thousand_concurrent_cycles_never_overdraw() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let a = storage::open(pg.url(), Arc::new(SystemClock)).await.unwrap();
    let b = storage::open(pg.url(), Arc::new(SystemClock)).await.unwrap();
    thousand_cycles([a, b]).await;
}

/// The first settlements of a currency on many accounts at once: each hold worker's batch would create the
/// revenue account. An id cached from a transaction not yet committed let the other workers post legs to a row
/// they could not see (PostgreSQL: "violates foreign key constraint legs_account_id_fkey", every settlement of
/// those batches refused as storage failures). Every settlement must go through.
async fn first_settlements_on_many_accounts(storage: Arc<dyn Storage>) {
    // Each currency has its own revenue account, so each is one more race of first settlements.
    const CURRENCIES: [&str; 8] = ["EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN"];
    const ACCOUNTS: usize = 24;
    const ROUNDS: usize = 2;
    let ledger = Ledger::start(storage.clone(), Arc::new(SystemClock), LedgerConfig::default());
    let mut ids = Vec::new();
    for cur in CURRENCIES {
        for i in 0..ACCOUNTS {
            let a = ledger.create_business(&format!("line {cur} {i}"), cur.parse().unwrap()).await.unwrap().id;
            let seed = key(format!("seed-{cur}-{i}"));
            ledger.credit("test", &seed, a, "10.00".parse().unwrap(), EntryKind::Adjustment, "", "").await.unwrap();
            ids.push(a);
        }
    }
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &account)| {
            let svc = ledger.charging("svc:test");
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let hold = svc
                        .reserve(&ReserveRequest {
                            idempotency_key: key(format!("first-r-{i}-{round}")),
                            account: AccountRef::Id { account_id: account },
                            service: ServiceKind::Voice,
                            destination: E164::parse("+4930123456").unwrap(),
                            amount: Some("0.50".parse().unwrap()),
                            seconds: None,
                            segments: None,
                            ttl_secs: Some(600),
                        })
                        .await
                        .unwrap_or_else(|e| panic!("reserve on account {i}, round {round}: {e:?}"));
                    svc.settle(&SettleRequest {
                        idempotency_key: key(format!("first-s-{i}-{round}")),
                        hold: hold.id,
                        amount: Some(Amount::from_micros(120_000)),
                        seconds: None,
                        segments: None,
                        carrier: None,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("settle on account {i}, round {round}: {e:?}"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut tx = storage.begin_read().await.unwrap();
    for cur in CURRENCIES {
        let revenue = tx.accounts().system(SystemAccount::Revenue, cur.parse().unwrap()).await.unwrap();
        let expected = Amount::from_micros(120_000 * (ACCOUNTS * ROUNDS) as i64);
        assert_eq!(tx.journal().sum(revenue).await.unwrap(), expected, "{cur} revenue got every charge");
    }
    let report = tx.journal().check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_first_settlements_on_many_accounts_at_once_all_go_through() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    first_settlements_on_many_accounts(storage::open(pg.url(), Arc::new(SystemClock)).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_first_settlements_on_many_accounts_at_once_all_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    first_settlements_on_many_accounts(storage::open(&url, Arc::new(SystemClock)).await.unwrap()).await;
}

/// Many reservations on one account at once, more than its balance covers: a hold worker reserves a batch's
/// holds on one account together only when the balance covers their sum, else one by one, so exactly as many
/// are granted as fit, whatever the batches were, and each refusal says why.
async fn reservations_beyond_the_balance(storage: Arc<dyn Storage>) {
    const CALLERS: usize = 64;
    let ledger = Ledger::start(storage.clone(), Arc::new(SystemClock), LedgerConfig::default());
    let account = ledger.create_business("over", "EUR".parse().unwrap()).await.unwrap().id;
    ledger
        .credit("test", &key("seed".into()), account, "1.00".parse().unwrap(), EntryKind::Adjustment, "", "")
        .await
        .unwrap();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let svc = ledger.charging("svc:test");
            tokio::spawn(async move {
                svc.reserve(&ReserveRequest {
                    idempotency_key: key(format!("over-{i}")),
                    account: AccountRef::Id { account_id: account },
                    service: ServiceKind::Voice,
                    destination: E164::parse("+4930123456").unwrap(),
                    amount: Some("0.30".parse().unwrap()),
                    seconds: None,
                    segments: None,
                    ttl_secs: Some(600),
                })
                .await
            })
        })
        .collect();
    let (mut granted, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(h) => {
                assert_eq!(h.amount, "0.30".parse().unwrap());
                granted += 1;
            }
            Err(ChargeError::InsufficientFunds) => refused += 1,
            Err(e) => panic!("reserve: {e:?}"),
        }
    }
    assert_eq!((granted, refused), (3, CALLERS - 3), "1.00 covers three holds of 0.30");
    let mut tx = storage.begin_read().await.unwrap();
    let a = tx.accounts().get(account).await.unwrap().unwrap();
    assert_eq!((a.balance, a.held), ("1.00".parse().unwrap(), "0.90".parse().unwrap()));
    assert_eq!(tx.holds().open_count(account).await.unwrap(), 3, "no hold written for a refusal");
    let report = tx.journal().check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_reservations_beyond_the_balance_are_refused_exactly() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    reservations_beyond_the_balance(storage::open(pg.url(), Arc::new(SystemClock)).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reservations_beyond_the_balance_are_refused_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    reservations_beyond_the_balance(storage::open(&url, Arc::new(SystemClock)).await.unwrap()).await;
}
