//! [`E164::parse`] and [`E164::parse_in`] give the verdicts the `phonenumber` crate's default path gives: the
//! old parsing code (the directory's `E164::parse` and the extension's wrapper before issue #23, on the crate's
//! global database) is kept here as the oracle and compared on a corpus built from the metadata itself (every
//! region's example numbers, with a national prefix, mutated, random digits after every country code), a list of
//! edge cases, and generated input.

use phonenumber::metadata::{DATABASE, Metadata};
use phonenumber::{Mode, Type};
use proptest::prelude::*;

use super::{E164, NumberError};

/// What a parse yields: the normalised number, country code, region, premium flag.
type Verdict = Result<(String, u16, Option<String>, bool), NumberError>;

/// The directory's `E164::parse` as it was, on the crate's global database, with the one verdict changed since
/// on purpose (issue #14, the fuzzer's `+5590900703328`): digits the crate changed are kept only when the parse
/// accepts them as they stand and gives them back unchanged; otherwise the input is refused.
fn old_core(s: &str) -> Result<String, NumberError> {
    let normalised = old_core_pass(s)?;
    let written: String = s.chars().filter(char::is_ascii_digit).collect();
    if normalised[1..] == written || old_core_pass(&normalised).as_ref() == Ok(&normalised) {
        Ok(normalised)
    } else {
        Err(NumberError::Invalid)
    }
}

/// The directory's `E164::parse` as it was before that change.
fn old_core_pass(s: &str) -> Result<String, NumberError> {
    let s = s.trim();
    let rest = s.strip_prefix('+').ok_or(NumberError::MissingPlus)?;
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(NumberError::NotDigits),
        }
    }
    if !(2..=15).contains(&digits.len()) {
        return Err(NumberError::Length(digits.len()));
    }
    let parsed = phonenumber::parse(None, format!("+{digits}")).map_err(|_| NumberError::Unparsable)?;
    if !phonenumber::is_valid(&parsed) {
        return Err(NumberError::Invalid);
    }
    let normalised = parsed.format().mode(Mode::E164).to_string();
    let n = normalised.len() - 1;
    if !(2..=15).contains(&n) || !normalised[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumberError::Invalid);
    }
    Ok(normalised)
}

/// The extension's `E164::parse` as it was: the directory's parse, then a second parse for the classification.
fn old_ext(s: &str) -> Verdict {
    let number = old_core(s)?;
    let n = phonenumber::parse(None, &number).map_err(|_| NumberError::Unparsable)?;
    let premium = matches!(n.number_type(&DATABASE), Type::PremiumRate | Type::SharedCost);
    Ok((number, n.code().value(), n.country().id().map(|id| id.as_ref().to_owned()), premium))
}

/// The extension's `E164::parse_in` as it was.
fn old_ext_in(s: &str, country: &str) -> Verdict {
    let s = s.trim();
    if s.starts_with('+') {
        return old_ext(s);
    }
    let id: phonenumber::country::Id =
        country.trim().to_ascii_uppercase().parse().map_err(|_| NumberError::UnknownCountry(country.into()))?;
    let n = phonenumber::parse(Some(id), s).map_err(|_| NumberError::Unparsable)?;
    old_ext(&n.format().mode(Mode::E164).to_string())
}

fn verdict(r: Result<E164, NumberError>) -> Verdict {
    r.map(|e| (e.as_str().to_owned(), e.country_code(), e.region().map(str::to_owned), e.is_premium()))
}

/// Same verdict as the old extension, and the same accept/reject (and error) as the old directory parse.
fn check(s: &str) -> Result<(), String> {
    let new = verdict(E164::parse(s));
    let old = old_ext(s);
    if new != old {
        return Err(format!("{s:?}: now {new:?}, was {old:?}"));
    }
    let core = old_core(s);
    if new.as_ref().map(|v| v.0.clone()).map_err(Clone::clone) != core {
        return Err(format!("{s:?}: now {new:?}, the directory's parse gave {core:?}"));
    }
    Ok(())
}

fn check_in(s: &str, country: &str) -> Result<(), String> {
    let new = verdict(E164::parse_in(s, country));
    let old = old_ext_in(s, country);
    if new != old { Err(format!("{s:?} in {country}: now {new:?}, was {old:?}")) } else { Ok(()) }
}

/// Every region's metadata, country codes in order (the oracle's 100-pattern cache then stays warm within one).
fn regions() -> impl Iterator<Item = &'static Metadata> {
    (1..=999u16).filter_map(|code| DATABASE.by_code(&code)).flatten()
}

fn examples(meta: &Metadata) -> Vec<&str> {
    super::plan::descriptors(meta).filter_map(|d| d.example()).collect()
}

/// A small deterministic generator (the corpus must be the same at every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
    fn digit(&mut self) -> u8 {
        b'0' + self.below(10) as u8
    }
}

/// `example` changed a little: one digit replaced, one added, one removed, or the last four random.
fn mutations(example: &str, rng: &mut Lcg, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let mut s: Vec<u8> = example.bytes().collect();
            match rng.below(4) {
                0 => {
                    let i = rng.below(s.len() as u64) as usize;
                    s[i] = rng.digit();
                }
                1 => s.push(rng.digit()),
                2 if s.len() > 1 => {
                    s.pop();
                }
                _ => {
                    let keep = s.len().saturating_sub(4);
                    for d in &mut s[keep..] {
                        *d = rng.digit();
                    }
                }
            }
            String::from_utf8(s).expect("digits")
        })
        .collect()
}

const EDGE: &[&str] = &[
    // Italy keeps the leading zero of fixed lines; mobiles have none.
    "+39 06 1234 5678",
    "+390612345678",
    "+39 02 1234 5678",
    "+39 0 2 1234 5678",
    "+39 333 123 4567",
    "+3931234567890",
    "+390",
    "+3912",
    "+39 06 698 12345",
    // A national trunk prefix written after the country code.
    "+44 (0)20 7946 0001",
    "+44 020 7946 0001",
    "+4402079460001",
    "+44 0 0 20 7946 0001",
    "+49 0151 12345678",
    "+33 0 6 12 34 56 78",
    "+61 0 4 1234 5678",
    "+81 0 90 1234 5678",
    "+31 06 12345678",
    "+46 08 123 456 78",
    "+7 8 495 123 45 67",
    // North American Numbering Plan: areas of other countries, toll free, premium, fictional, unassigned.
    "+1 202 555 0143",
    "+1 (202) 555-0143",
    "+1 800 555 0199",
    "+1 900 555 0199",
    "+1 242 357 1234",
    "+1 684 733 1234",
    "+1 868 291 1234",
    "+1 212 000 0000",
    "+1 555 555 5555",
    "+1 1 202 555 0143",
    "+1 911",
    "+1 411",
    // Short numbers: emergency and service codes are not E.164 numbers.
    "+44 999",
    "+44 112",
    "+49 110",
    "+33 15",
    "+61 000",
    "+112",
    "+911",
    // Non-geographic codes and shared codes.
    "+800 1234 5678",
    "+808 1234 5678",
    "+870 301 234 567",
    "+881 6 123 4567",
    "+882 13 1234 5678",
    "+883 510 012 345",
    "+888 123 456 789",
    "+979 1 2345 6789",
    "+7 495 123 45 67",
    "+7 701 123 45 67",
    "+44 1481 256789",
    "+44 7781 123456",
    "+262 269 61 2345",
    "+590 590 27 1234",
    "+599 9 123 4567",
    "+47 01 23 45 67",
    "+225 01 23 45 67 89",
    "+225 21 23 45 6789",
    // Premium rate and shared cost.
    "+44 909 879 0000",
    "+44 845 464 0000",
    "+33 8 91 12 34 56",
    "+49 900 1 234567",
    // Form: separators, length, what is not a digit.
    " +44 20 7946 0001 ",
    "+44.20.7946.0001",
    "+44-20-7946-0001",
    "+",
    "+4",
    "+44",
    "+123456789012345",
    "+1234567890123456",
    "++442079460001",
    "+44+2079460001",
    "+44a2079460001",
    "+４４2079460001",
    "+٤٤2079460001",
    "442079460001",
    "",
    "+0",
    "+00 44 20 7946 0001",
    "+999 123456789",
    "+4915112345678",
    "+49 30 123456",
    "+49 30 1234567890123",
];

#[test]
fn edge_cases_keep_their_verdicts() {
    let failures: Vec<String> = EDGE.iter().filter_map(|s| check(s).err()).collect();
    assert!(failures.is_empty(), "{} changed verdicts:\n{}", failures.len(), failures.join("\n"));
    // The corpus holds what it claims: some of each kind are accepted, some refused.
    assert!(E164::parse("+39 06 1234 5678").is_ok_and(|e| e.as_str() == "+390612345678"));
    assert!(E164::parse("+44 (0)20 7946 0001").is_ok_and(|e| e.as_str() == "+442079460001"));
    assert!(E164::parse("+44 999").is_err() && E164::parse("+1 911").is_err());
}

#[test]
fn every_region_keeps_its_verdicts() {
    let mut rng = Lcg(23);
    let (mut tried, mut accepted) = (0, 0);
    let mut failures = Vec::new();
    for meta in regions() {
        let code = meta.country_code();
        let mut inputs = Vec::new();
        for example in examples(meta) {
            inputs.push(format!("+{code}{example}"));
            if let Some(prefix) = meta.national_prefix() {
                inputs.push(format!("+{code} {prefix}{example}"));
            }
            inputs.extend(mutations(example, &mut rng, 6).into_iter().map(|m| format!("+{code}{m}")));
        }
        let room = 15 - code.to_string().len() as u64;
        for _ in 0..40 {
            let len = 1 + rng.below(room);
            let digits: String = (0..len).map(|_| char::from(rng.digit())).collect();
            inputs.push(format!("+{code}{digits}"));
        }
        for s in &inputs {
            tried += 1;
            accepted += usize::from(E164::parse(s).is_ok());
            if let Err(e) = check(s) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{} of {tried} changed verdicts:\n{}", failures.len(), failures.join("\n"));
    // Both verdicts are well represented (a corpus of only rejects or only accepts would prove little).
    assert!(accepted > tried / 10 && accepted < tried * 9 / 10, "{accepted} of {tried} accepted");
}

#[test]
fn national_numbers_keep_their_verdicts() {
    let mut rng = Lcg(14);
    let mut failures = Vec::new();
    let mut tried = 0;
    for meta in regions().filter(|m| m.id() != "001") {
        for example in examples(meta) {
            let mut inputs = vec![example.to_owned()];
            if let Some(prefix) = meta.national_prefix() {
                inputs.push(format!("{prefix}{example}"));
            }
            inputs.extend(mutations(example, &mut rng, 2));
            for s in &inputs {
                tried += 1;
                if let Err(e) = check_in(s, meta.id()) {
                    failures.push(e);
                }
            }
        }
    }
    for (s, country) in [("020 7946 0001", "gb"), ("020 7946 0001", "XX"), ("+4915112345678", "GB"), ("", "GB")] {
        if let Err(e) = check_in(s, country) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{} of {tried} changed verdicts:\n{}", failures.len(), failures.join("\n"));
}

/// Country calling codes the metadata knows.
fn codes() -> Vec<u16> {
    (1..=999u16).filter(|code| DATABASE.by_code(code).is_some()).collect()
}

proptest! {
    #[test]
    fn generated_numbers_keep_their_verdicts(
        code in proptest::sample::select(codes()),
        digits in "[0-9]{0,14}",
        sep in proptest::sample::select(vec!["", " ", "-", " (0)"]),
    ) {
        let s = format!("+{code}{sep}{digits}");
        prop_assert!(check(&s).is_ok(), "{}", check(&s).unwrap_err());
    }

    #[test]
    fn any_text_keeps_its_verdict(s in "\\PC{0,24}") {
        prop_assert!(check(&s).is_ok(), "{}", check(&s).unwrap_err());
    }

    #[test]
    fn any_plus_digits_keep_their_verdict(s in "\\+[0-9 ().-]{0,20}") {
        prop_assert!(check(&s).is_ok(), "{}", check(&s).unwrap_err());
    }
}
