//! A number moving between two federating providers (issue #22, "porting"): providers A and B both serve +44
//! on one `tincan-directory`, their Synapses federating over verified TLS ([`tincan_testkit::federation`]).
//! Alice signs up at A, and Carol at A verifies her number and talks to her. Then Alice signs up at B with the
//! same number (a new phone, a new data dir): B files the port with its own SMS verification, A's extension
//! releases the number (`porting.unlocked = "release"`), and the directory moves it to B with Alice's new key.
//! Carol, who verified the old key, sees the number as moved (backed by the log's port entry), then verified;
//! what she sends to the number reaches Alice's new account over federation, and A's own contact discovery
//! answers the number with the new Matrix ID. Before she looks the number up again, the old account tells her
//! in their chat where the number went (A's extension's moved notice, `io.tincan.moved`), which her client
//! reads as a [`MovedNotice`](tincan_client_core::MovedNotice) naming the new Matrix ID and her contact's number.
//! Alice's old account cannot be closed while the number is A's (`not_moved_away`); once it moved, her old client
//! closes it ([`TincanClient::close_account`](tincan_client_core::TincanClient::close_account)): A deactivates it
//! (A has `homeserver.admin_token`), its token stops working and the old data dir is signed out.
//!
//! Skipped without the `tincan-ext` and `tincan-directory` binaries (see [`tincan_testkit::federation`]).

use crate::chain::wait_for_key;
use crate::federation::sign_up;
use crate::harness::wait_for;
use std::time::{Duration, Instant};
use tincan_client_core::{ClientError, E164, KeyStatus, MovedNotice, Route};
use tincan_testkit::federation::Federation;

const ALICE: &str = "+442079460401";
const CAROL: &str = "+442079460402";

/// Polls `f` every 200 ms until it gives something (60 s at most: two Synapses share a loaded machine).
async fn eventually<T, F, Fut>(what: &str, f: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = f().await? {
            return Ok(t);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The federation of A and B on +44, A releasing unlocked numbers at once.
pub(crate) async fn start() -> anyhow::Result<Option<Federation>> {
    Federation::builder(&[("a", &["+44"]), ("b", &["+44"])])
        .port_window_secs(3600)
        // Clients keep an answer for its TTL (300 s by default): the move shows to Carol within 2 s.
        .record_ttl_secs(2)
        .ext_settings("a", "[porting]\nunlocked = \"release\"\n")
        // A can deactivate the old account its user closes.
        .admin_token("a")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_ported_to_the_other_provider_reaches_its_new_account_and_its_contacts_are_told_of_the_move()
-> anyhow::Result<()> {
    let Some(fed) = start().await? else { return Ok(()) };
    let server_b = fed.provider("b").hs.server_name().to_owned();
    let (da, dc, da2) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);

    // Alice and Carol at A; Carol verifies Alice's number and writes to her.
    let (mut alice_a, sa) = sign_up(&fed, "a", da.path(), ALICE).await?;
    let (carol, _) = sign_up(&fed, "a", dc.path(), CAROL).await?;
    let old_key = sa.master_key.expect("Alice's key at A");
    wait_for_key(&carol, ALICE).await?;
    assert_eq!(carol.check_contact(ALICE).await?.key_status, Some(KeyStatus::Verified { key: old_key }));
    let to_alice_a = alice_a.messages();
    let alice_a_sync = alice_a.spawn_sync()?;
    carol.send_text(ALICE, "before the move", false).await?;
    wait_for(to_alice_a, |m| m.body == "before the move").await?;
    alice_a_sync.abort();
    // While the number is A's, its account there is not one to close.
    let refused = alice_a.close_account().await;
    assert!(matches!(refused, Err(ClientError::NotMovedAway)), "{refused:?}");
    assert_eq!(alice_a.user_id().map(|u| u.to_string()), Some(sa.user_id.clone()), "the session stays");
    let to_carol = carol.messages();
    let carol_sync = carol.spawn_sync()?;

    // Alice signs up at B with the same number: B files the port, A releases it.
    let (alice_b, sb) = sign_up(&fed, "b", da2.path(), ALICE).await?;
    assert!(sb.user_id.ends_with(&format!(":{server_b}")), "{}", sb.user_id);
    assert!(sb.new_account);
    let port = sb.port.clone().expect("B reports the port it filed");
    assert_eq!(port.state, "pending", "{port:?}");
    let new_key = alice_b.own_master_key().await?.expect("Alice's key at B");
    assert_ne!(new_key, old_key);

    // The directory now answers B: Alice's new Matrix ID and key, A no longer the holder.
    let reg = &fed.provider("b").registrar;
    let record = eventually("the directory's record names B with the new key", || async {
        let r = reg.get(ALICE).await?.expect("Alice's number in the directory");
        Ok((r["provider"] == "b" && r["key"]["ed25519"] == new_key.to_base64().as_str()).then_some(r))
    })
    .await?;
    let uri = format!("matrix:u/{}", sb.user_id.trim_start_matches('@'));
    assert!(record["services"].to_string().contains(&uri), "{record}");

    // The old account tells Carol, in their chat, where the number went: a notice her client can act on.
    let notice = wait_for(to_carol, |m| m.moved.is_some()).await?;
    assert_eq!(notice.sender, sa.user_id);
    assert!(!notice.encrypted, "A's extension holds none of the old account's keys");
    let expected =
        MovedNotice { user_id: sb.user_id.clone(), provider: Some("b".into()), number: Some(E164::parse(ALICE)?) };
    assert_eq!(notice.moved, Some(expected));
    assert!(notice.body.contains(&sb.user_id), "{}", notice.body);
    carol_sync.abort();

    // Carol acts on it by checking the number again: she, who verified the old key, sees a move backed by the
    // log's port entry — not a key change.
    eventually("Carol's lookup answers the new account", || async {
        let route = carol.resolve(ALICE).await;
        Ok(matches!(&route, Ok(Route::Matrix { user_id, key: Some(_), .. }) if user_id.as_str() == sb.user_id)
            .then_some(()))
    })
    .await?;
    let seen = carol.check_contact(ALICE).await?;
    assert_eq!(seen.user_id.as_deref(), Some(sb.user_id.as_str()));
    assert_eq!(
        seen.key_status,
        Some(KeyStatus::Moved {
            previous_user: sa.user_id.clone(),
            previous_key: old_key,
            from: "a".into(),
            to: "b".into(),
            key: new_key,
        })
    );
    assert_eq!(carol.check_contact(ALICE).await?.key_status, Some(KeyStatus::Verified { key: new_key }));

    // What Carol sends to the number reaches the new account, encrypted, over federation (A → B).
    let to_alice_b = alice_b.messages();
    let alice_b_sync = alice_b.spawn_sync()?;
    let sent = carol.send_text(ALICE, "after the move", false).await?;
    assert_eq!(sent.user_id, sb.user_id);
    let got = wait_for(to_alice_b, |m| m.body == "after the move").await?;
    assert!(got.encrypted);
    alice_b_sync.abort();

    // A's own contact discovery no longer answers with the old account: it finds the new one at B.
    let found = eventually("A's extension answers the number with the new account", || async {
        let found = carol.import_contacts(&[E164::parse(ALICE)?], |_, _| {}).await?;
        Ok(found.into_iter().find(|c| c.user_id == sb.user_id))
    })
    .await?;
    assert_eq!(found.number.as_str(), ALICE);

    // Alice closes the account her number left behind at A. A hears of the completed port by webhook or poll:
    // until then it may still say the number has not moved away.
    let old_token = alice_a.matrix().and_then(|c| c.access_token()).expect("the old session's token");
    let deadline = Instant::now() + Duration::from_secs(60);
    let closed = loop {
        match alice_a.close_account().await {
            Err(ClientError::NotMovedAway) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => break other?,
        }
    };
    assert_eq!(closed, sa.user_id);
    assert_eq!(alice_a.user_id(), None, "the closed account's session is forgotten here");
    let whoami = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3/account/whoami", fed.provider("a").hs.url()))
        .bearer_auth(&old_token)
        .send()
        .await?;
    assert_eq!(whoami.status().as_u16(), 401, "the closed account's token still works");
    // Closing is done once: signed out, there is nothing left to close.
    assert!(matches!(alice_a.close_account().await, Err(ClientError::NotLoggedIn)));
    Ok(())
}

/// The other way a number can change hands: no port. Provider A gives Alice's number to another of its accounts
/// (Dave's) by rewriting the directory's record with its own token — the route, then the key: two ordinary log
/// entries, no port entry. Carol, who verified Alice's number, is warned as for a key change
/// ([`KeyStatus::Reassigned`], naming Alice's Matrix ID and key), not shown the number as plainly verified; the
/// check records Dave's key, so the next one shows it verified, and Alice's record is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_that_leads_to_another_account_without_a_port_warns_as_a_key_change() -> anyhow::Result<()> {
    const DAVE: &str = "+442079460403";
    let Some(fed) = Federation::builder(&[("a", &["+44"])]).record_ttl_secs(2).start().await? else { return Ok(()) };
    let (da, dc, dd) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
    let (_alice, sa) = sign_up(&fed, "a", da.path(), ALICE).await?;
    let (carol, _) = sign_up(&fed, "a", dc.path(), CAROL).await?;
    let (_dave, sd) = sign_up(&fed, "a", dd.path(), DAVE).await?;
    let (alice_key, dave_key) = (sa.master_key.expect("Alice's key"), sd.master_key.expect("Dave's key"));
    wait_for_key(&carol, ALICE).await?;
    assert_eq!(carol.check_contact(ALICE).await?.key_status, Some(KeyStatus::Verified { key: alice_key }));

    // A points Alice's number at Dave's account and key: no port.
    let reg = &fed.provider("a").registrar;
    reg.put_number(ALICE, &[("matrix", &format!("matrix:u/{}", sd.user_id.trim_start_matches('@')))]).await?;
    reg.put_key(ALICE, &dave_key.to_base64()).await?;
    eventually("Carol's lookup answers Dave's account and key", || async {
        let route = carol.resolve(ALICE).await;
        Ok(matches!(&route, Ok(Route::Matrix { user_id, key: Some(k), .. }) if user_id.as_str() == sd.user_id && *k == dave_key)
            .then_some(()))
    })
    .await?;

    let seen = carol.check_contact(ALICE).await?;
    assert_eq!(seen.user_id.as_deref(), Some(sd.user_id.as_str()));
    assert_eq!(
        seen.key_status,
        Some(KeyStatus::Reassigned { previous_user: sa.user_id.clone(), previous_key: alice_key, key: dave_key }),
        "a number that changed hands with no port entry is not shown as plainly verified"
    );
    // Warned once, as a key change: the next check shows Dave's key verified, and Alice no longer holds the number.
    assert_eq!(carol.check_contact(ALICE).await?.key_status, Some(KeyStatus::Verified { key: dave_key }));
    assert!(carol.verified_contacts().iter().all(|r| r.user_id != sa.user_id));
    Ok(())
}
