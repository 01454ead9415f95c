//! The charter's trust list in the client, on the real chain (Synapse + `tincan-ext` + `tincan-directory`): the
//! directory's trust anchor and log key come from the verified list (no anchor or log configured), sign-up is
//! only at a listed provider, and when the charter removes the provider its numbers stop verifying at the next
//! refresh. The charter's repository is served over loopback HTTP.

use crate::chain::{Chain, wait_for_key};
use crate::charter_server::Charter;
use std::path::Path;
use tincan_charter::list::{ListInput, Service, TrustedDirectory, TrustedProvider};
use tincan_client_core::{ClientConfig, ClientError, DirectoryConfig, KeyStatus, TincanClient};
use tincan_testkit::directory::APEX;

const A_NUM: &str = "+442079460301";
const B_NUM: &str = "+442079460302";
const NOBODY: &str = "+442079460399";

/// Publishes list `version` with the chain's directory and, when `with_provider`, its provider.
fn publish(charter: &Charter, chain: &Chain, version: u64, with_provider: bool) {
    let directory = TrustedDirectory {
        id: "test".into(),
        apex: APEX.into(),
        ds: chain.anchor.lines().filter(|l| l.contains(" DS ")).map(str::to_owned).collect(),
        api_url: chain.log.url.parse().unwrap(),
        log_key: chain.log_key.clone(),
        dns: vec![],
    };
    let provider = TrustedProvider {
        name: "Test provider".into(),
        homeservers: vec![chain.hs.server_name().to_owned()],
        ext_url: chain.ext.url.parse().unwrap(),
        directory: "test".into(),
        provider_id: "tincan".into(),
        prefixes: vec!["+44".into()],
        services: vec![Service::Matrix, Service::Sms],
    };
    let input =
        ListInput { directories: vec![directory], providers: if with_provider { vec![provider] } else { vec![] } };
    charter.publish_list(input, version);
}

/// A client of the chain whose directory anchor and log come from the charter (none configured).
fn config(chain: &Chain, charter: &Charter, data: &Path, ext: &str) -> ClientConfig {
    let mut c = ClientConfig::new(data);
    c.ext_url = Some(ext.parse().unwrap());
    c.directory = Some(DirectoryConfig::new(vec![chain.proxy.addr], APEX, ""));
    c.charter = Some(charter.config());
    c
}

async fn sign_up(chain: &Chain, charter: &Charter, data: &Path, number: &str) -> anyhow::Result<TincanClient> {
    let mut client = TincanClient::open(config(chain, charter, data, &chain.ext.url)).await?;
    assert_eq!(client.refresh_charter().await?.version, 1);
    client.register(number).await?;
    client.verify(&chain.ext.code(number)?).await?;
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trust_list_gives_the_directory_and_a_removed_provider_stops_verifying() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(NOBODY).await? else { return Ok(()) };
    let charter = Charter::start().await;
    publish(&charter, &chain, 1, true);
    let (da, db, dc) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);

    // Sign-up through an extension the list does not name is refused before any SMS.
    let mut stray = TincanClient::open(config(&chain, &charter, dc.path(), "http://127.0.0.1:9/")).await?;
    stray.refresh_charter().await?;
    assert!(matches!(stray.register(NOBODY).await, Err(ClientError::ProviderNotListed(_))));
    let offered: Vec<_> = stray.providers().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(offered, ["Test provider"]);

    // At the listed provider: both sign up; each verifies the other with the anchor and log key of the list.
    // A picks the provider by name (`tincan register --provider`) and verifies the code in a later process that
    // has no extension configured, as the terminal client does: the pending sign-up remembers its extension,
    // and A's key is published through it (B sees A verified below).
    let no_ext = || {
        let mut c = config(&chain, &charter, da.path(), "http://127.0.0.1:9/");
        c.ext_url = None;
        c
    };
    let mut a = TincanClient::open(no_ext()).await?;
    a.refresh_charter().await?;
    a.use_provider("Test provider")?;
    a.register(A_NUM).await?;
    drop(a);
    let mut a = TincanClient::open(no_ext()).await?;
    a.refresh_charter().await?;
    a.verify(&chain.ext.code(A_NUM)?).await?;
    let mut b = sign_up(&chain, &charter, db.path(), B_NUM).await?;
    wait_for_key(&a, B_NUM).await?;
    wait_for_key(&b, A_NUM).await?;
    let seen = b.check_contact(A_NUM).await?;
    assert!(matches!(seen.key_status, Some(KeyStatus::Verified { .. })), "{seen:?}");

    // The charter removes the provider. Until B refreshes, A still verifies; after, it does not.
    publish(&charter, &chain, 2, false);
    assert!(b.check_contact(A_NUM).await?.key_status.is_some_and(|s| s.is_verified()));
    let status = b.refresh_charter().await?;
    assert_eq!((status.version, status.refused), (2, None));
    let seen = b.check_contact(A_NUM).await?;
    assert_eq!(seen.key_status, Some(KeyStatus::NotListed { server: chain.hs.server_name().to_owned() }));
    assert!(b.providers().unwrap().is_empty(), "no provider offered at sign-up");
    assert!(matches!(b.register(NOBODY).await, Err(ClientError::ProviderNotListed(_))));

    // A replayed older list (with the provider) does not bring it back: refused, the last good list kept.
    publish(&charter, &chain, 1, true);
    let status = b.refresh_charter().await?;
    assert_eq!(status.version, 2);
    assert!(status.refused.as_deref().is_some_and(|r| r.contains("rollback")), "{status:?}");
    assert!(matches!(b.check_contact(A_NUM).await?.key_status, Some(KeyStatus::NotListed { .. })));
    drop(a);
    Ok(())
}
