//! `kill -9` of the real service in the middle of 200 settlements, then a restart and the callers' retries
//! (same idempotency keys): every settlement lands exactly once, nothing is lost, nothing is charged twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tincan_enum_core::E164;
use tincan_gateway::charging::{
    AccountId, AccountRef, ChargeError, Charging, HoldState, IdempotencyKey, ReserveRequest, ServiceKind,
    SettleRequest, Settlement,
};
use tincan_gateway::client::GatewayClient;
use tincan_gateway::money::Amount;

use crate::harness::Gateway;

const HOLDS: usize = 200;

async fn retrying<T, F, Fut>(what: &str, retries: &AtomicU64, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ChargeError>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

async fn kill_in_the_middle_of_settlements(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), env).await;
    let token = gw.cli_ok(&["tokens", "add", "--scope", "service", "pstn"]);
    let account = AccountId(gw.cli_ok(&["accounts", "create", "--business", "crash test"]).parse().unwrap());
    gw.cli_ok(&["accounts", "adjust", &account.to_string(), "1000.00", "--memo", "seed", "--key", "seed"]);
    let client = Arc::new(GatewayClient::new(&gw.base(), token).unwrap());
    let retries = Arc::new(AtomicU64::new(0));

    let mut holds = Vec::new();
    for i in 0..HOLDS {
        let req = ReserveRequest {
            idempotency_key: IdempotencyKey::new(format!("call-{i}")).unwrap(),
            account: AccountRef::Id { account_id: account },
            service: ServiceKind::Voice,
            destination: E164::parse("+442079460001").unwrap(),
            amount: Some("2.00".parse().unwrap()),
            seconds: None,
            segments: None,
            ttl_secs: Some(3600),
        };
        holds.push(client.reserve(&req).await.unwrap());
    }

    // Eight callers settle the 200 holds; the service is killed once 60 have been answered.
    let answered = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let holds = Arc::new(holds);
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (client, answered, next, holds, retries) =
                (client.clone(), answered.clone(), next.clone(), holds.clone(), retries.clone());
            tokio::spawn(async move {
                let mut done: Vec<(usize, Settlement)> = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= HOLDS {
                        return done;
                    }
                    let req = SettleRequest {
                        idempotency_key: IdempotencyKey::new(format!("end-{i}")).unwrap(),
                        hold: holds[i].id,
                        amount: Some(Amount::from_micros(1_000_000 + i as i64 * 1000)), // 1.000 … 1.199
                        seconds: None,
                        segments: None,
                        carrier: None,
                    };
                    let s = retrying("settle", &retries, || client.settle(&req)).await;
                    answered.fetch_add(1, Ordering::Relaxed);
                    done.push((i, s));
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < 60 {
        assert!(Instant::now() < deadline, "settlements stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let at_kill = answered.load(Ordering::Relaxed);
    let gw = gw.crash_and_restart().await;
    let mut settled = Vec::new();
    for c in callers {
        settled.extend(c.await.unwrap());
    }
    assert!(at_kill < HOLDS as u64, "the kill came before the end ({at_kill} answered)");
    assert!(retries.load(Ordering::Relaxed) > 0, "some callers met the dead service and retried");

    settled.sort_by_key(|(i, _)| *i);
    assert_eq!(settled.len(), HOLDS);
    let mut total = Amount::ZERO;
    for (i, s) in &settled {
        let want = Amount::from_micros(1_000_000 + *i as i64 * 1000);
        assert_eq!(s.charged, want, "settlement {i}");
        let h = client.hold(holds[*i].id).await.unwrap();
        assert_eq!((h.state, h.charged), (HoldState::Settled, Some(want)), "hold {i} as stored");
        total = total.checked_add(want).unwrap();
    }
    // Balance: what was seeded, less exactly one charge per settlement.
    let http = reqwest::Client::new();
    let op = gw.cli_ok(&["tokens", "add", "--scope", "operator", "ops"]);
    let a: serde_json::Value = http
        .get(format!("{}/v1/accounts/{account}", gw.base()))
        .bearer_auth(op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = "1000.00".parse::<Amount>().unwrap().checked_sub(total).unwrap();
    assert_eq!(a["balance"], want.to_string(), "{a}");
    assert_eq!(a["held"], "0.00", "{a}");
    let check = gw.cli(&["ledger", "check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && out.contains("ledger check passed"), "{out}");
    eprintln!("killed after {at_kill} answers; {} retries", retries.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_kill_9_mid_settlements_loses_nothing_and_charges_once() {
    kill_in_the_middle_of_settlements(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_kill_9_mid_settlements_loses_nothing_and_charges_once() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    kill_in_the_middle_of_settlements(&[("TINCAN_GATEWAY_DATABASE__URL", pg.url())]).await;
}
