//! `PUT /_matrix/app/v1/transactions/{txnId}` and the user/room queries the homeserver sends an appservice.
//!
//! The extension only needs the appservice for account creation; events are acknowledged and dropped.

use super::extract::bearer;
use crate::app::App;
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Arc;

fn authorize(app: &App, headers: &HeaderMap, query: &HashMap<String, String>) -> Result<(), ApiError> {
    let given = bearer(headers).or(query.get("access_token").map(String::as_str)).ok_or(ApiError::MissingToken)?;
    if !tincan_common::appservice::hs_token_matches(given, app.config.homeserver.hs_token.expose()) {
        return Err(ApiError::Forbidden("wrong hs_token"));
    }
    Ok(())
}

/// Acknowledges a transaction (idempotent by construction: nothing is kept).
pub async fn transaction(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    authorize(&app, &headers, &query)?;
    Ok(axum::Json(serde_json::json!({})))
}

/// Users and rooms are never created on demand.
pub async fn query(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    authorize(&app, &headers, &query)?;
    Err(ApiError::NotFound)
}
