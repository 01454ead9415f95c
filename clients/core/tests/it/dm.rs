//! Two users on a real Synapse: an encrypted DM, decrypted on the other side, ciphertext on the server, the
//! session surviving a restart, and no message ever sent into a room without encryption that someone else set
//! up.

use crate::harness::{User, wait_for};
use serde_json::{Value, json};
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
    let a_user = a.account.user_id.clone();
    drop(a);
    let b_key = b.client.own_master_key().await?.expect("B's cross-signing bootstrapped");
    let b_device = b.client.matrix().and_then(|c| c.device_id().map(ToString::to_string));

    // B restarts: same user, same device, same cross-signing identity, history still decryptable from the store.
    let b = b.restart().await?;
    let again = &b.client;
    assert_eq!(again.user_id().map(|u| u.to_string()), Some(b.account.user_id.clone()));
    assert_eq!(again.matrix().and_then(|c| c.device_id().map(ToString::to_string)), b_device);
    assert_eq!(b_device.as_deref(), Some(b.account.device_id.as_str()));
    assert_eq!(again.own_master_key().await?, Some(b_key), "the identity comes back from the store");
    again.sync_once(Duration::ZERO).await?;
    let history = again.history(&a_user, 20).await?;
    assert!(history.iter().any(|m| m.body == "before restart" && m.encrypted), "{history:?}");
    Ok(())
}

/// `POST /createRoom` as `token`: an unencrypted room marked `is_direct`, `invite`d: the trap.
async fn unencrypted_dm(hs: &Synapse, token: &str, invite: &str) -> anyhow::Result<String> {
    let body = json!({"is_direct": true, "invite": [invite], "preset": "trusted_private_chat"});
    let url = format!("{}/_matrix/client/v3/createRoom", hs.url());
    let r: Value = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(r["room_id"].as_str().expect("room_id").to_owned())
}

/// `GET` a client-server API path as `token`.
async fn get(hs: &Synapse, token: &str, path: &str) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new().get(format!("{}/_matrix/client/v3{path}", hs.url())).bearer_auth(token).send().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_direct_room_is_neither_joined_nor_used() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let victim = User::new(&hs, "victim").await?;
    // The contact's side (or their homeserver's operator) sets the traps with a plain Matrix client.
    let contact = hs.register_user("contact", false).await?;
    let (ct, vu) = (contact.access_token.as_str(), victim.account.user_id.as_str());
    // One the victim already joined (as an earlier version did on every invite), one only invited to.
    let joined_trap = unencrypted_dm(&hs, ct, vu).await?;
    reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/rooms/{joined_trap}/join", hs.url()))
        .bearer_auth(&victim.account.access_token)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?;
    let invite_trap = unencrypted_dm(&hs, ct, vu).await?;

    victim.client.sync_once(Duration::ZERO).await?;
    let sent = victim.client.send_text_to_user(&contact.user_id, "secret").await?;

    assert_ne!(sent.room_id, joined_trap);
    assert_ne!(sent.room_id, invite_trap);
    // Its own room, encrypted from the start.
    let enc =
        get(&hs, &victim.account.access_token, &format!("/rooms/{}/state/m.room.encryption/", sent.room_id)).await?;
    assert!(enc.status().is_success(), "the room sent in holds m.room.encryption: {}", enc.status());
    // The invite was not accepted.
    let member: Value = get(&hs, ct, &format!("/rooms/{invite_trap}/state/m.room.member/{vu}"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(member["membership"], "invite", "{member}");
    // Nothing of the victim's reached either trap, in clear or otherwise.
    for trap in [&joined_trap, &invite_trap] {
        let page: Value =
            get(&hs, ct, &format!("/rooms/{trap}/messages?dir=b&limit=50")).await?.error_for_status()?.json().await?;
        let from_victim: Vec<&Value> = page["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter(|e| e["sender"] == vu && e["type"] != "m.room.member")
            .collect();
        assert!(from_victim.is_empty(), "the victim wrote into a trap: {from_victim:?}");
        assert!(!page.to_string().contains("secret"));
    }
    Ok(())
}
