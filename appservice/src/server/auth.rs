//! The `hs_token` check in front of every `/_matrix/app` route.

use super::ApiError;
use crate::BridgeHandle;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use tincan_common::appservice::hs_token_matches;

/// Lets the request through only with the right `hs_token`.
pub(crate) async fn require_hs_token(
    State(bridge): State<BridgeHandle>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = match header {
        Some(h) => h.strip_prefix("Bearer ").map(str::trim),
        // Legacy homeservers send `?access_token=` instead.
        None => request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("access_token=")).map(|t| t.trim())),
    };
    let Some(token) = token else {
        bridge.0.metrics.inc(&bridge.0.metrics.auth_failures);
        return Err(ApiError::MissingToken);
    };
    if !hs_token_matches(token, &bridge.0.hs_token) {
        bridge.0.metrics.inc(&bridge.0.metrics.auth_failures);
        return Err(ApiError::Forbidden);
    }
    Ok(next.run(request).await)
}
