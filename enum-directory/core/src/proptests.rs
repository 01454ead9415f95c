//! Property tests of the round trips: number ↔ owner name under any apex, service ↔ NAPTR, key ↔ TXT.

use hickory_proto::rr::Name;
use proptest::prelude::*;

use crate::*;

/// Valid numbers: fixed prefixes of real numbering plans with free subscriber digits.
fn number() -> impl Strategy<Value = E164> {
    let plans: [(&str, usize); 6] = [
        ("+442079460", 3), // London drama range
        ("+49151", 8),     // German mobile
        ("+3361", 7),      // French mobile
        ("+81901", 7),     // Japanese mobile
        ("+1202555", 4),   // Washington DC
        ("+61412", 6),     // Australian mobile
    ];
    (0..plans.len(), proptest::collection::vec(0u8..10, 8)).prop_map(move |(i, ds)| {
        let (prefix, n) = plans[i];
        let s: String = prefix.chars().chain(ds[..n].iter().map(|d| char::from(b'0' + d))).collect();
        E164::parse(&s).unwrap_or_else(|e| panic!("{s}: {e}"))
    })
}

fn apex() -> impl Strategy<Value = Name> {
    proptest::collection::vec("[a-zA-Z][a-zA-Z0-9-]{0,20}", 0..5).prop_map(|labels| {
        let mut n = Name::from_labels(labels.iter().map(|l| l.as_bytes())).unwrap();
        n.set_fqdn(true);
        n
    })
}

fn service() -> impl Strategy<Value = Service> {
    prop_oneof![
        ("[a-z0-9._=/+-]{1,30}", "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){0,3}", proptest::bool::ANY).prop_map(
            |(l, h, chat)| {
                let q = if chat { "?action=chat" } else { "" };
                Service::new(ServiceType::Matrix, &format!("matrix:u/{l}:{h}{q}")).unwrap()
            }
        ),
        ("[a-zA-Z0-9+._-]{1,30}", "[a-z][a-z0-9]{0,10}(\\.[a-z]{1,5}){1,3}").prop_map(|(u, h)| Service::new(
            ServiceType::Sip,
            &format!("sip:{u}@{h}")
        )
        .unwrap()),
        number().prop_map(|n| Service::new(ServiceType::Sms, &format!("tel:{n}")).unwrap()),
        number().prop_map(|n| Service::new(ServiceType::Voice, &format!("tel:{n}")).unwrap()),
    ]
}

proptest! {
    #[test]
    fn number_owner_round_trip(n in number(), apex in apex()) {
        let owner = owner_name(&n, &apex);
        prop_assert_eq!(owner.num_labels(), apex.num_labels() + n.digits().len() as u8);
        prop_assert_eq!(number_from_owner(&owner, &apex), Some(n.clone()));
        prop_assert_eq!(number_from_owner(&owner.to_lowercase(), &apex.to_lowercase()), Some(n.clone()));
        // Dropping the first label (the last digit) leaves a partial number, never the same one.
        prop_assert_ne!(number_from_owner(&owner.base_name(), &apex), Some(n));
    }

    #[test]
    fn number_string_round_trip(n in number()) {
        prop_assert_eq!(E164::parse(n.as_str()), Ok(n.clone()));
        prop_assert_eq!(n.to_string().parse::<E164>(), Ok(n));
    }

    #[test]
    fn services_naptr_round_trip(services in proptest::collection::vec(service(), 0..6)) {
        let back: Vec<Service> = naptr_rdata(&services).iter().filter_map(service_from_naptr).collect();
        prop_assert_eq!(back, services);
    }

    #[test]
    fn key_txt_round_trip(seed in proptest::array::uniform32(any::<u8>())) {
        let key = MasterKey::from_bytes(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes())
            .unwrap();
        prop_assert_eq!(key_from_txt(&key_txt(&key)), Some(key));
        prop_assert_eq!(MasterKey::from_base64(&key.to_base64()), Ok(key));
    }

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,40}") {
        let _ = E164::parse(&s);
        for t in ServiceType::ALL {
            let _ = Service::new(t, &s);
        }
        let _ = MasterKey::from_base64(&s);
        let _ = key_from_txt(&hickory_proto::rr::rdata::TXT::new(vec![s]));
    }
}
