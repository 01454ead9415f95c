//! Phone numbers for sign-up: the directory's [`tincan_enum_core::E164`] (parsed and validated with
//! libphonenumber metadata) plus what abuse controls need: country calling code, region, premium-rate flag.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why a string is not an acceptable phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not an E.164 number (see [`tincan_enum_core::NumberError`]).
    #[error(transparent)]
    E164(#[from] tincan_enum_core::NumberError),
    /// A national number with an unknown country code.
    #[error("unknown country {0:?}")]
    UnknownCountry(String),
}

/// A valid phone number in E.164 form: `+` and 2..=15 digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164 {
    number: tincan_enum_core::E164,
    country_code: u16,
    region: Option<String>,
    premium: bool,
}

impl E164 {
    /// Parses an international number; spaces, dashes and brackets are accepted and normalised away.
    pub fn parse(s: &str) -> Result<E164, NumberError> {
        let number = tincan_enum_core::E164::parse(s)?;
        let n = phonenumber::parse(None, number.as_str()).map_err(|_| tincan_enum_core::NumberError::Unparsable)?;
        let premium = matches!(
            n.number_type(&phonenumber::metadata::DATABASE),
            phonenumber::Type::PremiumRate | phonenumber::Type::SharedCost
        );
        Ok(E164 {
            country_code: n.code().value(),
            region: n.country().id().map(|id| id.as_ref().to_owned()),
            premium,
            number,
        })
    }

    /// The directory's form of the number.
    pub fn core(&self) -> &tincan_enum_core::E164 {
        &self.number
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
        let n = phonenumber::parse(Some(id), s).map_err(|_| tincan_enum_core::NumberError::Unparsable)?;
        E164::parse(&n.format().mode(phonenumber::Mode::E164).to_string())
    }

    /// `+4420794600001`.
    pub fn as_str(&self) -> &str {
        self.number.as_str()
    }

    /// The digits without the `+`.
    pub fn digits(&self) -> &str {
        self.number.digits()
    }

    /// The ITU country calling code (`44`).
    pub fn country_code(&self) -> u16 {
        self.country_code
    }

    /// The ISO 3166 region (`GB`), when the number belongs to exactly one.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// Whether libphonenumber classifies the number as premium-rate or shared-cost (toll-fraud targets).
    pub fn is_premium(&self) -> bool {
        self.premium
    }

    /// For logs at info level: country code and last two digits only.
    pub fn redacted(&self) -> String {
        tincan_common::telemetry::redact_number(self.as_str())
    }
}

/// Debug never shows the whole number (it ends up in logs through `?` fields).
impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.redacted())
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for E164 {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        E164::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_normalises() {
        let n = E164::parse("+44 20 7946 0001").unwrap();
        assert_eq!(n.as_str(), "+442079460001");
        assert_eq!(n.digits(), "442079460001");
        assert_eq!(n.country_code(), 44);
        assert_eq!(n.region(), Some("GB"));
        assert!(!n.is_premium());
        assert_eq!(E164::parse("+447400123456").unwrap().region(), Some("GB"));
        assert_eq!(format!("{n:?}"), "E164(+44…01)");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(E164::parse("02079460001"), Err(NumberError::E164(_))));
        assert!(E164::parse("+").is_err());
        assert!(E164::parse("+44 12").is_err());
        assert!(E164::parse("+999 123456789").is_err());
    }

    #[test]
    fn national_with_country() {
        assert_eq!(E164::parse_in("020 7946 0001", "GB").unwrap().as_str(), "+442079460001");
        assert_eq!(E164::parse_in("+4915112345678", "GB").unwrap().as_str(), "+4915112345678");
        assert!(E164::parse_in("020 7946 0001", "XX").is_err());
    }

    #[test]
    fn premium_rate_is_flagged() {
        // UK 09xx numbers are premium rate.
        assert!(E164::parse("+44 909 879 0000").unwrap().is_premium());
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in "\\PC{0,40}") {
            if let Ok(n) = E164::parse(&s) {
                prop_assert_eq!(E164::parse(n.as_str()).unwrap(), n.clone());
                prop_assert!(n.digits().chars().all(|c| c.is_ascii_digit()));
            }
        }

        #[test]
        fn digit_strings_never_panic(s in "\\+[0-9 ]{0,20}") {
            let _ = E164::parse(&s);
        }
    }
}
