//! `POST /_tincan/client/v1/unregister`: the caller (homeserver access token) gives up their numbers: the
//! directory records are removed, the Identity Service bindings and the number → account mappings deleted.
//! The Matrix account itself stays; a later sign-up with the number creates a new one.
//!
//! The endpoint takes no parameters: the body is empty or a JSON object (`{}`, its fields ignored). Any other
//! body is refused (`M_NOT_JSON`, `M_BAD_JSON`) before the token goes to the homeserver, so a garbled request
//! releases nothing and, with the homeserver unreachable, is still a 400 rather than a 502.

use super::extract::bearer;
use crate::app::App;
use crate::directory::DirectoryError;
use crate::error::ApiError;
use crate::homeserver::whoami;
use crate::number::E164;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Response body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// The numbers released.
    pub numbers: Vec<String>,
}

/// Handler.
pub async fn handler(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Response>, ApiError> {
    let token = bearer(&headers).ok_or(ApiError::MissingToken)?;
    check_body(&body)?;
    let user_id = whoami(&app.http, &app.config.homeserver_url, token).await?.ok_or(ApiError::UnknownToken)?;
    let mut numbers = Vec::new();
    for account in app.store.accounts_by_user(&user_id).await? {
        let number = E164::parse(&account.number)?;
        if let Some(dir) = &app.directory {
            // Already gone from the directory is fine; anything else stops before local state changes.
            match dir.remove(&number).await {
                Ok(()) | Err(DirectoryError::Refused(404)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        app.store.unbind(&account.number, &user_id).await?;
        app.store.delete_account(&account.number).await?;
        tracing::info!(number = %number.redacted(), %user_id, "number released");
        numbers.push(account.number);
    }
    Ok(axum::Json(Response { numbers }))
}

/// The body must be empty (whitespace) or a JSON object.
fn check_body(body: &[u8]) -> Result<(), ApiError> {
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
    fn the_body_is_empty_or_a_json_object() {
        let ok: [&[u8]; 4] = [b"", b" \n", b"{}", br#"{"unknown": [1]}"#];
        for ok in ok {
            assert!(check_body(ok).is_ok(), "{}", String::from_utf8_lossy(ok));
        }
        // The fuzz target's find, without its first byte (which picks the endpoint).
        let found = &include_bytes!("../../fuzz/regressions/is_request-unregister-502")[1..];
        let not_json: [&[u8]; 5] = [found, b"{", b"nope", b"{}x", b"\xff"];
        for not_json in not_json {
            assert!(matches!(check_body(not_json), Err(ApiError::NotJson)), "{}", String::from_utf8_lossy(not_json));
        }
        let bad: [&[u8]; 4] = [b"[]", b"null", b"1", b"\"x\""];
        for bad in bad {
            assert!(matches!(check_body(bad), Err(ApiError::BadJson(_))), "{}", String::from_utf8_lossy(bad));
        }
    }
}
