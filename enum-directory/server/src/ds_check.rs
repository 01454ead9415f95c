//! `keys check-ds`: whether the apex's DS set published in the parent zone is the trust anchor the charter's
//! signed trust list names for this directory, and both are what this directory's keys need.
//!
//! Clients that take their anchor from the charter validate with the list's DS set; every other validator
//! follows the parent's DS. If the two disagree, one of them vouches for keys the zone may not be signed with: a
//! stale list (after a KSK roll) breaks every charter client, a stale or hijacked parent every other validator
//! (or, for a parent DS the directory never asked for, someone else's keys). The check reads the parent's DS
//! as published (not validated: it is what validators will be given, checked against the parent's own chain),
//! the charter's from the verified list, and this directory's from its key store (`keys ds`), and reports every
//! record one set has and another lacks.

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tincan_enum_lookup::{AnchorEntry, AnchorError, TrustAnchor};

/// A DS record as compared (the lookup library's: the end-user client compares the same way).
pub use tincan_enum_lookup::parent::DsRecord;

/// Why the check could not be made, or failed.
#[derive(Debug, thiserror::Error)]
pub enum DsCheckError {
    /// This directory is not on the list.
    #[error("this directory (apex {0}) is not on the charter's trust list")]
    NotListed(String),
    /// DS records (the list's, or this directory's) that do not parse, or are for another zone.
    #[error("{which} DS set for {apex}: {reason}")]
    BadDs {
        /// Whose set.
        which: &'static str,
        /// The apex.
        apex: String,
        /// What is wrong.
        reason: String,
    },
    /// The parent could not be asked.
    #[error("asking for the DS set of {apex}: {reason}")]
    Query {
        /// The apex.
        apex: String,
        /// What went wrong.
        reason: String,
    },
    /// The sets disagree: one line per record one set has and another lacks.
    #[error("the DS sets of {apex} disagree:\n  {}", .problems.join("\n  "))]
    Mismatch {
        /// The apex.
        apex: String,
        /// What differs.
        problems: Vec<String>,
    },
}

/// The DS records in `lines` (presentation format), which must all be for `apex`.
pub fn parse_ds(which: &'static str, apex: &Name, lines: &[String]) -> Result<BTreeSet<DsRecord>, DsCheckError> {
    let bad = |reason: String| DsCheckError::BadDs { which, apex: apex.to_ascii(), reason };
    let anchor = TrustAnchor::parse(&lines.join("\n")).map_err(|e: AnchorError| bad(e.to_string()))?;
    if anchor.zone() != apex {
        return Err(bad(format!("the records are for {}", anchor.zone())));
    }
    anchor
        .entries()
        .iter()
        .map(|e| match e {
            AnchorEntry::Ds(ds) => Ok(DsRecord::from(ds)),
            AnchorEntry::Dnskey(_) => Err(bad("a DNSKEY where DS records were expected".into())),
        })
        .collect()
}

/// The DS set of `apex` as `servers` (the system's resolvers when empty) answer it; empty when there is none
/// (an unsigned delegation).
pub async fn parent_ds(
    apex: &Name,
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<BTreeSet<DsRecord>, DsCheckError> {
    let failed = |reason: String| DsCheckError::Query { apex: apex.to_ascii(), reason };
    let (config, opts) = if servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().map_err(|e| failed(e.to_string()))?
    } else {
        (tincan_enum_lookup::name_servers(servers), Default::default())
    };
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = opts;
    let o = builder.options_mut();
    o.timeout = timeout;
    o.use_hosts_file = ResolveHosts::Never;
    o.try_tcp_on_error = true;
    o.edns0 = true;
    let resolver = builder.build().map_err(|e| failed(e.to_string()))?;
    match resolver.lookup(apex.clone(), RecordType::DS).await {
        Ok(l) => Ok(l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::DS(ds)) if r.name == *apex => Some(DsRecord::from(ds)),
                _ => None,
            })
            .collect()),
        Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(BTreeSet::new()),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// The three sets, compared: every record one has and another lacks (empty: they agree).
pub fn compare(parent: &BTreeSet<DsRecord>, charter: &BTreeSet<DsRecord>, own: &BTreeSet<DsRecord>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut lacks = |a: &BTreeSet<DsRecord>, has: &str, b: &BTreeSet<DsRecord>, lacks: &str| {
        for r in a.difference(b) {
            problems.push(format!("{has} {r}, which {lacks}"));
        }
    };
    lacks(parent, "the parent publishes", charter, "the charter's list does not name");
    lacks(charter, "the charter's list names", parent, "the parent does not publish");
    lacks(own, "this directory's keys need", parent, "the parent does not publish");
    lacks(parent, "the parent publishes", own, "matches no key of this directory (`keys ds`)");
    lacks(own, "this directory's keys need", charter, "the charter's list does not name");
    lacks(charter, "the charter's list names", own, "matches no key of this directory (`keys ds`)");
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(tag: u16, digest: u8) -> DsRecord {
        DsRecord { key_tag: tag, algorithm: 15, digest_type: 2, digest: vec![digest; 32] }
    }

    #[test]
    fn agreeing_sets_have_no_problem_and_every_difference_is_named() {
        let set = |v: &[DsRecord]| v.iter().cloned().collect::<BTreeSet<_>>();
        let (a, b) = (ds(1, 0xaa), ds(2, 0xbb));
        assert!(
            compare(&set(&[a.clone(), b.clone()]), &set(&[b.clone(), a.clone()]), &set(&[a.clone(), b.clone()]))
                .is_empty()
        );
        let p = compare(&set(std::slice::from_ref(&b)), &set(std::slice::from_ref(&a)), &set(std::slice::from_ref(&a)));
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p[0].starts_with("the parent publishes DS 2 15 2 BBBB")
                && p[0].ends_with("the charter's list does not name")
        );
        assert!(
            p[1].starts_with("the charter's list names DS 1 15 2 AAAA")
                && p[1].ends_with("the parent does not publish")
        );
    }

    #[test]
    fn presentation_is_compared_by_content() {
        let apex = Name::from_ascii("e164.tincan.test.").unwrap();
        let hexd = "9A".repeat(32);
        let a = parse_ds("x", &apex, &[format!("e164.tincan.test. 3600 IN DS 4711 15 2 {hexd}")]).unwrap();
        let b = parse_ds(
            "x",
            &apex,
            &[format!("E164.Tincan.Test. IN DS 4711 15 2 ( {} {} )", &hexd[..32], hexd[32..].to_lowercase())],
        )
        .unwrap();
        assert_eq!(a, b);
        let other = Name::from_ascii("other.test.").unwrap();
        assert!(matches!(
            parse_ds("x", &other, &[format!("e164.tincan.test. DS 4711 15 2 {hexd}")]),
            Err(DsCheckError::BadDs { .. })
        ));
    }
}
