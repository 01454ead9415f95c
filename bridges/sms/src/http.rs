//! `GET /healthz`, `GET /metrics`, the image links `GET /m/<token>`, the MMS carrier's status callbacks
//! `POST /mms/status` and its incoming-message webhook `POST /mms/inbound` of the SMS side, on `sms.listen`.
//!
//! `/healthz` answers 200 while at least one SMSC is bound and 503 otherwise, with each link's state as JSON;
//! `/metrics` is the Prometheus text exposition ([`crate::metrics`]).

use crate::bridge::{MmsCallbackError, SmsBridge};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

/// The router.
pub fn router(bridge: SmsBridge) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/m/{token}", get(image))
        .route("/mms/status", axum::routing::post(mms_status))
        .route("/mms/inbound", axum::routing::post(mms_inbound))
        .with_state(bridge)
}

/// A linked image (`sms.mms.images_as_links`) with its stored type (image types only, else
/// `application/octet-stream`) and `nosniff`, so that it is never rendered as a page.
async fn image(State(bridge): State<SmsBridge>, Path(token): Path<String>) -> axum::response::Response {
    match bridge.linked_image(&token) {
        Some((mimetype, data)) => (
            [
                (header::CONTENT_TYPE, mimetype),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
            ],
            data,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The MMS carrier's status callback: 204 once shown (or nothing to show), 403 for a bad signature, 404
/// without MMS, 400 for a signed callback about no message of ours, 503 when the core could not take it (the
/// carrier calls again).
async fn mms_status(
    State(bridge): State<SmsBridge>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match bridge.mms_status(query.as_deref().unwrap_or_default(), &params, signature).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(e) => {
            tracing::warn!(error = %e, "MMS status callback not taken");
            callback_error_status(&e)
        }
    }
}

/// The MMS carrier's incoming-message webhook: 200 with an empty TwiML `<Response/>` once queued (no
/// automatic reply), 403 for a bad signature, 404 without MMS, 400 for a signed form without a message, 503
/// when it could not be queued or an attachment not fetched now (the carrier calls again or uses its fallback).
async fn mms_inbound(
    State(bridge): State<SmsBridge>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match bridge.mms_incoming(&params, signature).await {
        Ok(()) => {
            ([(header::CONTENT_TYPE, "text/xml")], "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>")
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "MMS incoming message not taken");
            callback_error_status(&e).into_response()
        }
    }
}

fn callback_error_status(e: &MmsCallbackError) -> StatusCode {
    match e {
        MmsCallbackError::NoMms => StatusCode::NOT_FOUND,
        MmsCallbackError::BadSignature => StatusCode::FORBIDDEN,
        MmsCallbackError::NotOurs => StatusCode::BAD_REQUEST,
        MmsCallbackError::NotStarted | MmsCallbackError::Core(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn healthz(State(bridge): State<SmsBridge>) -> impl IntoResponse {
    let links = bridge.links();
    let up = links.iter().any(|l| l.up);
    let body = json!({
        "status": if up { "ok" } else { "no SMSC bound" },
        "links": links.iter().map(|l| json!({"smsc": l.name, "up": l.up, "priority": l.priority})).collect::<Vec<_>>(),
    });
    (if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

async fn metrics(State(bridge): State<SmsBridge>) -> Result<impl IntoResponse, (StatusCode, String)> {
    let unavailable = |e: crate::store::StoreError| (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n"));
    let mut tx = bridge.store().begin().await.map_err(unavailable)?;
    let pending = tx.outbox().pending_segments().await.map_err(unavailable)?;
    let duplicates = tx.outbox().possible_duplicates().await.map_err(unavailable)?;
    let mms_duplicates = tx.mms().possible_duplicates().await.map_err(unavailable)?;
    drop(tx);
    let text = bridge.metrics().render(&bridge.links(), pending, duplicates, mms_duplicates);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
