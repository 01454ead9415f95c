//! Property tests of what a client reads from the network: arbitrary bytes never panic and never verify, and
//! no single-byte change to a signed list makes it verify as a different list.

use crate::fixture::{Charter, days, now};
use proptest::prelude::*;
use tincan_charter::client::verify_list;
use tincan_charter::signed::{Envelope, Root};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let charter = Charter::new();
        let root = Root::from_envelope(&Envelope::parse(&charter.root_bytes(), "root").unwrap()).unwrap();
        prop_assert!(verify_list(&root, &bytes, now(), None).is_err());
    }

    #[test]
    fn a_changed_byte_never_verifies_as_another_list(at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let charter = Charter::new();
        let root = Root::from_envelope(&Envelope::parse(&charter.root_bytes(), "root").unwrap()).unwrap();
        let good = charter.list(3, now() + days(30), &["alpha", "beta"], &[0, 1]);
        let original = verify_list(&root, &good, now(), None).unwrap();
        let mut bad = good.clone();
        let i = at.index(bad.len());
        bad[i] = to;
        if let Ok(v) = verify_list(&root, &bad, now(), None) {
            // Only a change outside the signed body (e.g. whitespace between signatures) can still verify.
            prop_assert_eq!(v, original);
        }
    }
}
