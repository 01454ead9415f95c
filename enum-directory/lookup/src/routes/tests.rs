use super::*;
use hickory_proto::rr::Name;
use proptest::prelude::*;
use tincan_enum_core::{Service, key_txt, naptr_rdata};

fn master_key(seed: u8) -> MasterKey {
    let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes();
    MasterKey::from_bytes(public).unwrap()
}

fn naptr(order: u16, preference: u16, service: &str, uri: &str) -> NAPTR {
    NAPTR::new(
        order,
        preference,
        b"u".to_vec().into_boxed_slice(),
        service.as_bytes().to_vec().into_boxed_slice(),
        format!("!^.*$!{uri}!").into_bytes().into_boxed_slice(),
        Name::root(),
    )
}

#[test]
fn maps_every_service_type() {
    let records = [
        naptr(100, 10, "E2U+x-matrix", "matrix:u/alice:hs.test?action=chat"),
        naptr(100, 20, "E2U+sip", "sip:+442079460001@sip.test"),
        naptr(100, 30, "E2U+sms:tel", "tel:+442079460001"),
        naptr(100, 40, "E2U+voice:tel", "tel:+442079460002"),
    ];
    let routes = Routes::from_naptrs(&records);
    let user = routes.matrix.as_ref().unwrap();
    assert_eq!((user.localpart(), user.server(), user.user_id()), ("alice", "hs.test", "@alice:hs.test".into()));
    assert_eq!(routes.sip, vec!["sip:+442079460001@sip.test".to_owned()]);
    assert_eq!(routes.sms.as_ref().map(E164::as_str), Some("+442079460001"));
    assert_eq!(routes.voice.as_ref().map(E164::as_str), Some("+442079460002"));
    assert!(!routes.is_empty());
}

#[test]
fn best_first_by_order_then_preference() {
    let records = [
        naptr(200, 10, "E2U+x-matrix", "matrix:u/late:hs.test"),
        naptr(100, 20, "E2U+x-matrix", "matrix:u/second:hs.test"),
        naptr(100, 10, "E2U+x-matrix", "matrix:u/first:hs.test"),
        naptr(100, 30, "E2U+sip", "sip:b@sip.test"),
        naptr(100, 5, "E2U+sip", "sip:a@sip.test"),
        naptr(100, 6, "E2U+sip", "sip:a@sip.test"),
    ];
    let routes = Routes::from_naptrs(&records);
    assert_eq!(routes.matrix.unwrap().localpart(), "first");
    assert_eq!(routes.sip, vec!["sip:a@sip.test".to_owned(), "sip:b@sip.test".to_owned()]);
}

#[test]
fn skips_records_that_are_not_ours() {
    let mut wrong_flags = naptr(100, 10, "E2U+sip", "sip:a@sip.test");
    wrong_flags.flags = b"s".to_vec().into_boxed_slice();
    let mut wrong_replacement = naptr(100, 10, "E2U+sip", "sip:a@sip.test");
    wrong_replacement.replacement = Name::from_ascii("sip.test.").unwrap();
    let records = [
        naptr(100, 10, "E2U+email:mailto", "mailto:a@example.test"),
        naptr(100, 10, "E2U+x-matrix", "https://evil.test/"),
        naptr(100, 10, "E2U+sms:tel", "tel:12345"),
        naptr(100, 10, "E2U+sip", "mailto:a@example.test"),
        wrong_flags,
        wrong_replacement,
    ];
    assert!(Routes::from_naptrs(&records).is_empty());
}

#[test]
fn keys_from_txt() {
    let k = master_key(1);
    let other = TXT::new(vec!["v=spf1 -all".to_owned()]);
    assert_eq!(key_from_txts([&other]), Ok(None));
    assert_eq!(key_from_txts([&other, &key_txt(&k)]), Ok(Some(k)));
    assert_eq!(key_from_txts([&key_txt(&k), &key_txt(&k)]), Ok(Some(k)));
    assert_eq!(key_from_txts([&key_txt(&k), &key_txt(&master_key(2))]), Err(ConflictingKeys { count: 2 }));
}

#[test]
fn matrix_user_uri() {
    assert!(MatrixUser::from_uri("matrix:u/:hs.test").is_none());
    assert!(MatrixUser::from_uri("matrix:u/alice").is_none());
    assert!(MatrixUser::from_uri("matrix:r/room:hs.test").is_none());
    let u = MatrixUser::from_uri("matrix:u/alice:hs.test:8448?action=chat").unwrap();
    assert_eq!(u.to_string(), "@alice:hs.test:8448");
}

fn service_strategy() -> impl Strategy<Value = Service> {
    let digits = "[1-9][0-9]{9,11}";
    prop_oneof![
        ("[a-z][a-z0-9._=-]{0,12}", "[a-z]{1,8}\\.test")
            .prop_map(|(l, s)| format!("matrix:u/{l}:{s}"))
            .prop_map(|uri| Service::new(tincan_enum_core::ServiceType::Matrix, &uri)),
        ("[a-z0-9+]{1,12}", "[a-z]{1,8}\\.test")
            .prop_map(|(u, h)| format!("sip:{u}@{h}"))
            .prop_map(|uri| Service::new(tincan_enum_core::ServiceType::Sip, &uri)),
        digits
            .prop_map(|d| format!("tel:+44{d}"))
            .prop_map(|uri| Service::new(tincan_enum_core::ServiceType::Sms, &uri)),
        digits
            .prop_map(|d| format!("tel:+44{d}"))
            .prop_map(|uri| Service::new(tincan_enum_core::ServiceType::Voice, &uri)),
    ]
    .prop_filter_map("URI the core accepts", Result::ok)
}

proptest! {
    /// What the directory publishes (core's NAPTR builder) comes back as the same routes, whatever the order
    /// the records arrive in.
    #[test]
    fn published_services_map_back_to_routes(
        services in proptest::collection::vec(service_strategy(), 0..8),
        rotate in 0usize..8,
    ) {
        let mut records = naptr_rdata(&services);
        if !records.is_empty() {
            let n = rotate % records.len();
            records.rotate_left(n);
        }
        let routes = Routes::from_naptrs(&records);
        let first = |kind| services.iter().find(|s| s.kind() == kind).map(|s| s.uri().to_owned());
        use tincan_enum_core::ServiceType::*;
        prop_assert_eq!(routes.matrix.map(|m| format!("matrix:u/{}:{}", m.localpart(), m.server())), first(Matrix));
        prop_assert_eq!(routes.sms.map(|n| format!("tel:{n}")), first(Sms));
        prop_assert_eq!(routes.voice.map(|n| format!("tel:{n}")), first(Voice));
        let mut sips: Vec<String> = vec![];
        for s in services.iter().filter(|s| s.kind() == Sip) {
            if !sips.contains(&s.uri().to_owned()) {
                sips.push(s.uri().to_owned());
            }
        }
        prop_assert_eq!(routes.sip, sips);
    }

    /// Arbitrary NAPTR content never panics and never yields a route the core would not accept.
    #[test]
    fn arbitrary_naptrs_are_safe(
        order in any::<u16>(), preference in any::<u16>(),
        flags in proptest::collection::vec(any::<u8>(), 0..3),
        service in proptest::collection::vec(any::<u8>(), 0..20),
        regexp in proptest::collection::vec(any::<u8>(), 0..60),
    ) {
        let n = NAPTR::new(order, preference, flags.into_boxed_slice(), service.into_boxed_slice(),
            regexp.into_boxed_slice(), Name::root());
        let routes = Routes::from_naptrs([&n]);
        if let Some(m) = routes.matrix {
            let uri = format!("matrix:u/{}:{}", m.localpart(), m.server());
            prop_assert!(Service::new(tincan_enum_core::ServiceType::Matrix, &uri).is_ok());
        }
    }
}
