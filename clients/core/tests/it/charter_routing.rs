//! The routing decision of a client whose directory comes from the charter's trust list (no pinned trust
//! anchor) while it has no current list: never fetched (nothing answers at the charter's address), or the last
//! good one expired while someone blocked the refreshes. The directory is refused (`trust_list_not_current`),
//! and so is the number: the client does not fall back to the provider's SMS bridge, which would take a Matrix
//! contact's texts off end-to-end encryption and hand the number to the bridge. A client with no charter (and
//! no directory) still goes to the bridge, as before. A current list that drops the directory (a newer, valid
//! one that does not name it) refuses it the same way (`directory_not_listed`), anchor pinned or from the list,
//! until a list names it again. The bridge is `fake_bridge`'s, with a ghost for the number the directory holds
//! as a Matrix user; the directory and the charter are `parent_dns`'s.

use crate::charter_server::Charter;
use crate::fake_bridge::FakeSmsBridge;
use crate::harness::User;
use crate::parent_dns::{NUM, ParentWorld, USER};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tincan_charter::list::{ListInput, TrustedDirectory};
use tincan_client_core::{CharterConfig, ClientConfig, ClientError, Decision, DirectoryConfig, Intent, TincanClient};
use tincan_common::{Clock as _, MockClock, SystemClock};
use tincan_testkit::directory::APEX;
use tincan_testkit::{RegisteredUser, Synapse};

/// Synapse with the fake SMS bridge, whose ghost for [`NUM`] is registered: the way a fall-back would go.
struct Bridged {
    bridge: FakeSmsBridge,
    hs: Synapse,
    ghost: String,
}

impl Bridged {
    async fn start() -> anyhow::Result<Bridged> {
        let bridge = FakeSmsBridge::start("hs.test").await?;
        let hs = Synapse::builder().appservice(bridge.registration()).start().await?;
        let ghost = bridge.register_ghost(&hs.url(), NUM).await?;
        Ok(Bridged { bridge, hs, ghost })
    }

    /// A client in `data` on `clock`, its directory at `dns` taking its anchor from `charter`'s list (none
    /// pinned), signed in as `account` (or with the session it saved).
    async fn client(
        &self,
        data: &Path,
        account: &RegisteredUser,
        dns: SocketAddr,
        charter: CharterConfig,
        clock: Arc<MockClock>,
    ) -> anyhow::Result<TincanClient> {
        self.pinned_client(data, account, dns, charter, clock, "").await
    }

    /// [`client`](Self::client), with `anchor` pinned as the directory's trust anchor (empty: the list's).
    async fn pinned_client(
        &self,
        data: &Path,
        account: &RegisteredUser,
        dns: SocketAddr,
        charter: CharterConfig,
        clock: Arc<MockClock>,
        anchor: &str,
    ) -> anyhow::Result<TincanClient> {
        std::fs::create_dir_all(data)?;
        let mut c = ClientConfig::new(data);
        c.directory = Some(DirectoryConfig::new(vec![dns], APEX, anchor));
        c.charter = Some(charter);
        let mut client = TincanClient::open_with_clock(c, clock).await?;
        if client.user_id().is_none() {
            let a = account;
            client.login_with_token(&self.hs.url(), &a.user_id, &a.device_id, &a.access_token).await?;
        }
        Ok(client)
    }

    /// `client` refuses to route, send to or chat with [`NUM`] for want of a current list saying `why`, and
    /// made no conversation (with the bridge's ghost or anyone).
    async fn refused(&self, client: &TincanClient, why: &str) -> anyhow::Result<()> {
        let got = client.route_to_number(NUM, Intent::Text, false).await;
        let Err(e @ ClientError::TrustListNotCurrent { apex, why: said }) = &got else {
            panic!("a charter client with no current list and no pinned anchor routed a text: {got:?}")
        };
        assert_eq!(apex, APEX);
        assert!(said.contains(why), "{said}");
        assert_eq!(e.code(), "trust_list_not_current");
        self.refused_all(client, "trust_list_not_current").await
    }

    /// `client` refuses to route, send to or chat with [`NUM`] because the current list does not name the
    /// directory (it names only `listed`), and made no conversation.
    async fn refused_not_listed(&self, client: &TincanClient, listed: &str) -> anyhow::Result<()> {
        let got = client.route_to_number(NUM, Intent::Text, false).await;
        let Err(e @ ClientError::DirectoryNotListed { apex, listed: said }) = &got else {
            panic!("a charter client whose current list dropped the directory routed a text: {got:?}")
        };
        assert_eq!((apex.as_str(), said.clone()), (APEX, vec![listed.to_owned()]));
        assert_eq!(e.code(), "directory_not_listed");
        let resolved = client.resolve(NUM).await;
        assert!(matches!(resolved, Err(ClientError::DirectoryNotListed { .. })), "resolve: {resolved:?}");
        let checked = client.check_contact(NUM).await;
        assert!(matches!(checked, Err(ClientError::DirectoryNotListed { .. })), "check: {checked:?}");
        self.refused_all(client, "directory_not_listed").await
    }

    /// A call, a forced send and a chat to [`NUM`] are refused with `code`, and no conversation was made (with
    /// the bridge's ghost or anyone).
    async fn refused_all(&self, client: &TincanClient, code: &str) -> anyhow::Result<()> {
        let call = client.route_to_number(NUM, Intent::Call, false).await;
        assert!(call.as_ref().is_err_and(|e| e.code() == code), "a call: {call:?}");
        let sent = client.send_to_number(NUM, "to the bridge?", true).await;
        assert!(sent.as_ref().is_err_and(|e| e.code() == code), "forced send: {sent:?}");
        let chat = client.start_chat(NUM, false).await;
        assert!(chat.as_ref().is_err_and(|e| e.code() == code), "chat: {chat:?}");
        client.sync_once(Duration::ZERO).await?;
        let rooms = client.matrix().expect("signed in").joined_rooms();
        assert!(
            rooms.is_empty(),
            "a conversation was made: {:?}",
            rooms.iter().map(|r| r.room_id()).collect::<Vec<_>>()
        );
        assert!(!self.bridge.has_text("to the bridge?"), "the bridge got the text");
        Ok(())
    }
}

/// The charter as the client sees it while its refreshes are blocked: nothing answers at its address.
fn blocked(charter: &Charter) -> anyhow::Result<CharterConfig> {
    let url = format!("http://127.0.0.1:{}/charter/", tincan_testkit::ports::free_port()).parse()?;
    Ok(CharterConfig { url, root: charter.root().to_vec() })
}

fn clock() -> Arc<MockClock> {
    Arc::new(MockClock::at(SystemClock.unix_seconds()))
}

/// A charter is configured, no anchor is pinned, and no list was ever fetched: the client has no directory to
/// ask, and says so (`trust_list_not_current`) instead of sending to the bridge as if none were configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_charter_list_ever_fetched_a_number_is_refused_not_sent_to_the_bridge() -> anyhow::Result<()> {
    let b = Bridged::start().await?;
    let charter = Charter::start().await;
    let account = b.hs.register_user("alice", false).await?;
    let tmp = tempfile::tempdir()?;
    // No directory answers at `dns` either: nothing is asked before the refusal.
    let dns = SocketAddr::from(([127, 0, 0, 1], tincan_testkit::ports::free_port()));
    let mut c = b.client(&tmp.path().join("never"), &account, dns, blocked(&charter)?, clock()).await?;
    assert!(c.refresh_charter().await.is_err(), "nothing answers at the blocked charter address");
    b.refused(&c, "no trust list fetched yet").await?;
    let resolved = c.resolve(NUM).await;
    assert!(matches!(resolved, Err(ClientError::TrustListNotCurrent { .. })), "{resolved:?}");
    Ok(())
}

/// The directory holds the number as a Matrix user: with the charter's list current, texts go over Matrix.
/// Someone blocks the list's refreshes until it expires; the client started again then has only the expired
/// list, and refuses the number (`trust_list_not_current`) instead of texting it through the SMS bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_charter_list_expired_a_matrix_contact_is_refused_not_sent_to_the_bridge() -> anyhow::Result<()> {
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let b = Bridged::start().await?;
    let account = b.hs.register_user("alice", false).await?;
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("restarted");
    let clock = clock();

    // The list (an hour's) names the directory; the directory alone as DNS (the parent is not compared).
    let mut c = b.client(&data, &account, w.directory.dns, w.charter.config(), clock.clone()).await?;
    c.refresh_charter().await?;
    let (decision, _) = c.route_to_number(NUM, Intent::Text, false).await?;
    assert!(matches!(&decision, Decision::Matrix { user_id, .. } if user_id == USER), "{decision:?}");
    drop(c);

    // The refreshes are blocked until the list has expired; the client started again has only that list.
    clock.advance(Duration::from_secs(2 * 3600));
    let mut c = b.client(&data, &account, w.directory.dns, blocked(&w.charter)?, clock.clone()).await?;
    assert_eq!(c.user_id().map(|u| u.to_string()), Some(account.user_id.clone()), "the saved session");
    assert!(c.refresh_charter().await.is_err(), "the blocked charter gives no list");
    b.refused(&c, "(version 1) expired at").await?;
    Ok(())
}

/// The charter's list, version `version`, naming the directory at `apex` with the DS set `ds`.
async fn publish_at(w: &ParentWorld, apex: &str, ds: Vec<String>, version: u64) -> anyhow::Result<()> {
    let listed = TrustedDirectory {
        id: "test".into(),
        apex: apex.into(),
        // A DS record's owner is the apex it is listed for (the charter refuses others).
        ds: ds.iter().map(|l| l.replacen(APEX, apex, 1)).collect(),
        api_url: w.directory.api.parse()?,
        log_key: w.directory.log_key().await?,
        dns: vec![],
    };
    w.charter.publish_list(ListInput { directories: vec![listed], providers: vec![] }, version);
    Ok(())
}

/// Another directory, the only one list version 2 names.
const OTHER: &str = "other.tincan.test.";

/// The charter drops the directory (compromised, or retired) from a new, valid list: a client (the directory's
/// own DS pinned as its trust anchor, or the list's) that routed the number over Matrix with version 1 refuses
/// it after refreshing to version 2 (`directory_not_listed`), and does not text it through the bridge; so does
/// the client started again on the stored version 2. Version 3 names the directory again: it routes over Matrix
/// again. Version 4 names it with a DS no client can read: the refresh refuses that list (saying why) and the
/// client stays on version 3.
async fn dropped_then_listed_again(pinned: bool) -> anyhow::Result<()> {
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let anchor = if pinned { w.own.join("\n") } else { String::new() };
    let b = Bridged::start().await?;
    let account = b.hs.register_user("alice", false).await?;
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("client");
    let clock = clock();
    let open = || b.pinned_client(&data, &account, w.directory.dns, w.charter.config(), clock.clone(), &anchor);
    let on_matrix = |got: &Decision| matches!(got, Decision::Matrix { user_id, .. } if user_id == USER);

    // Version 1 names the directory: texts go over Matrix.
    let mut c = open().await?;
    c.refresh_charter().await?;
    let (decision, _) = c.route_to_number(NUM, Intent::Text, false).await?;
    assert!(on_matrix(&decision), "{decision:?}");

    // Version 2 (valid, newer) names only another directory: refused, no bridge.
    publish_at(&w, OTHER, w.own.clone(), 2).await?;
    let refreshed = c.refresh_charter().await;
    b.refused_not_listed(&c, OTHER).await?;
    assert_eq!(refreshed?.version, 2, "the new list is taken");
    drop(c);
    // Started again, on the stored version 2: refused the same way.
    let c = open().await?;
    b.refused_not_listed(&c, OTHER).await?;
    drop(c);

    // Version 3 names the directory again; the client started again fetches it: Matrix again.
    publish_at(&w, APEX, w.own.clone(), 3).await?;
    let mut c = open().await?;
    assert_eq!(c.refresh_charter().await?.version, 3);
    let (decision, _) = c.route_to_number(NUM, Intent::Text, false).await?;
    assert!(on_matrix(&decision), "{decision:?}");

    // Version 4 names the directory with a DS no client can read (algorithm 3: today's charter refuses to sign
    // it, 894ea19; published here as an older or faulty signer would): the client refuses the list as a whole,
    // as any list that fails its checks, and stays on version 3 — it never builds a lookup on that DS set.
    let listed = TrustedDirectory {
        id: "test".into(),
        apex: APEX.into(),
        ds: w.own.clone(),
        api_url: w.directory.api.parse()?,
        log_key: w.directory.log_key().await?,
        dns: vec![],
    };
    let unreadable = vec![format!("{APEX} 3600 IN DS 12345 3 2 {}", "AB".repeat(32))];
    w.charter.publish_list_with_unchecked_ds(ListInput { directories: vec![listed], providers: vec![] }, unreadable, 4);
    let refreshed = c.refresh_charter().await?;
    assert_eq!(refreshed.version, 3, "the list in force");
    assert!(
        refreshed.refused.as_deref().is_some_and(|why| why.contains("algorithm 3 is not one clients validate with")),
        "the refresh says why version 4 was refused: {refreshed:?}"
    );
    let (decision, _) = c.route_to_number(NUM, Intent::Text, false).await?;
    assert!(on_matrix(&decision), "still on version 3's lookup: {decision:?}");
    Ok(())
}

/// [`dropped_then_listed_again`] with the directory's anchor taken from the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_the_charter_list_drops_is_refused_not_sent_to_the_bridge() -> anyhow::Result<()> {
    dropped_then_listed_again(false).await
}

/// [`dropped_then_listed_again`] with the directory's own DS pinned as its trust anchor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_directory_the_charter_list_drops_is_refused_not_sent_to_the_bridge() -> anyhow::Result<()> {
    dropped_then_listed_again(true).await
}

/// Without a charter (and without a directory) nothing changes: a number goes to the provider's SMS bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_charter_a_number_still_goes_to_the_bridge() -> anyhow::Result<()> {
    let b = Bridged::start().await?;
    let alice = User::new(&b.hs, "alice").await?;
    let (decision, contact) = alice.client.route_to_number(NUM, Intent::Text, false).await?;
    assert_eq!(decision, Decision::Sms { ghost: b.ghost.clone() });
    assert!(contact.is_none(), "no directory configured");
    Ok(())
}
