//! Messages that arrive before their room key, as they do over federation (the event and the to-device message
//! with its Megolm key travel apart): a proxy in front of Bob's homeserver ([`KeyProxy`]) holds the to-device
//! events back while Alice's messages pass, then lets them through. matrix-sdk does not run the event handlers
//! again when a key comes; the client core keeps such events and delivers them when it does, once, in order,
//! even across a restart.

use crate::harness::User;
use crate::key_proxy::KeyProxy;
use futures::StreamExt;
use std::time::Duration;
use tincan_client_core::{IncomingMessage, TincanClient};
use tincan_testkit::Synapse;
use tokio::sync::mpsc;

/// What a client's [`messages`](TincanClient::messages) yields, as it comes.
struct Received {
    rx: mpsc::UnboundedReceiver<IncomingMessage>,
    task: tokio::task::JoinHandle<()>,
}

impl Received {
    fn of(client: &TincanClient) -> Received {
        let mut stream = Box::pin(client.messages());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        Received { rx, task }
    }

    /// The next message, within 60 s.
    async fn next(&mut self) -> anyhow::Result<IncomingMessage> {
        tokio::time::timeout(Duration::from_secs(60), self.rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no message within 60 s"))?
            .ok_or_else(|| anyhow::anyhow!("the message stream ended"))
    }

    /// Whether a message came that was not taken yet.
    fn any(&mut self) -> Option<IncomingMessage> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_whose_key_comes_late_are_delivered_once_in_order_when_it_arrives() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let alice = User::new(&hs, "alice").await?;
    let proxy = KeyProxy::start(&hs.url()).await?;
    let bob = User::through(&hs, "bob", &proxy.url).await?;
    let mut got = Received::of(&bob.client);
    let bob_sync = bob.client.spawn_sync()?;

    // Alice's first two messages (one Megolm session) reach Bob's client; their room key does not.
    proxy.hold(true);
    let to_bob = bob.account.user_id.as_str();
    let first = alice.client.send_text_to_user(to_bob, "before its key").await?;
    let second = alice.client.send_text_to_user(to_bob, "before its key too").await?;
    assert_eq!(first.room_id, second.room_id);
    proxy.wait_handled(&second.event_id).await?;
    assert!(proxy.held() > 0, "the room key was held back");
    assert_eq!(got.any(), None, "nothing can be read before the key");

    // The key arrives, with no further message: both are delivered, decrypted, in the order they were sent.
    proxy.hold(false);
    let m = got.next().await?;
    assert_eq!((m.event_id.as_str(), m.body.as_str(), m.encrypted), (first.event_id.as_str(), "before its key", true));
    assert_eq!(m.sender, alice.account.user_id);
    let m = got.next().await?;
    assert_eq!((m.event_id.as_str(), m.body.as_str()), (second.event_id.as_str(), "before its key too"));
    // Once: the next message is the one sent after the key, and nothing else follows it.
    let third = alice.client.send_text_to_user(to_bob, "after the key").await?;
    let m = got.next().await?;
    assert_eq!(m.event_id, third.event_id, "{m:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(got.any(), None);
    bob_sync.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_waiting_for_its_key_survives_a_restart() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let alice = User::new(&hs, "carol").await?;
    let proxy = KeyProxy::start(&hs.url()).await?;
    let bob = User::through(&hs, "dave", &proxy.url).await?;

    // Bob's one-shot syncs get the invite, join and the message; its key is held back.
    proxy.hold(true);
    let sent = alice.client.send_text_to_user(&bob.account.user_id, "before its key and a restart").await?;
    let mut synced = false;
    for _ in 0..30 {
        bob.client.sync_once(Duration::from_secs(1)).await?;
        // (sync_once returns once the answer was handled.)
        if proxy.seen(&sent.event_id) {
            synced = true;
            break;
        }
    }
    assert!(synced, "Bob's client never got the message");
    assert!(proxy.held() > 0, "the room key was held back");

    // The app stops before the key comes; a new process on the same data dir gets it and the message.
    let bob = bob.restart().await?;
    let mut got = Received::of(&bob.client);
    proxy.hold(false);
    let bob_sync = bob.client.spawn_sync()?;
    let m = got.next().await?;
    assert_eq!(
        (m.event_id.as_str(), m.body.as_str(), m.encrypted),
        (sent.event_id.as_str(), "before its key and a restart", true)
    );
    let after = alice.client.send_text_to_user(&bob.account.user_id, "after the restart").await?;
    let m = got.next().await?;
    assert_eq!(m.event_id, after.event_id, "{m:?}");
    bob_sync.abort();
    Ok(())
}
