//! The `m.protocol.pstn` third-party lookup's number field: any text gives an E.164 number or nothing, never a
//! panic; what it gives is canonical (`+` and 2 to 15 digits) and normalises to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tincan_appservice::server::normalise_number;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(n) = normalise_number(text) {
        let digits = n.strip_prefix('+').expect("starts with +");
        assert!((2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()), "{n}");
        assert_eq!(normalise_number(&n).as_deref(), Some(n.as_str()), "canonical");
    }
});
