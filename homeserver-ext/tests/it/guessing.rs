//! Code guessing: a burst of concurrent wrong codes on one session gets exactly `codes.max_attempts` judged,
//! on SQLite and PostgreSQL; codes checked are also limited per client IP and per number across sessions.

use crate::harness::{Api, Ext};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const BASE: &str = "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"guessing-secret-0123456789\"\n";

async fn request(ext: &Ext, phone: &str, secret: &str) -> String {
    let (s, b) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": phone, "client_secret": secret, "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["sid"].as_str().unwrap().to_owned()
}

async fn verify(ext: &Ext, sid: &str, secret: &str, code: &str) -> (u16, Value) {
    ext.post("/_tincan/client/v1/register/verify", json!({"sid": sid, "client_secret": secret, "code": code})).await
}

/// Six-digit codes other than `code`.
fn wrong_codes(code: &str, n: usize) -> Vec<String> {
    (0..).map(|i| format!("{i:06}")).filter(|c| c != code).take(n).collect()
}

async fn concurrent_wrong_guesses(database_url: Option<&str>) {
    let ext = Ext::start_on(
        database_url,
        &format!(
            "{BASE}[limits]\nverify_per_ip = {{ burst = 100000, refill = 100000, period_secs = 3600 }}\n\
             verify_per_number = {{ burst = 100000, refill = 100000, period_secs = 3600 }}\n"
        ),
    )
    .await
    .unwrap();
    let phone = "+447911123400";
    let sid = request(&ext, phone, "guess").await;
    let code = ext.last_code(phone);
    let guesses = wrong_codes(&code, 500).into_iter().map(|wrong| {
        let (ext, sid) = (&ext, &sid);
        async move { verify(ext, sid, "guess", &wrong).await }
    });
    let answers = futures::future::join_all(guesses).await;
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    for (status, body) in &answers {
        *by_code.entry(format!("{status} {}", body["errcode"].as_str().unwrap_or("?"))).or_default() += 1;
    }
    let expected =
        BTreeMap::from([("400 M_THREEPID_AUTH_FAILED".to_owned(), 5), ("429 M_LIMIT_EXCEEDED".to_owned(), 495)]);
    assert_eq!(by_code, expected, "500 concurrent wrong codes: exactly max_attempts (5) judged, the rest locked out");
    // The session is locked, even for the right code, and its counter never went past the limit.
    let (s, b) = verify(&ext, &sid, "guess", &code).await;
    assert_eq!((s, &b["errcode"]), (429, &json!("M_LIMIT_EXCEEDED")), "{b}");
    assert_eq!(ext.store().await.session(&sid).await.unwrap().unwrap().attempts, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_500_concurrent_wrong_codes_judge_exactly_max_attempts() {
    concurrent_wrong_guesses(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_500_concurrent_wrong_codes_judge_exactly_max_attempts() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    concurrent_wrong_guesses(Some(pg.url())).await;
}

#[tokio::test]
async fn codes_checked_are_limited_per_number_and_per_ip() {
    let ext = Ext::start(&format!(
        "{BASE}[limits]\nverify_per_number = {{ burst = 3, refill = 3, period_secs = 3600 }}\n\
         verify_per_ip = {{ burst = 6, refill = 6, period_secs = 3600 }}\n"
    ))
    .await
    .unwrap();
    // Per number, over all of its sessions: two sessions with attempts left, three codes judged, then none.
    let a = "+447911123401";
    let (sid1, sid2) = (request(&ext, a, "a1").await, request(&ext, a, "a2").await);
    let code2 = ext.last_code(a);
    let wrong = wrong_codes(&code2, 1).remove(0);
    for (sid, secret) in [(&sid1, "a1"), (&sid1, "a1"), (&sid2, "a2")] {
        let (s, b) = verify(&ext, sid, secret, &wrong).await;
        assert_eq!((s, b["errcode"].as_str().unwrap()), (400, "M_THREEPID_AUTH_FAILED"), "{b}");
    }
    let (s, b) = verify(&ext, &sid2, "a2", &code2).await;
    assert_eq!((s, &b["errcode"]), (429, &json!("M_LIMIT_EXCEEDED")), "per-number verify limit: {b}");
    assert_eq!(ext.store().await.session(&sid2).await.unwrap().unwrap().attempts, 1, "the refused code was not judged");

    // Per client IP, over all numbers (four checks so far, one of them refused): two more codes from this address, then none, even for a fresh number.
    let b_num = "+447911123402";
    let sid3 = request(&ext, b_num, "b1").await;
    let code3 = ext.last_code(b_num);
    let wrong = wrong_codes(&code3, 1).remove(0);
    for _ in 0..2 {
        let (s, b) = verify(&ext, &sid3, "b1", &wrong).await;
        assert_eq!((s, b["errcode"].as_str().unwrap()), (400, "M_THREEPID_AUTH_FAILED"), "{b}");
    }
    let (s, b) = verify(&ext, &sid3, "b1", &code3).await;
    assert_eq!((s, &b["errcode"]), (429, &json!("M_LIMIT_EXCEEDED")), "per-IP verify limit: {b}");
    assert_eq!(ext.store().await.session(&sid3).await.unwrap().unwrap().attempts, 2);
}
