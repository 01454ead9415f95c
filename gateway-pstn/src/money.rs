//! Exact money: a [`Currency`] code and [`Amount`]s in it, decimal (never floating point).
//!
//! The ledger stores every amount as a whole number of micro-units (10⁻⁶ of the currency unit) in a 64-bit
//! integer, so both databases add and compare them exactly in SQL; [`Amount`] converts to and from that form and
//! refuses a value with more than six decimal places instead of rounding it. On the wire an amount is a JSON
//! string (`"1.50"`), never a JSON number, so no client can send it through a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimal places the ledger keeps (micro-units).
pub const SCALE: u32 = 6;
const MICROS_PER_UNIT: i64 = 1_000_000;

/// Why a value is not an amount or a currency.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a decimal number (`12.50`).
    #[error("not a decimal amount: {0:?}")]
    NotDecimal(String),
    /// More decimal places than the ledger keeps.
    #[error("an amount has at most {SCALE} decimal places")]
    TooPrecise,
    /// Too large to store.
    #[error("amount out of range")]
    OutOfRange,
    /// Not an ISO 4217 code.
    #[error("a currency is three capital letters (ISO 4217), like EUR")]
    Currency,
}

/// An ISO 4217 currency code (`EUR`, `USD`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("only ASCII letters are stored")
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        let b: [u8; 3] = s.as_bytes().try_into().map_err(|_| MoneyError::Currency)?;
        if b.iter().all(u8::is_ascii_uppercase) { Ok(Currency(b)) } else { Err(MoneyError::Currency) }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An exact amount of money with at most [`SCALE`] decimal places; may be negative (a debit, a debt).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(i64);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// The amount of `micros` micro-units.
    pub const fn from_micros(micros: i64) -> Amount {
        Amount(micros)
    }

    /// The amount in micro-units, as stored.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// A decimal with at most [`SCALE`] places; more places are refused, not rounded.
    pub fn from_decimal(d: Decimal) -> Result<Amount, MoneyError> {
        let scaled = d.checked_mul(Decimal::from(MICROS_PER_UNIT)).ok_or(MoneyError::OutOfRange)?;
        if !scaled.fract().is_zero() {
            return Err(MoneyError::TooPrecise);
        }
        i64::try_from(scaled.trunc()).map(Amount).map_err(|_| MoneyError::OutOfRange)
    }

    /// A decimal rounded *up* (away from zero for positive values) to [`SCALE`] places: how a price that
    /// works out finer than a micro-unit is charged.
    pub fn from_decimal_ceil(d: Decimal) -> Result<Amount, MoneyError> {
        let scaled = d.checked_mul(Decimal::from(MICROS_PER_UNIT)).ok_or(MoneyError::OutOfRange)?;
        i64::try_from(scaled.ceil()).map(Amount).map_err(|_| MoneyError::OutOfRange)
    }

    /// The exact decimal value.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, SCALE)
    }

    /// `self + other`, `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, `None` on overflow.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Whether it is above zero.
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Whether it is below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl std::ops::Neg for Amount {
    type Output = Amount;
    fn neg(self) -> Amount {
        Amount(-self.0)
    }
}

impl fmt::Display for Amount {
    /// At least two decimal places, no trailing zeros beyond them: `1.50`, `0.000205`, `-3.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = self.to_decimal().normalize();
        if d.scale() < 2 {
            d.rescale(2);
        }
        write!(f, "{d}")
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Amount {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        // Plain decimal notation only: no exponent, no spaces, no leading '+'.
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.bytes().enumerate().all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && b == b'-'));
        if !ok {
            return Err(MoneyError::NotDecimal(s.chars().take(40).collect()));
        }
        let d = Decimal::from_str_exact(s).map_err(|_| MoneyError::NotDecimal(s.chars().take(40).collect()))?;
        Amount::from_decimal(d)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount as a string, like \"1.50\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// An amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// The amount.
    pub amount: Amount,
    /// Its currency.
    pub currency: Currency,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn amounts_are_exact_to_six_places_and_refuse_more() {
        assert_eq!("1.5".parse::<Amount>().unwrap().micros(), 1_500_000);
        assert_eq!("0.000001".parse::<Amount>().unwrap().micros(), 1);
        assert_eq!("-3".parse::<Amount>().unwrap().micros(), -3_000_000);
        assert_eq!("0.1".parse::<Amount>().unwrap().checked_add("0.2".parse().unwrap()).unwrap().to_string(), "0.30");
        assert_eq!("0.0000001".parse::<Amount>(), Err(MoneyError::TooPrecise));
        assert_eq!("0.10000000".parse::<Amount>().unwrap().micros(), 100_000, "trailing zeros are not precision");
        for bad in ["", "1e3", "+1", " 1", "1,5", "abc", "1.2.3", "--1", "0x10", "NaN", "inf"] {
            assert!(matches!(bad.parse::<Amount>(), Err(MoneyError::NotDecimal(_))), "{bad:?}");
        }
        assert_eq!("99999999999999999999".parse::<Amount>(), Err(MoneyError::OutOfRange));
    }

    #[test]
    fn display_keeps_two_places_at_least() {
        for (micros, shown) in [(1_500_000, "1.50"), (205, "0.000205"), (-3_000_000, "-3.00"), (0, "0.00")] {
            assert_eq!(Amount::from_micros(micros).to_string(), shown);
        }
    }

    #[test]
    fn ceil_rounds_sub_micro_prices_up() {
        assert_eq!(Amount::from_decimal_ceil(dec!(0.0000001)).unwrap().micros(), 1);
        assert_eq!(Amount::from_decimal_ceil(dec!(0.000002)).unwrap().micros(), 2);
        assert_eq!(Amount::from_decimal_ceil(dec!(0.0123) / dec!(60)).unwrap().micros(), 205);
    }

    #[test]
    fn json_amounts_are_strings_only() {
        let a: Amount = serde_json::from_str("\"2.25\"").unwrap();
        assert_eq!(a.micros(), 2_250_000);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"2.25\"");
        assert!(serde_json::from_str::<Amount>("2.25").is_err(), "a JSON number could have passed through a float");
    }

    #[test]
    fn currencies_are_three_capitals() {
        assert_eq!("EUR".parse::<Currency>().unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
    }
}
