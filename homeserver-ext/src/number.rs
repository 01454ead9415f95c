//! Phone numbers for sign-up: the workspace's one [`E164`] type (from `tincan-enum-core`), parsed and validated
//! once with libphonenumber metadata, which also carries what abuse controls need: country calling code
//! ([`E164::country_code`]), region ([`E164::region`]), premium-rate flag ([`E164::is_premium`]). National
//! numbers with the Identity Service API's country field go through [`E164::parse_in`]. Debug and
//! [`E164::redacted`] never show the whole number.

pub use tincan_enum_core::{E164, NumberError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_up_reads_the_abuse_fields_from_one_parse() {
        let n = E164::parse("+44 20 7946 0001").unwrap();
        assert_eq!(
            (n.as_str(), n.digits(), n.country_code(), n.region()),
            ("+442079460001", "442079460001", 44, Some("GB"))
        );
        assert!(!n.is_premium());
        assert!(E164::parse("+44 909 879 0000").unwrap().is_premium());
        assert_eq!(format!("{n:?}"), "E164(+44…01)");
        assert_eq!(n.redacted(), "+44…01");
        assert_eq!(E164::parse_in("020 7946 0001", "GB").unwrap(), n);
        assert!(matches!(E164::parse_in("020 7946 0001", "XX"), Err(NumberError::UnknownCountry(_))));
        assert!(matches!(E164::parse("02079460001"), Err(NumberError::MissingPlus)));
    }
}
