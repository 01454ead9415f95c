//! Registration lock through the client (issue #22): the owner sets a PIN; a SIM-swap attacker, who receives the
//! number's SMS code on a device of their own, gets nothing with the code alone or with a wrong PIN (no session,
//! nothing signed in); the owner on a new device gets in with the code and the PIN, as the same account. Against
//! a real `tincan-ext` (with `registration_lock.secret`) beside a real Synapse, through the client core's
//! `register` / `verify` / `verify_with_pin`. The lapse (the code alone works again after a week without an active
//! device) needs the extension's clock moved: `homeserver-ext` tests `registration_lock`.
//!
//! Skipped without the `tincan-ext` and `tincan-directory` binaries (see [`tincan_testkit::federation`]).

use crate::federation::{config, sign_up};
use tincan_client_core::TincanClient;
use tincan_testkit::federation::Federation;

const OWNER: &str = "+442079460501";
const PIN: &str = "731904";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_swap_attacker_with_the_code_and_no_pin_gets_nothing_and_the_owner_with_the_pin_gets_in()
-> anyhow::Result<()> {
    let settings =
        "[registration_lock]\nsecret = \"test-only-registration-lock-secret-0123456789\"\nslowdown_secs = 1\n";
    let Some(fed) = Federation::builder(&[("a", &["+44"])]).ext_settings("a", settings).start().await? else {
        return Ok(());
    };
    let p = fed.provider("a");
    let (d_owner, d_attacker, d_new) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);

    // The owner signs up and sets a PIN.
    let (owner, signed) = sign_up(&fed, "a", d_owner.path(), OWNER).await?;
    assert!(!owner.registration_lock().await?.enabled);
    owner.set_registration_lock(PIN).await?;
    let lock = owner.registration_lock().await?;
    assert!(lock.enabled && lock.lapses_in_ms.is_some_and(|ms| ms > 0), "{lock:?}");

    // The attacker has the number's SMS: the code alone is refused, and so is a wrong PIN; nothing signed in.
    let mut attacker = TincanClient::open(config(&fed, p, d_attacker.path())).await?;
    attacker.register(OWNER).await?;
    let code = p.ext.code(OWNER)?;
    let refused = attacker.verify(&code).await.expect_err("the code alone signs in to a locked account");
    assert!(refused.needs_pin() && refused.code() == "registration_locked", "{refused:?}");
    let wrong = attacker.verify_with_pin(&code, Some("000000")).await.expect_err("a wrong PIN signs in");
    assert_eq!(wrong.code(), "wrong_pin", "{wrong:?}");
    assert!(attacker.user_id().is_none(), "the attacker has a session");

    // The owner on a new device: the code asks for the PIN; with it (after the wrong PIN's pause), in, as the
    // same account.
    let mut owner2 = TincanClient::open(config(&fed, p, d_new.path())).await?;
    owner2.register(OWNER).await?;
    let code = p.ext.code(OWNER)?;
    assert!(owner2.verify(&code).await.expect_err("no PIN").needs_pin());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let back = owner2.verify_with_pin(&code, Some(PIN)).await?;
    assert_eq!(back.user_id, signed.user_id);
    assert_eq!(owner2.user_id().map(|u| u.to_string()), Some(signed.user_id.clone()));
    assert!(owner2.registration_lock().await?.enabled, "the lock stays on");

    // The PIN is nowhere in the extension's log.
    assert!(!p.ext.log_tail(100_000).contains(PIN), "the PIN was logged");
    Ok(())
}

/// A tap in front of the extension: passes every request through and counts the activity reports the extension
/// accepted (`GET /_tincan/client/v1/registration_lock`, 200). Stopped on drop.
struct Tap {
    url: String,
    reports: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct TapState {
    upstream: String,
    http: reqwest::Client,
    reports: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Tap {
    async fn start(upstream: &str) -> anyhow::Result<Tap> {
        let reports = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let state = TapState {
            upstream: upstream.trim_end_matches('/').into(),
            http: reqwest::Client::new(),
            reports: reports.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new().fallback(tap_pass).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Tap { url, reports, task })
    }

    fn reports(&self) -> usize {
        self.reports.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn tap_pass(
    axum::extract::State(t): axum::extract::State<TapState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(m) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let mut req = t.http.request(m, format!("{}{path}", t.upstream));
    for name in ["authorization", "content-type", "accept"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.as_bytes());
        }
    }
    let Ok(r) = req.body(body).send().await else { return axum::http::StatusCode::BAD_GATEWAY.into_response() };
    let status = axum::http::StatusCode::from_u16(r.status().as_u16()).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    if method == axum::http::Method::GET && uri.path() == "/_tincan/client/v1/registration_lock" && status.is_success()
    {
        t.reports.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let content_type = content_type.to_owned();
    let bytes = r.bytes().await.unwrap_or_default();
    (status, [("content-type", content_type)], bytes).into_response()
}

/// A long-running app keeps its account's registration lock: while a session is open the client core reports
/// this device's activity to the extension at open and then every `activity_report_every` (a day by default;
/// half a second here), not only once; the reports end with the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_session_reports_activity_on_a_timer_until_the_client_closes() -> anyhow::Result<()> {
    let settings = "[registration_lock]\nsecret = \"test-only-registration-lock-secret-0123456789\"\n";
    let Some(fed) = Federation::builder(&[("a", &["+44"])]).ext_settings("a", settings).start().await? else {
        return Ok(());
    };
    let p = fed.provider("a");
    let dir = tempfile::tempdir()?;
    let (owner, _) = sign_up(&fed, "a", dir.path(), OWNER).await?;
    owner.set_registration_lock(PIN).await?;
    drop(owner);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // The app starts again on its saved session, its extension behind the tap, and stays open.
    let tap = Tap::start(&p.ext.url).await?;
    let mut c = config(&fed, p, dir.path());
    c.ext_url = Some(tap.url.parse()?);
    c.activity_report_every = std::time::Duration::from_millis(500);
    let app = TincanClient::open(c).await?;
    assert!(app.user_id().is_some(), "the session was not restored");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tap.reports() < 4 {
        assert!(std::time::Instant::now() < deadline, "{} activity reports in 30 s", tap.reports());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Closed: no more reports (one may have been under way).
    drop(app);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let at_close = tap.reports();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(tap.reports(), at_close, "reports went on after the client was dropped");
    Ok(())
}
