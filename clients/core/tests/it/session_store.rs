//! The session in the app's own store (a keychain: [`SessionStore`]), on a real Synapse: signing in saves it
//! there, the token sealed, and keeps it out of the data dir; a restart with it resumes the same device, which
//! decrypts what it received before the restart and what was sent while it was closed; without it the data dir
//! alone signs nothing in; a stored session whose data dir is gone is a typed error; a session the state file
//! held moves into a store the app supplies later; forgetting the session clears the store.

use crate::harness::{User, config, wait_for};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_client_core::state::SavedSession;
use tincan_client_core::{ClientError, SessionStore, SessionStoreError, TincanClient};
use tincan_testkit::Synapse;

/// The app's keychain: one session slot that outlives the app's runs.
#[derive(Debug, Default)]
struct Keychain(Mutex<Option<SavedSession>>);

impl Keychain {
    fn get(&self) -> Option<SavedSession> {
        self.0.lock().unwrap().clone()
    }
}

impl SessionStore for Keychain {
    fn load(&self) -> Result<Option<SavedSession>, SessionStoreError> {
        Ok(self.get())
    }

    fn save(&self, session: &SavedSession) -> Result<(), SessionStoreError> {
        *self.0.lock().unwrap() = Some(session.clone());
        Ok(())
    }

    fn clear(&self) -> Result<(), SessionStoreError> {
        *self.0.lock().unwrap() = None;
        Ok(())
    }
}

/// The data dir's state file.
fn state_file(dir: &Path) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(dir.join(tincan_client_core::state::STATE_FILE))?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_apps_stored_session_is_the_same_device_and_decrypts_its_rooms() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let a = User::new(&hs, "gina").await?;
    let keychain = Arc::new(Keychain::default());
    let b = User::with_store(&hs, "hank", Some(keychain.clone())).await?;

    // Signed in: the session is in the app's store with the token sealed, and not in the data dir.
    let stored = keychain.get().expect("the session reached the app's store");
    assert_eq!((stored.user_id.as_str(), stored.device_id.as_str()), (&*b.account.user_id, &*b.account.device_id));
    assert!(!stored.access_token.as_sealed().contains(&b.account.access_token), "the stored token is sealed");
    assert!(state_file(b.dir.path())?["session"].is_null(), "the state file holds no session");
    let b_key = b.client.own_master_key().await?.expect("B's cross-signing bootstrapped");

    let incoming = b.client.messages();
    let sync = b.client.spawn_sync()?;
    a.client.send_text_to_user(&b.account.user_id, "before restart").await?;
    wait_for(incoming, |m| m.body == "before restart").await?;
    sync.abort();

    // Reopened without the app's store, the data dir alone signs nothing in.
    let b = b.restart_with(None).await?;
    assert_eq!(b.client.user_id(), None);
    a.client.send_text_to_user(&b.account.user_id, "while closed").await?;

    // With it: the same device and identity, and both messages decrypt from the store and the sync.
    let b = b.restart_with(Some(keychain.clone())).await?;
    assert_eq!(b.client.device_id().as_deref(), Some(&*b.account.device_id));
    assert_eq!(b.client.own_master_key().await?, Some(b_key));
    b.client.sync_once(Duration::ZERO).await?;
    let history = b.client.history(&a.account.user_id, 20).await?;
    for body in ["before restart", "while closed"] {
        assert!(history.iter().any(|m| m.body == body && m.encrypted), "{body:?} not decrypted: {history:?}");
    }

    // A stored session whose data dir is gone (the app's data cleared, its keychain kept) is refused.
    let fresh = tempfile::tempdir()?;
    match TincanClient::open(config(fresh.path(), Some(keychain.clone()))).await {
        Err(ClientError::SessionWithoutKeys { device_id }) => assert_eq!(device_id, b.account.device_id),
        other => panic!("expected SessionWithoutKeys, got {:?}", other.map(|_| ())),
    }

    // A session the state file holds (A signed in before the app had a store) moves into the store.
    let a_keychain = Arc::new(Keychain::default());
    let a = a.restart_with(Some(a_keychain.clone())).await?;
    assert_eq!(a.client.device_id().as_deref(), Some(&*a.account.device_id));
    assert_eq!(a_keychain.get().map(|s| s.device_id), Some(a.account.device_id.clone()));
    assert!(state_file(a.dir.path())?["session"].is_null(), "the state file gave its session up");

    // Forgetting the session clears the app's store.
    let mut b = b;
    b.client.forget_session()?;
    assert!(keychain.get().is_none());
    Ok(())
}
