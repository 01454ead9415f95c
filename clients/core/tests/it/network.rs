//! The acceptance on the real chain (Synapse + `tincan-ext` + `tincan-directory`, see `chain.rs`): two
//! numbers sign up and each sees the other verified through the directory with no manual step; "hi" sent to a
//! number arrives decrypted and the server only holds `m.room.encrypted`; a directory key that is not the
//! contact's refuses sending; a number not on Matrix is named with its route; a tampered DNS answer (a real
//! man-in-the-middle on the wire) is a validation error; contact import finds the registered numbers; and the
//! session and the verified state survive a restart.

use crate::chain::{Chain, wait_for_key};
use crate::harness::wait_for;
use serde_json::Value;
use tincan_client_core::{ClientError, KeyStatus, MasterKey, Route, TincanClient, Validation};

const A_NUM: &str = "+442079460101";
const B_NUM: &str = "+442079460102";
/// Registered by the provider for B's account with a key that is not B's.
const WRONG_KEY_NUM: &str = "+442079460103";
/// Registered by the provider with only a SIP route.
const SIP_NUM: &str = "+442079460104";
/// Registered for A, but every answer for it is tampered with on the wire.
const TAMPERED_NUM: &str = "+442079460105";
const NOBODY: &str = "+442079460199";

fn other_key() -> MasterKey {
    let mut base = [0x66u8; 32];
    base[0] = 0x58;
    MasterKey::from_bytes(base).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_by_number_and_message_through_the_real_directory() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(TAMPERED_NUM).await? else { return Ok(()) };
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);

    // Two numbers sign up through the extension; each master key is published for its number.
    let (a, sa) = chain.sign_up(da.path(), A_NUM).await?;
    assert!(sa.new_account);
    assert_eq!(sa.published_for, [A_NUM]);
    let ka = sa.master_key.expect("A's cross-signing bootstrapped");
    let (b, sb) = chain.sign_up(db.path(), B_NUM).await?;
    assert_eq!(sb.published_for, [B_NUM]);
    let kb = sb.master_key.expect("B's cross-signing bootstrapped");
    let (ua, ub) = (sa.user_id.clone(), sb.user_id.clone());
    assert_eq!(chain.registrar.get(B_NUM).await?.expect("B's record")["key"]["ed25519"], kb.to_base64());

    // What the provider adds on its own: a wrong key for B's account, a SIP-only number, A under a number whose
    // answers the proxy tampers with.
    chain.registrar.put_number(WRONG_KEY_NUM, &[("matrix", &Chain::matrix_uri(&ub))]).await?;
    chain.registrar.put_key(WRONG_KEY_NUM, &other_key().to_base64()).await?;
    chain.registrar.put_number(SIP_NUM, &[("sip", "sip:+442079460104@sip.test")]).await?;
    chain.registrar.put_number(TAMPERED_NUM, &[("matrix", &Chain::matrix_uri(&ua))]).await?;
    chain.registrar.put_key(TAMPERED_NUM, &ka.to_base64()).await?;

    // Each sees the other as verified through the directory, with no manual step.
    wait_for_key(&a, B_NUM).await?;
    wait_for_key(&b, A_NUM).await?;
    let b_seen = a.check_contact(B_NUM).await?;
    assert_eq!(b_seen.user_id.as_deref(), Some(ub.as_str()));
    assert_eq!(b_seen.key_status, Some(KeyStatus::Verified { key: kb }));
    assert_eq!(b_seen.route.validation(), Validation::Secure);
    let a_seen = b.check_contact(A_NUM).await?;
    assert_eq!(a_seen.key_status, Some(KeyStatus::Verified { key: ka }));

    // A sends "hi" to B's number; B gets it decrypted and knows the sender's number.
    let incoming = b.messages();
    let b_sync = b.spawn_sync()?;
    let sent = a.send_text(B_NUM, "hi", false).await?;
    assert!(matches!(sent.key_status, Some(KeyStatus::Verified { .. })), "{sent:?}");
    let got = wait_for(incoming, |m| m.body == "hi").await?;
    assert!(got.encrypted);
    assert_eq!(got.sender, ua);
    assert_eq!(got.event_id, sent.event_id);
    assert_eq!(got.sender_number.map(|n| n.to_string()), Some(A_NUM.to_owned()));
    b_sync.abort();

    // The server's copy, read with B's token over plain HTTP: only m.room.encrypted.
    let b_token = b.matrix().and_then(|c| c.access_token()).expect("B's token");
    let url = format!("{}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", chain.hs.url(), sent.room_id);
    let page: Value =
        reqwest::Client::new().get(url).bearer_auth(b_token).send().await?.error_for_status()?.json().await?;
    let events = page["chunk"].as_array().expect("chunk");
    let ours = events.iter().find(|e| e["event_id"] == sent.event_id.as_str()).expect("the sent event");
    assert_eq!(ours["type"], "m.room.encrypted");
    assert!(!ours.to_string().contains("\"hi\""), "no plaintext on the server: {ours}");
    assert!(events.iter().all(|e| e["type"] != "m.room.message"));

    // A directory key that is not the contact's: not verified, and sending is refused.
    let wrong = a.check_contact(WRONG_KEY_NUM).await?;
    let Some(KeyStatus::Mismatch(m)) = &wrong.key_status else { panic!("{wrong:?}") };
    assert_eq!((m.directory, m.homeserver, m.previous), (other_key(), kb, Some(kb)));
    match a.send_text(WRONG_KEY_NUM, "secret", false).await {
        Err(ClientError::KeyMismatch(m)) => assert_eq!(m.homeserver, kb),
        other => panic!("expected a key mismatch, got {other:?}"),
    }

    // Not on Matrix: a typed result naming the route.
    match a.send_text(SIP_NUM, "hello", false).await {
        Err(ClientError::NotOnNetwork { route: Route::Sip { uris, validation }, .. }) => {
            assert_eq!(uris, ["sip:+442079460104@sip.test"]);
            assert_eq!(validation, Validation::Secure);
        }
        other => panic!("expected NotOnNetwork(SIP), got {other:?}"),
    }
    assert_eq!(a.resolve(NOBODY).await?, Route::None { validation: Validation::Secure });
    assert!(matches!(
        a.send_text(NOBODY, "hello", false).await,
        Err(ClientError::NotOnNetwork { route: Route::None { .. }, .. })
    ));

    // A tampered answer is an error, never a route.
    match a.resolve(TAMPERED_NUM).await {
        Err(ClientError::Lookup(e)) => assert!(e.is_validation_failure(), "{e:?}"),
        other => panic!("expected a validation failure, got {other:?}"),
    }
    assert!(matches!(a.send_text(TAMPERED_NUM, "hello", false).await, Err(ClientError::Lookup(_))));

    // Contact import through the extension's Identity Service: the signed-up number comes back with its
    // Matrix ID; numbers only a provider registered, and unregistered ones, do not.
    let mut progress = Vec::new();
    let found = a
        .import_contacts(
            &[B_NUM, NOBODY, SIP_NUM].map(|n| tincan_client_core::E164::parse(n).unwrap()),
            |done, total| progress.push((done, total)),
        )
        .await?;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].number.as_str(), found[0].user_id.as_str()), (B_NUM, ub.as_str()));
    assert_eq!(progress.last(), Some(&(3, 3)));

    // A restart keeps the session and the verified state.
    drop(a);
    let a = TincanClient::open(chain.config(da.path())).await?;
    assert_eq!(a.user_id().map(|u| u.to_string()), Some(ua));
    assert_eq!(a.number().map(|n| n.to_string()), Some(A_NUM.to_owned()));
    let verified = a.verified_contacts();
    assert!(verified.iter().any(|r| r.user_id == ub && r.key == kb && r.number.as_str() == B_NUM), "{verified:?}");
    assert_eq!(a.check_contact(B_NUM).await?.key_status, Some(KeyStatus::Verified { key: kb }));
    Ok(())
}
