//! The one routing decision on the real chain: a number with no record goes to the provider's SMS bridge (found
//! through the homeserver's `m.protocol.pstn` lookup, not end-to-end encrypted, and the bridge gets the text);
//! once the number signs up for Tincan, the next message to it goes over Matrix, end-to-end encrypted, with no
//! step by the sender. A Matrix record is never sent to the bridge.

use crate::chain::{Chain, wait_for_key};
use crate::fake_bridge::FakeSmsBridge;
use crate::harness::wait_for;
use tincan_client_core::{ClientError, Decision, Intent, KeyStatus};

const A_NUM: &str = "+442079460401";
/// Not on Tincan at first; signs up halfway through.
const C_NUM: &str = "+442079460402";
const TAMPERED_NUM: &str = "+442079460405";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_is_reached_by_sms_until_it_joins_then_over_matrix() -> anyhow::Result<()> {
    let bridge = FakeSmsBridge::start("hs.test").await?;
    let registration = bridge.registration();
    let Some(chain) = Chain::start_with(TAMPERED_NUM, |b| b.appservice(registration)).await? else { return Ok(()) };
    let ghost = bridge.register_ghost(&chain.hs.url(), C_NUM).await?;
    assert_eq!(ghost, format!("@sms_{C_NUM}:hs.test"));
    let (da, dc) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (a, _) = chain.sign_up(da.path(), A_NUM).await?;

    // Not in the directory: SMS through the bridge, which receives the text (it could not read an encrypted one).
    let (decision, _) = a.route_to_number(C_NUM, Intent::Text, false).await?;
    assert_eq!(decision, Decision::Sms { ghost: ghost.clone() });
    // A call has no way yet (no SIP bridge here): not reachable, with the reason.
    match a.route_to_number(C_NUM, Intent::Call, false).await {
        Err(ClientError::Unreachable { reason, .. }) => assert_eq!(reason, tincan_client_core::Unreachable::NoBridge),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let sent = a.send_to_number(C_NUM, "by sms", false).await?;
    assert_eq!(sent.decision, Decision::Sms { ghost: ghost.clone() });
    assert_eq!(sent.sent.user_id, ghost);
    let event = bridge.wait_for_text("by sms").await?;
    assert_eq!(event["type"], "m.room.message");
    assert_eq!(event["room_id"], sent.sent.room_id.as_str());
    // The same conversation is reused for the next text.
    let again = a.send_to_number(C_NUM, "by sms again", false).await?;
    assert_eq!(again.sent.room_id, sent.sent.room_id);

    // C joins Tincan with that number; A's next message goes over Matrix, encrypted, without A doing anything.
    let (c, sc) = chain.sign_up(dc.path(), C_NUM).await?;
    wait_for_key(&a, C_NUM).await?;
    let incoming = c.messages();
    let c_sync = c.spawn_sync()?;
    let sent = a.send_to_number(C_NUM, "over matrix", false).await?;
    assert_eq!(sent.decision, Decision::Matrix { user_id: sc.user_id.clone(), warning: None });
    assert!(matches!(sent.sent.key_status, Some(KeyStatus::Verified { .. })), "{sent:?}");
    let got = wait_for(incoming, |m| m.body == "over matrix").await?;
    assert!(got.encrypted);
    c_sync.abort();
    // And not to the bridge: a later text to another SMS number reaches it, the Matrix one never did.
    bridge.register_ghost(&chain.hs.url(), "+442079460403").await?;
    let later = a.send_to_number("+442079460403", "marker", false).await?;
    assert!(matches!(later.decision, Decision::Sms { .. }));
    bridge.wait_for_text("marker").await?;
    assert!(!bridge.has_text("over matrix"));
    Ok(())
}
