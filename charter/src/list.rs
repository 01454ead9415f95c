//! The trust list: the directories and providers the charter vouches for.

use crate::error::CharterError;
use crate::keys::PublicKey;
use crate::signed::LIST_TYPE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::SystemTime;
use url::Url;

/// What a provider offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Matrix accounts with phone sign-up.
    Matrix,
    /// The SMS bridge.
    Sms,
    /// The SIP bridge (messages, calls).
    Sip,
    /// The PSTN gateway (calls to and from the phone network).
    Pstn,
    /// A service this version does not know (a newer list): kept, not offered.
    #[serde(other)]
    Other,
}

/// A trusted ENUM directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedDirectory {
    /// A short stable name providers refer to (`directory = "…"`).
    pub id: String,
    /// The ENUM apex, absolute (`e164.tincan.test.`).
    pub apex: String,
    /// The apex's trust anchor: DS records in presentation format (what `tincan-directory keys ds` prints),
    /// one per entry; during a key roll both the old and the new DS.
    pub ds: Vec<String>,
    /// The directory's API base URL (transparency log `/v1/log/…`, registrar API).
    pub api_url: Url,
    /// The transparency log's Ed25519 public key, unpadded base64.
    pub log_key: String,
    /// DNS servers that answer for the apex, if the charter names any (clients may use their own resolver).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<SocketAddr>,
}

impl TrustedDirectory {
    /// The trust anchor as the text the lookup library takes (DS records, one a line).
    pub fn trust_anchor(&self) -> String {
        self.ds.join("\n")
    }
}

/// A provider users may sign up with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedProvider {
    /// The provider's name (shown at sign-up; unique in the list).
    pub name: String,
    /// Its Matrix server names (the part after `:` in its users' IDs).
    pub homeservers: Vec<String>,
    /// Its homeserver extension (`tincan-ext`) base URL, where sign-up starts.
    pub ext_url: Url,
    /// The [`TrustedDirectory::id`] of the directory it registers numbers at.
    pub directory: String,
    /// Its provider id at that directory (`tincan-directory provider add --id …`).
    pub provider_id: String,
    /// The number prefixes it may register, E.164 with `+` (`+44`, `+1555`).
    pub prefixes: Vec<String>,
    /// What it offers.
    pub services: Vec<Service>,
}

impl TrustedProvider {
    /// Whether the provider may hold `number` (E.164 with `+`).
    pub fn covers(&self, number: &str) -> bool {
        self.prefixes.iter().any(|p| number.starts_with(p.as_str()))
    }
}

/// What the charter edits: the list without version and expiry (`tincan-charter list new --input list.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListInput {
    /// Directories.
    #[serde(default, rename = "directory")]
    pub directories: Vec<TrustedDirectory>,
    /// Providers.
    #[serde(default, rename = "provider")]
    pub providers: Vec<TrustedProvider>,
}

/// The signed trust list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustList {
    /// Always [`LIST_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Goes up with every list; clients never accept a lower one.
    pub version: u64,
    /// After this the list is refused (and the last good one too): the charter re-signs before.
    #[serde(with = "crate::timefmt")]
    pub expires: SystemTime,
    /// Trusted directories.
    pub directories: Vec<TrustedDirectory>,
    /// Providers users may sign up with.
    pub providers: Vec<TrustedProvider>,
}

impl TrustList {
    /// A list from the edited input.
    pub fn new(input: ListInput, version: u64, expires: SystemTime) -> Result<Self, CharterError> {
        let list = TrustList {
            kind: LIST_TYPE.into(),
            version,
            expires,
            directories: input.directories,
            providers: input.providers,
        };
        list.validate()?;
        Ok(list)
    }

    /// Checks the list's consistency.
    pub fn validate(&self) -> Result<(), CharterError> {
        let bad = |m: String| Err(CharterError::InvalidList(m));
        if self.kind != LIST_TYPE {
            return bad(format!("type is {:?}, expected {LIST_TYPE:?}", self.kind));
        }
        if self.version == 0 {
            return bad("version 0 (versions start at 1)".into());
        }
        let mut ids = BTreeSet::new();
        let mut apexes = BTreeSet::new();
        for d in &self.directories {
            if d.id.is_empty() || !ids.insert(d.id.as_str()) {
                return bad(format!("directory id {:?} is empty or repeated", d.id));
            }
            if !d.apex.ends_with('.') || d.apex.len() < 2 || !apexes.insert(d.apex.to_ascii_lowercase()) {
                return bad(format!("directory {}: apex {:?} must be absolute (end in '.') and unique", d.id, d.apex));
            }
            if d.ds.is_empty() || d.ds.iter().any(|s| s.trim().is_empty()) {
                return bad(format!("directory {}: no DS record", d.id));
            }
            for ds in &d.ds {
                if let Err(why) = check_ds(&d.apex, ds) {
                    return bad(format!("directory {}: DS record {ds:?} is unreadable: {why}", d.id));
                }
            }
            if PublicKey::from_base64(&d.log_key).is_err() {
                return bad(format!("directory {}: log_key is not an Ed25519 public key in base64", d.id));
            }
        }
        let mut names = BTreeSet::new();
        let mut servers = BTreeSet::new();
        for p in &self.providers {
            if p.name.trim().is_empty() || !names.insert(p.name.as_str()) {
                return bad(format!("provider name {:?} is empty or repeated", p.name));
            }
            if p.homeservers.is_empty() {
                return bad(format!("provider {}: no homeserver", p.name));
            }
            for h in &p.homeservers {
                if h.is_empty() || h.contains(['/', ' ', '@']) || !servers.insert(h.to_ascii_lowercase()) {
                    return bad(format!("provider {}: homeserver {h:?} is malformed or listed twice", p.name));
                }
            }
            if !ids.contains(p.directory.as_str()) {
                return bad(format!("provider {}: directory {:?} is not in the list", p.name, p.directory));
            }
            if p.provider_id.is_empty() {
                return bad(format!("provider {}: empty provider_id", p.name));
            }
            for pre in &p.prefixes {
                let digits = pre.strip_prefix('+').unwrap_or("");
                if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return bad(format!("provider {}: prefix {pre:?} is not + and 1–15 digits", p.name));
                }
            }
            if p.prefixes.is_empty() || p.services.is_empty() {
                return bad(format!("provider {}: no prefixes or no services", p.name));
            }
        }
        Ok(())
    }

    /// The directory with this id.
    pub fn directory(&self, id: &str) -> Option<&TrustedDirectory> {
        self.directories.iter().find(|d| d.id == id)
    }

    /// The directory with this apex (case-insensitive, trailing dot optional).
    pub fn directory_by_apex(&self, apex: &str) -> Option<&TrustedDirectory> {
        let want = apex.trim_end_matches('.').to_ascii_lowercase();
        self.directories.iter().find(|d| d.apex.trim_end_matches('.').to_ascii_lowercase() == want)
    }

    /// The provider running this Matrix server name.
    pub fn provider_by_homeserver(&self, server_name: &str) -> Option<&TrustedProvider> {
        self.providers.iter().find(|p| p.homeservers.iter().any(|h| h.eq_ignore_ascii_case(server_name)))
    }

    /// The providers of a directory.
    pub fn providers_of(&self, directory_id: &str) -> impl Iterator<Item = &TrustedProvider> {
        self.providers.iter().filter(move |p| p.directory == directory_id)
    }
}

/// The DNSSEC algorithms (IANA numbers) a client's validating lookup accepts in a DS of its trust anchor, exactly
/// those hickory's `Algorithm::is_supported` takes (RSASHA1, RSASHA1-NSEC3-SHA1, RSASHA256, RSASHA512, ECDSA
/// P-256/SHA-256, P-384/SHA-384, Ed25519); `tincan_enum_lookup::TrustAnchor` refuses any other (e.g. 3, DSA).
/// The client core's tests check the two agree for every value.
pub const CLIENT_DS_ALGORITHMS: [u8; 7] = [5, 7, 8, 10, 13, 14, 15];

/// Checks one DS record in presentation format the way clients read it (`APEX [TTL] [IN] DS TAG ALG DIGTYPE
/// HEX…`, `;` comments, parentheses, the digest maybe split): the owner is `apex` (case and final dot aside), the
/// key tag a u16, the algorithm one of [`CLIENT_DS_ALGORITHMS`], the digest type 2 (SHA-256) or 4 (SHA-384),
/// which clients take, and the
/// digest hex of that type's length. A client refuses a list whose DS it cannot read (`directory_config`), so
/// the charter must never sign one.
fn check_ds(apex: &str, text: &str) -> Result<(), String> {
    let text: String = text.lines().map(|l| l.split(';').next().unwrap_or("")).collect::<Vec<_>>().join(" ");
    let tokens: Vec<&str> =
        text.split(|c: char| c.is_whitespace() || c == '(' || c == ')').filter(|t| !t.is_empty()).collect();
    let mut rest = tokens.iter().copied().peekable();
    let owner = rest.next().ok_or("empty")?;
    let name = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    if name(owner) != name(apex) {
        return Err(format!("owner {owner:?} is not the apex {apex}"));
    }
    for _ in 0..2 {
        if rest.next_if(|t| t.bytes().all(|b| b.is_ascii_digit()) || t.eq_ignore_ascii_case("IN")).is_none() {
            break;
        }
    }
    if !rest.next().is_some_and(|t| t.eq_ignore_ascii_case("DS")) {
        return Err("not class IN, type DS".into());
    }
    rest.next().and_then(|t| t.parse::<u16>().ok()).ok_or("bad key tag")?;
    let algorithm = rest.next().and_then(|t| t.parse::<u8>().ok()).ok_or("bad algorithm")?;
    if !CLIENT_DS_ALGORITHMS.contains(&algorithm) {
        return Err(format!(
            "algorithm {algorithm} is not one clients validate with (only {})",
            CLIENT_DS_ALGORITHMS.map(|a| a.to_string()).join(", ")
        ));
    }
    let len = match rest.next().and_then(|t| t.parse::<u8>().ok()) {
        Some(2) => 32,
        Some(4) => 48,
        _ => return Err("digest type is not 2 (SHA-256) or 4 (SHA-384)".into()),
    };
    match hex::decode(rest.collect::<String>()) {
        Ok(digest) if digest.len() == len => Ok(()),
        _ => Err(format!("digest is not {len} bytes of hex")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) fn input() -> ListInput {
        toml::from_str(
            r#"
            [[directory]]
            id = "main"
            apex = "e164.tincan.test."
            ds = ["e164.tincan.test. 3600 IN DS 12345 15 2 0000000000000000000000000000000000000000000000000000000000000000"]
            api_url = "http://127.0.0.1:8080/"
            log_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo"

            [[provider]]
            name = "Alpha"
            homeservers = ["alpha.test"]
            ext_url = "http://127.0.0.1:9000/"
            directory = "main"
            provider_id = "alpha"
            prefixes = ["+44"]
            services = ["matrix", "sms", "teleport"]
            "#,
        )
        .unwrap()
    }

    fn exp() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(2_000_000_000)
    }

    #[test]
    fn a_valid_input_makes_a_list() {
        let l = TrustList::new(input(), 1, exp()).unwrap();
        assert_eq!(l.providers[0].services, [Service::Matrix, Service::Sms, Service::Other]);
        assert_eq!(l.provider_by_homeserver("ALPHA.test").unwrap().name, "Alpha");
        assert!(l.providers[0].covers("+442079460001"));
        assert!(!l.providers[0].covers("+33123456789"));
        assert_eq!(l.directory_by_apex("e164.tincan.test").unwrap().id, "main");
    }

    #[test]
    fn inconsistent_lists_are_refused() {
        let cases: [fn(&mut ListInput); 6] = [
            |i| i.providers[0].directory = "other".into(),
            |i| i.providers[0].prefixes = vec!["44".into()],
            |i| i.directories[0].log_key = "short".into(),
            |i| i.directories[0].apex = "e164.tincan.test".into(),
            |i| i.providers.push(i.providers[0].clone()),
            |i| i.directories[0].ds.clear(),
        ];
        for (n, f) in cases.iter().enumerate() {
            let mut i = input();
            f(&mut i);
            assert!(matches!(TrustList::new(i, 1, exp()), Err(CharterError::InvalidList(_))), "case {n}");
        }
    }

    #[test]
    fn a_list_with_an_unreadable_ds_is_refused_naming_the_directory() {
        let d64 = "9A".repeat(32);
        for ds in [
            "e164.tincan.test. 3600 IN DS 12345 13 2 not-a-digest".to_string(),
            format!("e164.tincan.test. 3600 IN DS 12345 13 2 {}", &d64[..62]),
            format!("e164.tincan.test. 3600 IN DS 12345 13 4 {d64}"),
            format!("e164.tincan.test. 3600 IN DS 12345 13 1 {}", &d64[..40]),
            format!("other.test. 3600 IN DS 12345 13 2 {d64}"),
            format!("e164.tincan.test. 3600 CH DS 12345 13 2 {d64}"),
            format!("e164.tincan.test. 3600 IN DNSKEY 12345 13 2 {d64}"),
            format!("e164.tincan.test. 3600 IN DS 70000 13 2 {d64}"),
            format!("e164.tincan.test. 3600 IN DS 12345 256 2 {d64}"),
            "e164.tincan.test. 3600 IN DS 12345 13".to_string(),
        ] {
            let mut i = input();
            i.directories[0].ds.push(ds.clone());
            match TrustList::new(i, 1, exp()) {
                Err(CharterError::InvalidList(m)) => {
                    assert!(m.starts_with("directory main: DS record") && m.contains("unreadable"), "{ds}: {m}")
                }
                other => panic!("{ds}: {other:?}"),
            }
        }
    }

    /// Issue 14: a DS whose algorithm clients do not validate with (3 is DSA, which hickory does not support;
    /// 1 RSAMD5, 0, 16 unassigned) makes the list unusable for every client (`directory_config`) until it expires.
    #[test]
    fn a_list_with_a_ds_algorithm_clients_refuse_is_refused_naming_the_directory() {
        let d64 = "9A".repeat(32);
        for algorithm in [0u8, 1, 2, 3, 4, 6, 9, 11, 12, 16, 23, 252, 253, 254, 255] {
            let ds = format!("e164.tincan.test. 3600 IN DS 12345 {algorithm} 2 {d64}");
            let mut i = input();
            i.directories[0].ds.push(ds.clone());
            match TrustList::new(i, 1, exp()) {
                Err(CharterError::InvalidList(m)) => assert!(
                    m.starts_with("directory main: DS record")
                        && m.contains(&format!("algorithm {algorithm} is not one clients validate with")),
                    "{ds}: {m}"
                ),
                other => panic!("{ds}: {other:?}"),
            }
        }
        for algorithm in CLIENT_DS_ALGORITHMS {
            let mut i = input();
            i.directories[0].ds = vec![format!("e164.tincan.test. 3600 IN DS 12345 {algorithm} 2 {d64}")];
            assert!(TrustList::new(i, 1, exp()).is_ok(), "algorithm {algorithm}");
        }
    }

    #[test]
    fn ds_records_clients_read_are_taken() {
        let (d32, d48) = ("9A".repeat(32), "7b".repeat(48));
        for ds in [
            format!("e164.tincan.test. IN DS 4711 15 2 {d32}"),
            format!("E164.Tincan.Test 3600 IN DS 4711 13 4 {d48}"),
            format!("e164.tincan.test. IN 3600 DS 4711 13 2 ( {} {} ) ; comment", &d32[..32], &d32[32..]),
            format!("e164.tincan.test. DS 4711 8 2 {d32}"),
        ] {
            let mut i = input();
            i.directories[0].ds = vec![ds.clone()];
            assert!(TrustList::new(i, 1, exp()).is_ok(), "{ds}");
        }
    }
}
