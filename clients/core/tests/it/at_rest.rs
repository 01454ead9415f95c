//! Keys at rest, on a real Synapse: the data dir is private, the key file is made on first run and private, the
//! access token and matrix-sdk's stores hold nothing in clear, a wrong key opens nothing, and an earlier
//! version's unencrypted data dir is refused without being touched.

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tincan_client_core::{ClientConfig, ClientError, TincanClient};
use tincan_testkit::Synapse;

/// The permission bits, in octal.
fn mode(p: &Path) -> String {
    format!("{:o}", std::fs::metadata(p).unwrap().permissions().mode() & 0o777)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out
}

/// The files under `dir` whose bytes contain `needle`.
fn holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        // A file can go away meanwhile (SQLite's -shm/-wal): then it holds nothing.
        .filter(|p| std::fs::read(p).unwrap_or_default().windows(needle.len()).any(|w| w == needle.as_bytes()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_private_and_holds_no_token_or_key_in_clear() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let account = hs.register_user("erin", false).await?;
    let tmp = tempfile::tempdir()?;
    // A data dir that does not exist yet, made by the client under the default umask.
    let data = tmp.path().join("tincan");
    let mut client = TincanClient::open(ClientConfig::new(&data)).await?;
    let master = client
        .login_with_token(&hs.url(), &account.user_id, &account.device_id, &account.access_token)
        .await?
        .expect("cross-signing bootstrapped");
    drop(client);

    assert_eq!(mode(&data), "700", "the data dir is private");
    assert_eq!(mode(&data.join("store.key")), "600", "the key file is made on first run, private");
    assert_eq!(holding(&data, &account.access_token), Vec::<PathBuf>::new(), "the access token is not in clear");
    // The crypto store's contents are encrypted: neither our device, nor the master key, nor the user are
    // readable in matrix-sdk's files.
    let matrix = data.join("matrix");
    for needle in [account.device_id.as_str(), &master.to_base64(), &account.user_id] {
        assert_eq!(holding(&matrix, needle), Vec::<PathBuf>::new(), "{needle} in clear");
    }

    // The next run opens the session with the same key.
    let again = TincanClient::open(ClientConfig::new(&data)).await?;
    assert_eq!(again.user_id().map(|u| u.to_string()), Some(account.user_id.clone()));
    assert_eq!(again.own_master_key().await?, Some(master));
    drop(again);

    // Another key opens nothing; a key file others can read is refused.
    let key_file = data.join("store.key");
    let right = std::fs::read(&key_file)?;
    std::fs::write(&key_file, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")?;
    match TincanClient::open(ClientConfig::new(&data)).await {
        Err(ClientError::StoreKey(m)) => assert!(m.contains("does not decrypt"), "{m}"),
        other => panic!("expected a store key error, got {other:?}"),
    }
    std::fs::write(&key_file, &right)?;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644))?;
    match TincanClient::open(ClientConfig::new(&data)).await {
        Err(ClientError::StoreKey(m)) => assert!(m.contains("readable by others"), "{m}"),
        other => panic!("expected a store key error, got {other:?}"),
    }
    // Without its key file an encrypted data dir is not taken for a new one.
    std::fs::remove_file(&key_file)?;
    match TincanClient::open(ClientConfig::new(&data)).await {
        Err(ClientError::StoreKey(m)) => assert!(m.contains("missing"), "{m}"),
        other => panic!("expected a store key error, got {other:?}"),
    }
    assert!(!key_file.exists(), "no new key was made for it");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_versions_unencrypted_data_dir_is_refused_and_left_untouched() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let account = hs.register_user("frank", false).await?;
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("old");
    std::fs::create_dir(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;

    // What the earlier version wrote: matrix-sdk's stores without a passphrase, the token in clear.
    let old =
        matrix_sdk::Client::builder().homeserver_url(hs.url()).sqlite_store(data.join("matrix"), None).build().await?;
    let session = json!({
        "user_id": account.user_id, "device_id": account.device_id, "access_token": account.access_token,
    });
    let restored: matrix_sdk::authentication::matrix::MatrixSession = serde_json::from_value(session.clone())?;
    old.matrix_auth().restore_session(restored, Default::default()).await?;
    old.sync_once(matrix_sdk::config::SyncSettings::default().timeout(std::time::Duration::ZERO)).await?;
    drop(old);
    let state = json!({
        "session": {"homeserver_url": hs.url(), "number": null, "matrix": session, "key_published": false},
        "pending": null,
        "contacts": {},
    });
    std::fs::write(data.join("state.json"), serde_json::to_vec_pretty(&state)?)?;
    let state_before = std::fs::read(data.join("state.json"))?;

    match TincanClient::open(ClientConfig::new(&data)).await {
        Err(e @ ClientError::UnencryptedDataDir { .. }) => {
            let m = e.to_string();
            assert!(m.contains("earlier version") && m.contains("sign in again"), "{m}");
        }
        other => panic!("expected UnencryptedDataDir, got {other:?}"),
    }
    assert_eq!(std::fs::read(data.join("state.json"))?, state_before, "the old state was changed");
    assert!(!data.join("store.key").exists(), "no key was made for it");
    assert_eq!(mode(&data), "755");
    Ok(())
}
