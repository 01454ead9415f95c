//! The client against a served repository: the valid list, and each way a list is refused.

use crate::fixture::{Charter, Server, days, now, write_repo};
use tincan_charter::keys::SecretKey;
use tincan_charter::signed::{Envelope, Root};
use tincan_charter::{CharterClient, CharterError, RoleName, publish};

fn client(server: &Server, charter: &Charter, state: &std::path::Path) -> CharterClient {
    CharterClient::new(server.url(), charter.root_bytes(), state).unwrap()
}

#[tokio::test]
async fn a_valid_list_is_fetched_verified_and_kept() {
    let charter = Charter::new();
    let repo = tempfile::tempdir().unwrap();
    let list = charter.list(1, now() + days(30), &["alpha", "beta"], &[0, 2]);
    publish::publish(repo.path(), &charter.root_bytes(), &list, now()).unwrap();
    let server = Server::start(repo.path()).await;
    let state = tempfile::tempdir().unwrap();
    let c = client(&server, &charter, state.path());

    let v = c.refresh(now()).await.unwrap();
    assert_eq!(v.list.version, 1);
    assert_eq!(v.root_version, 1);
    let names: Vec<_> = v.list.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(v.list.directory("main").unwrap().apex, "e164.tincan.test.");
    // Kept: the last good list verifies again without the network.
    drop(server);
    assert_eq!(c.last_good(now()).unwrap(), v);
    assert_eq!(std::fs::read(state.path().join("trust-list.json")).unwrap(), list);
}

#[tokio::test]
async fn an_expired_list_is_refused_and_the_last_good_one_kept() {
    let charter = Charter::new();
    let repo = tempfile::tempdir().unwrap();
    let good = charter.list(1, now() + days(30), &["alpha"], &[0, 1]);
    write_repo(repo.path(), &charter.root_bytes(), &good);
    let server = Server::start(repo.path()).await;
    let state = tempfile::tempdir().unwrap();
    let c = client(&server, &charter, state.path());
    assert_eq!(c.refresh(now()).await.unwrap().list.version, 1);

    // A newer list, properly signed, but already expired.
    let expired = charter.list(2, now() - days(1), &["alpha", "beta"], &[0, 1]);
    write_repo(repo.path(), &charter.root_bytes(), &expired);
    let err = c.refresh(now()).await.unwrap_err();
    assert!(matches!(err, CharterError::Expired { what: "trust list", version: 2, .. }), "{err}");
    assert_eq!(c.last_good(now()).unwrap().list.version, 1);
    let (kept, why) = c.refresh_or_last_good(now()).await.unwrap();
    assert_eq!(kept.list.version, 1);
    assert!(matches!(why, Some(CharterError::Expired { .. })));

    // And once the last good list expires too, there is no list at all.
    let later = now() + days(31);
    assert!(matches!(c.last_good(later), Err(CharterError::Expired { version: 1, .. })));
    assert!(c.refresh_or_last_good(later).await.is_err());
    // The publisher refuses an expired list in the first place.
    let fresh = tempfile::tempdir().unwrap();
    assert!(matches!(
        publish::publish(fresh.path(), &charter.root_bytes(), &expired, now()),
        Err(CharterError::Expired { .. })
    ));
}

#[tokio::test]
async fn a_rolled_back_list_is_refused() {
    let charter = Charter::new();
    let old_repo = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let v1 = charter.list(1, now() + days(30), &["alpha", "beta"], &[0, 1]);
    let v2 = charter.list(2, now() + days(30), &["alpha"], &[1, 2]);
    publish::publish(old_repo.path(), &charter.root_bytes(), &v1, now()).unwrap();
    publish::publish(repo.path(), &charter.root_bytes(), &v1, now()).unwrap();
    publish::publish(repo.path(), &charter.root_bytes(), &v2, now()).unwrap();
    let server = Server::start(repo.path()).await;
    let state = tempfile::tempdir().unwrap();
    let c = client(&server, &charter, state.path());
    assert_eq!(c.refresh(now()).await.unwrap().list.version, 2);

    // A mirror replays the older, validly signed, unexpired list.
    server.serve(old_repo.path());
    let err = c.refresh(now()).await.unwrap_err();
    assert!(matches!(err, CharterError::Rollback { offered: 1, trusted: 2, .. }), "{err}");
    assert_eq!(c.last_good(now()).unwrap().list.version, 2);

    // Another list under the same version number is refused too.
    let other_v2 = charter.list(2, now() + days(30), &["alpha", "beta"], &[0, 1]);
    write_repo(old_repo.path(), &charter.root_bytes(), &other_v2);
    let err = c.refresh(now()).await.unwrap_err();
    assert!(matches!(err, CharterError::SameVersionDifferentContent { version: 2, .. }), "{err}");

    // The publisher never goes back either.
    assert!(matches!(
        publish::publish(repo.path(), &charter.root_bytes(), &v1, now()),
        Err(CharterError::Rollback { offered: 1, trusted: 2, .. })
    ));
}

#[tokio::test]
async fn a_list_signed_by_too_few_keys_is_refused() {
    let charter = Charter::new();
    let repo = tempfile::tempdir().unwrap();
    // One list key of the three; the threshold is two.
    let one = charter.list(1, now() + days(30), &["alpha"], &[1]);
    write_repo(repo.path(), &charter.root_bytes(), &one);
    let server = Server::start(repo.path()).await;
    let state = tempfile::tempdir().unwrap();
    let c = client(&server, &charter, state.path());
    let err = c.refresh(now()).await.unwrap_err();
    assert!(matches!(err, CharterError::Threshold { role: RoleName::List, valid: 1, threshold: 2 }), "{err}");
    assert!(matches!(c.last_good(now()), Err(CharterError::NoList(_))));

    // A second signature by a key that is not a list key (the root key, an outsider) does not count.
    let mut env = Envelope::parse(&one, "trust list").unwrap();
    env.sign(&charter.root_key);
    env.sign(&SecretKey::generate_os());
    write_repo(repo.path(), &charter.root_bytes(), &env.to_bytes());
    let err = c.refresh(now()).await.unwrap_err();
    assert!(matches!(err, CharterError::Threshold { valid: 1, .. }), "{err}");

    // The second list key's signature makes it valid.
    env.sign(&charter.list_keys[2]);
    write_repo(repo.path(), &charter.root_bytes(), &env.to_bytes());
    assert_eq!(c.refresh(now()).await.unwrap().list.version, 1);
}

#[tokio::test]
async fn a_provider_removed_from_the_list_is_gone_after_the_next_refresh() {
    let charter = Charter::new();
    let repo = tempfile::tempdir().unwrap();
    publish::publish(
        repo.path(),
        &charter.root_bytes(),
        &charter.list(1, now() + days(30), &["alpha", "beta"], &[0, 1]),
        now(),
    )
    .unwrap();
    let server = Server::start(repo.path()).await;
    let state = tempfile::tempdir().unwrap();
    let c = client(&server, &charter, state.path());
    let v1 = c.refresh(now()).await.unwrap();
    assert_eq!(v1.list.provider_by_homeserver("beta.test").unwrap().provider_id, "beta");

    publish::publish(
        repo.path(),
        &charter.root_bytes(),
        &charter.list(2, now() + days(30), &["alpha"], &[0, 1]),
        now(),
    )
    .unwrap();
    // Until the refresh the kept list still has it; after it, it is gone.
    assert!(c.last_good(now()).unwrap().list.provider_by_homeserver("beta.test").is_some());
    let v2 = c.refresh(now()).await.unwrap();
    assert!(v2.list.provider_by_homeserver("beta.test").is_none());
    assert!(v2.list.provider_by_homeserver("alpha.test").is_some());
    assert!(c.last_good(now()).unwrap().list.provider_by_homeserver("beta.test").is_none());
}

#[tokio::test]
async fn a_new_root_is_followed_only_when_the_old_root_keys_signed_it() {
    let charter = Charter::new();
    let repo = tempfile::tempdir().unwrap();
    publish::publish(
        repo.path(),
        &charter.root_bytes(),
        &charter.list(1, now() + days(30), &["alpha"], &[0, 1]),
        now(),
    )
    .unwrap();
    let server = Server::start(repo.path()).await;
    let state = tempfile::tempdir().unwrap();
    let c = client(&server, &charter, state.path());
    c.refresh(now()).await.unwrap();

    // Root 2 hands the list role to one new key.
    let new_root_key = SecretKey::generate_os();
    let new_list_key = SecretKey::generate_os();
    let r2 = Root::new(2, now() + days(365), &[new_root_key.public()], 1, &[new_list_key.public()], 1).unwrap();
    let mut r2_env = Envelope::new(&r2);
    r2_env.sign(&new_root_key);
    let list = {
        let l =
            tincan_charter::TrustList::new(crate::fixture::input(&["alpha", "gamma"]), 2, now() + days(30)).unwrap();
        let mut e = Envelope::new(&l);
        e.sign(&new_list_key);
        e.to_bytes()
    };
    // Signed by the new root key only: neither the publisher nor a client accepts it.
    assert!(matches!(
        publish::publish(repo.path(), &r2_env.to_bytes(), &list, now()),
        Err(CharterError::Threshold { role: RoleName::Root, .. })
    ));
    std::fs::write(repo.path().join("2.root.json"), r2_env.to_bytes()).unwrap();
    std::fs::write(repo.path().join("trust-list.json"), &list).unwrap();
    let err = c.refresh(now()).await.unwrap_err();
    assert!(matches!(err, CharterError::Threshold { role: RoleName::Root, .. }), "{err}");
    std::fs::remove_file(repo.path().join("2.root.json")).unwrap();

    // Cross-signed by the old root key: published, followed, and the new list key's list accepted.
    r2_env.sign(&charter.root_key);
    publish::publish(repo.path(), &r2_env.to_bytes(), &list, now()).unwrap();
    let v = c.refresh(now()).await.unwrap();
    assert_eq!((v.root_version, v.list.version), (2, 2));
    assert_eq!(c.trusted_root().unwrap().version, 2);
    // A list signed by the old list keys no longer counts under root 2.
    std::fs::write(repo.path().join("trust-list.json"), charter.list(3, now() + days(30), &["alpha"], &[0, 1]))
        .unwrap();
    assert!(matches!(c.refresh(now()).await, Err(CharterError::Threshold { role: RoleName::List, valid: 0, .. })));
}
