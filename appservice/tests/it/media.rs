//! Attachments against a real Synapse in an encrypted DM: the Tincan client (matrix-sdk) sends an encrypted
//! image (AES-CTR `file`, uploaded through the media API); the loopback network gets the decrypted bytes. The
//! network sends an image back: it arrives as an encrypted event whose `file` the client downloads through the
//! authenticated media API and decrypts to the same bytes. Too large an attachment is refused with a status.

use crate::e2be::{encrypted_world, portal_of};
use crate::loopback::{Loopback, Seen};
use crate::synapse::{Client, enc, room_events, wait_for};
use matrix_sdk_crypto::{AttachmentDecryptor, AttachmentEncryptor};
use ruma::events::room::EncryptedFile;
use ruma::events::room::message::{ImageMessageEventContent, MessageType, RoomMessageEventContent};
use serde_json::{Value, json};
use std::io::Read;
use std::time::Duration;
use tincan_appservice::{Bridge, Media, MediaKind, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId};
use tincan_client_core::{ClientConfig, TincanClient};

const NUMBER: &str = "+4915112345678";
const OTHER: &str = "+4930123456789";

/// A small PNG-like blob: 3 KiB, every byte value present.
fn image(seed: u8) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..3072u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    v
}

/// Uploads `data` as the client's user; its `mxc://` URI.
async fn upload(client: &Client, data: Vec<u8>) -> String {
    let resp = client
        .http
        .post(format!("{}/_matrix/media/v3/upload", client.base))
        .bearer_auth(&client.token)
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "upload: {}", resp.status());
    resp.json::<Value>().await.unwrap()["content_uri"].as_str().unwrap().to_owned()
}

/// Downloads `mxc` through the authenticated media API as the client's user.
async fn download(client: &Client, mxc: &str) -> Vec<u8> {
    let path = mxc.strip_prefix("mxc://").unwrap();
    let (server, id) = path.split_once('/').unwrap();
    let resp = client
        .http
        .get(format!("{}/_matrix/client/v1/media/download/{}/{}", client.base, enc(server), enc(id)))
        .bearer_auth(&client.token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "download: {}", resp.status());
    resp.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_image_reaches_the_network_decrypted_and_one_from_the_network_arrives_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let (synapse, mut config) = encrypted_world(dir.path()).await;
    config.media.max_bytes = 64 * 1024;
    let (conn, mut rx) = Loopback::new(&["@alice:hs.test"]);
    let bridge = Bridge::builder(config).start(conn).await.unwrap();
    let handle = bridge.handle().clone();

    let account = synapse.register_user("alice", false).await.unwrap();
    let alice_c = Client { http: reqwest::Client::new(), base: synapse.url(), token: account.access_token.clone() };
    let alice_dir = tempfile::tempdir().unwrap();
    let mut alice = TincanClient::open(ClientConfig::new(alice_dir.path())).await.unwrap();
    alice.login_with_token(&synapse.url(), &account.user_id, &account.device_id, &account.access_token).await.unwrap();
    let sync = alice.spawn_sync().unwrap();
    let ghost = format!("@loop_{NUMBER}:hs.test");
    let dm = alice.dm_room(&ruma::UserId::parse(&ghost).unwrap()).await.unwrap();
    let room = dm.room_id().to_owned();
    let key = portal_of(&handle, &room).await;

    // Alice sends an encrypted image: AES-CTR file uploaded, the event encrypted by her client.
    let cat = image(7);
    let mut input = std::io::Cursor::new(cat.clone());
    let mut encryptor = AttachmentEncryptor::new(&mut input);
    let mut ciphertext = Vec::new();
    encryptor.read_to_end(&mut ciphertext).unwrap();
    let keys = encryptor.finish();
    let url = upload(&alice_c, ciphertext).await;
    let file = EncryptedFile::new(url.into(), keys.encryption_info, keys.hashes);
    let mut image_content = ImageMessageEventContent::encrypted("cat.png".into(), file);
    let mut info = ruma::events::room::ImageInfo::new();
    info.mimetype = Some("image/png".into());
    info.size = Some(ruma::UInt::new(cat.len() as u64).unwrap());
    image_content.info = Some(Box::new(info));
    dm.send(RoomMessageEventContent::new(MessageType::Image(image_content))).await.unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if let Some(Seen::Message(k, m)) = rx.recv().await {
                return (k, m);
            }
        }
    })
    .await
    .expect("the image reached the network");
    assert_eq!(seen.0, key);
    assert_eq!((seen.1.msgtype.as_str(), seen.1.body.as_str()), ("m.image", "cat.png"));
    let media = seen.1.media.expect("the network got the bytes");
    assert_eq!((media.mimetype.as_deref(), media.filename.as_str()), (Some("image/png"), "cat.png"));
    assert!(media.data == cat, "the network got the decrypted image ({} bytes)", media.data.len());

    // The network answers with an image: it arrives encrypted and decrypts to the same bytes.
    let dog = image(99);
    handle
        .queue_remote_event(RemoteEvent {
            portal: key.clone(),
            sender: RemoteUserId::new(NUMBER),
            kind: RemoteEventKind::Media {
                id: RemoteMessageId::new("img1"),
                kind: MediaKind::Image,
                media: Media { mimetype: Some("image/png".into()), filename: "dog.png".into(), data: dog.clone() },
                caption: None,
            },
        })
        .await
        .unwrap();
    let store = handle.store().clone();
    let mapped = wait_for("the image bridged", Duration::from_secs(60), || {
        let (store, key) = (store.clone(), key.clone());
        async move { store.message_by_remote(&key, &RemoteMessageId::new("img1")).await.unwrap() }
    })
    .await;
    // Decrypted once the ghost's room key reached Alice's device (the sync runs meanwhile).
    let content: Value = wait_for("Alice's client to decrypt the image event", Duration::from_secs(60), || {
        let (dm, event_id) = (dm.clone(), mapped.event_id.clone());
        async move {
            let event = dm.event(&event_id, None).await.ok()?;
            event.encryption_info()?;
            event.raw().get_field("content").ok().flatten()
        }
    })
    .await;
    assert_eq!(
        (content["msgtype"].as_str(), content["body"].as_str()),
        (Some("m.image"), Some("dog.png")),
        "{content}"
    );
    assert!(content.get("url").is_none(), "no plain URL in an encrypted room: {content}");
    let file: EncryptedFile = serde_json::from_value(content["file"].clone()).unwrap();
    let fetched = download(&alice_c, file.url.as_str()).await;
    assert!(fetched != dog, "the server holds ciphertext");
    let mut input = std::io::Cursor::new(fetched);
    let mut plain = Vec::new();
    AttachmentDecryptor::new(&mut input, file.into()).unwrap().read_to_end(&mut plain).unwrap();
    assert!(plain == dog, "the client decrypted the network's image");

    // Bigger than media.max_bytes: refused when queued, and from Matrix reported on the message.
    let too_big = Media { mimetype: None, filename: "big.bin".into(), data: vec![0; 64 * 1024 + 1] };
    let refused = handle
        .queue_remote_event(RemoteEvent {
            portal: key.clone(),
            sender: RemoteUserId::new(NUMBER),
            kind: RemoteEventKind::Media {
                id: RemoteMessageId::new("big"),
                kind: MediaKind::File,
                media: too_big,
                caption: None,
            },
        })
        .await;
    assert!(matches!(refused, Err(tincan_appservice::BridgeError::MediaTooLarge { .. })), "{refused:?}");
    // (In an unencrypted DM with another ghost, where the test reads the status without a client.)
    let ghost2 = format!("@loop_{OTHER}:hs.test");
    let plain_room = alice_c
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [ghost2], "is_direct": true, "preset": "trusted_private_chat"})),
        )
        .await["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    portal_of(&handle, &ruma::RoomId::parse(&plain_room).unwrap()).await;
    let url = upload(&alice_c, vec![1; 64 * 1024 + 10]).await;
    let sent = alice_c
        .call(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/big1", enc(&plain_room)),
            Some(json!({"msgtype": "m.file", "body": "big.bin", "url": url})),
        )
        .await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    let plain_room = ruma::RoomId::parse(&plain_room).unwrap();
    let status = wait_for("the failed status of the big file", Duration::from_secs(60), || {
        let (alice_c, plain_room, event_id) = (alice_c.clone(), plain_room.clone(), event_id.clone());
        async move {
            room_events(&alice_c, &plain_room).await.into_iter().find_map(|e| {
                (e["type"] == "com.beeper.message_send_status" && e["content"]["m.relates_to"]["event_id"] == event_id)
                    .then(|| e["content"].clone())
            })
        }
    })
    .await;
    assert_eq!(
        status,
        json!({"network": "loopback", "m.relates_to": {"rel_type": "m.reference", "event_id": event_id},
               "status": "FAIL_PERMANENT", "reason": "m.foreign_network_error",
               "message": "the attachment is larger than this bridge's limit of 65536 bytes"})
    );
    // The notice follows the status (a second event): wait for it, then check there is one.
    let notices: Vec<Value> = wait_for("the notice of the big file", Duration::from_secs(60), || {
        let (alice_c, plain_room, ghost2) = (alice_c.clone(), plain_room.clone(), ghost2.clone());
        async move {
            let notices: Vec<Value> = room_events(&alice_c, &plain_room)
                .await
                .into_iter()
                .filter(|e| e["content"]["msgtype"] == "m.notice" && e["sender"] == ghost2.as_str())
                .collect();
            (!notices.is_empty()).then_some(notices)
        }
    })
    .await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(
        notices[0]["content"]["body"],
        "⚠ Not delivered: rejected by the network: the attachment is larger than this bridge's limit of 65536 bytes"
    );
    if let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("the oversized file reached the network as {s:?}");
    }
    sync.abort();
    bridge.stop().await;
}
