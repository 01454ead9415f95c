//! `PUT /_matrix/app/v1/transactions/{txnId}`: events pushed by the homeserver, recorded exactly once.
//!
//! The answer is 200 only after the transaction's events are durably recorded together with its txnId (one
//! database transaction). A txnId recorded before is acknowledged again without recording anything, so the
//! homeserver's retries (after a timeout, an error, or a bridge restart between recording and answering)
//! never lead to an event being handled twice. Processing happens later, from the inbox.
//!
//! The crypto part of a transaction (MSC2409/MSC4203 to-device messages, MSC3202 device lists and one-time-key
//! counts) is recorded as one inbox entry ahead of the events. Bodies up to [`super::MAX_TRANSACTION_BYTES`]
//! are accepted.

use super::ApiError;
use crate::BridgeHandle;
use crate::bridge::crypto::CryptoChanges;
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
    let mut out = Vec::with_capacity(parsed.events.len() + parsed.ephemeral.len() + 1);
    let mut to_device = Vec::with_capacity(parsed.to_device.len());
    for raw in &parsed.to_device {
        match serde_json::from_str::<serde_json::Value>(raw.json().get()) {
            Ok(v @ serde_json::Value::Object(_)) => to_device.push(v),
            _ => return Err(ApiError::BadJson("every to-device message must be a JSON object".into())),
        }
    }
    let mut device_lists = ruma::api::client::sync::sync_events::DeviceLists::new();
    device_lists.changed = parsed.device_lists.changed;
    device_lists.left = parsed.device_lists.left;
    let crypto = CryptoChanges {
        to_device,
        device_lists,
        otk_counts: parsed.device_one_time_keys_count,
        fallback_keys: parsed.device_unused_fallback_key_types,
    };
    if !crypto.is_empty() {
        // Ahead of the events: a room key that came with a message is known before the message is decrypted.
        let json = serde_json::to_string(&crypto).map_err(|e| ApiError::BadJson(e.to_string()))?;
        out.push(NewInboxEvent { kind: InboxKind::Crypto, json });
    }
    for (kind, json) in timeline.chain(ephemeral) {
        if !json.trim_start().starts_with('{') {
            return Err(ApiError::BadJson("every event must be a JSON object".into()));
        }
        out.push(NewInboxEvent { kind, json: json.to_owned() });
    }
    Ok(out)
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

    #[test]
    fn the_crypto_part_comes_first() {
        let body = br#"{"events": [{"type": "m.x"}],
            "de.sorunome.msc2409.to_device": [{"type": "m.room.encrypted", "sender": "@a:hs", "content": {},
                "to_user_id": "@g:hs", "to_device_id": "GD"}],
            "org.matrix.msc3202.device_lists": {"changed": ["@a:hs"], "left": []},
            "org.matrix.msc3202.device_one_time_keys_count": {"@g:hs": {"GD": {"signed_curve25519": 3}}}}"#;
        let ok = parse("t", Bytes::from_static(body)).unwrap();
        assert_eq!(ok.iter().map(|e| e.kind).collect::<Vec<_>>(), [InboxKind::Crypto, InboxKind::Timeline]);
        let crypto: CryptoChanges = serde_json::from_str(&ok[0].json).unwrap();
        assert_eq!(crypto.to_device[0]["to_device_id"], "GD");
        assert_eq!(crypto.device_lists.changed[0].as_str(), "@a:hs");
        assert_eq!(crypto.otk_counts.len(), 1);
        let plain = parse("t", Bytes::from_static(br#"{"events": [], "org.matrix.msc3202.device_lists": {}}"#));
        assert!(plain.unwrap().is_empty(), "nothing to record for an empty crypto part");
    }
}
