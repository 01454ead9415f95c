//! Rating, pure: rates per destination prefix (longest prefix wins), billing increments, the price of a call or
//! an SMS, and the longest call or most segments a balance pays for; rate decks in a common carrier CSV format.
//! No I/O: the ledger and the API feed it rates from storage.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Amount, MoneyError};

/// The longest call ever granted when calls cost nothing per minute (4 hours).
pub const MAX_FREE_SECONDS: u32 = 4 * 3600;
/// The most segments ever granted when SMS cost nothing.
pub const MAX_FREE_SEGMENTS: u32 = 1000;

/// Billing increments in seconds: the first block, then each later block (`60/60`, `30/6`, `1/1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Increments {
    /// The first billed block (a call shorter than this is billed this long).
    pub first: u32,
    /// Each later block.
    pub next: u32,
}

impl Increments {
    /// Per-second billing.
    pub const PER_SECOND: Increments = Increments { first: 1, next: 1 };

    /// The seconds billed for a call of `seconds` (0 for an unanswered call).
    pub fn billed(self, seconds: u32) -> u64 {
        let s = u64::from(seconds);
        let (first, next) = (u64::from(self.first), u64::from(self.next));
        if s == 0 {
            0
        } else if s <= first {
            first
        } else {
            first + (s - first).div_ceil(next) * next
        }
    }
}

impl fmt::Display for Increments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.first, self.next)
    }
}

/// Why a value is not increments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("billing increments are FIRST/NEXT seconds, each 1 to 3600, like 60/60 or 30/6")]
pub struct IncrementsError;

impl FromStr for Increments {
    type Err = IncrementsError;
    fn from_str(s: &str) -> Result<Self, IncrementsError> {
        let (a, b) = s.trim().split_once('/').ok_or(IncrementsError)?;
        let parse = |x: &str| {
            x.trim()
                .parse::<u32>()
                .ok()
                .filter(|v| (1..=3600).contains(v) && x.trim().bytes().all(|c| c.is_ascii_digit()))
                .ok_or(IncrementsError)
        };
        Ok(Increments { first: parse(a)?, next: parse(b)? })
    }
}

/// The price of one destination prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rate {
    /// The prefix, digits only (`49151`, country code first).
    pub prefix: String,
    /// The destination's name (`Germany mobile`).
    pub description: String,
    /// Voice: charged once when a call is answered.
    pub connect_fee: Amount,
    /// Voice: the price of a minute; `None`: no calls to this prefix.
    pub per_minute: Option<Amount>,
    /// Voice: billing increments.
    pub increments: Increments,
    /// SMS: the price of a segment; `None`: no SMS to this prefix.
    pub per_segment: Option<Amount>,
    /// MMS: the price of a message; `None`: no MMS to this prefix. (Absent from rates stored before MMS had a
    /// price, so holds taken then still read.)
    #[serde(default)]
    pub per_mms: Option<Amount>,
}

/// Why a price cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    /// The rate has no price for this service.
    #[error("no price for this service at this prefix")]
    NotOffered,
    /// The result does not fit an amount.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl Rate {
    fn per_minute(&self) -> Result<Amount, RatingError> {
        self.per_minute.ok_or(RatingError::NotOffered)
    }

    fn per_segment(&self) -> Result<Amount, RatingError> {
        self.per_segment.ok_or(RatingError::NotOffered)
    }

    fn per_mms(&self) -> Result<Amount, RatingError> {
        self.per_mms.ok_or(RatingError::NotOffered)
    }

    /// The price of `seconds` billed seconds without the connect fee, rounded up to the micro-unit.
    fn time_price(&self, billed: u64) -> Result<Amount, RatingError> {
        let per_minute = self.per_minute()?.to_decimal();
        let exact = per_minute.checked_mul(Decimal::from(billed)).ok_or(MoneyError::OutOfRange)? / Decimal::from(60);
        Ok(Amount::from_decimal_ceil(exact)?)
    }

    /// The price of a call of `seconds` (answered if above zero): connect fee plus the billed time.
    pub fn call_price(&self, seconds: u32) -> Result<Amount, RatingError> {
        self.per_minute()?;
        if seconds == 0 {
            return Ok(Amount::ZERO);
        }
        let time = self.time_price(self.increments.billed(seconds))?;
        self.connect_fee.checked_add(time).ok_or(RatingError::Money(MoneyError::OutOfRange))
    }

    /// What to hold for `seconds` more of a call already held for: their time rounded up to whole later
    /// increments (no connect fee). Holding this on top of a call's earlier hold always covers the longer call.
    pub fn extension_price(&self, seconds: u32) -> Result<Amount, RatingError> {
        let next = u64::from(self.increments.next);
        self.time_price(u64::from(seconds).div_ceil(next) * next)
    }

    /// The price of `segments` SMS segments.
    pub fn sms_price(&self, segments: u32) -> Result<Amount, RatingError> {
        times(self.per_segment()?, segments)
    }

    /// The price of `messages` MMS.
    pub fn mms_price(&self, messages: u32) -> Result<Amount, RatingError> {
        times(self.per_mms()?, messages)
    }

    /// The longest call `available` pays for, in seconds (a whole number of increments; 0 if not even the
    /// first increment), at most [`MAX_FREE_SECONDS`].
    pub fn max_seconds(&self, available: Amount) -> Result<u32, RatingError> {
        let per_minute = self.per_minute()?;
        let fits = |s: u32| self.call_price(s).map(|p| p <= available);
        if !fits(self.increments.first.min(MAX_FREE_SECONDS))? {
            return Ok(0);
        }
        if per_minute == Amount::ZERO {
            return Ok(MAX_FREE_SECONDS);
        }
        // Estimate from the exact per-second price, then step to the increment boundary that fits.
        let budget = available.micros() - self.connect_fee.micros();
        let est = (i128::from(budget) * 60 / i128::from(per_minute.micros())).clamp(0, i128::from(MAX_FREE_SECONDS));
        let (first, next) = (self.increments.first, self.increments.next);
        let mut s = if est as u32 <= first { first } else { first + (est as u32 - first) / next * next };
        s = s.min(MAX_FREE_SECONDS);
        while s > first && !fits(s)? {
            s -= next;
        }
        while s + next <= MAX_FREE_SECONDS && fits(s + next)? {
            s += next;
        }
        Ok(s)
    }

    /// How many segments `available` pays for, at most [`MAX_FREE_SEGMENTS`].
    pub fn max_segments(&self, available: Amount) -> Result<u32, RatingError> {
        Ok(how_many(self.per_segment()?, available))
    }

    /// How many MMS `available` pays for, at most [`MAX_FREE_SEGMENTS`].
    pub fn max_mms(&self, available: Amount) -> Result<u32, RatingError> {
        Ok(how_many(self.per_mms()?, available))
    }
}

/// `n` times `per`.
fn times(per: Amount, n: u32) -> Result<Amount, RatingError> {
    per.micros().checked_mul(i64::from(n)).map(Amount::from_micros).ok_or(RatingError::Money(MoneyError::OutOfRange))
}

/// How many of `per` `available` pays for, at most [`MAX_FREE_SEGMENTS`].
fn how_many(per: Amount, available: Amount) -> u32 {
    if available.is_negative() {
        return 0;
    }
    if per == Amount::ZERO {
        return MAX_FREE_SEGMENTS;
    }
    u32::try_from(available.micros() / per.micros()).unwrap_or(u32::MAX).min(MAX_FREE_SEGMENTS)
}

/// The prefixes of an E.164 number's digits, longest first (`4930123` → `4930123`, `493012`, … `4`).
pub fn prefixes_of(digits: &str) -> impl Iterator<Item = &str> {
    (1..=digits.len()).rev().map(move |n| &digits[..n])
}

/// A rate deck: rates by prefix, answered by longest prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateDeck {
    rates: HashMap<String, Rate>,
}

impl RateDeck {
    /// A deck of `rates` (a later rate for the same prefix replaces an earlier one).
    pub fn new(rates: impl IntoIterator<Item = Rate>) -> RateDeck {
        RateDeck { rates: rates.into_iter().map(|r| (r.prefix.clone(), r)).collect() }
    }

    /// The rate of the longest prefix of `digits` (an E.164 number without its `+`).
    pub fn lookup(&self, digits: &str) -> Option<&Rate> {
        prefixes_of(digits).find_map(|p| self.rates.get(p))
    }

    /// Every rate, by prefix.
    pub fn rates(&self) -> Vec<&Rate> {
        let mut v: Vec<&Rate> = self.rates.values().collect();
        v.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        v
    }

    /// How many prefixes.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// Whether it has no rates.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }
}

/// The CSV header of a rate deck (and a carrier's cost deck) as written; `per_mms` may be left out when read.
pub const CSV_HEADER: &str = "prefix,description,connect_fee,per_minute,increments,per_sms,per_mms";

/// The columns a deck must have.
const REQUIRED_COLUMNS: [&str; 6] = ["prefix", "description", "connect_fee", "per_minute", "increments", "per_sms"];

/// Why a rate deck CSV was refused: every bad line, each with its line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate deck refused:\n  {}", .0.join("\n  "))]
pub struct CsvError(pub Vec<String>);

/// Parses a rate deck in the carrier format: a header naming the columns `prefix, description, connect_fee,
/// per_minute, increments, per_sms` and optionally `per_mms` (in any order; other columns ignored), then one
/// prefix a line: digits with an optional `+`, decimal prices (empty `per_minute`/`per_sms`/`per_mms`, or no
/// `per_mms` column: that service is not offered there), increments as `60/60`. Nothing is accepted unless every
/// line is good.
pub fn parse_csv(text: &str) -> Result<RateDeck, CsvError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| CsvError(vec![format!("header: {e}")]))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let cols: Vec<Option<usize>> = REQUIRED_COLUMNS.iter().map(|n| col(n)).collect();
    if let Some(missing) = cols.iter().zip(REQUIRED_COLUMNS).find(|(c, _)| c.is_none()) {
        return Err(CsvError(vec![format!("header: no column {:?} (expected {CSV_HEADER})", missing.1)]));
    }
    let cols: Vec<usize> = cols.into_iter().flatten().collect();
    let mms_col = col("per_mms");
    let mut rates = Vec::new();
    let mut problems = Vec::new();
    let mut seen = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let field = |c: usize| record.get(cols[c]).unwrap_or("");
        let per_mms = mms_col.and_then(|c| record.get(c)).unwrap_or("");
        match parse_rate([field(0), field(1), field(2), field(3), field(4), field(5), per_mms]) {
            Ok(rate) => {
                if let Some(first) = seen.insert(rate.prefix.clone(), line) {
                    problems.push(format!("line {line}: prefix {} again (first on line {first})", rate.prefix));
                }
                rates.push(rate);
            }
            Err(e) => problems.push(format!("line {line}: {e}")),
        }
        if problems.len() >= 50 {
            problems.push("… stopped after 50 problems".into());
            break;
        }
    }
    if problems.is_empty() { Ok(RateDeck::new(rates)) } else { Err(CsvError(problems)) }
}

/// One line's fields, in [`CSV_HEADER`]'s order.
fn parse_rate(
    [prefix, description, connect_fee, per_minute, increments, per_sms, per_mms]: [&str; 7],
) -> Result<Rate, String> {
    let digits = prefix.strip_prefix('+').unwrap_or(prefix);
    if !(1..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return Err(format!("prefix {prefix:?}: 1 to 15 digits, country code first"));
    }
    if description.chars().count() > 100 {
        return Err("description: at most 100 characters".into());
    }
    let price = |name: &str, v: &str| -> Result<Amount, String> {
        let a: Amount = v.parse().map_err(|e| format!("{name} {v:?}: {e}"))?;
        if a.is_negative() { Err(format!("{name}: not negative")) } else { Ok(a) }
    };
    let optional = |name: &str, v: &str| if v.is_empty() { Ok(None) } else { price(name, v).map(Some) };
    let rate = Rate {
        prefix: digits.to_owned(),
        description: description.to_owned(),
        connect_fee: if connect_fee.is_empty() { Amount::ZERO } else { price("connect_fee", connect_fee)? },
        per_minute: optional("per_minute", per_minute)?,
        increments: if increments.is_empty() {
            Increments { first: 60, next: 60 }
        } else {
            increments.parse().map_err(|e: IncrementsError| format!("increments {increments:?}: {e}"))?
        },
        per_segment: optional("per_sms", per_sms)?,
        per_mms: optional("per_mms", per_mms)?,
    };
    if rate.per_minute.is_none() && rate.per_segment.is_none() && rate.per_mms.is_none() {
        return Err("none of per_minute, per_sms, per_mms: the line prices nothing".into());
    }
    Ok(rate)
}

/// Writes a deck in the format [`parse_csv`] reads, by prefix.
pub fn to_csv(deck: &RateDeck) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(CSV_HEADER.split(','));
    for r in deck.rates() {
        let opt = |a: Option<Amount>| a.map(|a| a.to_string()).unwrap_or_default();
        let _ = w.write_record([
            r.prefix.clone(),
            r.description.clone(),
            r.connect_fee.to_string(),
            opt(r.per_minute),
            r.increments.to_string(),
            opt(r.per_segment),
            opt(r.per_mms),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        s.parse().unwrap()
    }

    fn rate(connect: &str, per_minute: &str, inc: &str) -> Rate {
        Rate {
            prefix: "49".into(),
            description: "Germany".into(),
            connect_fee: a(connect),
            per_minute: Some(a(per_minute)),
            increments: inc.parse().unwrap(),
            per_segment: Some(a("0.07")),
            per_mms: None,
        }
    }

    #[test]
    fn increments_bill_first_block_then_next_blocks() {
        let table: &[(&str, &[(u32, u64)])] = &[
            ("60/60", &[(0, 0), (1, 60), (59, 60), (60, 60), (61, 120), (120, 120), (121, 180)]),
            ("30/6", &[(0, 0), (1, 30), (30, 30), (31, 36), (36, 36), (37, 42), (95, 96)]),
            ("1/1", &[(0, 0), (1, 1), (59, 59), (61, 61), (3600, 3600)]),
            ("60/1", &[(1, 60), (60, 60), (61, 61), (62, 62)]),
        ];
        for (inc, cases) in table {
            let i: Increments = inc.parse().unwrap();
            for &(s, billed) in *cases {
                assert_eq!(i.billed(s), billed, "{inc} for {s} s");
            }
        }
    }

    #[test]
    fn increments_parse_strictly() {
        assert_eq!("30/6".parse::<Increments>().unwrap(), Increments { first: 30, next: 6 });
        assert_eq!(" 60 / 60 ".parse::<Increments>().unwrap().to_string(), "60/60");
        for bad in ["", "60", "0/60", "60/0", "a/b", "60/60/60", "-1/1", "3601/1", "1.5/1", "+1/1"] {
            assert!(bad.parse::<Increments>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn call_prices_are_connect_fee_plus_billed_time_rounded_up() {
        let r = rate("0.05", "0.012", "60/60");
        assert_eq!(r.call_price(0).unwrap(), Amount::ZERO, "unanswered: nothing, not even the connect fee");
        assert_eq!(r.call_price(1).unwrap(), a("0.062"));
        assert_eq!(r.call_price(60).unwrap(), a("0.062"));
        assert_eq!(r.call_price(61).unwrap(), a("0.074"));
        let r = rate("0", "0.0123", "1/1");
        assert_eq!(r.call_price(1).unwrap(), a("0.000205"), "0.0123/60 = 0.000205 exactly");
        assert_eq!(r.call_price(7).unwrap(), a("0.001435"));
        let r = rate("0", "0.01", "1/1");
        assert_eq!(r.call_price(1).unwrap(), a("0.000167"), "0.0001666… rounds up");
        assert_eq!(r.call_price(3).unwrap(), a("0.0005"), "three seconds are priced exactly, not 3 × rounded");
        let r = rate("0.10", "0.30", "30/6");
        assert_eq!(r.call_price(31).unwrap(), a("0.28"), "36 billed seconds at 0.30/min + 0.10");
    }

    #[test]
    fn services_not_offered_are_refused() {
        let mut r = rate("0", "0.01", "60/60");
        r.per_segment = None;
        assert_eq!(r.sms_price(1), Err(RatingError::NotOffered));
        assert_eq!(r.max_segments(a("1")), Err(RatingError::NotOffered));
        r.per_minute = None;
        assert_eq!(r.call_price(10), Err(RatingError::NotOffered));
        assert_eq!(r.max_seconds(a("1")), Err(RatingError::NotOffered));
    }

    #[test]
    fn sms_prices_per_segment() {
        let r = rate("0", "0.01", "60/60");
        assert_eq!(r.sms_price(0).unwrap(), Amount::ZERO);
        assert_eq!(r.sms_price(3).unwrap(), a("0.21"));
        assert_eq!(r.max_segments(a("0.20")).unwrap(), 2);
        assert_eq!(r.max_segments(a("0.21")).unwrap(), 3);
        assert_eq!(r.max_segments(a("-1")).unwrap(), 0);
        let mut free = r.clone();
        free.per_segment = Some(Amount::ZERO);
        assert_eq!(free.max_segments(Amount::ZERO).unwrap(), MAX_FREE_SEGMENTS);
    }

    #[test]
    fn max_seconds_is_the_longest_affordable_whole_increment() {
        let cases = [
            // (connect, per minute, increments, available, max seconds)
            ("0", "0.60", "60/60", "0.59", 0),
            ("0", "0.60", "60/60", "0.60", 60),
            ("0", "0.60", "60/60", "1.19", 60),
            ("0", "0.60", "60/60", "1.20", 120),
            ("0.10", "0.60", "60/60", "0.69", 0),
            ("0.10", "0.60", "60/60", "0.70", 60),
            ("0", "0.60", "30/6", "0.29", 0),
            ("0", "0.60", "30/6", "0.30", 30),
            ("0", "0.60", "30/6", "0.36", 36),
            ("0", "0.60", "30/6", "0.41", 36),
            ("0", "0.01", "1/1", "0.000166", 0),
            ("0", "0.01", "1/1", "0.000167", 1),
            ("0", "0.01", "1/1", "1.00", 6000),
            ("0", "0", "60/60", "0", MAX_FREE_SECONDS),
            ("0", "0.000001", "1/1", "100", MAX_FREE_SECONDS),
            ("5.00", "0.01", "1/1", "4.99", 0),
        ];
        for (connect, pm, inc, avail, want) in cases {
            let r = rate(connect, pm, inc);
            let got = r.max_seconds(a(avail)).unwrap();
            assert_eq!(got, want, "{connect} + {pm}/min {inc} with {avail}");
            if got > 0 && got < MAX_FREE_SECONDS {
                assert!(r.call_price(got).unwrap() <= a(avail), "affordable");
                let more = got + r.increments.next;
                assert!(r.call_price(more).unwrap() > a(avail), "one more increment is not");
            }
        }
    }

    #[test]
    fn max_seconds_matches_a_brute_force_search() {
        for (connect, pm, inc) in [("0", "0.0123", "1/1"), ("0.02", "0.35", "30/6"), ("0", "0.07", "60/60")] {
            let r = rate(connect, pm, inc);
            for cents in (0..300).step_by(7) {
                let avail = Amount::from_micros(cents * 10_000);
                let brute = (0..=MAX_FREE_SECONDS)
                    .rev()
                    .find(|&s| r.call_price(s).unwrap() <= avail && (s == 0 || r.increments.billed(s) == u64::from(s)))
                    .unwrap();
                assert_eq!(r.max_seconds(avail).unwrap(), brute, "{connect} {pm} {inc} with {avail}");
            }
        }
    }

    #[test]
    fn extensions_cover_the_longer_call() {
        for inc in ["60/60", "30/6", "1/1", "60/1"] {
            let r = rate("0.05", "0.0437", inc);
            for first in [1u32, 29, 30, 60, 61, 300] {
                for more in [1u32, 5, 6, 59, 60, 61, 600] {
                    let held = r.call_price(first).unwrap().checked_add(r.extension_price(more).unwrap()).unwrap();
                    assert!(r.call_price(first + more).unwrap() <= held, "{inc}: {first} then {more} more");
                }
            }
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let mk = |p: &str, d: &str| Rate { prefix: p.into(), description: d.into(), ..rate("0", "0.01", "60/60") };
        let deck = RateDeck::new([mk("4", "zone 4"), mk("49", "Germany"), mk("49151", "Germany mobile")]);
        assert_eq!(deck.lookup("4915112345678").unwrap().description, "Germany mobile");
        assert_eq!(deck.lookup("4915212345678").unwrap().description, "Germany");
        assert_eq!(deck.lookup("4930123456").unwrap().description, "Germany");
        assert_eq!(deck.lookup("442079460001").unwrap().description, "zone 4");
        assert!(deck.lookup("12025550143").is_none());
        assert_eq!(prefixes_of("4930").collect::<Vec<_>>(), ["4930", "493", "49", "4"]);
    }

    #[test]
    fn csv_round_trips_and_refuses_bad_lines() {
        let text = "prefix,description,connect_fee,per_minute,increments,per_sms\n\
                    +49,Germany,0,0.012,60/60,0.07\n\
                    49151,\"Germany, mobile\",0.01,0.045,30/6,\n\
                    82,\"Korea, Republic of\",,,,0.05\n";
        let deck = parse_csv(text).unwrap();
        assert_eq!(deck.len(), 3);
        let m = deck.lookup("4915112345678").unwrap();
        assert_eq!(
            (m.description.as_str(), m.per_segment, m.increments.to_string()),
            ("Germany, mobile", None, "30/6".into())
        );
        let k = deck.lookup("82212345678").unwrap();
        assert_eq!((k.per_minute, k.connect_fee, k.increments.to_string()), (None, Amount::ZERO, "60/60".into()));
        assert_eq!(parse_csv(&to_csv(&deck)).unwrap(), deck, "export then import gives the same deck");

        let reordered = "per_sms,prefix,increments,per_minute,connect_fee,description,extra\n0.07,44,1/1,0.01,0,UK,x\n";
        assert_eq!(parse_csv(reordered).unwrap().lookup("442079460001").unwrap().description, "UK");

        let bad = "prefix,description,connect_fee,per_minute,increments,per_sms\n\
                   49,ok,0,0.01,60/60,\n\
                   4x,bad prefix,0,0.01,60/60,\n\
                   33,negative,0,-0.01,60/60,\n\
                   34,precise,0,0.0000001,60/60,\n\
                   35,increments,0,0.01,60,\n\
                   36,nothing,0,,60/60,\n\
                   49,again,0,0.01,60/60,\n\
                   0049,leading zero,0,0.01,60/60,\n\
                   37,short line\n";
        let err = parse_csv(bad).unwrap_err();
        let lines: Vec<&str> = err.0.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(lines, ["line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 9", "line 10"], "{err}");
        let err = parse_csv("prefix,description,per_minute\n49,x,0.01\n").unwrap_err();
        assert!(err.to_string().contains("connect_fee"), "{err}");
    }

    #[test]
    fn mms_has_a_price_per_message_only_where_the_deck_gives_one() {
        let text = "prefix,description,connect_fee,per_minute,increments,per_sms,per_mms\n\
                    44,UK,0,0.02,60/60,0.05,0.25\n\
                    49,Germany,0,0.02,60/60,0.07,\n\
                    33,France MMS only,,,,,0.30\n";
        let deck = parse_csv(text).unwrap();
        let uk = deck.lookup("447400123456").unwrap();
        assert_eq!((uk.mms_price(1).unwrap(), uk.mms_price(3).unwrap()), (a("0.25"), a("0.75")));
        assert_eq!(uk.max_mms(a("0.60")).unwrap(), 2);
        assert_eq!(uk.sms_price(1).unwrap(), a("0.05"), "the SMS price is its own");
        assert_eq!(deck.lookup("4930123456").unwrap().mms_price(1), Err(RatingError::NotOffered));
        assert_eq!(deck.lookup("33123456789").unwrap().mms_price(2).unwrap(), a("0.60"));
        assert_eq!(parse_csv(&to_csv(&deck)).unwrap(), deck, "export then import keeps the MMS prices");
        // A deck written before MMS had a price (no per_mms column) offers no MMS anywhere.
        let old = parse_csv("prefix,description,connect_fee,per_minute,increments,per_sms\n44,UK,0,0.02,60/60,0.05\n");
        assert_eq!(old.unwrap().lookup("447400123456").unwrap().per_mms, None);
        // A hold's rate stored before MMS had a price still reads.
        let stored = r#"{"prefix":"44","description":"UK","connect_fee":"0","per_minute":"0.02",
                         "increments":{"first":60,"next":60},"per_segment":"0.05"}"#;
        let r: Rate = serde_json::from_str(stored).unwrap();
        assert_eq!((r.per_mms, r.per_segment), (None, Some(a("0.05"))));
        let bad =
            parse_csv("prefix,description,connect_fee,per_minute,increments,per_sms,per_mms\n44,UK,0,,60/60,,-1\n");
        assert!(bad.unwrap_err().to_string().contains("per_mms: not negative"));
    }
}
