//! The client compares the DS set the apex's parent zone publishes with the one the charter's trust list names
//! for the directory (its trust anchor), as `tincan-directory keys check-ds` does, and refuses a directory whose
//! parent disagrees (see `parent_dns` for the real pieces). With the directory alone as its DNS the parent
//! cannot be asked: not compared, and the lookup goes ahead on the charter's DS.

use crate::parent_dns::{NUM, ParentWorld, USER, short};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::Path;
use tincan_charter::list::{ListInput, TrustedDirectory};
use tincan_client_core::{ClientConfig, ClientError, DirectoryConfig, Route, TincanClient};
use tincan_testkit::directory::APEX;

/// A client whose directory (anchor and log) comes from the charter's list, asking `dns`.
async fn client(world: &ParentWorld, data: &Path, dns: SocketAddr) -> anyhow::Result<TincanClient> {
    pinned_client(world, data, dns, "").await
}

/// A client asking `dns`, with the charter's list and `anchor` pinned as its trust anchor (empty: the list's).
async fn pinned_client(
    world: &ParentWorld,
    data: &Path,
    dns: SocketAddr,
    anchor: &str,
) -> anyhow::Result<TincanClient> {
    std::fs::create_dir_all(data)?;
    let mut c = ClientConfig::new(data);
    c.directory = Some(DirectoryConfig::new(vec![dns], APEX, anchor));
    c.charter = Some(world.charter.config());
    let mut client = TincanClient::open(c).await?;
    client.refresh_charter().await?;
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_whose_parent_ds_is_not_the_charters_is_refused() -> anyhow::Result<()> {
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let tmp = tempfile::tempdir()?;

    // The parent publishes the charter's DS: the directory is used.
    let agreeing = w.resolver("agreeing", &w.own).await?;
    let c = client(&w, &tmp.path().join("a"), agreeing.addr).await?;
    let route = c.resolve(NUM).await.context("with an agreeing parent")?;
    assert!(matches!(&route, Route::Matrix { user_id, .. } if user_id == USER), "{route:?}");

    // The parent publishes another key's DS (hijacked, or the list went stale): refused, both sides named,
    // and no contact check gets past it either.
    let hijacked = w.resolver("hijacked", std::slice::from_ref(&w.stranger)).await?;
    let c = client(&w, &tmp.path().join("h"), hijacked.addr).await?;
    let got = c.resolve(NUM).await;
    let Err(e @ ClientError::ParentDsMismatch { parent_only, charter_only, .. }) = &got else {
        panic!("a parent DS the charter does not name gave {got:?}")
    };
    assert_eq!((parent_only.clone(), charter_only.clone()), (vec![short(&w.stranger)], vec![short(&w.own[0])]));
    assert_eq!(e.code(), "parent_ds_mismatch");
    let checked = c.check_contact(NUM).await;
    assert!(matches!(checked, Err(ClientError::ParentDsMismatch { .. })), "{checked:?}");

    // An unsigned delegation (the parent publishes no DS) does not agree with a list that names one.
    let unsigned = w.resolver("unsigned", &[]).await?;
    let c = client(&w, &tmp.path().join("u"), unsigned.addr).await?;
    let got = c.resolve(NUM).await;
    let Err(ClientError::ParentDsMismatch { parent_zone, parent_only, charter_only, .. }) = &got else {
        panic!("an unsigned delegation gave {got:?}")
    };
    assert_eq!(parent_zone.as_deref(), Some("tincan.test."));
    assert_eq!((parent_only.len(), charter_only.clone()), (0, vec![short(&w.own[0])]));

    // The directory alone as DNS (it serves the apex, not the parent): the parent is not asked, and the
    // lookup goes ahead on the charter's DS, whatever the (hijacked) parent says.
    let c = client(&w, &tmp.path().join("d"), w.directory.dns).await?;
    assert_eq!(c.resolve(NUM).await.context("with the directory alone as DNS")?, route);
    drop((agreeing, hijacked, unsigned));
    Ok(())
}

/// A trust anchor pinned in the client (`--trust-anchor`) is an override only within what the charter's list
/// vouches for: pinned while the list names the directory's DS, it is used; once the list names another key
/// (and the parent agrees with the list), the pinned key still validates the directory's answers, but the
/// client refuses the directory instead of trusting a key nobody on the list stands behind. A list that does not
/// name the directory at all vouches for no anchor: refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_trust_anchor_the_charter_does_not_vouch_for_is_refused() -> anyhow::Result<()> {
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let tmp = tempfile::tempdir()?;
    let own = w.own.join("\n");
    let log_key = w.directory.log_key().await?;
    // The charter's list, version `version`, naming `ds` for the directory at `apex`.
    let publish_at = |apex: &str, ds: Vec<String>, version: u64| -> anyhow::Result<()> {
        let listed = TrustedDirectory {
            id: "test".into(),
            apex: apex.into(),
            // A DS record's owner is the apex it is listed for (the charter refuses others).
            ds: ds.iter().map(|l| l.replacen(APEX, apex, 1)).collect(),
            api_url: w.directory.api.parse()?,
            log_key: log_key.clone(),
            dns: vec![],
        };
        w.charter.publish_list(ListInput { directories: vec![listed], providers: vec![] }, version);
        Ok(())
    };
    let publish = |ds: Vec<String>, version: u64| publish_at(APEX, ds, version);

    // The list names the directory's own DS, and the client pins it (the parent agrees): used.
    let agreeing = w.resolver("pin-agreeing", &w.own).await?;
    let c = pinned_client(&w, &tmp.path().join("a"), agreeing.addr, &own).await?;
    let route = c.resolve(NUM).await.context("a pinned anchor the list names")?;
    assert!(matches!(&route, Route::Matrix { user_id, .. } if user_id == USER), "{route:?}");

    // The list moves to another key; the parent publishes what the list names. The pinned (old) key still
    // validates the directory's answers, but the list no longer vouches for it: refused, both sides named.
    publish(vec![w.stranger.clone()], 2)?;
    let rolled = w.resolver("pin-rolled", std::slice::from_ref(&w.stranger)).await?;
    let c = pinned_client(&w, &tmp.path().join("r"), rolled.addr, &own).await?;
    let got = c.resolve(NUM).await;
    let Err(e @ ClientError::AnchorNotVouched { not_vouched, charter, .. }) = &got else {
        panic!("a pinned anchor the charter no longer names gave {got:?}")
    };
    assert_eq!((not_vouched.clone(), charter.clone()), (vec![short(&w.own[0])], vec![short(&w.stranger)]));
    assert_eq!(e.code(), "anchor_not_vouched");
    let checked = c.check_contact(NUM).await;
    assert!(matches!(checked, Err(ClientError::AnchorNotVouched { .. })), "{checked:?}");
    // The directory alone as DNS (the parent cannot be compared): refused all the same.
    let c = pinned_client(&w, &tmp.path().join("d"), w.directory.dns, &own).await?;
    let got = c.resolve(NUM).await;
    assert!(matches!(got, Err(ClientError::AnchorNotVouched { .. })), "{got:?}");

    // During a roll the list names both keys: the pinned old one alone is a subset it vouches for.
    publish(vec![w.own[0].clone(), w.stranger.clone()], 3)?;
    let c = pinned_client(&w, &tmp.path().join("b"), w.directory.dns, &own).await?;
    assert_eq!(c.resolve(NUM).await.context("a pinned subset of the list")?, route);

    // A list that does not name the directory at all (only another apex, with the directory's own DS): a
    // directory not on the list is not trusted, whatever anchor is pinned; refused, the listed apexes named.
    publish_at("other.tincan.test.", w.own.clone(), 4)?;
    let c = pinned_client(&w, &tmp.path().join("n"), agreeing.addr, &own).await?;
    let got = c.resolve(NUM).await;
    let Err(e @ ClientError::DirectoryNotListed { apex, listed }) = &got else {
        panic!("a directory the charter's list does not name gave {got:?}")
    };
    assert_eq!((apex.as_str(), listed.clone()), (APEX, vec!["other.tincan.test.".to_owned()]));
    assert_eq!(e.code(), "directory_not_listed");
    let checked = c.check_contact(NUM).await;
    assert!(matches!(checked, Err(ClientError::DirectoryNotListed { .. })), "{checked:?}");
    drop((agreeing, rolled));
    Ok(())
}

/// A client of the charter's list that has no current list: the blocked charter address, a clock, and a
/// client pinning the directory's own DS on its DNS `resolver` (see the tests below).
struct Stale {
    blocked: tincan_client_core::CharterConfig,
    clock: std::sync::Arc<tincan_common::MockClock>,
    own: String,
    dns: SocketAddr,
}

impl Stale {
    fn new(w: &ParentWorld, dns: SocketAddr) -> anyhow::Result<Stale> {
        use tincan_common::Clock as _;
        // The charter as the client sees it while refreshes are blocked: nothing answers at its address.
        let blocked = tincan_client_core::CharterConfig {
            url: format!("http://127.0.0.1:{}/charter/", tincan_testkit::ports::free_port()).parse()?,
            root: w.charter.root().to_vec(),
        };
        let clock = std::sync::Arc::new(tincan_common::MockClock::at(tincan_common::SystemClock.unix_seconds()));
        Ok(Stale { blocked, clock, own: w.own.join("\n"), dns })
    }

    /// A client in `data` pinning the directory's own DS, with `charter`, on the test's clock.
    async fn open(&self, data: &Path, charter: tincan_client_core::CharterConfig) -> anyhow::Result<TincanClient> {
        let mut c = ClientConfig::new(data);
        c.directory = Some(DirectoryConfig::new(vec![self.dns], APEX, &self.own));
        c.charter = Some(charter);
        Ok(TincanClient::open_with_clock(c, self.clock.clone()).await?)
    }
}

/// `got` is the refusal of a directory for want of a current charter list, saying `why`.
#[track_caller]
fn refused_for_no_current_list(got: &Result<Route, ClientError>, why: &str) {
    let Err(e @ ClientError::TrustListNotCurrent { apex, why: said }) = got else {
        panic!("a pinned trust anchor without a current charter list gave {got:?}")
    };
    assert_eq!(apex, APEX);
    assert!(said.contains(why), "{said}");
    assert_eq!(e.code(), "trust_list_not_current");
}

/// A charter is configured but no list was ever fetched (nothing answers at the charter's address): nothing
/// vouches for the pinned trust anchor, so the directory is refused (`trust_list_not_current`) instead of
/// trusted on the pinned anchor alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_trust_anchor_is_refused_while_no_charter_list_was_ever_fetched() -> anyhow::Result<()> {
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let tmp = tempfile::tempdir()?;
    let agreeing = w.resolver("never-agreeing", &w.own).await?;
    let s = Stale::new(&w, agreeing.addr)?;
    let mut c = s.open(&tmp.path().join("never"), s.blocked.clone()).await?;
    assert!(c.refresh_charter().await.is_err(), "nothing answers at the blocked charter address");
    refused_for_no_current_list(&c.resolve(NUM).await, "no trust list fetched yet");
    let checked = c.check_contact(NUM).await;
    assert!(matches!(checked, Err(ClientError::TrustListNotCurrent { .. })), "{checked:?}");
    drop(agreeing);
    Ok(())
}

/// The attack on the vouch check that blocking refreshes would allow: the charter's list moves to another key
/// and the client refuses its pinned old one; an attacker blocks the list's refreshes until it expires. A client
/// started then has only the expired list, and one still running has only that list too: both refuse the
/// directory (`trust_list_not_current`) — neither falls back to trusting the pinned old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_trust_anchor_is_refused_once_the_charter_list_expired() -> anyhow::Result<()> {
    use std::time::Duration;
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let tmp = tempfile::tempdir()?;
    let agreeing = w.resolver("expired-agreeing", &w.own).await?;
    let s = Stale::new(&w, agreeing.addr)?;

    // The list names the pinned key: used.
    let data = tmp.path().join("restarted");
    let mut c = s.open(&data, w.charter.config()).await?;
    c.refresh_charter().await?;
    let route = c.resolve(NUM).await.context("a pinned anchor the current list names")?;
    assert!(matches!(&route, Route::Matrix { user_id, .. } if user_id == USER), "{route:?}");

    // The charter moves to another key (version 2, valid an hour): the pinned key is refused.
    let listed = TrustedDirectory {
        id: "test".into(),
        apex: APEX.into(),
        ds: vec![w.stranger.clone()],
        api_url: w.directory.api.parse()?,
        log_key: w.directory.log_key().await?,
        dns: vec![],
    };
    w.charter.publish_list(ListInput { directories: vec![listed], providers: vec![] }, 2);
    c.refresh_charter().await?;
    let got = c.resolve(NUM).await;
    assert!(matches!(got, Err(ClientError::AnchorNotVouched { .. })), "{got:?}");
    drop(c);
    let mut running = s.open(&tmp.path().join("running"), w.charter.config()).await?;
    running.refresh_charter().await?;

    // The refreshes are blocked until version 2 has expired. The client started again has only that list.
    s.clock.advance(Duration::from_secs(2 * 3600));
    let mut c = s.open(&data, s.blocked.clone()).await?;
    assert!(c.refresh_charter().await.is_err(), "the blocked charter gives no list");
    refused_for_no_current_list(&c.resolve(NUM).await, "(version 2) expired at");
    let checked = c.check_contact(NUM).await;
    assert!(matches!(checked, Err(ClientError::TrustListNotCurrent { .. })), "{checked:?}");
    // The running client's list expired too: it stops using the directory.
    refused_for_no_current_list(&running.resolve(NUM).await, "(version 2) expired at");
    drop(agreeing);
    Ok(())
}
