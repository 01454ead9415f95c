//! `register/verify` and `register/request` side effects: a replayed or concurrent verify mints no second
//! login, a session that cannot be stored sends no SMS, a silent SMSC fails sign-ups within the connect
//! timeout instead of holding them all, and one send that hangs fails alone after `sms.send_timeout_secs`.

use crate::harness::{Api, Ext, Local};
use serde_json::json;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tincan_common::Secret;
use tincan_homeserver_ext::config::ExtConfig;
use tincan_homeserver_ext::homeserver::{HomeserverConnector, HomeserverError, Login};

/// A homeserver whose logins take a while and are counted.
#[derive(Debug, Default)]
struct SlowLogins {
    logins: AtomicUsize,
}

#[async_trait::async_trait]
impl HomeserverConnector for SlowLogins {
    async fn ensure_user(&self, _localpart: &str) -> Result<(), HomeserverError> {
        Ok(())
    }

    async fn login(&self, localpart: &str) -> Result<Login, HomeserverError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = self.logins.fetch_add(1, Ordering::SeqCst);
        Ok(Login::Jwt { token: format!("{localpart}-{n}") })
    }
}

fn config() -> ExtConfig {
    let mut config = ExtConfig { server_name: "hs.test".into(), ..ExtConfig::default() };
    config.homeserver.jwt_secret = Secret::new("side-effects-secret-0123456789");
    config
}

async fn request(ext: &impl Api, phone: &str, secret: &str) -> (u16, serde_json::Value) {
    ext.post("/_tincan/client/v1/register/request", json!({"phone": phone, "client_secret": secret, "send_attempt": 1}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_verifies_with_the_right_code_mint_one_login() {
    let hs = Arc::new(SlowLogins::default());
    let ext = Local::start_with(config(), 1_700_000_000, Some(hs.clone())).await.unwrap();
    let phone = "+447911123700";
    let (s, b) = request(&ext, phone, "replay").await;
    assert_eq!(s, 200, "{b}");
    let code = ext.last_code(phone);
    let body = json!({"sid": b["sid"], "client_secret": "replay", "code": code});
    let answers =
        futures::future::join_all((0..4).map(|_| ext.post("/_tincan/client/v1/register/verify", body.clone()))).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert_eq!(hs.logins.load(Ordering::SeqCst), 1, "logins minted for 4 verifies of one session: {answers:?}");
    let (s, b) = ext.post("/_tincan/client/v1/register/verify", body).await;
    assert_eq!((s, &b["errcode"]), (400, &json!("M_NO_VALID_SESSION")), "a replay: {b}");
    assert_eq!(hs.logins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_session_that_cannot_be_stored_sends_no_sms() {
    let ext = Local::start(config(), 1_700_000_000).await.unwrap();
    // The database refuses new sessions (as a full disk or a lost primary would), after the extension started.
    let db = sqlx::SqlitePool::connect(&ext.app.config.database_url).await.unwrap();
    sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON code_sessions BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        .execute(&db)
        .await
        .unwrap();
    let (s, b) = request(&ext, "+447911123701", "nostore").await;
    assert_eq!(s, 500, "{b}");
    assert!(ext.sms().is_empty(), "an SMS went out for a session that was never stored: {:?}", ext.sms());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_smsc_fails_sign_ups_within_the_connect_timeout() {
    // Accepts TCP connections and never answers the bind.
    let smsc = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = smsc.local_addr().unwrap().port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    std::thread::spawn({
        let held = held.clone();
        move || {
            for conn in smsc.incoming().flatten() {
                held.lock().unwrap().push(conn);
            }
        }
    });
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"side-effects-secret-0123456789\"\n\
         [sms]\nbackend = \"smpp\"\nsmpp_address = \"127.0.0.1:{port}\"\nsmpp_system_id = \"tincan\"\n\
         smpp_connect_timeout_secs = 1\n"
    ))
    .await
    .unwrap();
    let started = Instant::now();
    let phones = ["+447911123702", "+447911123703", "+447911123704"];
    let answers = futures::future::join_all(phones.iter().map(|p| async {
        let r = tokio::time::timeout(Duration::from_secs(8), request(&ext, p, "silent")).await;
        (r, started.elapsed())
    }))
    .await;
    for (phone, (answer, took)) in phones.iter().zip(&answers) {
        let (s, b) =
            answer.as_ref().unwrap_or_else(|_| panic!("{phone}: no answer within 8 s\n{}", ext.guard.log_tail(30)));
        assert_eq!(*s, 502, "{phone}: {b}");
        assert!(*took < Duration::from_secs(8), "{phone} answered after {took:?}");
    }
    // Nothing was left behind for the unsent codes.
    let store = ext.store().await;
    let digest = tincan_homeserver_ext::code::digest("silent");
    for p in phones {
        let s = store.session_by_secret(&digest, p, tincan_homeserver_ext::store::Purpose::Register).await.unwrap();
        assert!(s.is_none(), "{p}: a session stayed for an SMS that was never sent");
    }
}

/// Issue 14 item 5, "a slow SMSC does not hold up every sign-up": while the backend holds one number's message
/// without answering, other numbers' `register/request`s are answered, and the held one fails with 504 (the
/// send's bound, `sms.send_timeout_secs`, here 2 s) and leaves no session behind. `hung` is the number the peer
/// holds, `sent` waits until the peer has it, and `delivered` lists the numbers the peer took.
async fn one_hung_send_fails_alone(
    ext: &Ext,
    hung: &str,
    sent: impl std::future::Future<Output = ()>,
    delivered: impl Fn() -> Vec<String>,
) {
    let others = ["+447911123721", "+447911123722", "+447911123723"];
    let started = Instant::now();
    let slow_done = std::sync::atomic::AtomicBool::new(false);
    let slow = async {
        let answer = tokio::time::timeout(Duration::from_secs(8), request(ext, hung, "slow")).await;
        slow_done.store(true, Ordering::SeqCst);
        (answer, started.elapsed())
    };
    let fast = async {
        tokio::time::timeout(Duration::from_secs(8), sent).await.expect("the hung number's send reached the peer");
        let mut answers = Vec::new();
        for p in others {
            let answer = request(ext, p, "fast").await;
            answers.push((p, answer, slow_done.load(Ordering::SeqCst)));
        }
        answers
    };
    let ((slow, took), answers) = tokio::join!(slow, fast);
    for (p, (s, b), slow_done) in answers {
        assert_eq!(s, 200, "{p}, while {hung}'s send hangs: {b}\n{}", ext.guard.log_tail(30));
        assert!(!slow_done, "{p} was answered only after the hung request ended");
    }
    let (s, b) = slow.unwrap_or_else(|_| panic!("{hung}: no answer within 8 s\n{}", ext.guard.log_tail(30)));
    assert_eq!((s, b["errcode"].as_str()), (504, Some("M_UNKNOWN")), "{hung}: {b}");
    assert!(took >= Duration::from_secs(2), "{hung} failed after {took:?}, before the bound");
    let mut delivered = delivered();
    delivered.sort();
    assert_eq!(delivered, others.map(|p| p.trim_start_matches('+').to_owned()), "the other numbers' codes went out");
    let store = ext.store().await;
    let digest = tincan_homeserver_ext::code::digest("slow");
    let s = store.session_by_secret(&digest, hung, tincan_homeserver_ext::store::Purpose::Register).await.unwrap();
    assert!(s.is_none(), "a session stayed for an SMS that was never sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_hangs_for_one_number_holds_up_no_other_sign_up() {
    use axum::{Json, Router, extract::State, routing::post};
    type Seen = Arc<(std::sync::Mutex<Vec<String>>, tokio::sync::Notify)>;
    const HUNG: &str = "+447911123720";
    async fn send(State(seen): State<Seen>, Json(body): Json<serde_json::Value>) -> &'static str {
        let to = body["to"].as_str().unwrap_or_default().to_owned();
        if to == HUNG {
            seen.1.notify_one();
            std::future::pending::<()>().await;
        }
        seen.0.lock().unwrap().push(to.trim_start_matches('+').to_owned());
        "{}"
    }
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route("/send", post(send)).with_state(seen.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"side-effects-secret-0123456789\"\n\
         [sms]\nbackend = \"webhook\"\nwebhook_url = \"http://127.0.0.1:{port}/send\"\nsend_timeout_secs = 2\n"
    ))
    .await
    .unwrap();
    one_hung_send_fails_alone(&ext, HUNG, seen.1.notified(), || seen.0.lock().unwrap().clone()).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smsc_that_never_acknowledges_one_message_holds_up_no_other_sign_up() {
    const HUNG: &str = "+447911123720";
    let smsc = crate::harness::Smsc::start_hanging(HUNG.trim_start_matches('+')).await.unwrap();
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"side-effects-secret-0123456789\"\n\
         [sms]\nbackend = \"smpp\"\nsmpp_address = \"127.0.0.1:{}\"\nsmpp_system_id = \"tincan\"\n\
         send_timeout_secs = 2\n",
        smsc.port
    ))
    .await
    .unwrap();
    let held = async {
        while !smsc.events().iter().any(|e| e["event"] == "held") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let delivered = || {
        smsc.events()
            .iter()
            .filter(|e| e["event"] == "submit_sm" && e["destination_addr"] != HUNG.trim_start_matches('+'))
            .map(|e| e["destination_addr"].as_str().unwrap().to_owned())
            .collect()
    };
    one_hung_send_fails_alone(&ext, HUNG, held, delivered).await;
}
