//! `GET /v1/openapi.json` is generated from the code, describes every endpoint, and passes an independent
//! validator (`openapi-spec-validator` from PyPI, in the test venv).

use std::process::Command;

use serde_json::Value;

use crate::harness::Gateway;

#[tokio::test]
async fn the_openapi_document_covers_the_api_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]).await;
    let text = reqwest::get(format!("{}/v1/openapi.json", gw.base())).await.unwrap().text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    for p in [
        "/v1/quote",
        "/v1/holds",
        "/v1/holds/{id}",
        "/v1/holds/{id}/extend",
        "/v1/holds/{id}/settle",
        "/v1/holds/{id}/release",
        "/v1/accounts",
        "/v1/accounts/{id}",
        "/v1/accounts/{id}/adjustments",
        "/v1/accounts/{id}/limits",
        "/v1/accounts/{id}/plan",
        "/v1/accounts/{id}/history",
        "/v1/accounts/{id}/cdrs",
        "/v1/accounts/{id}/calls",
        "/v1/auth/openid",
        "/v1/me",
        "/v1/me/history",
        "/v1/me/cdrs",
        "/v1/me/calls",
        "/v1/me/vouchers",
        "/v1/vouchers",
        "/v1/rates/{number}",
        "/v1/routes/{number}",
        "/v1/plans/{plan}/rates",
        "/v1/payments/stripe",
        "/v1/payments/generic",
    ] {
        assert!(paths.contains(&p), "{p} is missing from {paths:?}");
    }
    let amount = &doc["components"]["schemas"]["Amount"];
    assert_eq!(amount["type"], "string", "amounts are strings: {amount}");

    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let validator = tincan_testkit::synapse::venv().join("bin/openapi-spec-validator");
    assert!(validator.exists(), "{} is missing: dev/test installs it (dev/lib.sh ensure_venv)", validator.display());
    let out = Command::new(validator).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
