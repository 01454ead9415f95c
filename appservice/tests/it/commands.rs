//! The management room against a real Synapse: a user invites the bridge bot, which greets them and answers
//! `help`, `status`, `login` and `logout`; a login made there is kept in the bridge's database (it survives a
//! restart) and is what lets the user bridge (a DM with a ghost is turned down before `login` and after
//! `logout`, and works in between); the connector checks the login and is told of the logout. In an encrypted
//! management room (what Element and Tincan's client create) an independent client (matrix-js-sdk) talks to the
//! bot encrypted both ways.

use crate::e2be::{encrypted_world, only_ciphertext_on_the_server};
use crate::loopback::{Loopback, Seen};
use crate::relations::next_seen;
use crate::synapse::{Client, enc, room_events, wait_for, world};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tincan_appservice::bridge::commands::HELP;
use tincan_appservice::{Bridge, RemoteUserId};
use tincan_testkit::node::JsClient;

const ALICE: &str = "@alice:hs.test";
const BOT: &str = "@loopbot:hs.test";
const BOB: &str = "+4915100000021";
const CAROL: &str = "+4915100000022";

/// Sends `command` into `room` and waits for the bot's answer to it (the bot's `n`th notice there).
async fn ask(alice: &Client, room: &str, command: &str, n: usize) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/cmd{n}", enc(room));
    alice.call(Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": command}))).await;
    bot_notice(alice, room, n).await
}

/// The bot's `n`th notice in `room` (from 0), once it is there.
async fn bot_notice(alice: &Client, room: &str, n: usize) -> String {
    let room_id: ruma::OwnedRoomId = room.try_into().unwrap();
    wait_for(&format!("the bot's notice #{n}"), Duration::from_secs(60), || {
        let (alice, room_id) = (alice.clone(), room_id.clone());
        async move {
            let notices: Vec<String> = room_events(&alice, &room_id)
                .await
                .into_iter()
                .filter(|e| e["sender"] == BOT && e["content"]["msgtype"] == "m.notice")
                .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
                .collect();
            notices.get(n).cloned()
        }
    })
    .await
}

/// Alice opens a DM with `remote`'s ghost; whether the ghost joins (it turns the invite down otherwise).
async fn dm_joined(alice: &Client, remote: &str) -> bool {
    let ghost = format!("@loop_{remote}:hs.test");
    let created = alice
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [ghost], "is_direct": true, "preset": "trusted_private_chat"})),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&ghost));
    wait_for("the ghost to answer the invite", Duration::from_secs(60), || {
        let (alice, path) = (alice.clone(), path.clone());
        async move {
            match alice.call(Method::GET, &path, None).await["membership"].as_str() {
                Some("join") => Some(true),
                Some("leave") => Some(false),
                _ => None,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_and_out_in_the_management_room_and_the_login_is_kept() {
    let w = world().await;
    let (conn, mut rx) = Loopback::new(&[]);
    let bridge = Bridge::builder(w.config.clone()).start(conn).await.unwrap();

    // Alice invites the bot: it joins and greets her.
    let created = w
        .alice
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [BOT], "is_direct": true, "preset": "trusted_private_chat"})),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let hello = bot_notice(&w.alice, &room, 0).await;
    assert!(hello.contains("loopback bridge bot") && hello.contains("help"), "{hello}");

    assert_eq!(ask(&w.alice, &room, "help", 1).await, HELP);
    assert_eq!(ask(&w.alice, &room, "status", 2).await, "Not logged in to loopback. Send `login …` to log in.");
    assert!(!dm_joined(&w.alice, BOB).await, "not logged in: the ghost turns the DM down");
    assert_eq!(
        ask(&w.alice, &room, "login", 3).await,
        "Usage: login <…> (what to log in with, for example the number you send from)."
    );
    let refused = ask(&w.alice, &room, "login 030 1234", 4).await;
    assert_eq!(refused, "Login failed: rejected by the network: \"030 1234\" is not a number in E.164 form");
    assert_eq!(ask(&w.alice, &room, "LOGIN +4930123456", 5).await, "Logged in to loopback as +4930123456.");
    let seen = next_seen(&mut rx, "the login", |s| matches!(s, Seen::Login(..))).await;
    assert_eq!(seen, Seen::Login(ALICE.try_into().unwrap(), "+4930123456".into()));
    let stored = bridge.handle().store().user_login(&ruma::UserId::parse(ALICE).unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.remote_id, RemoteUserId::new("+4930123456"));
    assert_eq!(stored.metadata.0["from"], "+4930123456");

    // The login is in the bridge's database: it holds after a restart, and Alice can bridge now.
    bridge.stop().await;
    let (conn, mut rx) = Loopback::new(&[]);
    let bridge = Bridge::builder(w.config.clone()).start(conn).await.unwrap();
    assert_eq!(ask(&w.alice, &room, "status", 6).await, "Logged in to loopback as +4930123456.");
    assert!(dm_joined(&w.alice, BOB).await, "logged in: the ghost joins the DM");

    // Logout: the connector is told, the login deleted, and Alice is no longer bridged.
    assert_eq!(ask(&w.alice, &room, "logout", 7).await, "Logged out of loopback.");
    let seen = next_seen(&mut rx, "the logout", |s| matches!(s, Seen::Logout(..))).await;
    assert_eq!(seen, Seen::Logout(ALICE.try_into().unwrap()));
    assert!(bridge.handle().store().user_login(&ruma::UserId::parse(ALICE).unwrap()).await.unwrap().is_none());
    assert_eq!(ask(&w.alice, &room, "status", 8).await, "Not logged in to loopback. Send `login …` to log in.");
    assert_eq!(ask(&w.alice, &room, "logout", 9).await, "You are not logged in to loopback.");
    assert!(!dm_joined(&w.alice, CAROL).await, "logged out: the ghost turns the DM down");
    assert_eq!(
        ask(&w.alice, &room, "frobnicate", 10).await,
        "Unknown command \"frobnicate\". Send `help` for the commands."
    );
    bridge.stop().await;
}

/// Bob, on matrix-js-sdk with its Rust crypto, opens an encrypted DM with the bot (as Element does): the bot
/// joins with a device of its own, decrypts `help` and answers encrypted, and Bob's client decrypts the answer;
/// the server holds only ciphertext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_reads_and_answers_commands_in_an_encrypted_management_room() {
    let dir = tempfile::tempdir().unwrap();
    let (synapse, config) = encrypted_world(dir.path()).await;
    let (conn, _rx) = Loopback::new(&[]);
    let bridge = Bridge::builder(config).start(conn).await.unwrap();
    let bob = synapse.register_user("bob", false).await.unwrap();
    let bob_c = Client::new(synapse.url(), bob.access_token.clone());
    let room = bob_c.encrypted_dm(BOT).await;
    let mut js = JsClient::dm(&json!({
        "base_url": synapse.url(), "user_id": bob.user_id, "access_token": bob.access_token,
        "device_id": bob.device_id, "room_id": room, "send": "help",
        "expect_sender": BOT, "expect_body": HELP, "timeout_ms": 150_000,
    }))
    .unwrap();
    js.expect("sent", Duration::from_secs(120)).await.unwrap();
    let got = js.expect("received", Duration::from_secs(90)).await.unwrap();
    assert_eq!(got["sender"], BOT);
    assert_eq!(got["encrypted"], true, "the answer came through Megolm: {got}");
    // A second command: the bot's Megolm session goes on.
    js.send("status").unwrap();
    let status = js.expect_body("Not logged in to loopback. Send `login …` to log in.", Duration::from_secs(90)).await;
    assert_eq!(status.unwrap()["encrypted"], true);
    js.quit().unwrap();
    let room: ruma::OwnedRoomId = room.try_into().unwrap();
    only_ciphertext_on_the_server(&bob_c, &room, &["Commands:", "Not logged in", "status"]).await;
    bridge.stop().await;
}
