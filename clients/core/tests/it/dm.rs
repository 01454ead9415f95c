//! Two users on a real Synapse: an encrypted DM, decrypted on the other side, ciphertext on the server, and
//! the session surviving a restart.

use crate::harness::{User, wait_for};
use serde_json::Value;
use std::time::Duration;
use tincan_testkit::Synapse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hi_arrives_decrypted_and_the_server_only_sees_ciphertext() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let a = User::new(&hs, "alice").await?;
    let b = User::new(&hs, "bob").await?;
    assert!(a.client.own_master_key().await?.is_some(), "cross-signing bootstrapped on sign-in");

    let incoming = b.client.messages();
    let b_sync = b.client.spawn_sync()?;
    let sent = a.client.send_text_to_user(&b.account.user_id, "hi").await?;

    let got = wait_for(incoming, |m| m.body == "hi").await?;
    assert_eq!(got.sender, a.account.user_id);
    assert!(got.encrypted, "B received it through Megolm");
    assert_eq!(got.event_id, sent.event_id);
    b_sync.abort();

    // The server's copy, read with B's token over plain HTTP: only m.room.encrypted.
    let url = format!("{}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", hs.url(), sent.room_id);
    let page: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(&b.account.access_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let events = page["chunk"].as_array().expect("chunk");
    let ours = events.iter().find(|e| e["event_id"] == sent.event_id.as_str()).expect("the sent event");
    assert_eq!(ours["type"], "m.room.encrypted");
    assert!(!ours.to_string().contains("\"hi\""), "no plaintext on the server: {ours}");
    assert!(events.iter().all(|e| e["type"] != "m.room.message"));
    // Encryption was on from the first event: the room was created with m.room.encryption.
    let state = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3/rooms/{}/state/m.room.encryption/", hs.url(), sent.room_id))
        .bearer_auth(&b.account.access_token)
        .send()
        .await?;
    assert!(state.status().is_success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_session_and_the_history() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let a = User::new(&hs, "carol").await?;
    let b = User::new(&hs, "dave").await?;
    let incoming = b.client.messages();
    let b_sync = b.client.spawn_sync()?;
    a.client.send_text_to_user(&b.account.user_id, "before restart").await?;
    wait_for(incoming, |m| m.body == "before restart").await?;
    b_sync.abort();
    let b_user = b.account.user_id.clone();
    let a_user = a.account.user_id.clone();
    let a_key = a.client.own_master_key().await?;
    drop(a);

    // B restarts: same user, same device, history still decryptable from the store.
    let again = b.reopen().await?;
    assert_eq!(again.user_id().map(|u| u.to_string()), Some(b_user));
    again.sync_once(Duration::ZERO).await?;
    let history = again.history(&a_user, 20).await?;
    assert!(history.iter().any(|m| m.body == "before restart" && m.encrypted), "{history:?}");
    assert!(a_key.is_some());
    Ok(())
}
