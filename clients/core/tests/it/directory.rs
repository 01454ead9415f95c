//! The directory in the loop: contacts verified by their DNSSEC-validated key with no manual step, sending by
//! number, a key mismatch refused, routes that are not Matrix named, a tampered answer an error, and the
//! verified state surviving a restart.

use crate::dns::{Directory, Entry};
use crate::harness::{User, wait_for};
use tincan_client_core::{ClientError, KeyStatus, MasterKey, Route, Validation};
use tincan_testkit::Synapse;

const A_NUM: &str = "+442079460101";
const B_NUM: &str = "+442079460102";
/// Published for B's account with a key that is not B's.
const WRONG_KEY_NUM: &str = "+442079460103";
const SIP_NUM: &str = "+442079460104";
const TAMPERED_NUM: &str = "+442079460105";
const NOBODY: &str = "+442079460199";

fn other_key() -> MasterKey {
    let mut base = [0x66u8; 32];
    base[0] = 0x58;
    MasterKey::from_bytes(base).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_verifies_contacts_and_guards_sending() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let a = User::new(&hs, "alice").await?;
    let b = User::new(&hs, "bob").await?;
    let ka = a.client.own_master_key().await?.expect("A's master key");
    let kb = b.client.own_master_key().await?.expect("B's master key");
    let (ua, ub) = (a.account.user_id.clone(), b.account.user_id.clone());
    let dir = Directory::serve(
        &[
            Entry::matrix(A_NUM, &ua, Some(ka)),
            Entry::matrix(B_NUM, &ub, Some(kb)),
            Entry::matrix(WRONG_KEY_NUM, &ub, Some(other_key())),
            Entry::sip(SIP_NUM, "sip:+442079460104@sip.test"),
            Entry::matrix(TAMPERED_NUM, &ua, Some(ka)),
        ],
        Some(TAMPERED_NUM),
    )
    .await?;
    let a = a.restart_with(&dir).await?;
    let b = b.restart_with(&dir).await?;

    // Each sees the other as verified through the directory, with no manual step.
    let b_seen = a.client.check_contact(B_NUM).await?;
    assert_eq!(b_seen.user_id.as_deref(), Some(ub.as_str()));
    assert_eq!(b_seen.key_status, Some(KeyStatus::Verified { key: kb }));
    assert_eq!(b_seen.route.validation(), Validation::Secure);
    let a_seen = b.client.check_contact(A_NUM).await?;
    assert_eq!(a_seen.key_status, Some(KeyStatus::Verified { key: ka }));

    // A sends "hi" to B's number; B gets it decrypted and knows the sender's number.
    let incoming = b.client.messages();
    let b_sync = b.client.spawn_sync()?;
    let sent = a.client.send_text(B_NUM, "hi", false).await?;
    assert!(matches!(sent.key_status, Some(KeyStatus::Verified { .. })));
    let got = wait_for(incoming, |m| m.body == "hi").await?;
    assert!(got.encrypted);
    assert_eq!(got.sender, ua);
    assert_eq!(got.sender_number.map(|n| n.to_string()), Some(A_NUM.to_owned()));
    b_sync.abort();

    // A directory key that is not the contact's: not verified, and sending is refused.
    let wrong = a.client.check_contact(WRONG_KEY_NUM).await?;
    let Some(KeyStatus::Mismatch(m)) = &wrong.key_status else { panic!("{wrong:?}") };
    assert_eq!((m.directory, m.homeserver, m.previous), (other_key(), kb, Some(kb)));
    match a.client.send_text(WRONG_KEY_NUM, "secret", false).await {
        Err(ClientError::KeyMismatch(m)) => assert_eq!(m.homeserver, kb),
        other => panic!("expected a key mismatch, got {other:?}"),
    }

    // Not on Matrix: a typed result naming the route.
    match a.client.send_text(SIP_NUM, "hello", false).await {
        Err(ClientError::NotOnNetwork { route: Route::Sip { uris, .. }, .. }) => {
            assert_eq!(uris, ["sip:+442079460104@sip.test"]);
        }
        other => panic!("expected NotOnNetwork(SIP), got {other:?}"),
    }
    assert_eq!(a.client.resolve(NOBODY).await?, Route::None { validation: Validation::Secure });
    assert!(matches!(
        a.client.send_text(NOBODY, "hello", false).await,
        Err(ClientError::NotOnNetwork { route: Route::None { .. }, .. })
    ));

    // A tampered answer is an error, never a route.
    match a.client.resolve(TAMPERED_NUM).await {
        Err(ClientError::Lookup(e)) => assert!(e.is_validation_failure(), "{e:?}"),
        other => panic!("expected a validation failure, got {other:?}"),
    }

    // Restart keeps the session and the verified state.
    let a = a.restart_with(&dir).await?;
    assert_eq!(a.client.user_id().map(|u| u.to_string()), Some(ua));
    let verified = a.client.verified_contacts();
    assert!(verified.iter().any(|r| r.user_id == ub && r.key == kb && r.number.as_str() == B_NUM), "{verified:?}");
    Ok(())
}
