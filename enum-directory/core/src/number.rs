//! E.164 numbers and their ENUM owner names (RFC 6116 §2).

use std::fmt;
use std::str::FromStr;

use hickory_proto::rr::Name;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod plan;
#[cfg(test)]
mod verdicts;

/// Why a string is not an E.164 number this directory accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// It does not start with `+`.
    #[error("an E.164 number starts with '+'")]
    MissingPlus,
    /// Something other than digits (and the usual separators) follows the `+`.
    #[error("an E.164 number has only digits after the '+'")]
    NotDigits,
    /// Fewer than 2 or more than 15 digits.
    #[error("an E.164 number has 2 to 15 digits, not {0}")]
    Length(usize),
    /// libphonenumber could not parse it.
    #[error("not a phone number")]
    Unparsable,
    /// libphonenumber parsed it but it is not a valid number in its country's plan.
    #[error("not a valid number in its country's numbering plan")]
    Invalid,
    /// A national number with a region libphonenumber does not know ([`E164::parse_in`]).
    #[error("unknown country {0:?}")]
    UnknownCountry(String),
}

/// A phone number in E.164 form: `+` and 2..=15 digits, valid per libphonenumber's metadata, with what the
/// metadata says of it (country calling code, region, premium rate).
///
/// Input may contain spaces, dashes, dots and parentheses (`+44 20 7946 0001`); the stored form never does.
/// Display, FromStr and serde all use the normalised string. Debug shows only the country code's first digits
/// and the last two (numbers are personal data and end up in logs through `?` fields).
///
/// Parsing goes through the `phonenumber` crate's own parser and validator on private copies of its metadata
/// (see `number/plan.rs`): the cost per number is the same whatever the mix of countries and threads.
///
/// As small as the plain string it used to be (24 bytes): errors and records that carry one stay small.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct E164 {
    number: Box<str>,
    country_code: u16,
    /// ISO 3166 alpha-2, or `[0, 0]` when the number belongs to no single region.
    region: [u8; 2],
    premium: bool,
}

impl E164 {
    /// Parses and normalises a number written in international form.
    pub fn parse(s: &str) -> Result<E164, NumberError> {
        let s = s.trim();
        let rest = s.strip_prefix('+').ok_or(NumberError::MissingPlus)?;
        let mut digits = String::with_capacity(rest.len() + 1);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(NumberError::NotDigits),
            }
        }
        if !(2..=15).contains(&(digits.len() - 1)) {
            return Err(NumberError::Length(digits.len() - 1));
        }
        plan::with(plan::country_code(&digits[1..]), |db| E164::validated(db, &digits))
    }

    /// Parses a number as dialled in `country` (ISO 3166 alpha-2, as the Identity Service API sends it);
    /// international numbers (`+…`) ignore `country`.
    pub fn parse_in(s: &str, country: &str) -> Result<E164, NumberError> {
        let s = s.trim();
        if s.starts_with('+') {
            return E164::parse(s);
        }
        let id: phonenumber::country::Id =
            country.trim().to_ascii_uppercase().parse().map_err(|_| NumberError::UnknownCountry(country.into()))?;
        let international = plan::with(plan::region_code(id.as_ref()), |db| {
            let n = phonenumber::parse_with(db, Some(id), s).map_err(|_| NumberError::Unparsable)?;
            // What `n.format().mode(Mode::E164)` writes (it fails only for a code without metadata).
            db.by_code(&n.code().value())
                .map(|_| format!("+{}{}", n.code().value(), n.national()))
                .ok_or(NumberError::Unparsable)
        })?;
        E164::parse(&international)
    }

    /// `digits` (`+` and 2..=15 digits) parsed, validated and classified on `db`.
    ///
    /// libphonenumber drops what it takes for a national trunk prefix or carrier code written after the country
    /// code (`+44 (0)20…` is `+4420…`). The crate does so more eagerly than libphonenumber: its check that what
    /// remains is still a number of the plan looks at the digits before the prefix is cut, and it keeps the cut
    /// unless the rest is too short. Brazil's prefix for parsing is `0|90` (then an optional carrier code), so
    /// `+55 90 900703328` became `+55900703328`, whose own `90` the crate cuts again (leaving 7 digits, an
    /// invalid number): the parse gave a number it then refused. A change of the digits is therefore kept only
    /// when what it gives is a fixed point, accepted as it stands and normalised to itself; otherwise the input
    /// is refused. So whatever is accepted parses back to itself, and the directory never stores a spelling it
    /// would not take again.
    fn validated(db: &phonenumber::metadata::Database, digits: &str) -> Result<E164, NumberError> {
        match E164::pass(db, digits)? {
            Pass::Same(number) => Ok(number),
            Pass::Changed(normalised) => match E164::pass(db, &normalised) {
                Ok(Pass::Same(number)) => Ok(number),
                _ => Err(NumberError::Invalid),
            },
        }
    }

    /// One pass of libphonenumber over `digits`: valid, and either normalised to itself (then classified) or
    /// to other digits.
    fn pass(db: &phonenumber::metadata::Database, digits: &str) -> Result<Pass, NumberError> {
        use phonenumber::Type;
        let parsed = phonenumber::parse_with(db, None, digits).map_err(|_| NumberError::Unparsable)?;
        // Without leading zeros kept, `is_valid_with` and `number_type` read the same region and the same digits:
        // valid means a known type, so the type is worked out once. (With them, they read different digits.)
        let kind = (parsed.national().zeros() == 0).then(|| parsed.number_type(db));
        let valid = match kind {
            Some(kind) => kind != Type::Unknown,
            None => phonenumber::is_valid_with(db, &parsed),
        };
        if !valid {
            return Err(NumberError::Invalid);
        }
        // What `parsed.format().mode(Mode::E164)` writes.
        let normalised = format!("+{}{}", parsed.code().value(), parsed.national());
        // libphonenumber may drop a national trunk prefix; the digits must still fit E.164.
        let n = normalised.len() - 1;
        if !(2..=15).contains(&n) || !normalised[1..].bytes().all(|b| b.is_ascii_digit()) {
            return Err(NumberError::Invalid);
        }
        if normalised != digits {
            return Ok(Pass::Changed(normalised));
        }
        let kind = kind.unwrap_or_else(|| parsed.number_type(db));
        let premium = matches!(kind, Type::PremiumRate | Type::SharedCost);
        let region = parsed
            .metadata(db)
            .and_then(|m| m.id().parse::<phonenumber::country::Id>().ok())
            .and_then(|id| <[u8; 2]>::try_from(id.as_ref().as_bytes()).ok())
            .unwrap_or([0, 0]);
        Ok(Pass::Same(E164 { country_code: parsed.code().value(), region, premium, number: normalised.into() }))
    }

    /// The number with its `+`, e.g. `+442079460001`.
    pub fn as_str(&self) -> &str {
        &self.number
    }

    /// The digits without the `+`, e.g. `442079460001`.
    pub fn digits(&self) -> &str {
        &self.number[1..]
    }

    /// The ITU country calling code (`44`).
    pub fn country_code(&self) -> u16 {
        self.country_code
    }

    /// The ISO 3166 region (`GB`), when the number belongs to exactly one.
    pub fn region(&self) -> Option<&str> {
        (self.region != [0, 0]).then(|| std::str::from_utf8(&self.region).ok()).flatten()
    }

    /// Whether libphonenumber classifies the number as premium-rate or shared-cost (toll-fraud targets).
    pub fn is_premium(&self) -> bool {
        self.premium
    }

    /// For logs at info level: the first two digits and the last two only (`+44…01`).
    pub fn redacted(&self) -> String {
        let d = self.digits();
        if d.len() < 5 { "+…".to_owned() } else { format!("+{}…{}", &d[..2], &d[d.len() - 2..]) }
    }
}

/// What one pass of libphonenumber made of a number's digits.
enum Pass {
    /// Valid, and normalised to the same digits.
    Same(E164),
    /// Valid, but normalised to these other digits (a prefix was dropped).
    Changed(String),
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.number)
    }
}

/// Debug never shows the whole number.
impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.redacted())
    }
}

impl FromStr for E164 {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.number
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.number)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        E164::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The ENUM owner name of `number` under `apex`: its digits reversed, one per label (RFC 6116 §2).
///
/// `+442079460001` under `e164.tincan.test.` is `1.0.0.0.6.4.9.7.0.2.4.4.e164.tincan.test.`.
/// The result is fully qualified when `apex` is.
pub fn owner_name(number: &E164, apex: &Name) -> Name {
    let labels: Vec<[u8; 1]> = number.digits().bytes().rev().map(|d| [d]).collect();
    // 15 one-octet labels add at most 30 octets; only an apex already near the 255-octet limit can fail.
    Name::from_labels(labels.iter().map(|l| &l[..]))
        .and_then(|n| n.append_domain(apex))
        .expect("an ENUM owner name fits when the apex leaves 30 octets")
}

/// The number an owner name stands for, or `None` when `name` is not a whole, valid number directly under `apex`
/// (outside the apex, the apex itself, a partial number, a label that is not one digit, or an invalid number).
/// Case-insensitive in the apex.
pub fn number_from_owner(name: &Name, apex: &Name) -> Option<E164> {
    if !apex.zone_of(name) {
        return None;
    }
    let extra = usize::from(name.num_labels()).checked_sub(usize::from(apex.num_labels()))?;
    if !(2..=15).contains(&extra) {
        return None;
    }
    let mut digits = String::with_capacity(extra + 1);
    digits.push('+');
    let labels: Vec<&[u8]> = name.iter().take(extra).collect();
    for label in labels.iter().rev() {
        match label {
            [d @ b'0'..=b'9'] => digits.push(char::from(*d)),
            _ => return None,
        }
    }
    let number = E164::parse(&digits).ok()?;
    // Normalisation must not have changed the digits: the name is the number's only spelling.
    (number.as_str() == digits).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(E164::parse("+442079460001").unwrap().as_str(), "+442079460001");
        assert_eq!(E164::parse(" +44 20 7946-0001 ").unwrap().as_str(), "+442079460001");
        assert_eq!(E164::parse("+1 (202) 555-0143").unwrap().as_str(), "+12025550143");
        assert_eq!(E164::parse("+4915112345678").unwrap().digits(), "4915112345678");
    }

    #[test]
    fn rejects_what_is_not_e164() {
        assert_eq!(E164::parse("442079460001"), Err(NumberError::MissingPlus));
        assert_eq!(E164::parse(""), Err(NumberError::MissingPlus));
        assert_eq!(E164::parse("+44a2079460001"), Err(NumberError::NotDigits));
        assert_eq!(E164::parse("+４４2079460001"), Err(NumberError::NotDigits));
        assert_eq!(E164::parse("+4"), Err(NumberError::Length(1)));
        assert_eq!(E164::parse("+"), Err(NumberError::Length(0)));
        assert_eq!(E164::parse("+1234567890123456"), Err(NumberError::Length(16)));
        assert!(E164::parse("+4420794600001").is_err(), "one digit too many for London");
        assert!(E164::parse("+999123").is_err(), "no country 999");
        assert!(E164::parse("+44+2079460001").is_err());
    }

    #[test]
    fn classifies_from_the_same_parse() {
        let n = E164::parse("+44 20 7946 0001").unwrap();
        assert_eq!(n.country_code(), 44);
        assert_eq!(n.region(), Some("GB"));
        assert!(!n.is_premium());
        assert_eq!(E164::parse("+447400123456").unwrap().region(), Some("GB"));
        assert_eq!(E164::parse("+12025550143").unwrap().region(), Some("US"));
        assert_eq!(E164::parse("+12423571234").unwrap().region(), Some("BS"), "NANP area of another country");
        assert_eq!(E164::parse("+39 333 123 4567").unwrap().region(), Some("IT"));
        // As libphonenumber's crate has always classified it: the region is looked up from the national number
        // without its leading zero, which matches no Italian fixed line (`verdicts` keeps this as it was).
        let rome = E164::parse("+39 06 1234 5678").unwrap();
        assert_eq!((rome.as_str(), rome.country_code(), rome.region()), ("+390612345678", 39, None));
        let global = E164::parse("+800 1234 5678").unwrap();
        assert_eq!((global.country_code(), global.region()), (800, None), "non-geographic");
        // UK 09xx numbers are premium rate.
        assert!(E164::parse("+44 909 879 0000").unwrap().is_premium());
    }

    /// The appservice fuzz target's find (`appservice/fuzz/regressions/as_thirdparty_number-5590900703328`): the
    /// crate read `90` as Brazil's national prefix and gave `+55900703328`, which it then refused.
    #[test]
    fn a_number_is_never_turned_into_one_the_parse_refuses() {
        assert_eq!(E164::parse("+55900703328"), Err(NumberError::Invalid));
        assert_eq!(E164::parse("+5590900703328"), Err(NumberError::Invalid));
        assert_eq!(E164::parse_in("90900703328", "BR"), Err(NumberError::Invalid));
        // A trunk prefix dropped to give a number that stands on its own is still a normalisation.
        assert_eq!(E164::parse("+44 (0)20 7946 0001").unwrap().as_str(), "+442079460001");
        assert_eq!(E164::parse("+55 0 11 96123 4567").unwrap().as_str(), "+5511961234567");
    }

    #[test]
    fn national_numbers_with_their_country() {
        assert_eq!(E164::parse_in("020 7946 0001", "GB").unwrap().as_str(), "+442079460001");
        assert_eq!(E164::parse_in("020 7946 0001", "gb").unwrap().as_str(), "+442079460001");
        assert_eq!(E164::parse_in("+4915112345678", "GB").unwrap().as_str(), "+4915112345678");
        assert_eq!(E164::parse_in("020 7946 0001", "XX"), Err(NumberError::UnknownCountry("XX".into())));
        assert_eq!(E164::parse_in("06 1234 5678", "IT").unwrap().as_str(), "+390612345678");
    }

    #[test]
    fn as_small_as_a_string() {
        assert_eq!(std::mem::size_of::<E164>(), std::mem::size_of::<String>());
    }

    #[test]
    fn debug_and_redacted_hide_the_number() {
        let n = E164::parse("+442079460001").unwrap();
        assert_eq!(format!("{n:?}"), "E164(+44…01)");
        assert_eq!(n.redacted(), "+44…01");
        assert_eq!(E164::parse("+4915112345678").unwrap().redacted(), "+49…78");
    }

    #[test]
    fn display_fromstr_serde_use_the_string() {
        let e: E164 = "+442079460001".parse().unwrap();
        assert_eq!(e.to_string(), "+442079460001");
        assert_eq!(serde_json::to_string(&e).unwrap(), "\"+442079460001\"");
        assert_eq!(serde_json::from_str::<E164>("\"+442079460001\"").unwrap(), e);
        assert!(serde_json::from_str::<E164>("\"+44\"").is_err());
    }

    #[test]
    fn owner_name_reverses_digits() {
        let e = E164::parse("+442079460001").unwrap();
        let apex = n("e164.tincan.test.");
        assert_eq!(owner_name(&e, &apex), n("1.0.0.0.6.4.9.7.0.2.4.4.e164.tincan.test."));
        assert_eq!(owner_name(&e, &n("e164.arpa.")).to_ascii(), "1.0.0.0.6.4.9.7.0.2.4.4.e164.arpa.");
    }

    #[test]
    fn number_from_owner_only_for_whole_numbers() {
        let apex = n("e164.tincan.test.");
        let e = E164::parse("+442079460001").unwrap();
        assert_eq!(number_from_owner(&n("1.0.0.0.6.4.9.7.0.2.4.4.e164.tincan.test."), &apex), Some(e.clone()));
        assert_eq!(number_from_owner(&n("1.0.0.0.6.4.9.7.0.2.4.4.E164.Tincan.TEST."), &apex), Some(e));
        assert_eq!(number_from_owner(&n("4.4.e164.tincan.test."), &apex), None, "partial");
        assert_eq!(number_from_owner(&apex, &apex), None, "apex");
        assert_eq!(number_from_owner(&n("1.0.0.0.6.4.9.7.0.2.4.4.e164.arpa."), &apex), None, "other apex");
        assert_eq!(number_from_owner(&n("1.0.0.0.6.4.9.7.0.2.44.e164.tincan.test."), &apex), None, "two digits");
        assert_eq!(number_from_owner(&n("x.0.0.0.6.4.9.7.0.2.4.4.e164.tincan.test."), &apex), None);
        assert_eq!(number_from_owner(&n("ns1.e164.tincan.test."), &apex), None);
        let sixteen = "1.2.3.4.5.6.7.8.9.0.1.2.3.4.5.6.e164.tincan.test.";
        assert_eq!(number_from_owner(&n(sixteen), &apex), None);
    }

    /// Country calling codes the metadata knows.
    fn codes() -> Vec<u16> {
        (1..=999u16).filter(|code| phonenumber::metadata::DATABASE.by_code(code).is_some()).collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Whatever the parse accepts, it accepts again as written out and gives the same number (digits,
        /// country code, region, premium flag): writing a number down and reading it back is the identity, and
        /// parsing is idempotent. Inputs lean towards what national prefixes and carrier codes look like.
        #[test]
        fn what_is_accepted_parses_back_to_itself(
            code in proptest::sample::select(codes()),
            prefix in proptest::sample::select(vec!["", "0", "1", "8", "9", "00", "06", "90", "(0)", "0 15", "90 9"]),
            digits in "[0-9]{0,13}",
        ) {
            let s = format!("+{code}{prefix}{digits}");
            if let Ok(x) = E164::parse(&s) {
                proptest::prop_assert_eq!(E164::parse(&format!("{x}")), Ok(x.clone()), "{} gave {}", s, x);
                proptest::prop_assert_eq!(E164::parse(x.as_str()).map(|y| y.to_string()), Ok(x.to_string()));
                proptest::prop_assert_eq!(x.to_string().parse::<E164>(), Ok(x.clone()));
                let json = serde_json::to_string(&x).unwrap();
                proptest::prop_assert_eq!(serde_json::from_str::<E164>(&json).ok(), Some(x));
            }
        }
    }
}
