//! The Identity Service and sign-up request bodies, through the extension's real router (SQLite store, dev SMS
//! sink, an authenticated Identity Service token): the first byte picks the endpoint, the rest is the body. Any
//! body gets an answer below 500, and every refusal is a JSON object with a Matrix `errcode` — never a panic,
//! never an internal error. Rate limits are set out of reach so the bodies, not the budgets, are exercised.
//!
//! There is no homeserver (`homeserver_url` is a closed port): the endpoints that check the caller's access
//! token with it answer 502 once the body is one they accept, which is always a JSON object. A body that is not
//! is refused before the homeserver is asked, so it never gets that 502.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tincan_homeserver_ext::app::App;
use tincan_homeserver_ext::config::{BucketConfig, ExtConfig};
use tincan_homeserver_ext::store::IsToken;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-is-token";

/// The endpoints that ask the homeserver who the caller is (`whoami`).
const ASK_THE_HOMESERVER: &[&str] = &["/_tincan/client/v1/unregister", "/_tincan/client/v1/keys/master"];

/// (method, path, authenticated) per first byte.
const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/_matrix/identity/v2/lookup"),
    ("POST", "/_matrix/identity/v2/3pid/bind"),
    ("POST", "/_matrix/identity/v2/3pid/unbind"),
    ("POST", "/_matrix/identity/v2/validate/msisdn/requestToken"),
    ("POST", "/_matrix/identity/api/v1/validate/msisdn/requestToken"),
    ("POST", "/_matrix/identity/v2/validate/msisdn/submitToken"),
    ("POST", "/_matrix/identity/api/v1/validate/msisdn/submitToken"),
    ("POST", "/_matrix/identity/v2/terms"),
    ("POST", "/_matrix/identity/v2/account/logout"),
    ("POST", "/_tincan/client/v1/register/request"),
    ("POST", "/_tincan/client/v1/register/verify"),
    ("POST", "/_tincan/client/v1/unregister"),
    ("PUT", "/_tincan/client/v1/keys/master"),
];

struct Target {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ExtConfig::default();
    config.database_url = format!("sqlite://{}?mode=rwc", dir.path().join("ext.db").display());
    config.homeserver_url = "http://127.0.0.1:9".into();
    config.codes.secret = tincan_common::Secret::new("fuzz-only code secret, not a real one");
    config.limits.allowed_countries = vec!["*".into()];
    config.identity.lookup_allow_none = true;
    let unlimited = BucketConfig { burst: u32::MAX, refill: u32::MAX, period_secs: 1 };
    let l = &mut config.limits;
    for b in [
        &mut l.per_number,
        &mut l.per_prefix,
        &mut l.per_ip,
        &mut l.per_country,
        &mut l.global,
        &mut l.verify_per_ip,
        &mut l.verify_per_number,
        &mut l.lookup_per_user,
        &mut l.lookup_per_ip,
        &mut l.lookup_per_homeserver,
    ] {
        *b = unlimited;
    }
    let clock: Arc<dyn tincan_common::Clock> = Arc::new(tincan_common::SystemClock);
    let router = rt.block_on(async {
        let store = tincan_homeserver_ext::store::open(&config.database_url).await.unwrap();
        let now = clock.unix_seconds() as i64;
        let owner = IsToken { user_id: "@fuzz:localhost".into(), server_name: "localhost".into() };
        store
            .add_token(&tincan_homeserver_ext::code::digest(TOKEN), &owner, now, now + 10 * 365 * 86_400)
            .await
            .unwrap();
        let sms = Arc::new(tincan_homeserver_ext::sms::DevSink::new("/dev/null"));
        let homeserver = tincan_homeserver_ext::homeserver::from_config(&config, clock.clone());
        let rng = rand::SeedableRng::seed_from_u64(7);
        let app = Arc::new(App::new(config, store, sms, homeserver, clock, rng));
        tincan_homeserver_ext::api::router(app)
    });
    Target { rt, router, _dir: dir }
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let (method, path) = ENDPOINTS[usize::from(pick) % ENDPOINTS.len()];
    let t = &*TARGET;
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_vec()))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
    let (status, bytes) = t.rt.block_on(async {
        let res = t.router.clone().oneshot(req).await.unwrap();
        (res.status(), res.into_body().collect().await.unwrap().to_bytes())
    });
    let homeserver_asked = status.as_u16() == 502
        && ASK_THE_HOMESERVER.contains(&path)
        && serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object());
    assert!(status.as_u16() < 500 || homeserver_asked, "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
    if status.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: {status} with a body that is not JSON ({e}): {bytes:?}"));
        assert!(v["errcode"].is_string(), "{path}: {status} without errcode: {v}");
    }
});
