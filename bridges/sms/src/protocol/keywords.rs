//! Opt-out and opt-in keywords in inbound SMS (`STOP`, `START` and their national forms).
//!
//! A whole message that is a keyword — any case, surrounding spaces and a trailing `.` or `!` ignored, inner
//! spaces collapsed — is one; a keyword inside a longer message is not (`stop by later` stays a message). The
//! keywords of the sender's country (from its number) apply on top of the default list. The operator may
//! replace both in the config; [`Keywords::builtin`] holds common regulatory forms (CTIA in the US and Canada,
//! the usual words in a few European countries).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an inbound keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// Send nothing more to this number.
    Stop,
    /// Send again.
    Start,
}

/// Opt-out and opt-in words of one country (or the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeywordSet {
    /// Words that stop messages.
    pub stop: Vec<String>,
    /// Words that resume them.
    pub start: Vec<String>,
}

/// The keyword lists: a default and per-country additions (ISO 3166-1 alpha-2 keys, `US`, `DE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keywords {
    /// Words for every country.
    pub default: KeywordSet,
    /// Words added for senders from a country.
    pub countries: BTreeMap<String, KeywordSet>,
}

impl Default for Keywords {
    fn default() -> Self {
        Self::builtin()
    }
}

fn set(stop: &[&str], start: &[&str]) -> KeywordSet {
    KeywordSet {
        stop: stop.iter().map(|s| (*s).to_owned()).collect(),
        start: start.iter().map(|s| (*s).to_owned()).collect(),
    }
}

impl Keywords {
    /// The built-in lists.
    pub fn builtin() -> Self {
        let ctia = set(&["STOP ALL", "OPTOUT", "OPT OUT", "REVOKE"], &["YES"]);
        Self {
            default: set(&["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"], &["START", "UNSTOP"]),
            countries: BTreeMap::from([
                ("US".to_owned(), ctia.clone()),
                ("CA".to_owned(), ctia),
                ("DE".to_owned(), set(&["STOPP", "ABMELDEN"], &[])),
                ("AT".to_owned(), set(&["STOPP", "ABMELDEN"], &[])),
                ("FR".to_owned(), set(&["STOP SMS", "ARRET", "ARRÊT"], &[])),
                ("ES".to_owned(), set(&["BAJA"], &["ALTA"])),
                ("NL".to_owned(), set(&["AFMELDEN"], &["AANMELDEN"])),
            ]),
        }
    }

    /// Problems with the lists (for `config check`).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.default.stop.is_empty() {
            p.push("opt_out.keywords.default.stop: at least one word is needed (e.g. STOP)".to_owned());
        }
        for code in self.countries.keys() {
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                p.push(format!("opt_out.keywords.countries.{code}: not an ISO 3166-1 alpha-2 code such as US"));
            }
        }
        p
    }

    /// The keyword `text` is, for a sender from `country` (alpha-2, `None` when unknown).
    pub fn classify(&self, country: Option<&str>, text: &str) -> Option<Keyword> {
        let words = normalise(text);
        if words.is_empty() || words.len() > 40 {
            return None;
        }
        let sets = std::iter::once(&self.default).chain(country.and_then(|c| self.countries.get(c)));
        let matches = |list: &[String]| list.iter().any(|k| normalise(k) == words);
        let sets: Vec<&KeywordSet> = sets.collect();
        if sets.iter().any(|s| matches(&s.stop)) {
            Some(Keyword::Stop)
        } else if sets.iter().any(|s| matches(&s.start)) {
            Some(Keyword::Start)
        } else {
            None
        }
    }
}

fn normalise(text: &str) -> String {
    let t = text.trim().trim_end_matches(['.', '!']).trim();
    t.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase()
}

/// The ISO 3166-1 alpha-2 country of an E.164 number: the region its number plan places it in, else the main
/// country of its calling code (a number in a range the metadata does not list, such as UK drama numbers).
pub fn country_of(e164: &str) -> Option<String> {
    let n = phonenumber::parse(None, e164).ok()?;
    if let Some(id) = n.country().id() {
        return Some(format!("{id:?}"));
    }
    let regions = phonenumber::metadata::DATABASE.by_code(&n.code().value())?;
    let main = regions.iter().find(|m| m.is_main_country_for_code()).or(regions.first())?;
    Some(main.id().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn whole_messages_only_in_any_case() {
        let k = Keywords::builtin();
        assert_eq!(k.classify(None, "STOP"), Some(Keyword::Stop));
        assert_eq!(k.classify(None, "  stop!  "), Some(Keyword::Stop));
        assert_eq!(k.classify(None, "Unsubscribe."), Some(Keyword::Stop));
        assert_eq!(k.classify(None, "start"), Some(Keyword::Start));
        assert_eq!(k.classify(None, "stop by later"), None);
        assert_eq!(k.classify(None, "please stop"), None);
        assert_eq!(k.classify(None, ""), None);
    }

    #[test]
    fn national_words_apply_to_their_country_only() {
        let k = Keywords::builtin();
        assert_eq!(k.classify(Some("ES"), "baja"), Some(Keyword::Stop));
        assert_eq!(k.classify(Some("GB"), "baja"), None);
        assert_eq!(k.classify(Some("ES"), "ALTA"), Some(Keyword::Start));
        assert_eq!(k.classify(Some("US"), "opt   out"), Some(Keyword::Stop));
        assert_eq!(k.classify(Some("US"), "yes"), Some(Keyword::Start));
        assert_eq!(k.classify(Some("DE"), "yes"), None);
        assert_eq!(k.classify(Some("FR"), "arrêt"), Some(Keyword::Stop));
        assert_eq!(k.classify(Some("DE"), "STOP"), Some(Keyword::Stop), "the default list applies everywhere");
    }

    #[test]
    fn countries_from_numbers() {
        assert_eq!(country_of("+447700900123").as_deref(), Some("GB"));
        assert_eq!(country_of("+4915112345678").as_deref(), Some("DE"));
        assert_eq!(country_of("+12025550123").as_deref(), Some("US"));
        assert_eq!(country_of("+447400123456").as_deref(), Some("GB"));
        assert_eq!(country_of("nonsense"), None);
    }

    #[test]
    fn operator_lists_are_checked() {
        let mut k = Keywords::builtin();
        assert!(k.validate().is_empty());
        k.countries.insert("germany".into(), KeywordSet::default());
        k.default.stop.clear();
        assert_eq!(k.validate().len(), 2);
    }

    proptest! {
        #[test]
        fn a_stop_word_inside_a_longer_message_is_not_a_keyword(before in "[a-z]{1,10}", after in "[a-z]{1,10}") {
            let k = Keywords::builtin();
            prop_assert_eq!(k.classify(None, &format!("{before} stop {after}")), None);
        }

        #[test]
        fn any_text_is_classified_without_panicking(s in "\\PC{0,100}") {
            let _ = Keywords::builtin().classify(Some("US"), &s);
        }
    }
}
