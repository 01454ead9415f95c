//! SIP routes of phone numbers from the real directory's signed zone, through the validating lookup.

use tincan_enum_lookup::{Lookup, LookupConfig, TrustAnchor};
use tincan_sip_core::enum_route::{EnumRouteError, routes};
use tincan_testkit::directory::{self, Directory, TamperProxy};

async fn lookup_via(dir: &Directory, server: std::net::SocketAddr) -> Lookup {
    let anchor: TrustAnchor = dir.trust_anchor().unwrap().parse().unwrap();
    let apex = hickory_proto::rr::Name::from_ascii(directory::APEX).unwrap();
    Lookup::new(LookupConfig::new(vec![server], apex, anchor)).unwrap()
}

#[tokio::test]
async fn a_validated_e2u_sip_route_and_no_route_from_a_forged_answer() {
    let Some(bin) = directory::binary_or_skip() else { return };
    let dir = Directory::start(&bin).await.unwrap();
    let provider = dir.add_provider("p1", &["+44"]).unwrap();
    provider
        .put_number(
            "+442079460001",
            &[("sip", "sip:+442079460001@sip.provider.example"), ("matrix", "matrix:u/alice:hs.test?action=chat")],
        )
        .await
        .unwrap();

    let lookup = lookup_via(&dir, dir.dns).await;
    let found = routes(&lookup, "+442079460001").await.unwrap();
    assert!(found.validated);
    assert_eq!(found.matrix.as_deref(), Some("@alice:hs.test"));
    assert_eq!(found.sip.len(), 1);
    assert_eq!(found.sip[0].to_string(), "sip:+442079460001@sip.provider.example");

    let unknown = routes(&lookup, "+442079460002").await.unwrap();
    assert!(unknown.validated && unknown.sip.is_empty() && unknown.matrix.is_none());

    // The same question through a man-in-the-middle that breaks the number's signatures: an error, no route.
    let owner: String = "442079460001".chars().rev().flat_map(|c| [c, '.']).collect::<String>() + directory::APEX;
    let proxy = TamperProxy::start(dir.dns, &owner).await.unwrap();
    let forged = routes(&lookup_via(&dir, proxy.addr).await, "+442079460001").await;
    assert!(matches!(forged, Err(EnumRouteError::Lookup(ref e)) if e.is_validation_failure()), "{forged:?}");

    assert!(matches!(routes(&lookup, "not a number").await, Err(EnumRouteError::Number(_))));
}
