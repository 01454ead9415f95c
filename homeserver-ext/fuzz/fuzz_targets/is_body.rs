//! The Identity Service and sign-up request bodies through `api::bodies::check`: each endpoint's extractor and
//! the checks its handler makes of the body alone, without the router, the token check and the database that
//! `is_request` runs every input through (see the README beside `fuzz_targets/`). The first byte picks the
//! endpoint as in `is_request`, so the two share seeds and corpora; the rest is the body.
//!
//! Any body gives a verdict, never a panic: an accepted body is JSON (for `unregister` also an empty one), and a
//! refusal is a 4xx whose body is a JSON object with a Matrix `errcode`. Nothing is kept from one input to the
//! next (the config and the runtime are only read), so a verdict depends on its input alone.
#![no_main]

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tincan_homeserver_ext::api::bodies::check;
use tincan_homeserver_ext::config::ExtConfig;

/// Takes an empty body as well as a JSON object.
const UNREGISTER: &str = "/_tincan/client/v1/unregister";

/// Do not read their body.
const BODILESS: &[&str] = &["/_matrix/identity/v2/terms", "/_matrix/identity/v2/account/logout"];

/// The path per first byte: `is_request`'s table, in its order (the method is the route's).
const ENDPOINTS: &[&str] = &[
    "/_matrix/identity/v2/lookup",
    "/_matrix/identity/v2/3pid/bind",
    "/_matrix/identity/v2/3pid/unbind",
    "/_matrix/identity/v2/validate/msisdn/requestToken",
    "/_matrix/identity/api/v1/validate/msisdn/requestToken",
    "/_matrix/identity/v2/validate/msisdn/submitToken",
    "/_matrix/identity/api/v1/validate/msisdn/submitToken",
    "/_matrix/identity/v2/terms",
    "/_matrix/identity/v2/account/logout",
    "/_tincan/client/v1/register/request",
    "/_tincan/client/v1/register/verify",
    UNREGISTER,
    "/_tincan/client/v1/keys/master",
];

/// `is_request`'s policy: every country, `algorithm: none` allowed, so the checks past them are reached.
static CONFIG: LazyLock<ExtConfig> = LazyLock::new(|| {
    let mut config = ExtConfig::default();
    config.limits.allowed_countries = vec!["*".into()];
    config.identity.lookup_allow_none = true;
    config
});

/// The extractors are async; nothing they await ever waits.
static RT: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().unwrap());

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let path = ENDPOINTS[usize::from(pick) % ENDPOINTS.len()];
    let verdict = RT.block_on(check(&CONFIG, path, Bytes::copy_from_slice(body))).expect("a known endpoint");
    let refusal = match verdict {
        Ok(()) if BODILESS.contains(&path) => return,
        Ok(()) if path == UNREGISTER => {
            let object = serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object());
            assert!(object || body.iter().all(u8::is_ascii_whitespace), "{path}: accepted {body:?}");
            return;
        }
        Ok(()) => {
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok(), "{path}: accepted {body:?}");
            return;
        }
        Err(e) => e,
    };
    let text = refusal.to_string();
    let res = refusal.into_response();
    let status = res.status();
    assert!(status.is_client_error(), "{path}: {status} ({text})");
    let bytes = RT.block_on(res.into_body().collect()).unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: {status} with a body that is not JSON ({e}): {bytes:?}"));
    assert!(v["errcode"].is_string(), "{path}: {status} without errcode: {v}");
});
