//! Trust anchors for the directory apex: DS or DNSKEY records, parsed from presentation format (what
//! `tincan-directory keys ds` and `dnssec-dsfromkey` print) or from a BIND/delv `trust-anchors { … };` clause.

use std::str::FromStr;

use base64::Engine as _;
use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKey as _, PublicKeyBuf, Verifier as _};
use hickory_proto::rr::Name;

/// Why an anchor text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// The text held no DS or DNSKEY record.
    #[error("the trust anchor holds no DS or DNSKEY record")]
    Empty,
    /// An owner name that is not a valid domain name.
    #[error("line {line}: invalid owner name {name:?}")]
    InvalidName {
        /// 1-based line (or entry, for `trust-anchors` clauses).
        line: usize,
        /// The text that failed to parse.
        name: String,
    },
    /// A record of another type than DS or DNSKEY.
    #[error("line {line}: unsupported record type {found:?} (expected DS or DNSKEY)")]
    UnsupportedType {
        /// 1-based line.
        line: usize,
        /// The type token found.
        found: String,
    },
    /// A field that is missing or not a number/hex/base64 value.
    #[error("line {line}: bad {field} field")]
    BadField {
        /// 1-based line.
        line: usize,
        /// Which field (`key tag`, `algorithm`, `digest`, `flags`, `protocol`, `public key`…).
        field: &'static str,
    },
    /// A DNSSEC algorithm this library cannot verify (RSA/MD5, DSA, GOST, unknown…).
    #[error("line {line}: unsupported DNSSEC algorithm {algorithm}")]
    UnsupportedAlgorithm {
        /// 1-based line.
        line: usize,
        /// The algorithm number.
        algorithm: u8,
    },
    /// A DS digest type other than SHA-256 (2) or SHA-384 (4); SHA-1 is refused on purpose.
    #[error("line {line}: unsupported DS digest type {digest_type} (use 2 = SHA-256 or 4 = SHA-384)")]
    UnsupportedDigest {
        /// 1-based line.
        line: usize,
        /// The digest type number.
        digest_type: u8,
    },
    /// A DNSKEY without the zone-key flag (bit 7), which may never sign zone data.
    #[error("line {line}: DNSKEY is not a zone key (flags {flags})")]
    NotZoneKey {
        /// 1-based line.
        line: usize,
        /// The flags field.
        flags: u16,
    },
    /// Entries for different owner names: one anchor covers one zone.
    #[error("the trust anchor mixes zones {first} and {other}")]
    MixedZones {
        /// The first owner seen.
        first: Box<Name>,
        /// A different owner.
        other: Box<Name>,
    },
    /// A `trust-anchors`/`managed-keys`/`trusted-keys` clause that does not parse.
    #[error("malformed trust-anchors clause: {problem}")]
    BadClause {
        /// What is wrong (a fixed description).
        problem: &'static str,
    },
}

/// One trusted statement about the apex keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorEntry {
    /// A digest of a trusted key (as published in the parent).
    Ds(DS),
    /// A trusted key itself.
    Dnskey(DNSKEY),
}

/// The trust anchor of one zone (the directory apex): one or more DS or DNSKEY entries. A DNSKEY of the apex
/// is trusted when any entry matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    zone: Name,
    entries: Vec<AnchorEntry>,
}

impl TrustAnchor {
    /// An anchor from entries already built; `zone` must be fully qualified.
    pub fn new(zone: Name, entries: Vec<AnchorEntry>) -> Result<Self, AnchorError> {
        if entries.is_empty() {
            return Err(AnchorError::Empty);
        }
        let mut zone = zone;
        zone.set_fqdn(true);
        Ok(Self { zone, entries })
    }

    /// Parses either presentation-format records (`APEX. [TTL] [IN] DS TAG ALG DIGTYPE HEX`, `APEX. [TTL] [IN]
    /// DNSKEY FLAGS 3 ALG BASE64`, `;` comments, parentheses) or a BIND/delv clause (`trust-anchors { "APEX."
    /// static-ds TAG ALG DIGTYPE "HEX"; };`, also `static-key`, `initial-ds`, `initial-key`, `managed-keys` and
    /// `trusted-keys`).
    pub fn parse(text: &str) -> Result<Self, AnchorError> {
        let is_clause = ["trust-anchors", "managed-keys", "trusted-keys"]
            .iter()
            .any(|kw| text.split_whitespace().any(|t| t == *kw || t.starts_with(&format!("{kw}{{"))));
        let raw = if is_clause { parse_clause(text)? } else { parse_presentation(text)? };
        let mut zone: Option<Name> = None;
        let mut entries = Vec::with_capacity(raw.len());
        for (owner, entry) in raw {
            match &zone {
                None => zone = Some(owner),
                Some(z) if *z == owner => {}
                Some(z) => {
                    return Err(AnchorError::MixedZones { first: Box::new(z.clone()), other: Box::new(owner) });
                }
            }
            entries.push(entry);
        }
        Self::new(zone.ok_or(AnchorError::Empty)?, entries)
    }

    /// The zone this anchor vouches for.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// The entries.
    pub fn entries(&self) -> &[AnchorEntry] {
        &self.entries
    }

    /// Whether `key`, published at the anchor's zone, is trusted by one of the entries.
    pub fn trusts(&self, key: &DNSKEY) -> bool {
        if !key.zone_key() || key.revoke() {
            return false;
        }
        self.entries.iter().any(|entry| match entry {
            AnchorEntry::Dnskey(k) => {
                k.algorithm() == key.algorithm() && k.public_key().public_bytes() == key.public_key().public_bytes()
            }
            AnchorEntry::Ds(ds) => {
                ds.algorithm() == key.algorithm()
                    && key.calculate_key_tag().is_ok_and(|tag| tag == ds.key_tag())
                    && ds.covers(&self.zone, key).unwrap_or(false)
            }
        })
    }

    /// The entries of this anchor (one pinned by hand) that `listed` (the DS set a trust list names for the
    /// zone) does not vouch for: a DS entry must be one of `listed`'s DS records (key tag, algorithm, digest
    /// type and digest), a DNSKEY entry a key `listed` trusts; every entry when the zones differ. Empty when
    /// each is vouched for: a pinned subset of the list (the current DS alone while the list names both during
    /// a roll) is fine. A pinned entry nobody on the list stands behind would validate answers against a key
    /// the list does not (a stale anchor after a KSK roll, or a wrong one).
    pub fn not_vouched_by<'a>(&'a self, listed: &TrustAnchor) -> Vec<&'a AnchorEntry> {
        if self.zone != listed.zone {
            return self.entries.iter().collect();
        }
        self.entries
            .iter()
            .filter(|e| match e {
                AnchorEntry::Ds(d) => !listed.entries.iter().any(|l| matches!(l, AnchorEntry::Ds(l) if l == d)),
                AnchorEntry::Dnskey(k) => !listed.trusts(k),
            })
            .collect()
    }
}

impl std::fmt::Display for AnchorEntry {
    /// `DS TAG ALG DIGTYPE HEX`, or `DNSKEY FLAGS 3 ALG` with the key's tag (the key itself is long).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnchorEntry::Ds(ds) => write!(
                f,
                "DS {} {} {} {}",
                ds.key_tag(),
                u8::from(ds.algorithm()),
                u8::from(ds.digest_type()),
                hex::encode_upper(ds.digest())
            ),
            AnchorEntry::Dnskey(k) => {
                write!(f, "DNSKEY {} 3 {}", k.flags(), u8::from(k.algorithm()))?;
                match k.calculate_key_tag() {
                    Ok(tag) => write!(f, " (key tag {tag})"),
                    Err(_) => Ok(()),
                }
            }
        }
    }
}

impl FromStr for TrustAnchor {
    type Err = AnchorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Presentation format: one record per logical line (parentheses join physical lines).
fn parse_presentation(text: &str) -> Result<Vec<(Name, AnchorEntry)>, AnchorError> {
    let mut out = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut pending_line = 0;
    let mut depth = 0i32;
    for (idx, raw_line) in text.lines().enumerate() {
        let line = raw_line.split(';').next().unwrap_or("");
        if pending.is_empty() {
            pending_line = idx + 1;
        }
        for ch in line.chars() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
        }
        pending.extend(line.replace(['(', ')'], " ").split_whitespace().map(str::to_owned));
        if depth <= 0 {
            depth = 0;
            if !pending.is_empty() {
                out.push(parse_record(pending_line, &pending)?);
                pending.clear();
            }
        }
    }
    if !pending.is_empty() {
        out.push(parse_record(pending_line, &pending)?);
    }
    if out.is_empty() {
        return Err(AnchorError::Empty);
    }
    Ok(out)
}

fn parse_record(line: usize, tokens: &[String]) -> Result<(Name, AnchorEntry), AnchorError> {
    let owner = parse_owner(line, &tokens[0])?;
    let mut rest = tokens[1..].iter().map(String::as_str).peekable();
    // Optional TTL and class, in either order.
    for _ in 0..2 {
        match rest.peek() {
            Some(t) if t.chars().all(|c| c.is_ascii_digit()) => {
                rest.next();
            }
            Some(t) if t.eq_ignore_ascii_case("IN") => {
                rest.next();
            }
            _ => {}
        }
    }
    let rtype = rest.next().ok_or(AnchorError::BadField { line, field: "type" })?;
    let fields: Vec<&str> = rest.collect();
    let entry = if rtype.eq_ignore_ascii_case("DS") {
        ds_entry(line, &fields)?
    } else if rtype.eq_ignore_ascii_case("DNSKEY") {
        dnskey_entry(line, &fields)?
    } else {
        return Err(AnchorError::UnsupportedType { line, found: rtype.to_owned() });
    };
    Ok((owner, entry))
}

fn parse_owner(line: usize, text: &str) -> Result<Name, AnchorError> {
    let mut name = Name::from_ascii(text).map_err(|_| AnchorError::InvalidName { line, name: text.to_owned() })?;
    name.set_fqdn(true);
    Ok(name)
}

fn number<T: FromStr>(line: usize, field: &'static str, text: Option<&&str>) -> Result<T, AnchorError> {
    text.and_then(|t| t.parse().ok()).ok_or(AnchorError::BadField { line, field })
}

fn algorithm(line: usize, value: u8) -> Result<Algorithm, AnchorError> {
    let alg = Algorithm::from_u8(value);
    if alg.is_supported() { Ok(alg) } else { Err(AnchorError::UnsupportedAlgorithm { line, algorithm: value }) }
}

/// `TAG ALG DIGTYPE HEX…` (the digest may be split into several tokens).
fn ds_entry(line: usize, fields: &[&str]) -> Result<AnchorEntry, AnchorError> {
    let key_tag: u16 = number(line, "key tag", fields.first())?;
    let alg = algorithm(line, number(line, "algorithm", fields.get(1))?)?;
    let digest_type: u8 = number(line, "digest type", fields.get(2))?;
    let expected_len = match DigestType::from(digest_type) {
        DigestType::SHA256 => 32,
        DigestType::SHA384 => 48,
        _ => return Err(AnchorError::UnsupportedDigest { line, digest_type }),
    };
    let hex_text: String = fields.get(3..).unwrap_or_default().concat().split_whitespace().collect();
    let digest = hex::decode(&hex_text).map_err(|_| AnchorError::BadField { line, field: "digest" })?;
    if digest.len() != expected_len {
        return Err(AnchorError::BadField { line, field: "digest" });
    }
    Ok(AnchorEntry::Ds(DS::new(key_tag, alg, DigestType::from(digest_type), digest)))
}

/// `FLAGS 3 ALG BASE64…` (the key may be split into several tokens).
fn dnskey_entry(line: usize, fields: &[&str]) -> Result<AnchorEntry, AnchorError> {
    let flags: u16 = number(line, "flags", fields.first())?;
    let protocol: u8 = number(line, "protocol", fields.get(1))?;
    if protocol != 3 {
        return Err(AnchorError::BadField { line, field: "protocol" });
    }
    let alg = algorithm(line, number(line, "algorithm", fields.get(2))?)?;
    let b64: String = fields.get(3..).unwrap_or_default().concat().split_whitespace().collect();
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| AnchorError::BadField { line, field: "public key" })?;
    if key.is_empty() {
        return Err(AnchorError::BadField { line, field: "public key" });
    }
    let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(key, alg));
    if !dnskey.zone_key() {
        return Err(AnchorError::NotZoneKey { line, flags });
    }
    Ok(AnchorEntry::Dnskey(dnskey))
}

/// Tokens of a named.conf-style clause: quoted strings (quotes dropped), `{`, `}`, `;` and bare words.
fn clause_tokens(text: &str) -> Result<Vec<String>, AnchorError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err(AnchorError::BadClause { problem: "unterminated string" }),
                    }
                }
                tokens.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    Ok(tokens)
}

fn parse_clause(text: &str) -> Result<Vec<(Name, AnchorEntry)>, AnchorError> {
    let tokens = clause_tokens(text)?;
    let mut out = Vec::new();
    let mut i = 0;
    let mut entry_no = 0;
    while i < tokens.len() {
        let kw = tokens[i].as_str();
        if !matches!(kw, "trust-anchors" | "managed-keys" | "trusted-keys") {
            i += 1;
            continue;
        }
        if tokens.get(i + 1).map(String::as_str) != Some("{") {
            return Err(AnchorError::BadClause { problem: "expected `{` after the clause keyword" });
        }
        i += 2;
        loop {
            match tokens.get(i).map(String::as_str) {
                None => return Err(AnchorError::BadClause { problem: "missing `}`" }),
                Some("}") => {
                    i += 1;
                    break;
                }
                Some(";") => i += 1,
                Some(_) => {
                    let end = tokens[i..]
                        .iter()
                        .position(|t| t == ";" || t == "}")
                        .map(|p| i + p)
                        .ok_or(AnchorError::BadClause { problem: "entry not terminated by `;`" })?;
                    entry_no += 1;
                    out.push(clause_entry(entry_no, &tokens[i..end])?);
                    i = end;
                }
            }
        }
    }
    if out.is_empty() {
        return Err(AnchorError::Empty);
    }
    Ok(out)
}

/// `"NAME" [static-ds|initial-ds|static-key|initial-key] FIELDS…` (`trusted-keys` entries have no kind).
fn clause_entry(line: usize, tokens: &[String]) -> Result<(Name, AnchorEntry), AnchorError> {
    let owner = parse_owner(line, &tokens[0])?;
    let (kind, fields) = match tokens.get(1).map(String::as_str) {
        Some(k @ ("static-ds" | "initial-ds" | "static-key" | "initial-key")) => (k, &tokens[2..]),
        Some(_) => ("static-key", &tokens[1..]),
        None => return Err(AnchorError::BadClause { problem: "entry without data" }),
    };
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    let entry = if kind.ends_with("-ds") { ds_entry(line, &fields)? } else { dnskey_entry(line, &fields)? };
    Ok((owner, entry))
}

#[cfg(test)]
mod tests;
