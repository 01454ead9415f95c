//! One conformance suite for both storage backends.

use tincan_homeserver_ext::store::*;

fn session(sid: &str, number: &str, created_at: i64) -> CodeSession {
    CodeSession {
        sid: sid.into(),
        client_secret_digest: "d1".into(),
        number: number.into(),
        purpose: Purpose::Register,
        code_hash: vec![1, 2, 3],
        created_at,
        expires_at: created_at + 600,
        attempts: 0,
        send_attempt: 1,
        last_sent_at: created_at,
        validated_at: None,
        consumed_at: None,
    }
}

async fn conformance(store: &dyn Store) {
    // Sessions.
    assert!(store.session("nope").await.unwrap().is_none());
    store.create_session(&session("s1", "+447911123001", 100)).await.unwrap();
    store.create_session(&session("s2", "+447911123001", 200)).await.unwrap();
    assert_eq!(store.session("s1").await.unwrap().unwrap(), session("s1", "+447911123001", 100));
    let newest = store.session_by_secret("d1", "+447911123001", Purpose::Register).await.unwrap().unwrap();
    assert_eq!(newest.sid, "s2");
    assert!(store.session_by_secret("d1", "+447911123001", Purpose::Identity).await.unwrap().is_none());
    // Attempts are reserved while some are left and the session is live.
    assert_eq!(store.reserve_attempt("s1", 2, 150).await.unwrap().unwrap().attempts, 1);
    assert_eq!(store.reserve_attempt("s1", 2, 150).await.unwrap().unwrap().attempts, 2);
    assert!(store.reserve_attempt("s1", 2, 150).await.unwrap().is_none(), "no attempt left");
    assert!(store.reserve_attempt("s2", 5, 800).await.unwrap().is_none(), "expired");
    assert!(store.reserve_attempt("nope", 5, 150).await.unwrap().is_none());
    assert_eq!(store.session("s2").await.unwrap().unwrap().attempts, 0, "a refused reservation takes nothing");
    store.resend("s1", &[9], 2, 150, 750).await.unwrap();
    store.validate("s1", 160).await.unwrap();
    store.validate("s1", 170).await.unwrap(); // the first validation time stays
    let s = store.session("s1").await.unwrap().unwrap();
    assert_eq!((s.code_hash, s.send_attempt, s.last_sent_at, s.expires_at), (vec![9], 2, 150, 750));
    assert_eq!((s.attempts, s.validated_at), (2, Some(160)));
    assert!(store.consume("s1", 180).await.unwrap());
    assert!(!store.consume("s1", 190).await.unwrap(), "a session is consumed once");
    assert!(store.reserve_attempt("s1", 10, 190).await.unwrap().is_none(), "consumed");

    // Accounts: insert keeps the first account of a number.
    let a = Account {
        number: "+447911123001".into(),
        localpart: "tc_a".into(),
        user_id: "@tc_a:hs".into(),
        created_at: 1,
        published_at: None,
    };
    assert_eq!(store.insert_account(&a).await.unwrap(), a);
    let b = Account { localpart: "tc_b".into(), user_id: "@tc_b:hs".into(), ..a.clone() };
    assert_eq!(store.insert_account(&b).await.unwrap(), a);
    store.mark_published(&a.number, Some(5)).await.unwrap();
    assert_eq!(store.account_by_number(&a.number).await.unwrap().unwrap().published_at, Some(5));
    assert_eq!(store.accounts_by_user("@tc_a:hs").await.unwrap().len(), 1);
    assert!(store.accounts_by_user("@tc_b:hs").await.unwrap().is_empty());
    store.insert_account(&Account { number: "+447700900009".into(), ..b.clone() }).await.unwrap();
    assert!(store.delete_account("+447700900009").await.unwrap());
    assert!(!store.delete_account("+447700900009").await.unwrap());

    // Identity: bindings, hashes, peppers, tokens.
    assert!(store.current_pepper().await.unwrap().is_none());
    let bind = Binding { number: "+447911123001".into(), user_id: "@tc_a:hs".into() };
    let table = |number: &str, pepper: &str| match (number, pepper) {
        ("+447911123001", "p1") => "h1".to_owned(),
        ("+447911123002", "p1") => "h2".to_owned(),
        _ => format!("{number}/{pepper}"),
    };
    assert!(matches!(store.bind(&bind, &table, 1).await, Err(StoreError::NoPepper)));
    store.add_first_pepper("p1", 1).await.unwrap();
    store.add_first_pepper("p2", 2).await.unwrap(); // not the first: ignored
    assert_eq!(store.current_pepper().await.unwrap().as_deref(), Some("p1"));
    store.bind(&bind, &table, 1).await.unwrap();
    store.bind(&Binding { number: "+447911123002".into(), user_id: "@x:hs".into() }, &table, 1).await.unwrap();
    assert_eq!(store.binding_since("+447911123001").await.unwrap(), Some((bind.clone(), 1)));
    assert_eq!(store.binding_since("+447911123009").await.unwrap(), None);
    let mut found = store.lookup_hashes(&["h1".into(), "h2".into(), "h3".into()]).await.unwrap();
    found.sort();
    assert_eq!(found, vec![("h1".into(), "@tc_a:hs".into()), ("h2".into(), "@x:hs".into())]);
    let many: Vec<String> = (0..1200).map(|i| format!("m{i}")).chain(["h1".to_string()]).collect();
    assert_eq!(store.lookup_hashes(&many).await.unwrap().len(), 1);
    let asked: Vec<String> = ["+447911123002", "+447911123009", "+447911123001"].map(String::from).to_vec();
    let mut bound = store.bindings(&asked).await.unwrap();
    bound.sort_by(|a, b| a.number.cmp(&b.number));
    assert_eq!(bound, vec![bind.clone(), Binding { number: "+447911123002".into(), user_id: "@x:hs".into() }]);

    // A rotation re-hashes bindings and the mirror together, with the new pepper current.
    let mirrored = |n: &str, h: &str| MirrorEntry { number: n.into(), version: 7, lookup_hash: h.into() };
    store.mirror_upsert(&[mirrored("+4915112345001", "m1")], "p1", &table).await.unwrap();
    store.rotate_pepper("p3", 3, &|n| format!("{n}/p3")).await.unwrap();
    assert_eq!(store.current_pepper().await.unwrap().as_deref(), Some("p3"));
    assert!(store.lookup_hashes(&["h1".into()]).await.unwrap().is_empty());
    assert_eq!(
        store.lookup_hashes(&["+447911123001/p3".into()]).await.unwrap(),
        vec![("+447911123001/p3".into(), "@tc_a:hs".into())]
    );
    assert_eq!(store.mirror_range("", None).await.unwrap(), vec![mirrored("+4915112345001", "+4915112345001/p3")]);
    // Entries hashed with a pepper rotated away meanwhile are stored re-hashed with the current one.
    store.mirror_upsert(&[mirrored("+4915112345002", "stale")], "p1", &table).await.unwrap();
    assert_eq!(
        store.mirror_range("+4915112345001", None).await.unwrap(),
        vec![mirrored("+4915112345002", "+4915112345002/p3")]
    );
    store.mirror_delete(&["+4915112345002".into()]).await.unwrap();
    // A bind after the rotation hashes with the new pepper.
    store.bind(&Binding { number: "+447911123003".into(), user_id: "@y:hs".into() }, &table, 4).await.unwrap();
    // Re-binding (to another user) dates the binding anew.
    let moved = Binding { number: "+447911123003".into(), user_id: "@z:hs".into() };
    store.bind(&moved, &table, 6).await.unwrap();
    assert_eq!(store.binding_since("+447911123003").await.unwrap(), Some((moved, 6)));
    assert_eq!(store.lookup_hashes(&["+447911123003/p3".into()]).await.unwrap().len(), 1);
    assert_eq!(
        store.mirrored(&asked[..1].iter().cloned().chain(["+4915112345001".into()]).collect::<Vec<_>>()).await.unwrap(),
        vec!["+4915112345001".to_string()]
    );
    assert!(!store.unbind("+447911123001", "@someone:hs").await.unwrap());
    assert!(store.unbind("+447911123001", "@tc_a:hs").await.unwrap());
    assert!(store.binding("+447911123001").await.unwrap().is_none());
    let owner = IsToken { user_id: "@tc_a:hs".into(), server_name: "hs".into() };
    store.add_token("t1", &owner, 1, 100).await.unwrap();
    assert_eq!(store.token_user("t1", 99).await.unwrap(), Some(owner.clone()));
    assert_eq!(store.token_user("t1", 100).await.unwrap(), None, "expired at 100");
    // Adding a token deletes the expired ones.
    store.add_token("t2", &owner, 100, 200).await.unwrap();
    store.add_token("t3", &owner, 150, 300).await.unwrap();
    assert!(!store.delete_token("t1").await.unwrap(), "t1 was deleted when t2 was added");
    assert!(store.delete_token("t2").await.unwrap());
    assert!(store.token_user("t2", 150).await.unwrap().is_none());
    assert_eq!(store.token_user("t3", 299).await.unwrap(), Some(owner));

    // Registration locks: set, a compare-and-swap per wrong-PIN attempt, activity, reset, replace, delete.
    let u = "@tc_a:hs";
    assert!(store.registration_lock(u).await.unwrap().is_none());
    assert!(!store.touch_registration_lock(u, 5).await.unwrap(), "no lock to touch");
    store.set_registration_lock(u, "h1", 10).await.unwrap();
    let l = store.registration_lock(u).await.unwrap().unwrap();
    assert_eq!((l.pin_hash.as_str(), l.last_active_at, l.failures, l.next_try_at), ("h1", 10, 0, 0));
    assert!(store.reserve_pin_attempt(u, 0, 11, 13).await.unwrap());
    assert!(!store.reserve_pin_attempt(u, 0, 11, 13).await.unwrap(), "the count moved on");
    assert!(!store.reserve_pin_attempt(u, 1, 12, 16).await.unwrap(), "before the wait is over");
    assert!(store.reserve_pin_attempt(u, 1, 13, 17).await.unwrap());
    let l = store.registration_lock(u).await.unwrap().unwrap();
    assert_eq!((l.failures, l.next_try_at), (2, 17));
    assert!(store.touch_registration_lock(u, 20).await.unwrap());
    store.reset_pin_failures(u, 21).await.unwrap();
    let l = store.registration_lock(u).await.unwrap().unwrap();
    assert_eq!((l.last_active_at, l.failures, l.next_try_at), (21, 0, 0));
    store.reserve_pin_attempt(u, 0, 22, 24).await.unwrap();
    store.set_registration_lock(u, "h2", 30).await.unwrap();
    let l = store.registration_lock(u).await.unwrap().unwrap();
    assert_eq!((l.pin_hash.as_str(), l.last_active_at, l.failures, l.next_try_at), ("h2", 30, 0, 0));
    assert!(store.delete_registration_lock(u).await.unwrap());
    assert!(!store.delete_registration_lock(u).await.unwrap());

    oidc_conformance(store).await;
    ports_conformance(store).await;
    log_heads_conformance(store).await;
}

/// The last accepted tree head per log key: none at first, then the last one set, per key.
async fn log_heads_conformance(store: &dyn Store) {
    store.ping().await.unwrap();

    assert_eq!(store.log_head("key-a").await.unwrap(), None);
    store.set_log_head("key-a", "{\"size\":1}").await.unwrap();
    store.set_log_head("key-a", "{\"size\":2}").await.unwrap();
    store.set_log_head("key-b", "{\"size\":9}").await.unwrap();
    assert_eq!(store.log_head("key-a").await.unwrap().as_deref(), Some("{\"size\":2}"));
    assert_eq!(store.log_head("key-b").await.unwrap().as_deref(), Some("{\"size\":9}"));
}

fn port(id: i64, side: PortSide) -> PortRecord {
    PortRecord {
        id,
        number: "+447911123009".into(),
        side,
        user_id: Some("@tc_p:hs".into()),
        state: "pending".into(),
        reason: None,
        window_ends_at_ms: 86_400_000,
        updated_at: 1,
    }
}

async fn ports_conformance(store: &dyn Store) {
    assert!(store.port(1).await.unwrap().is_none());
    // A port seen first as the losing side's stays so when seen again that way.
    let losing = port(1, PortSide::Losing);
    assert_eq!(store.insert_port(&losing).await.unwrap(), losing);
    let again = PortRecord { user_id: None, ..losing.clone() };
    assert_eq!(store.insert_port(&again).await.unwrap(), losing);
    // Our own filing of it is authoritative.
    let gaining = port(1, PortSide::Gaining);
    assert_eq!(store.insert_port(&gaining).await.unwrap(), gaining);
    assert_eq!(store.insert_port(&PortRecord { user_id: None, ..gaining.clone() }).await.unwrap(), gaining);
    store.insert_port(&port(2, PortSide::Gaining)).await.unwrap();
    store.insert_port(&port(3, PortSide::Losing)).await.unwrap();
    let newest = store.port_of_number("+447911123009", PortSide::Gaining).await.unwrap().unwrap();
    assert_eq!(newest.id, 2);
    assert_eq!(store.pending_ports().await.unwrap().iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2, 3]);
    // A port closes once.
    assert!(store.close_port(2, "objected", Some("registration_locked"), 5).await.unwrap());
    assert!(!store.close_port(2, "completed", None, 6).await.unwrap());
    let closed = store.port(2).await.unwrap().unwrap();
    assert_eq!(
        (closed.state.as_str(), closed.reason.as_deref(), closed.updated_at),
        ("objected", Some("registration_locked"), 5)
    );
    assert_eq!(store.pending_ports().await.unwrap().iter().map(|p| p.id).collect::<Vec<_>>(), [1, 3]);
    // How far the watch of a moved-away account read.
    assert_eq!(store.moved_watch_since(3).await.unwrap(), None);
    store.set_moved_watch_since(3, "s1_2").await.unwrap();
    store.set_moved_watch_since(3, "s5_6").await.unwrap();
    assert_eq!(store.moved_watch_since(3).await.unwrap().as_deref(), Some("s5_6"));
    assert_eq!(store.moved_watch_since(1).await.unwrap(), None);
    // The moved notice's answers: an event once, a room once per interval (here 60 s), per port.
    assert!(store.claim_moved_reply(3, "!r:hs", "$e1", 100, 60).await.unwrap());
    assert!(!store.claim_moved_reply(3, "!r:hs", "$e1", 100, 60).await.unwrap(), "the same event again");
    assert!(!store.claim_moved_reply(3, "!r:hs", "$e1", 500, 60).await.unwrap(), "the same event, later");
    assert!(!store.claim_moved_reply(3, "!r:hs", "$e2", 159, 60).await.unwrap(), "within the interval");
    assert!(store.claim_moved_reply(3, "!r:hs", "$e2", 160, 60).await.unwrap());
    assert!(store.claim_moved_reply(3, "!other:hs", "$e3", 160, 60).await.unwrap(), "another room");
    assert!(store.claim_moved_reply(1, "!r:hs", "$e2", 160, 60).await.unwrap(), "another port");
    // A claim whose answer failed is given back.
    store.release_moved_reply(3, "!other:hs", "$e3").await.unwrap();
    assert!(store.claim_moved_reply(3, "!other:hs", "$e3", 161, 60).await.unwrap());
}

fn sign_in(id: &str, expires_at: i64) -> OidcSignIn {
    OidcSignIn {
        id: id.into(),
        client_id: "synapse".into(),
        redirect_uri: "https://hs/cb".into(),
        state: Some("st".into()),
        nonce: None,
        code_challenge: "ch".into(),
        scope: "openid phone".into(),
        browser_digest: "b1".into(),
        session_secret: "ss".into(),
        sid: None,
        number: None,
        sends: 0,
        expires_at,
    }
}

/// The OpenID provider's sign-ins, codes and tokens.
async fn oidc_conformance(store: &dyn Store) {
    // Sign-ins: bounded, bound to their browser, expiring, updated with the code session, taken once.
    assert!(store.insert_oidc_sign_in(&sign_in("r1", 100), 10, 2).await.unwrap());
    assert!(store.insert_oidc_sign_in(&sign_in("r2", 50), 10, 2).await.unwrap());
    assert!(!store.insert_oidc_sign_in(&sign_in("r3", 100), 10, 2).await.unwrap(), "full");
    assert_eq!(store.oidc_sign_in("r1", "b1", 20).await.unwrap(), Some(sign_in("r1", 100)));
    assert!(store.oidc_sign_in("r1", "another browser", 20).await.unwrap().is_none());
    assert!(store.oidc_sign_in("r2", "b1", 50).await.unwrap().is_none(), "expired");
    // At 50, r2 has expired and is deleted, which makes room.
    assert!(store.insert_oidc_sign_in(&sign_in("r3", 100), 50, 2).await.unwrap());
    let updated = OidcSignIn {
        session_secret: "ss2".into(),
        sid: Some("sid1".into()),
        number: Some("+447911123001".into()),
        sends: 2,
        ..sign_in("r1", 100)
    };
    assert!(store.update_oidc_sign_in(&updated).await.unwrap());
    assert_eq!(store.oidc_sign_in("r1", "b1", 60).await.unwrap(), Some(updated.clone()));
    assert!(store.take_oidc_sign_in("r1").await.unwrap());
    assert!(!store.take_oidc_sign_in("r1").await.unwrap(), "a sign-in is taken once");
    assert!(!store.update_oidc_sign_in(&updated).await.unwrap(), "gone");

    // Codes: redeemed once while alive; the redeemed row keeps the token until the token's expiry.
    let code = OidcCode {
        digest: "c1".into(),
        client_id: "synapse".into(),
        redirect_uri: "https://hs/cb".into(),
        code_challenge: "ch".into(),
        nonce: Some("n".into()),
        scope: "openid".into(),
        sub: "tc_a".into(),
        phone_number: "+447911123001".into(),
        auth_time: 95,
        expires_at: 160,
        redeemed_token: None,
    };
    store.insert_oidc_code(&code, 100).await.unwrap();
    store.insert_oidc_code(&OidcCode { digest: "c2".into(), expires_at: 110, ..code.clone() }, 100).await.unwrap();
    assert_eq!(store.oidc_code("c1").await.unwrap(), Some(code.clone()));
    assert!(!store.redeem_oidc_code("c2", "t0", 110, 400).await.unwrap(), "expired");
    assert!(store.redeem_oidc_code("c1", "t1", 120, 400).await.unwrap());
    assert!(!store.redeem_oidc_code("c1", "t2", 121, 400).await.unwrap(), "a code is redeemed once");
    let redeemed = store.oidc_code("c1").await.unwrap().unwrap();
    assert_eq!((redeemed.redeemed_token.as_deref(), redeemed.expires_at), (Some("t1"), 400));
    // Inserting another code deletes the expired ones (c2), not the redeemed one whose token lives.
    store.insert_oidc_code(&OidcCode { digest: "c3".into(), ..code.clone() }, 300).await.unwrap();
    assert!(store.oidc_code("c2").await.unwrap().is_none());
    assert!(store.oidc_code("c1").await.unwrap().is_some());

    // Access tokens.
    let token = OidcAccessToken {
        digest: "t1".into(),
        sub: "tc_a".into(),
        phone_number: "+447911123001".into(),
        scope: "openid phone".into(),
        expires_at: 400,
    };
    store.insert_oidc_token(&token, 120).await.unwrap();
    assert_eq!(store.oidc_token("t1", 399).await.unwrap(), Some(token.clone()));
    assert!(store.oidc_token("t1", 400).await.unwrap().is_none(), "expired");
    assert!(store.delete_oidc_token("t1").await.unwrap());
    assert!(!store.delete_oidc_token("t1").await.unwrap());
    assert!(store.oidc_token("t1", 120).await.unwrap().is_none(), "revoked");
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let store = open(&url).await.unwrap();
    conformance(&*store).await;
}

#[tokio::test]
async fn sqlite_in_memory_conformance() {
    let store = open("sqlite::memory:").await.unwrap();
    conformance(&*store).await;
}

#[tokio::test]
async fn postgres_conformance() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let store = open(pg.url()).await.unwrap();
    conformance(&*store).await;
}

#[tokio::test]
async fn a_database_url_of_another_kind_is_refused_not_opened_as_an_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    // Relative: a store opened as SQLite would create this file in the working directory.
    std::env::set_current_dir(dir.path()).unwrap();
    for url in ["mysql://user:hunter2@db.example/tincan", "postgress://db.example/x", "tincan.db"] {
        let err = open(url).await.expect_err(url);
        assert!(matches!(err, StoreError::UnknownUrl(_)), "{url}: {err}");
        assert!(!err.to_string().contains("hunter2"), "the URL's password is not echoed: {err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file was created");
}
