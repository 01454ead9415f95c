//! `POST /_tincan/client/v1/unregister`: the caller (homeserver access token) gives up their numbers: the
//! directory records are removed, the Identity Service bindings and the number → account mappings deleted.
//! The Matrix account itself stays; a later sign-up with the number creates a new one.
//!
//! The endpoint takes no parameters: the body is empty or a JSON object (`{}`, its fields ignored). Any other
//! body is refused (`M_NOT_JSON`, `M_BAD_JSON`) before the token goes to the homeserver, so a garbled request
//! releases nothing and, with the homeserver unreachable, is still a 400 rather than a 502.

use super::extract::{bearer, no_parameters};
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
    no_parameters(&body)?;
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
