//! The checks every backend passes (run on SQLite and PostgreSQL by the integration tests). Each takes a freshly
//! migrated, empty store.

use super::{Binding, Store};
use tincan_sip_core::stack::{Target, Transport};

fn binding(contact: &str, username: &str, call_id: &str, cseq: i64, expires_at: i64) -> Binding {
    Binding {
        number: "+442079460001".into(),
        contact: contact.into(),
        username: username.into(),
        source: Target { transport: Transport::Udp, addr: "127.0.0.1:5070".parse().unwrap() },
        call_id: call_id.into(),
        cseq,
        expires_at,
        user_agent: Some("baresip".into()),
    }
}

/// Bindings: refresh ordering, expiry, removal per contact and per device.
pub async fn bindings(s: &dyn Store) {
    let n = "+442079460001";
    let a = binding("sip:a@127.0.0.1:5070", "desk", "c1", 1, 1000);
    assert!(s.upsert_binding(&a).await.unwrap());
    assert_eq!(s.bindings(n, 500).await.unwrap(), std::slice::from_ref(&a));
    // An older CSeq of the same Call-ID does not overwrite; a newer one does; another Call-ID always does.
    assert!(
        !s.upsert_binding(&Binding { expires_at: 5, ..binding("sip:a@127.0.0.1:5070", "desk", "c1", 1, 5) })
            .await
            .unwrap()
    );
    assert_eq!(s.bindings(n, 500).await.unwrap()[0].expires_at, 1000);
    assert!(s.upsert_binding(&binding("sip:a@127.0.0.1:5070", "desk", "c1", 2, 2000)).await.unwrap());
    assert!(s.upsert_binding(&binding("sip:a@127.0.0.1:5070", "desk", "c9", 1, 3000)).await.unwrap());
    assert_eq!(s.bindings(n, 500).await.unwrap()[0].expires_at, 3000);
    let b = binding("sip:b@[::1]:5080;transport=tcp", "phone", "c2", 1, 900);
    let b = Binding { source: Target { transport: Transport::Tcp, addr: "[::1]:5080".parse().unwrap() }, ..b };
    s.upsert_binding(&b).await.unwrap();
    assert_eq!(s.bindings(n, 500).await.unwrap().len(), 2);
    assert_eq!(s.bindings(n, 950).await.unwrap().len(), 1, "b expired at 900");
    assert!(s.bindings("+442079460002", 0).await.unwrap().is_empty());
    assert_eq!(s.purge_expired(950).await.unwrap(), 1);
    s.upsert_binding(&b).await.unwrap();
    assert_eq!(s.remove_device_bindings(n, "phone").await.unwrap(), 1);
    assert!(s.remove_binding(n, "sip:a@127.0.0.1:5070").await.unwrap());
    assert!(!s.remove_binding(n, "sip:a@127.0.0.1:5070").await.unwrap());
    assert!(s.bindings(n, 0).await.unwrap().is_empty());
}

/// Media sessions: recorded, listed in order, removed; adding twice is harmless.
pub async fn media_sessions(s: &dyn Store) {
    s.add_media_session("call-b", 2).await.unwrap();
    s.add_media_session("call-a", 1).await.unwrap();
    s.add_media_session("call-a", 1).await.unwrap();
    assert_eq!(s.media_sessions().await.unwrap(), ["call-a", "call-b"]);
    s.remove_media_session("call-a").await.unwrap();
    s.remove_media_session("nope").await.unwrap();
    assert_eq!(s.media_sessions().await.unwrap(), ["call-b"]);
}
