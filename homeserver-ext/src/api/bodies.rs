//! The request bodies of the sign-up and Identity Service `POST`/`PUT` endpoints, read as their handlers read
//! them before they touch any state: the same extractor ([`Json`] or [`Ruma`] with the handler's type) and the
//! same checks of the body alone, in the handler's order. It is what the `is_body` fuzz target
//! (`homeserver-ext/fuzz`) runs: the bodies' parsing without the router, the token check and the database,
//! which let the end-to-end target `is_request` run only a few hundred inputs a second.

use super::{Json, Ruma, extract, keys_master, register_request, register_verify};
use crate::config::ExtConfig;
use crate::error::ApiError;
use crate::identity::{lookup, threepid, validate};
use crate::number::E164;
use crate::sessions::{check_policy, check_start_request};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};
use ruma::api::identity_service::association::msisdn::create_msisdn_validation_session;
use ruma::api::identity_service::association::{bind_3pid, unbind_3pid};
use ruma::api::identity_service::lookup::{IdentifierHashingAlgorithm, lookup_3pid};

/// Reads `body` as the endpoint at `path` does (with `config`'s policy: allowed countries, premium numbers,
/// `lookup_allow_none`) up to its first use of state — the access token, a session, the pepper, the
/// homeserver. `Some(Ok(()))`: the handler would go on; `Some(Err(_))`: what it answers; `None`: `path` is not
/// one of these endpoints. `POST …/terms` and `…/account/logout` do not read their body: always `Ok`.
pub async fn check(config: &ExtConfig, path: &str, body: Bytes) -> Option<Result<(), ApiError>> {
    let method = if path == "/_tincan/client/v1/keys/master" { Method::PUT } else { Method::POST };
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .ok()?;
    Some(match path {
        "/_matrix/identity/v2/lookup" => lookup_body(config, req).await,
        "/_matrix/identity/v2/3pid/bind" => Ruma::<bind_3pid::v2::Request>::from_request(req, &()).await.map(drop),
        "/_matrix/identity/v2/3pid/unbind" => unbind_body(req).await,
        "/_matrix/identity/v2/validate/msisdn/requestToken"
        | "/_matrix/identity/api/v1/validate/msisdn/requestToken" => request_token_body(config, req).await,
        "/_matrix/identity/v2/validate/msisdn/submitToken" | "/_matrix/identity/api/v1/validate/msisdn/submitToken" => {
            Json::<validate::SubmitToken>::from_request(req, &()).await.map(drop)
        }
        "/_matrix/identity/v2/terms" | "/_matrix/identity/v2/account/logout" => Ok(()),
        "/_tincan/client/v1/register/request" => register_request_body(config, req).await,
        "/_tincan/client/v1/register/verify" => {
            Json::<register_verify::Request>::from_request(req, &()).await.map(drop)
        }
        "/_tincan/client/v1/unregister" => extract::no_parameters(&body),
        "/_tincan/client/v1/keys/master" => keys_master_body(req).await,
        _ => return None,
    })
}

async fn lookup_body(config: &ExtConfig, req: Request) -> Result<(), ApiError> {
    let Ruma(req) = Ruma::<lookup_3pid::v2::Request>::from_request(req, &()).await?;
    lookup::check_request(&req, config.identity.lookup_allow_none)?;
    if matches!(req.algorithm, IdentifierHashingAlgorithm::None) {
        lookup::plain_numbers(&req.addresses);
    }
    Ok(())
}

async fn unbind_body(req: Request) -> Result<(), ApiError> {
    let Ruma(req) = Ruma::<unbind_3pid::v2::Request>::from_request(req, &()).await?;
    threepid::unbound_number(&req).map(drop)
}

async fn request_token_body(config: &ExtConfig, req: Request) -> Result<(), ApiError> {
    let Ruma(req) = Ruma::<create_msisdn_validation_session::v2::Request>::from_request(req, &()).await?;
    let number = E164::parse_in(&req.phone_number, &req.country)?;
    check_start_request(req.client_secret.as_str(), req.send_attempt.into())?;
    check_policy(&config.limits, &number)
}

async fn register_request_body(config: &ExtConfig, req: Request) -> Result<(), ApiError> {
    let Json(req) = Json::<register_request::Request>::from_request(req, &()).await?;
    let number = E164::parse(&req.phone)?;
    check_start_request(&req.client_secret, req.send_attempt)?;
    check_policy(&config.limits, &number)
}

async fn keys_master_body(req: Request) -> Result<(), ApiError> {
    let Json(req) = Json::<keys_master::Request>::from_request(req, &()).await?;
    keys_master::master_key(&req).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_body`'s policy: every country, `algorithm: none` allowed.
    fn config() -> ExtConfig {
        let mut config = ExtConfig::default();
        config.limits.allowed_countries = vec!["*".into()];
        config.identity.lookup_allow_none = true;
        config
    }

    async fn verdict(path: &str, body: &str) -> Result<(), ApiError> {
        check(&config(), path, Bytes::from(body.to_owned())).await.expect("a known endpoint")
    }

    #[tokio::test]
    async fn the_fuzz_seeds_bodies_are_read_as_their_handlers_read_them() {
        let seeds: [&[u8]; 6] = [
            include_bytes!("../../fuzz/seeds/is_body/lookup_none"),
            include_bytes!("../../fuzz/seeds/is_body/unbind"),
            include_bytes!("../../fuzz/seeds/is_body/request_token"),
            include_bytes!("../../fuzz/seeds/is_body/register_request_full"),
            include_bytes!("../../fuzz/seeds/is_body/register_verify"),
            include_bytes!("../../fuzz/seeds/is_body/keys_master"),
        ];
        // The first byte picks the endpoint, as in the fuzz targets' table.
        let paths = [
            "/_matrix/identity/v2/lookup",
            "/_matrix/identity/v2/3pid/unbind",
            "/_matrix/identity/v2/validate/msisdn/requestToken",
            "/_tincan/client/v1/register/request",
            "/_tincan/client/v1/register/verify",
            "/_tincan/client/v1/keys/master",
        ];
        for (seed, path) in seeds.into_iter().zip(paths) {
            let body = std::str::from_utf8(&seed[1..]).unwrap();
            assert!(verdict(path, body).await.is_ok(), "{path} {body}");
        }
    }

    #[tokio::test]
    async fn refusals_are_the_handlers() {
        let lookup = "/_matrix/identity/v2/lookup";
        assert!(matches!(verdict(lookup, "{").await, Err(ApiError::BadJson(_))));
        let md5 = r#"{"algorithm":"md5","pepper":"p","addresses":[]}"#;
        assert!(matches!(verdict(lookup, md5).await, Err(ApiError::InvalidAlgorithm)));
        let mut none_refused = config();
        none_refused.identity.lookup_allow_none = false;
        let none = Bytes::from_static(br#"{"algorithm":"none","pepper":"p","addresses":[]}"#);
        assert!(matches!(check(&none_refused, lookup, none).await, Some(Err(ApiError::InvalidAlgorithm))));
        let unbind = r#"{"mxid":"@a:localhost","threepid":{"medium":"email","address":"a@b.c"}}"#;
        let refused = verdict("/_matrix/identity/v2/3pid/unbind", unbind).await;
        assert!(matches!(refused, Err(ApiError::InvalidParam("threepid.medium"))));
        let register = "/_tincan/client/v1/register/request";
        let secret = r#"{"phone":"+447919876543","client_secret":"no spaces","send_attempt":1}"#;
        assert!(matches!(verdict(register, secret).await, Err(ApiError::InvalidParam("client_secret"))));
        let attempt = r#"{"phone":"+447919876543","client_secret":"s","send_attempt":18446744073709551615}"#;
        assert!(matches!(verdict(register, attempt).await, Err(ApiError::InvalidParam("send_attempt"))));
        let number = r#"{"phone":"+4470","client_secret":"s","send_attempt":1}"#;
        assert!(matches!(verdict(register, number).await, Err(ApiError::InvalidNumber(_))));
        let unregister = "/_tincan/client/v1/unregister";
        assert!(matches!(verdict(unregister, "[]").await, Err(ApiError::BadJson(_))));
        assert!(verdict(unregister, " ").await.is_ok());
        let key = r#"{"ed25519":"AAAA"}"#;
        assert!(matches!(verdict("/_tincan/client/v1/keys/master", key).await, Err(ApiError::InvalidParam("ed25519"))));
        assert!(check(&config(), "/_matrix/identity/v2/hash_details", Bytes::new()).await.is_none());
    }

    /// Invalid UTF-8 is not JSON, also where serde_json skips it (an unknown field's string): the `is_body`
    /// fuzz target's find on requestToken (`fuzz/regressions/is_body-request_token-not_utf8`), and the same in
    /// a body read by [`Json`] (register/verify).
    #[tokio::test]
    async fn a_body_with_invalid_utf8_is_not_json_even_in_an_unknown_field() {
        let found = &include_bytes!("../../fuzz/regressions/is_body-request_token-not_utf8")[1..];
        let verify = b"{\"sid\":\"1\",\"client_secret\":\"s3cr3t\",\"code\":\"123456\",\"x\":\"\xea\"}";
        for (path, body) in [
            ("/_matrix/identity/v2/validate/msisdn/requestToken", found),
            ("/_tincan/client/v1/register/verify", &verify[..]),
        ] {
            let verdict = check(&config(), path, Bytes::copy_from_slice(body)).await.expect("a known endpoint");
            assert!(matches!(verdict, Err(ApiError::NotJson)), "{path}: {verdict:?}");
        }
    }

    /// A struct's fields as an array, in order, are not its body: serde reads them, the endpoints take objects.
    #[tokio::test]
    async fn a_body_is_a_json_object_not_an_array_of_its_fields() {
        // The seeds' values (a valid key, a well-formed verification), in the structs' field order.
        let seed: serde_json::Value =
            serde_json::from_slice(&include_bytes!("../../fuzz/seeds/is_body/keys_master")[1..]).unwrap();
        let key = format!("[{}]", seed["ed25519"]);
        let verify = r#"["1", "s3cr3t", "123456", "1234"]"#;
        for (path, body) in
            [("/_tincan/client/v1/keys/master", key.as_str()), ("/_tincan/client/v1/register/verify", verify)]
        {
            let e = verdict(path, body).await.expect_err(path);
            assert!(matches!(&e, ApiError::BadJson(why) if why.contains("a JSON object")), "{path}: {e:?}");
        }
    }
}
