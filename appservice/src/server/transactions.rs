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

/// The unstable (MSC2409) name of a transaction's ephemeral events.
const UNSTABLE_EPHEMERAL: &str = "de.sorunome.msc2409.ephemeral";

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
///
/// Ephemeral events come from `ephemeral` when the body has that key, else from its unstable name
/// `de.sorunome.msc2409.ephemeral` (ruma reads only the stable one). Synapse sends the same list under each name
/// the registration asks for (`receive_ephemeral`, `de.sorunome.msc2409.push_ephemeral`), so reading both would
/// record every event twice; a homeserver that knows only the unstable name sends only that one, and its events
/// were dropped without a word.
///
/// The whole body must be JSON, unknown fields included: UTF-8 throughout and no lone surrogate escape
/// (`\ud800`) in any string or key, else 400 `M_NOT_JSON` ([`Checked`]); and a JSON object, else 400
/// `M_BAD_JSON`. Skipping over a value (`IgnoredAny`, the unknown fields ruma drops) and capturing one raw (each
/// event) check neither, so such a body was accepted and an event the bridge cannot read later went into the
/// inbox.
pub fn parse(txn_id: &str, body: Bytes) -> Result<Vec<NewInboxEvent>, ApiError> {
    if serde_json::from_slice::<Checked>(&body).is_err() {
        return Err(ApiError::NotJson);
    }
    // serde's derived `Deserialize` also takes a struct from an array, field by field: `[[{…}]]` would be read
    // as `events: [{…}]` and recorded.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::BadJson("a transaction is a JSON object".into()));
    }
    // Only the unstable list is read here, each event as it came: ruma reads the rest (and `ephemeral` when
    // present).
    let top: TopLevel<'_> = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let unstable_ephemeral: Vec<String> = match (top.ephemeral, top.unstable_ephemeral) {
        (Some(_), _) | (None, None) => Vec::new(),
        (None, Some(list)) => serde_json::from_str::<Vec<&serde_json::value::RawValue>>(list.get())
            .map_err(|_| ApiError::BadJson(format!("{UNSTABLE_EPHEMERAL} must be a list of events")))?
            .into_iter()
            .map(|e| e.get().to_owned())
            .collect(),
    };
    let request = Request::builder()
        .method("PUT")
        .uri(format!("/_matrix/app/v1/transactions/{txn_id}"))
        .body(body)
        .map_err(|e| ApiError::BadJson(e.to_string()))?;
    let parsed = push_events::v1::Request::try_from_http_request(request, &[txn_id])
        .map_err(|e| ApiError::BadJson(e.to_string()))?;
    let timeline = parsed.events.iter().map(|e| (InboxKind::Timeline, e.json().get()));
    let ephemeral =
        parsed.ephemeral.iter().map(|e| e.json().get()).chain(unstable_ephemeral.iter().map(String::as_str));
    let ephemeral = ephemeral.map(|json| (InboxKind::Ephemeral, json));
    let mut out = Vec::with_capacity(parsed.events.len() + parsed.ephemeral.len() + unstable_ephemeral.len() + 1);
    // Each message as it came: through `serde_json::Value` and back an object's keys are sorted, and one whose
    // first key is then serde_json's raw-value token (`$serde_json::private::RawValue`, any sender can write it)
    // no longer reads back, so the inbox could not read the whole crypto entry.
    let mut to_device = Vec::with_capacity(parsed.to_device.len());
    for raw in &parsed.to_device {
        if !raw.json().get().trim_start().starts_with('{') {
            return Err(ApiError::BadJson("every to-device message must be a JSON object".into()));
        }
        to_device.push(raw.json().to_owned());
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

/// The two ephemeral lists of a transaction body, raw.
#[derive(serde::Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow)]
    ephemeral: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, rename = "de.sorunome.msc2409.ephemeral")]
    unstable_ephemeral: Option<&'a serde_json::value::RawValue>,
}

/// Any JSON value, read through with every string and key decoded (UTF-8, no lone surrogate escape) and
/// nothing kept. `serde_json::Value` checks the same but also gives the key `$serde_json::private::RawValue`
/// serde_json's private meaning: an object whose first key it is (valid JSON a homeserver may pass on in
/// content, and `$` sorts first in canonical JSON) does not read as a `Value`, so checking with `Value` refused
/// the whole transaction, which the homeserver then retried for ever, stopping the bridge.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
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
        let message: serde_json::Value = serde_json::from_str(crypto.to_device[0].get()).unwrap();
        assert_eq!(message["to_device_id"], "GD");
        assert_eq!(crypto.device_lists.changed[0].as_str(), "@a:hs");
        assert_eq!(crypto.otk_counts.len(), 1);
        let plain = parse("t", Bytes::from_static(br#"{"events": [], "org.matrix.msc3202.device_lists": {}}"#));
        assert!(plain.unwrap().is_empty(), "nothing to record for an empty crypto part");
    }

    /// The fuzz target's find (`appservice/fuzz/regressions/as_transaction-invalid-code-point`): bytes that are
    /// not UTF-8 in a key of an ignored field's to-device message.
    #[test]
    fn a_body_that_is_not_utf8_json_is_refused() {
        let found = include_bytes!("../../fuzz/regressions/as_transaction-invalid-code-point");
        assert!(serde_json::from_slice::<serde_json::Value>(found).is_err(), "the reproducer is not JSON");
        assert!(matches!(parse("t", Bytes::from_static(found)), Err(ApiError::NotJson)));
    }

    /// The fuzz target's find (`appservice/fuzz/regressions/as_transaction-ephemeral-without-entry`): a
    /// transaction whose ephemeral event (no `sender`, a misspelled key: malformed, but a JSON object) came only
    /// under the unstable name was acknowledged with no entry for it. It is recorded; the inbox skips what it
    /// cannot use.
    #[test]
    fn ephemeral_events_under_the_unstable_name_alone_are_recorded() {
        let found = include_bytes!("../../fuzz/regressions/as_transaction-ephemeral-without-entry");
        let entries = parse("t", Bytes::from_static(found)).unwrap();
        let ephemeral: Vec<serde_json::Value> = entries
            .iter()
            .filter(|e| e.kind == InboxKind::Ephemeral)
            .map(|e| serde_json::from_str(&e.json).unwrap())
            .collect();
        assert_eq!(ephemeral, [serde_json::json!({"type": "m.room.encrypted", "sendice_id": "D", "content": {}})]);
        assert_eq!(entries.len(), 1, "its garbled MSC3202 keys are unknown fields: nothing else to record");
    }

    /// The fuzz target's find (`appservice/fuzz/regressions/as_transaction-array-body`): a body that is a JSON
    /// array, `[[{…}]]`, was read field by field (its first element as `events`) and its object recorded as a
    /// timeline event. A body is an object or it is refused.
    #[test]
    fn a_body_that_is_not_a_json_object_is_refused() {
        let found = include_bytes!("../../fuzz/regressions/as_transaction-array-body");
        let bodies: [&'static [u8]; 5] = [found, br#"[[{"type": "m.x"}]]"#, br#"[[], []]"#, b"[]", br#""events""#];
        for body in bodies {
            let got = parse("t", Bytes::from_static(body));
            assert!(matches!(got, Err(ApiError::BadJson(_))), "{}: {got:?}", String::from_utf8_lossy(body));
        }
    }

    /// The fuzz target's find (`appservice/fuzz/regressions/as_transaction-raw-value-key`): a to-device message
    /// with a key `$serde_json::private::RawValue` (valid JSON, and any sender can put any key in a to-device
    /// message). It went through `serde_json::Value` and back, which sorts an object's keys, so that key came
    /// first, and a `Value` whose first key is serde_json's raw-value token reads as a raw value: the crypto entry
    /// could not be read back and the inbox skipped all of it (room keys, device lists, key counts). The message
    /// is recorded as it came.
    #[test]
    fn a_to_device_message_is_recorded_as_it_came() {
        let found = include_bytes!("../../fuzz/regressions/as_transaction-raw-value-key");
        let entries = parse("t", Bytes::from_static(found)).unwrap();
        assert_eq!(entries.iter().map(|e| e.kind).collect::<Vec<_>>(), [InboxKind::Crypto]);
        let crypto: CryptoChanges = serde_json::from_str(&entries[0].json).expect("the inbox reads the entry back");
        assert_eq!(crypto.to_device.len(), 1);
        assert_eq!(crypto.to_device[0].get(), r#"{"type":"m.x","$serde_json::private::RawValue":[[]]}"#);
        serde_json::from_str::<serde_json::Value>(&entries[0].json).expect("the entry is JSON");
    }

    /// Synapse sends one list under both names when the registration asks for both: each event is recorded
    /// once, from `ephemeral`. The unstable name must hold a list when it is the one read.
    #[test]
    fn ephemeral_events_under_both_names_are_recorded_once() {
        let both = br#"{"events": [], "ephemeral": [{"type": "m.typing", "room_id": "!r:hs", "content": {}}],
            "de.sorunome.msc2409.ephemeral": [{"type": "m.typing", "room_id": "!r:hs", "content": {}}]}"#;
        let entries = parse("t", Bytes::from_static(both)).unwrap();
        assert_eq!(entries.iter().map(|e| e.kind).collect::<Vec<_>>(), [InboxKind::Ephemeral]);
        let stable_empty = br#"{"events": [], "ephemeral": [], "de.sorunome.msc2409.ephemeral": [{"type": "m.x"}]}"#;
        assert!(parse("t", Bytes::from_static(stable_empty)).unwrap().is_empty(), "the stable list wins");
        let bad: [&'static [u8]; 2] = [
            br#"{"events": [], "de.sorunome.msc2409.ephemeral": {"type": "m.typing"}}"#,
            br#"{"events": [], "de.sorunome.msc2409.ephemeral": [1]}"#,
        ];
        for bad in bad {
            let got = parse("t", Bytes::from_static(bad));
            assert!(matches!(got, Err(ApiError::BadJson(_))), "{}: {got:?}", String::from_utf8_lossy(bad));
        }
    }

    /// A lone surrogate escape is refused wherever it is: in an event (captured raw), an unknown field (skipped),
    /// a key, the crypto part.
    #[test]
    fn a_lone_surrogate_escape_is_refused_anywhere() {
        for body in [
            r#"{"events": [{"type": "m.x", "content": {"body": "\ud800"}}]}"#,
            r#"{"events": [{"type": "m.x", "content": {"\udc00": 1}}]}"#,
            r#"{"events": [], "ephemeral": [{"type": "m.typing", "x": "a\udbffb"}]}"#,
            r#"{"events": [], "unknown.field": ["\ud83d"]}"#,
            r#"{"events": [], "de.sorunome.msc2409.to_device": [{"type": "m.x", "sender": "@a:hs",
                "to_user_id": "@b:hs", "to_device_id": "D", "content": {"k": "\ud800\u0041"}}]}"#,
        ] {
            let got = parse("t", Bytes::copy_from_slice(body.as_bytes()));
            assert!(matches!(got, Err(ApiError::NotJson)), "{body}: {got:?}");
        }
        // A surrogate pair is a code point: accepted.
        let ok =
            parse("t", Bytes::from_static(br#"{"events": [{"type": "m.x", "content": {"body": "\ud83d\ude00"}}]}"#));
        assert_eq!(ok.unwrap().len(), 1);
    }

    /// Content whose first key is serde_json's raw-value token is valid JSON a homeserver may pass on: the
    /// transaction is recorded (event as it came), not refused — a 400 would be retried by the homeserver for
    /// ever and stop the bridge. The same key in an unknown field and in an unstable ephemeral event.
    #[test]
    fn content_starting_with_serde_jsons_raw_value_key_does_not_stop_the_bridge() {
        let event = r#"{"type":"m.room.message","content":{"$serde_json::private::RawValue":[[]],"body":"x"}}"#;
        let body = format!(
            r#"{{"events":[{event}],"x.unknown":{{"$serde_json::private::RawValue":1}},
                "de.sorunome.msc2409.ephemeral":[{{"type":"m.x","$serde_json::private::RawValue":{{}}}}]}}"#
        );
        let entries = parse("t", Bytes::from(body)).expect("valid JSON is accepted");
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].kind, entries[0].json.as_str()), (InboxKind::Timeline, event));
        assert_eq!(entries[1].kind, InboxKind::Ephemeral);
        assert!(entries[1].json.contains("$serde_json::private::RawValue"), "{}", entries[1].json);
    }

    use proptest::prelude::*;

    /// A transaction with one of each part, as Synapse sends it.
    const TEMPLATE: &str = r#"{"events": [{"type": "m.room.message", "content": {"body": "hi"}}],
        "ephemeral": [{"type": "m.typing", "content": {}}], "x.unknown": {"k": ["v"]},
        "de.sorunome.msc2409.to_device": [{"type": "m.room.encrypted", "sender": "@a:hs",
            "to_user_id": "@b:hs", "to_device_id": "D", "content": {"c": "t"}}],
        "org.matrix.msc3202.device_lists": {"changed": ["@a:hs"], "left": []}}"#;

    /// What goes wrong in a string: a lone surrogate of either half, bytes that are not UTF-8, a bad escape.
    fn poison() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0xd800u32..0xe000).prop_map(|u| format!("\\u{u:04x}").into_bytes()),
            // A continuation byte with no lead byte is never UTF-8.
            (0x80u8..=0xbf).prop_map(|b| vec![b, b'x']),
            Just(b"\\x".to_vec()),
            Just(b"\\ud800\\u0041".to_vec()),
        ]
    }

    proptest! {
        /// Poison put into any string of the template (value or key, of any part) is refused as not JSON; and
        /// whatever is accepted is JSON as `serde_json::Value` reads it, each entry a JSON object.
        #[test]
        fn a_poisoned_string_anywhere_is_refused(at in 0usize..1000, poison in poison()) {
            let quotes: Vec<usize> = TEMPLATE.match_indices('"').map(|(i, _)| i).collect();
            // After an opening quote: inside a string.
            let open = quotes[(at % (quotes.len() / 2)) * 2] + 1;
            let mut body = TEMPLATE.as_bytes()[..open].to_vec();
            body.extend_from_slice(&poison);
            body.extend_from_slice(&TEMPLATE.as_bytes()[open..]);
            let got = parse("t", Bytes::from(body.clone()));
            prop_assert!(matches!(got, Err(ApiError::NotJson)), "{}: {:?}", String::from_utf8_lossy(&body), got);
        }

        /// Any bytes: an accepted body is JSON, and every entry it yields is a JSON object.
        #[test]
        fn what_is_accepted_is_json(cut in 0usize..400, bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
            let cut = cut.min(TEMPLATE.len());
            let mut body = TEMPLATE.as_bytes()[..cut].to_vec();
            body.extend_from_slice(&bytes);
            body.extend_from_slice(&TEMPLATE.as_bytes()[cut..]);
            if let Ok(entries) = parse("t", Bytes::from(body.clone())) {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
                for e in entries {
                    let v: serde_json::Value = serde_json::from_str(&e.json).expect("each entry is JSON");
                    prop_assert!(v.is_object(), "{}", e.json);
                }
            }
        }
    }
}
