//! `TincanClient::resolve` goes through the transparency log check as `check_contact` does: against the real
//! chain, a record the directory serves in DNS but its log does not hold, and a log that forks for this client
//! (a tree head not consistent with the one it saw before), are errors, never a route.

use crate::chain::{Chain, wait_for_key};
use crate::log_proxy::LogMode;
use tincan_client_core::{ClientError, LogCheckError, Route, TincanClient};
use tincan_translog::TreeHeadSigner;

const B_NUM: &str = "+442079460701";
/// A number no test answers for (the DNS proxy needs one to tamper with).
const UNUSED: &str = "+442079460799";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_refuses_a_record_not_in_the_log_and_a_forked_log() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(UNUSED).await? else { return Ok(()) };
    let user = "@b:hs.test";
    chain.registrar.put_number(B_NUM, &[("matrix", &Chain::matrix_uri(user))]).await?;
    // Ed25519's base point: a valid key (nobody's).
    let mut key = [0x66u8; 32];
    key[0] = 0x58;
    chain.registrar.put_key(B_NUM, &tincan_client_core::MasterKey::from_bytes(key)?.to_base64()).await?;
    let data = tempfile::tempdir()?;
    let a = TincanClient::open(chain.config(data.path())).await?;

    // An honest log: the route, and A keeps the log's tree head.
    let honest = wait_for_key(&a, B_NUM).await?;
    assert!(matches!(&honest, Route::Matrix { user_id, .. } if user_id == user), "{honest:?}");

    // DNS keeps serving B's record, but the log has no entry for it.
    chain.log.set_mode(LogMode::Unlogged(B_NUM.into()));
    let got = a.resolve(B_NUM).await;
    assert!(matches!(got, Err(ClientError::Log(LogCheckError::NotLogged { .. }))), "{got:?}");

    // The operator forks the log for A: the proofs and signatures verify, the record matches DNS, but the tree
    // does not extend the head A saw.
    let signer = TreeHeadSigner::from_seed(&chain.directory.log_signing_seed().await?);
    chain.log.set_mode(LogMode::Fork(signer));
    let got = a.resolve(B_NUM).await;
    assert!(matches!(got, Err(ClientError::Log(LogCheckError::Inconsistent { .. }))), "{got:?}");

    // Honest again: A kept the honest head, so the honest log is consistent with it.
    chain.log.set_mode(LogMode::Honest);
    assert_eq!(a.resolve(B_NUM).await?, honest);
    Ok(())
}
