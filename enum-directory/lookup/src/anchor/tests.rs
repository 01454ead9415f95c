use super::*;
use proptest::prelude::*;

// A real KSK and its DS, made with `dnssec-keygen -a ECDSAP256SHA256 -f KSK` and `dnssec-dsfromkey -2`.
const KSK: &str = "e164.lookup.test. IN DNSKEY 257 3 13 40UDt5bBt014dIEd0SADnQP1gqR7SZ9SBFzRF99B1mU03gyEBrmRctVo \
                   XyPFHp2iOZmZddo19TNYb7Jl191eCw==";
const ZSK: &str = "e164.lookup.test. IN DNSKEY 256 3 13 1zGpG03Tiq3eP3UGNookywia7gym8xdgtKBvSJ0NbvBUYCzFvibbsfOX \
                   01sPQIPNA7DyP4mtvACdw2I0Nt0Hcw==";
const DS: &str = "e164.lookup.test. IN DS 34765 13 2 9B097B35A42CF0CF13DC07908BB0AEF5FFCB78596D037734B1B5413BD29833BF";

fn key(text: &str) -> DNSKEY {
    match &TrustAnchor::parse(text).unwrap().entries()[0] {
        AnchorEntry::Dnskey(k) => k.clone(),
        AnchorEntry::Ds(_) => panic!("not a key"),
    }
}

#[test]
fn ds_in_presentation_format_trusts_its_key_only() {
    let anchor: TrustAnchor = DS.parse().unwrap();
    assert_eq!(anchor.zone(), &Name::from_ascii("e164.lookup.test.").unwrap());
    assert!(anchor.trusts(&key(KSK)));
    assert!(!anchor.trusts(&key(ZSK)));
}

#[test]
fn dnskey_anchor_trusts_the_same_key() {
    let anchor = TrustAnchor::parse(KSK).unwrap();
    assert!(anchor.trusts(&key(KSK)));
    assert!(!anchor.trusts(&key(ZSK)));
}

#[test]
fn ttl_class_comments_parentheses_and_split_digest() {
    let text = "; made by tincan-directory keys ds\n\
                e164.lookup.test. 3600 IN DS 34765 13 2 (\n  9B097B35A42CF0CF13DC07908BB0AEF5\n  \
                FFCB78596D037734B1B5413BD29833BF ) ; KSK\n";
    let anchor = TrustAnchor::parse(text).unwrap();
    assert_eq!(anchor.entries().len(), 1);
    assert!(anchor.trusts(&key(KSK)));
    // Lower-case type and owner without the final dot.
    let anchor = TrustAnchor::parse(&DS.replace(" DS ", " ds ").replace("test.", "test")).unwrap();
    assert!(anchor.trusts(&key(KSK)));
}

#[test]
fn delv_trust_anchors_clause() {
    let text = r#"trust-anchors {
        "e164.lookup.test." static-ds 34765 13 2 "9B097B35A42CF0CF13DC07908BB0AEF5FFCB78596D037734B1B5413BD29833BF";
    };"#;
    let anchor = TrustAnchor::parse(text).unwrap();
    assert!(anchor.trusts(&key(KSK)));

    let text = r#"# a static key
    trust-anchors { "e164.lookup.test." static-key 257 3 13 "40UDt5bBt014dIEd0SADnQP1gqR7SZ9SBFzRF99B1mU03gyEBrmRctVo XyPFHp2iOZmZddo19TNYb7Jl191eCw=="; };"#;
    assert!(TrustAnchor::parse(text).unwrap().trusts(&key(KSK)));

    let legacy = r#"trusted-keys { "e164.lookup.test." 257 3 13 "40UDt5bBt014dIEd0SADnQP1gqR7SZ9SBFzRF99B1mU03gyEBrmRctVoXyPFHp2iOZmZddo19TNYb7Jl191eCw=="; };"#;
    assert!(TrustAnchor::parse(legacy).unwrap().trusts(&key(KSK)));
}

#[test]
fn several_entries_for_one_zone() {
    let anchor = TrustAnchor::parse(&format!("{DS}\n{ZSK}\n")).unwrap();
    assert_eq!(anchor.entries().len(), 2);
    assert!(anchor.trusts(&key(KSK)) && anchor.trusts(&key(ZSK)));
}

#[test]
fn rejects_what_it_cannot_trust() {
    type Check = fn(&AnchorError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| *e == AnchorError::Empty),
        ("; only a comment\n", |e| *e == AnchorError::Empty),
        ("e164.lookup.test. IN A 127.0.0.1", |e| matches!(e, AnchorError::UnsupportedType { .. })),
        ("e164.lookup.test. IN DS 34765 13 1 9B097B35A42CF0CF13DC07908BB0AEF5FFCB7859", |e| {
            matches!(e, AnchorError::UnsupportedDigest { digest_type: 1, .. })
        }),
        ("e164.lookup.test. IN DS 34765 3 2 9B097B35A42CF0CF13DC07908BB0AEF5FFCB78596D037734B1B5413BD29833BF", |e| {
            matches!(e, AnchorError::UnsupportedAlgorithm { algorithm: 3, .. })
        }),
        ("e164.lookup.test. IN DS 34765 13 2 9B09", |e| matches!(e, AnchorError::BadField { field: "digest", .. })),
        ("e164.lookup.test. IN DS 34765 13 2 ZZ", |e| matches!(e, AnchorError::BadField { field: "digest", .. })),
        ("e164.lookup.test. IN DS x 13 2 9B09", |e| matches!(e, AnchorError::BadField { field: "key tag", .. })),
        ("e164.lookup.test. IN DNSKEY 257 2 13 AAAA", |e| matches!(e, AnchorError::BadField { field: "protocol", .. })),
        ("e164.lookup.test. IN DNSKEY 1 3 13 AAAA", |e| matches!(e, AnchorError::NotZoneKey { flags: 1, .. })),
        ("e164.lookup.test. IN DNSKEY 257 3 13 !!!", |e| matches!(e, AnchorError::BadField { .. })),
        ("trust-anchors { \"e164.lookup.test.\" static-ds 1 13 2 \"", |e| matches!(e, AnchorError::BadClause { .. })),
        ("trust-anchors \"x\"", |e| matches!(e, AnchorError::BadClause { .. })),
        ("trust-anchors { };", |e| *e == AnchorError::Empty),
    ];
    for (text, check) in cases {
        let err = TrustAnchor::parse(text).unwrap_err();
        assert!(check(&err), "{text:?} gave {err:?}");
    }
    let mixed = format!("{DS}\n{}", DS.replace("e164.lookup.test.", "other.test."));
    assert!(matches!(TrustAnchor::parse(&mixed), Err(AnchorError::MixedZones { .. })));
}

#[test]
fn revoked_or_non_zone_keys_are_never_trusted() {
    let anchor = TrustAnchor::parse(KSK).unwrap();
    let k = key(KSK);
    let revoked = DNSKEY::with_flags(k.flags() | 0x0080, k.public_key().clone());
    assert!(!anchor.trusts(&revoked));
    let not_zone = DNSKEY::with_flags(k.flags() & !0x0100, k.public_key().clone());
    assert!(!anchor.trusts(&not_zone));
}

#[test]
fn a_pinned_anchor_is_vouched_for_entry_by_entry() {
    let stranger = "e164.lookup.test. IN DS 4711 13 2 7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B7B";
    let listed = TrustAnchor::parse(&format!("{DS}\n{stranger}")).unwrap();
    let pinned = |text: &str| TrustAnchor::parse(text).unwrap();
    let shown = |a: &TrustAnchor| a.not_vouched_by(&listed).iter().map(ToString::to_string).collect::<Vec<_>>();
    assert!(shown(&pinned(DS)).is_empty(), "a listed DS (a subset of the list)");
    assert!(shown(&pinned(KSK)).is_empty(), "the key a listed DS covers");
    let zsk_tag = key(ZSK).calculate_key_tag().unwrap();
    assert_eq!(shown(&pinned(ZSK)), [format!("DNSKEY 256 3 13 (key tag {zsk_tag})")], "a key no listed DS covers");
    let other = "e164.lookup.test. IN DS 34765 13 2 9B097B35A42CF0CF13DC07908BB0AEF5FFCB78596D037734B1B5413BD29833BE";
    assert_eq!(
        shown(&pinned(&format!("{DS}\n{other}"))),
        ["DS 34765 13 2 9B097B35A42CF0CF13DC07908BB0AEF5FFCB78596D037734B1B5413BD29833BE"],
        "a listed tag with another digest, beside a listed DS"
    );
    let elsewhere = pinned(&DS.replace("e164.lookup.test.", "other.test."));
    assert_eq!(shown(&elsewhere).len(), 1, "the same DS for another zone");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = TrustAnchor::parse(&text);
    }

    #[test]
    fn never_panics_on_anchor_like_text(
        tokens in proptest::collection::vec(
            prop_oneof![
                Just("e164.test.".to_owned()), Just("IN".to_owned()), Just("DS".to_owned()),
                Just("DNSKEY".to_owned()), Just("(".to_owned()), Just(")".to_owned()), Just(";".to_owned()),
                Just("{".to_owned()), Just("}".to_owned()), Just("\"".to_owned()), Just("trust-anchors".to_owned()),
                Just("static-ds".to_owned()), Just("\n".to_owned()), "[0-9]{1,6}", "[0-9A-F]{0,70}", "[A-Za-z0-9+/=]{0,50}",
            ],
            0..30,
        )
    ) {
        let _ = TrustAnchor::parse(&tokens.join(" "));
    }

    #[test]
    fn ds_round_trips_through_presentation_format(
        tag in any::<u16>(),
        alg in prop_oneof![Just(8u8), Just(13), Just(14), Just(15)],
        sha384 in any::<bool>(),
        seed in any::<[u8; 48]>(),
        ttl in proptest::option::of(0u32..1_000_000),
        split in 1usize..64,
    ) {
        let (digest_type, len) = if sha384 { (4u8, 48) } else { (2, 32) };
        let hex_digest = hex::encode_upper(&seed[..len]);
        let chunks: Vec<String> = hex_digest.as_bytes().chunks(split).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        let ttl = ttl.map(|t| format!("{t} ")).unwrap_or_default();
        let text = format!("apex.example. {ttl}IN DS {tag} {alg} {digest_type} {}", chunks.join(" "));
        let anchor = TrustAnchor::parse(&text).unwrap();
        let AnchorEntry::Ds(ds) = &anchor.entries()[0] else { panic!("not a DS") };
        prop_assert_eq!(ds.key_tag(), tag);
        prop_assert_eq!(u8::from(ds.algorithm()), alg);
        prop_assert_eq!(ds.digest(), &seed[..len]);
    }
}
