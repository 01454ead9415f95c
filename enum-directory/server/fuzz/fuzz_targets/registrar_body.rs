//! The registrar API's JSON bodies (`PUT /v1/numbers/{e164}` and `…/key`) and path numbers: any bytes give a
//! typed result, never a panic; accepted services are 1 to 16 and each fits its type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tincan_directory::api::{parse_key_body, parse_number, parse_put_body};

fuzz_target!(|data: &[u8]| {
    if let Ok(services) = parse_put_body(data) {
        assert!((1..=16).contains(&services.len()));
    }
    let _ = parse_key_body(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(number) = parse_number(text)
    {
        assert_eq!(number.as_str(), text, "only the canonical form is taken");
    }
});
