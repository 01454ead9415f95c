//! `PUT /_matrix/app/v1/transactions/{txnId}` bodies: any bytes give a typed result, never a panic. An accepted
//! body yields one inbox entry per timeline and ephemeral event (those of `ephemeral`, or, when the body has no
//! such key, of its unstable name `de.sorunome.msc2409.ephemeral`: the homeserver sends one list under both),
//! each a JSON object, and the crypto part (if any) as the first entry only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tincan_appservice::server::parse_transaction;
use tincan_appservice::store::InboxKind;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = parse_transaction("fuzz-txn", bytes::Bytes::copy_from_slice(data)) else { return };
    let body: serde_json::Value = serde_json::from_slice(data).expect("an accepted body is JSON");
    let count = |key: &str| body.get(key).and_then(|v| v.as_array()).map_or(0, Vec::len);
    let timeline = entries.iter().filter(|e| e.kind == InboxKind::Timeline).count();
    let ephemeral = entries.iter().filter(|e| e.kind == InboxKind::Ephemeral).count();
    assert_eq!(timeline, count("events"), "one entry per timeline event");
    let listed =
        if body.get("ephemeral").is_some() { count("ephemeral") } else { count("de.sorunome.msc2409.ephemeral") };
    assert_eq!(ephemeral, listed, "one entry per ephemeral event");
    for (i, e) in entries.iter().enumerate() {
        if e.kind == InboxKind::Crypto {
            assert_eq!(i, 0, "the crypto part comes first");
        }
        let v: serde_json::Value = serde_json::from_str(&e.json).expect("each entry is JSON");
        assert!(v.is_object(), "each entry is a JSON object: {}", e.json);
    }
});
