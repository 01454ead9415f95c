//! Extractors: JSON bodies whose rejections are Matrix errors, ruma's request types (and responses), and the
//! client IP.

use crate::app::App;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `axum::Json` with `M_BAD_JSON`/`M_NOT_JSON` rejections in the Matrix error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| ApiError::BadJson(e.body_text()))?;
        utf8(&bytes)?;
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Json::<Object<T>>::from_request(req, state).await {
            Ok(axum::Json(Object(v))) => Ok(Json(v)),
            Err(e) => Err(ApiError::BadJson(e.body_text())),
        }
    }
}

/// JSON text is UTF-8 (RFC 8259 §8.1). serde_json checks it in the strings it reads, not in the values it skips
/// (an unknown field's string), so a body with invalid UTF-8 there was taken as JSON: `M_NOT_JSON` instead.
fn utf8(body: &[u8]) -> Result<(), ApiError> {
    std::str::from_utf8(body).map(drop).map_err(|_| ApiError::NotJson)
}

/// A body that must be a JSON object, as every Matrix request body is: serde would also read a struct from an
/// array of its fields in order (`["+447700900123", "secret", 1]`), which no client sends and the endpoints'
/// documentation does not allow.
struct Object<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData)).map(Object)
    }
}

/// One of ruma's request or response types (Identity Service, client API), so handlers take and give the spec's
/// shapes instead of hand-built JSON. As an extractor it reads the body (up to [`MAX_RUMA_BODY`]), the query and
/// the route's path parameters; a request that does not parse is `M_BAD_JSON` like [`Json`]'s. As a response
/// it is sent as the spec's JSON.
#[derive(Debug, Clone)]
pub struct Ruma<R>(pub R);

/// The largest body a [`Ruma`] request reads (a `lookup` of 10,000 hashed addresses is about 500 KiB).
pub const MAX_RUMA_BODY: usize = 2 * 1024 * 1024;

impl<S: Send + Sync, R: ruma::api::IncomingRequest> FromRequest<S> for Ruma<R> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let path_args: Vec<String> = match axum::extract::RawPathParams::from_request_parts(&mut parts, state).await {
            Ok(params) => params.iter().map(|(_, v)| v.to_owned()).collect(),
            Err(_) => Vec::new(),
        };
        let body = axum::body::to_bytes(body, MAX_RUMA_BODY)
            .await
            .map_err(|e| ApiError::BadJson(format!("the body could not be read: {e}")))?;
        utf8(&body)?;
        R::try_from_http_request(axum::http::Request::from_parts(parts, body), &path_args)
            .map(Ruma)
            .map_err(|e| ApiError::BadJson(e.to_string()))
    }
}

impl<R: ruma::api::OutgoingResponse> axum::response::IntoResponse for Ruma<R> {
    fn into_response(self) -> axum::response::Response {
        match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(resp) => resp.map(axum::body::Body::from),
            Err(e) => {
                tracing::error!(error = %e, "a response did not serialize");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// The client's IP: the TCP peer, or, when the peer is one of `limits.trusted_proxies`, the rightmost
/// `X-Forwarded-For` address that is not a trusted proxy (see [`crate::net::client_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
            return Ok(ClientIp(None));
        };
        let forwarded: Vec<&str> =
            parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        Ok(ClientIp(Some(app.limiter.client_ip(peer, &forwarded))))
    }
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &axum::http::HeaderMap) -> Option<&str> {
    parts.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The body of an endpoint that takes no parameters (`unregister`, `account/close`): empty (whitespace) or a JSON
/// object, its fields ignored. Anything else is refused before the endpoint acts or asks the homeserver, so a
/// garbled request changes nothing.
pub fn no_parameters(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(ApiError::BadJson("the body must be a JSON object".into())),
        Err(_) => Err(ApiError::NotJson),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_without_parameters_is_empty_or_a_json_object() {
        let ok: [&[u8]; 4] = [b"", b" \n", b"{}", br#"{"unknown": [1]}"#];
        for ok in ok {
            assert!(no_parameters(ok).is_ok(), "{}", String::from_utf8_lossy(ok));
        }
        // The fuzz target's find, without its first byte (which picks the endpoint).
        let found = &include_bytes!("../../fuzz/regressions/is_request-unregister-502")[1..];
        let not_json: [&[u8]; 5] = [found, b"{", b"nope", b"{}x", b"\xff"];
        for not_json in not_json {
            assert!(matches!(no_parameters(not_json), Err(ApiError::NotJson)), "{}", String::from_utf8_lossy(not_json));
        }
        let bad: [&[u8]; 4] = [b"[]", b"null", b"1", b"\"x\""];
        for bad in bad {
            assert!(matches!(no_parameters(bad), Err(ApiError::BadJson(_))), "{}", String::from_utf8_lossy(bad));
        }
    }
}
