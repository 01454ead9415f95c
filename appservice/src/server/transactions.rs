//! `PUT /_matrix/app/v1/transactions/{txnId}`: events pushed by the homeserver, recorded exactly once.
//!
//! The answer is 200 only after the transaction's events are durably recorded together with its txnId (one
//! database transaction). A txnId recorded before is acknowledged again without recording anything, so the
//! homeserver's retries (after a timeout, an error, or a bridge restart between recording and answering)
//! never lead to an event being handled twice. Processing happens later, from the inbox.

use super::ApiError;
use crate::BridgeHandle;
use crate::store::{InboxKind, NewInboxEvent};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Request;
use ruma::api::IncomingRequest;
use ruma::api::appservice::event::push_events;

/// Records the transaction and wakes the inbox processor.
pub(crate) async fn handler(
    State(bridge): State<BridgeHandle>,
    Path(txn_id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let events = parse(&txn_id, body)?;
    let m = &bridge.0.metrics;
    if bridge.0.store.transaction_seen(&txn_id).await? {
        m.inc(&m.duplicate_transactions);
        return Ok(Json(serde_json::json!({})));
    }
    let n = events.len() as u64;
    if bridge.0.store.record_transaction(&txn_id, &events, bridge.now_ms()).await? {
        m.inc(&m.transactions);
        m.add(&m.events_recorded, n);
        bridge.wake_inbox();
    } else {
        m.inc(&m.duplicate_transactions);
    }
    Ok(Json(serde_json::json!({})))
}

/// Parses the body with ruma's `push_events` request type; every event must be a JSON object.
pub fn parse(txn_id: &str, body: Bytes) -> Result<Vec<NewInboxEvent>, ApiError> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return Err(ApiError::NotJson);
    }
    let request = Request::builder()
        .method("PUT")
        .uri(format!("/_matrix/app/v1/transactions/{txn_id}"))
        .body(body)
        .map_err(|e| ApiError::BadJson(e.to_string()))?;
    let parsed = push_events::v1::Request::try_from_http_request(request, &[txn_id])
        .map_err(|e| ApiError::BadJson(e.to_string()))?;
    let timeline = parsed.events.iter().map(|e| (InboxKind::Timeline, e.json().get()));
    let ephemeral = parsed.ephemeral.iter().map(|e| (InboxKind::Ephemeral, e.json().get()));
    timeline
        .chain(ephemeral)
        .map(|(kind, json)| {
            if json.trim_start().starts_with('{') {
                Ok(NewInboxEvent { kind, json: json.to_owned() })
            } else {
                Err(ApiError::BadJson("every event must be a JSON object".into()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_out_bodies() {
        assert!(matches!(parse("t", Bytes::from_static(b"nope")), Err(ApiError::NotJson)));
        assert!(matches!(parse("t", Bytes::from_static(b"{\"events\": 3}")), Err(ApiError::BadJson(_))));
        assert!(matches!(parse("t", Bytes::from_static(b"{\"events\": [1]}")), Err(ApiError::BadJson(_))));
        assert!(matches!(parse("t", Bytes::from_static(b"[]")), Err(ApiError::BadJson(_))));
        let ok = parse("t", Bytes::from_static(b"{\"events\": [{\"type\": \"m.x\"}], \"ephemeral\": [{}]}")).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].kind, InboxKind::Ephemeral);
    }
}
