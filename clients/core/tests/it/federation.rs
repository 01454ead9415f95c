//! Two providers, one network (issue #22): providers A (+44) and B (+49), each a Synapse with its own `tincan-ext`
//! and its own provider token on one `tincan-directory`, the Synapses federating over real TLS on loopback
//! (`localhost:PORT` server names, certificates of a CA made in the test, verified). A user of A finds a user of B
//! by number through the directory (route and key, and contact import through A's extension), each sees the
//! other's key verified through the directory, they exchange end-to-end encrypted messages both ways over
//! federation, and with B's Synapse and extension stopped a new user still signs up at A.
//!
//! Skipped without the `tincan-ext` and `tincan-directory` binaries (see [`tincan_testkit::federation`]).

use crate::chain::wait_for_key;
use crate::harness::wait_for;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use tincan_client_core::{
    ClientConfig, DirectoryConfig, E164, KeyStatus, SignedIn, TincanClient, TransparencyLogConfig,
};
use tincan_client_core::{Route, Validation};
use tincan_testkit::directory::APEX;
use tincan_testkit::federation::{Federation, Provider};

const ALICE: &str = "+442079460301";
const BOB: &str = "+4915112340302";
const CAROL: &str = "+442079460303";

/// A client of `provider`: its extension, and the shared directory (DNS and log) straight.
pub(crate) fn config(fed: &Federation, provider: &Provider, data: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(data);
    c.ext_url = Some(provider.ext.url.parse().expect("ext URL"));
    c.directory =
        Some(DirectoryConfig::new(vec![fed.directory.dns], APEX, &fed.anchor).with_log(TransparencyLogConfig {
            url: fed.directory.api.parse().expect("log URL"),
            key: fed.log_key.clone(),
        }));
    c
}

/// Signs `number` up at `provider` with the code its dev sink received.
pub(crate) async fn sign_up(
    fed: &Federation,
    provider: &str,
    data: &Path,
    number: &str,
) -> anyhow::Result<(TincanClient, SignedIn)> {
    let p = fed.provider(provider);
    let mut client = TincanClient::open(config(fed, p, data)).await?;
    client.register(number).await?;
    let signed = client.verify(&p.ext.code(number)?).await?;
    Ok((client, signed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_two_federating_providers_find_each_other_by_number_and_talk_encrypted() -> anyhow::Result<()> {
    let Some(mut fed) = Federation::start(&[("a", &["+44"]), ("b", &["+49"])]).await? else { return Ok(()) };
    let (server_a, server_b) =
        (fed.provider("a").hs.server_name().to_owned(), fed.provider("b").hs.server_name().to_owned());
    assert_ne!(server_a, server_b);
    let (da, db, dc) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);

    // Alice signs up at A, Bob at B: each provider publishes its own user's number and key.
    let (alice, sa) = sign_up(&fed, "a", da.path(), ALICE).await?;
    let (bob, sb) = sign_up(&fed, "b", db.path(), BOB).await?;
    assert!(sa.user_id.ends_with(&format!(":{server_a}")), "{}", sa.user_id);
    assert!(sb.user_id.ends_with(&format!(":{server_b}")), "{}", sb.user_id);
    assert_eq!(
        (sa.published_for.as_slice(), sb.published_for.as_slice()),
        ([ALICE.to_owned()].as_slice(), [BOB.to_owned()].as_slice())
    );
    let (ka, kb) = (sa.master_key.expect("A's master key"), sb.master_key.expect("B's master key"));
    let bob_record = fed.provider("b").registrar.get(BOB).await?.expect("Bob's number in the directory");
    assert_eq!(bob_record["provider"], "b", "{bob_record}");

    // Alice finds Bob by number through the directory, and Bob Alice; each key verifies through the directory
    // (the homeserver's copy of the other's key came over federation).
    let route = wait_for_key(&alice, BOB).await?;
    let Route::Matrix { ref user_id, .. } = route else { panic!("{route:?}") };
    assert_eq!(user_id.to_string(), sb.user_id);
    wait_for_key(&bob, ALICE).await?;
    let bob_seen = alice.check_contact(BOB).await?;
    assert_eq!(bob_seen.user_id.as_deref(), Some(sb.user_id.as_str()));
    assert_eq!(bob_seen.key_status, Some(KeyStatus::Verified { key: kb }));
    assert_eq!(bob_seen.route.validation(), Validation::Secure);
    let alice_seen = bob.check_contact(ALICE).await?;
    assert_eq!(alice_seen.key_status, Some(KeyStatus::Verified { key: ka }));

    // Contact import through A's extension finds B's user (A mirrors the directory's list every second and
    // resolves the number through DNSSEC-validated, log-backed answers).
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let found = alice.import_contacts(&[E164::parse(BOB)?], |_, _| {}).await?;
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        found.len(),
        1,
        "A's extension did not find B's number: {found:?}\n{}",
        fed.provider("a").ext.log_tail(20)
    );
    assert_eq!((found[0].number.as_str(), found[0].user_id.as_str()), (BOB, sb.user_id.as_str()));

    // A → B over federation, end-to-end encrypted.
    let to_bob = bob.messages();
    let bob_sync = bob.spawn_sync()?;
    let sent = alice.send_text(BOB, "hi from A", false).await?;
    assert!(matches!(sent.key_status, Some(KeyStatus::Verified { .. })), "{sent:?}");
    let got = wait_for(to_bob, |m| m.body == "hi from A").await?;
    assert!(got.encrypted);
    assert_eq!((got.sender.as_str(), got.event_id.as_str()), (sa.user_id.as_str(), sent.event_id.as_str()));

    // B's homeserver received only ciphertext.
    let b_token = bob.matrix().and_then(|c| c.access_token()).expect("Bob's token");
    let url =
        format!("{}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", fed.provider("b").hs.url(), sent.room_id);
    let page: Value =
        reqwest::Client::new().get(url).bearer_auth(b_token).send().await?.error_for_status()?.json().await?;
    let ours = page["chunk"].as_array().expect("chunk").iter().find(|e| e["event_id"] == sent.event_id.as_str());
    let ours = ours.expect("the event reached B's homeserver");
    assert_eq!(ours["type"], "m.room.encrypted");
    assert!(!ours.to_string().contains("hi from A"));

    // B → A, in the same room.
    let to_alice = alice.messages();
    let alice_sync = alice.spawn_sync()?;
    let reply = bob.send_text(ALICE, "hi from B", false).await?;
    assert!(matches!(reply.key_status, Some(KeyStatus::Verified { .. })), "{reply:?}");
    assert_eq!(reply.room_id, sent.room_id);
    let got = wait_for(to_alice, |m| m.body == "hi from B").await?;
    assert!(got.encrypted);
    assert_eq!(got.sender, sb.user_id);
    bob_sync.abort();
    alice_sync.abort();

    // B's outage: its Synapse and extension stop. A new user still signs up at A, and is published.
    let b = fed.provider_mut("b");
    b.hs.stop();
    b.ext.stop();
    let (carol, sc) = sign_up(&fed, "a", dc.path(), CAROL).await?;
    assert!(sc.new_account);
    assert!(sc.user_id.ends_with(&format!(":{server_a}")), "{}", sc.user_id);
    assert_eq!(sc.published_for, [CAROL]);
    wait_for_key(&carol, ALICE).await?;
    wait_for_key(&alice, CAROL).await?;
    assert_eq!(
        alice.check_contact(CAROL).await?.key_status,
        Some(KeyStatus::Verified { key: sc.master_key.expect("Carol's master key") })
    );
    Ok(())
}

/// Alice (A) writes to Bob (B) while Bob's app is closed; when it opens, Bob's client joins the DM — and B's
/// homeserver joins the room only then, so it never had the messages sent before: they do not come down Bob's
/// sync (a homeserver fetches them from A only when asked for the room's history) and are read from the history
/// after the join, each delivered once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_before_the_peer_joins_over_federation_are_delivered_once_when_they_join() -> anyhow::Result<()> {
    const ALICE2: &str = "+442079460311";
    const BOB2: &str = "+4915112340312";
    let Some(fed) = Federation::start(&[("a", &["+44"]), ("b", &["+49"])]).await? else { return Ok(()) };
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (alice, sa) = sign_up(&fed, "a", da.path(), ALICE2).await?;
    let (bob, _) = sign_up(&fed, "b", db.path(), BOB2).await?;
    wait_for_key(&alice, BOB2).await?;

    // Bob is not syncing: the DM is created, he is invited, both texts are sent before his homeserver is in it.
    let first = alice.send_text(BOB2, "while you were away", false).await?;
    let second = alice.send_text(BOB2, "and a second one", false).await?;
    assert_eq!(first.room_id, second.room_id);

    let mut to_bob = Box::pin(bob.messages());
    let bob_sync = bob.spawn_sync()?;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Both, then 3 s more to see that none comes twice.
    let mut quiet_until: Option<Instant> = None;
    loop {
        let until = quiet_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until.into(), futures::StreamExt::next(&mut to_bob)).await {
            Ok(Some(m)) if m.room_id == first.room_id => {
                assert!(m.encrypted, "{m:?}");
                assert_eq!(m.sender, sa.user_id);
                got.push((m.event_id, m.body));
                if got.len() == 2 && quiet_until.is_none() {
                    quiet_until = Some(Instant::now() + Duration::from_secs(3));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!("message stream ended"),
            Err(_) => break,
        }
    }
    bob_sync.abort();
    assert_eq!(
        got,
        [
            (first.event_id.clone(), "while you were away".to_owned()),
            (second.event_id.clone(), "and a second one".to_owned())
        ],
        "each text sent before Bob's homeserver joined, once, in order"
    );
    Ok(())
}
