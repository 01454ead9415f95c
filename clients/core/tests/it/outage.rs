//! The background sync lives through a homeserver outage, on a real Synapse stopped and started again on the same
//! port and data: the sync task keeps retrying while nothing answers (connections refused), and what is sent
//! after the homeserver is back reaches the listener without the app starting a new sync.

use crate::harness::{User, wait_for};
use std::time::Duration;
use tincan_testkit::Synapse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_outlives_a_homeserver_outage_and_delivers_what_comes_after() -> anyhow::Result<()> {
    let mut hs = Synapse::start().await?;
    let a = User::new(&hs, "ivan").await?;
    let b = User::new(&hs, "judy").await?;
    let (before, after) = (b.client.messages(), b.client.messages());
    let sync = b.client.spawn_sync()?;
    a.client.send_text_to_user(&b.account.user_id, "before the outage").await?;
    wait_for(before, |m| m.body == "before the outage").await?;

    // The homeserver goes away: the long-poll in flight breaks, and the next tries are refused.
    hs.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!sync.is_finished(), "the sync gave up during the outage");
    hs.start_again().await?;

    let sent = a.client.send_text_to_user(&b.account.user_id, "after the outage").await?;
    let got = wait_for(after, |m| m.body == "after the outage").await?;
    assert_eq!(got.event_id, sent.event_id);
    assert!(got.encrypted);
    assert!(!sync.is_finished());
    sync.abort();
    Ok(())
}
