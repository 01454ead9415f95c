//! Checking a resolved number against the directory's transparency log: [`fetch_inclusion`] asks the
//! directory's log API for the proof that the number's newest entry is in the log, and [`check_logged`] verifies
//! the signed tree head with the log's pinned key, the proof, and that the entry says what DNS said.
//!
//! A log can still fork: sign one tree for a victim (holding a forged record) and another for everyone else.
//! [`check_consistent`] catches that for whoever remembers the last head it saw: a later head must extend it
//! (RFC 9162 consistency proof, [`fetch_consistency`]). [`check_resolution`] does all of it, as a client
//! does before it trusts an answer: inclusion, the record, consistency with the head seen before.

use tincan_enum_core::{E164, MasterKey, naptr_rdata};
use tincan_translog::wire::{ConsistencyProof, InclusionProof};
use tincan_translog::{LogEntry, SignedTreeHead, TreeHeadVerifier};

use crate::resolve::Resolution;
use crate::routes::Routes;

/// Why a resolution is not backed by the log.
#[derive(Debug, thiserror::Error)]
pub enum LogCheckError {
    /// The log API could not be reached or answered garbage.
    #[error("log API request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The log API answered with an unexpected status.
    #[error("log API answered {status} for {number}")]
    Status {
        /// The number asked about.
        number: E164,
        /// The HTTP status.
        status: u16,
    },
    /// The tree head is not signed by the pinned log key.
    #[error("the log's tree head signature does not verify: {0}")]
    BadSignature(tincan_translog::Error),
    /// The entry is not in the signed tree.
    #[error("the log's inclusion proof for {number} does not verify: {source}")]
    Proof {
        /// The number.
        number: E164,
        /// Why.
        source: tincan_translog::Error,
    },
    /// The logged entry is not a number entry, or names another number.
    #[error("the log returned an entry that is not about {number}")]
    WrongEntry {
        /// The number asked about.
        number: E164,
    },
    /// DNS and the log disagree.
    #[error("{number}: DNS answers {dns} but the log says {log}")]
    Mismatch {
        /// The number.
        number: E164,
        /// What DNS said.
        dns: String,
        /// What the log says.
        log: String,
    },
    /// DNS publishes the number but the log has no entry for it.
    #[error("{number} is published in DNS but has no entry in the log")]
    NotLogged {
        /// The number.
        number: E164,
    },
    /// The consistency proof endpoint answered with an unexpected status (a failure, or a rate limit).
    #[error("log API answered {status} for the consistency proof from {from} to {to}")]
    ConsistencyStatus {
        /// The smaller tree size.
        from: u64,
        /// The larger tree size.
        to: u64,
        /// The HTTP status.
        status: u16,
    },
    /// Two tree heads signed by the log are not of one append-only tree: the log forked (or was rewritten).
    #[error(
        "the log forked: its tree head of size {new} is not consistent with the head of size {seen} seen before: {reason}"
    )]
    Inconsistent {
        /// The size of the head seen before.
        seen: u64,
        /// The size of the head now shown.
        new: u64,
        /// Why the proof failed.
        reason: String,
    },
}

impl LogCheckError {
    /// Whether the log could not be asked (network, server failure, rate limit) rather than proving something
    /// wrong: worth a retry, and still never a reason to trust the answer.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LogCheckError::Http(_) | LogCheckError::Status { .. } | LogCheckError::ConsistencyStatus { .. })
    }
}

/// What a number's DNS answer publishes, in the form [`Resolution`] has it: routes and key.
pub fn published(services: &[tincan_enum_core::Service], key: Option<MasterKey>) -> (Routes, Option<MasterKey>) {
    (Routes::from_naptrs(naptr_rdata(services).iter()), key)
}

/// Fetches `GET {log_url}/v1/log/proof/inclusion?number=…`: `None` when the log has no entry for the number.
pub async fn fetch_inclusion(
    http: &reqwest::Client,
    log_url: &str,
    number: &E164,
) -> Result<Option<InclusionProof>, LogCheckError> {
    // E.164 is `+` and digits: only the `+` needs escaping in a query string.
    let number_param = number.as_str().replace('+', "%2B");
    let url = format!("{}/v1/log/proof/inclusion?number={number_param}", log_url.trim_end_matches('/'));
    let response = http.get(url).send().await?;
    match response.status().as_u16() {
        200 => Ok(Some(response.json().await?)),
        404 => Ok(None),
        status => Err(LogCheckError::Status { number: number.clone(), status }),
    }
}

/// Fetches `GET {log_url}/v1/log/proof/consistency?from=…&to=…`.
///
/// A 4xx other than 429 means the log cannot prove that the tree of `from` leaves is a prefix of the tree of
/// `to` leaves, although it signed both sizes (`log_out_of_range`: it no longer has that many leaves): that is
/// [`LogCheckError::Inconsistent`]. 429 and 5xx are [`LogCheckError::ConsistencyStatus`].
pub async fn fetch_consistency(
    http: &reqwest::Client,
    log_url: &str,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, LogCheckError> {
    let url = format!("{}/v1/log/proof/consistency?from={from}&to={to}", log_url.trim_end_matches('/'));
    let response = http.get(url).send().await?;
    match response.status().as_u16() {
        200 => Ok(response.json().await?),
        status @ (400..=428 | 430..=499) => Err(LogCheckError::Inconsistent {
            seen: from,
            new: to,
            reason: format!("the log answers {status} to a consistency proof between two sizes it signed"),
        }),
        status => Err(LogCheckError::ConsistencyStatus { from, to, status }),
    }
}

/// Checks that `new` extends `seen` or the other way round (both already verified against the log's key):
/// equal sizes need equal roots, otherwise `proof` must be the consistency proof from the smaller head to the
/// larger one. `proof` may be `None` only when the sizes are equal or the smaller tree is empty.
pub fn check_consistent(
    seen: &SignedTreeHead,
    new: &SignedTreeHead,
    proof: Option<&ConsistencyProof>,
) -> Result<(), LogCheckError> {
    let inconsistent =
        |reason: String| LogCheckError::Inconsistent { seen: seen.head.tree_size, new: new.head.tree_size, reason };
    let (small, large) = if seen.head.tree_size <= new.head.tree_size { (seen, new) } else { (new, seen) };
    if small.head.tree_size == large.head.tree_size {
        return if small.head.root_hash == large.head.root_hash {
            Ok(())
        } else {
            Err(inconsistent("two different roots for the same size".into()))
        };
    }
    if small.head.tree_size == 0 {
        return Ok(());
    }
    let proof = proof.ok_or_else(|| inconsistent("no consistency proof".into()))?;
    proof.verify_between(small, large).map_err(|e| inconsistent(e.to_string()))
}

/// What a client does before it trusts `resolution`: fetches the number's inclusion proof, checks it with
/// [`check_logged`], and checks the proof's tree head against `seen`, the last head this client accepted (with
/// a consistency proof from the log when the sizes differ). Returns the head to remember next: the larger of the
/// two, or `seen` when the log has no entry for the number (an unregistered number, which `check_logged`
/// accepts only for an unregistered answer).
pub async fn check_resolution(
    http: &reqwest::Client,
    log_url: &str,
    log_key: &TreeHeadVerifier,
    resolution: &Resolution,
    seen: Option<&SignedTreeHead>,
) -> Result<Option<SignedTreeHead>, LogCheckError> {
    Ok(check_resolution_entry(http, log_url, log_key, resolution, seen).await?.head)
}

/// What [`check_resolution_entry`] found: the head to remember next, and the number's newest log entry (proven
/// in the log; `None` for an unregistered number the log has no entry for).
#[derive(Debug, Clone)]
pub struct Checked {
    /// The head to remember next (see [`check_resolution`]).
    pub head: Option<SignedTreeHead>,
    /// The entry the inclusion proof proved: a [`LogEntry::Port`] when the number's last change was a move
    /// between providers.
    pub entry: Option<LogEntry>,
}

/// [`check_resolution`], also returning the number's newest log entry, which says how the answer came to be
/// (a client shows a completed port as a move, not as a key change).
pub async fn check_resolution_entry(
    http: &reqwest::Client,
    log_url: &str,
    log_key: &TreeHeadVerifier,
    resolution: &Resolution,
    seen: Option<&SignedTreeHead>,
) -> Result<Checked, LogCheckError> {
    let proof = fetch_inclusion(http, log_url, &resolution.number).await?;
    check_logged(resolution, proof.as_ref(), log_key)?;
    let Some(proof) = proof else { return Ok(Checked { head: seen.cloned(), entry: None }) };
    // check_logged parsed it already.
    let entry = LogEntry::parse(&proof.entry).ok();
    let new = proof.sth;
    let Some(seen) = seen else { return Ok(Checked { head: Some(new), entry }) };
    log_key.verify(seen).map_err(LogCheckError::BadSignature)?;
    let (from, to) = (seen.head.tree_size.min(new.head.tree_size), seen.head.tree_size.max(new.head.tree_size));
    let consistency =
        if from == to || from == 0 { None } else { Some(fetch_consistency(http, log_url, from, to).await?) };
    check_consistent(seen, &new, consistency.as_ref())?;
    let head = if new.head.tree_size >= seen.head.tree_size { new } else { seen.clone() };
    Ok(Checked { head: Some(head), entry })
}

/// Checks that `resolution` is what the log says: the tree head is signed by `log_key`, the entry is in that
/// tree, and the entry's record publishes exactly the resolved routes and key (a deleted or never-logged number
/// must resolve as not registered).
pub fn check_logged(
    resolution: &Resolution,
    proof: Option<&InclusionProof>,
    log_key: &TreeHeadVerifier,
) -> Result<(), LogCheckError> {
    let number = &resolution.number;
    let Some(proof) = proof else {
        return if resolution.is_registered() {
            Err(LogCheckError::NotLogged { number: number.clone() })
        } else {
            Ok(())
        };
    };
    log_key.verify(&proof.sth).map_err(LogCheckError::BadSignature)?;
    proof.verify().map_err(|source| LogCheckError::Proof { number: number.clone(), source })?;
    let entry = LogEntry::parse(&proof.entry).map_err(|_| LogCheckError::WrongEntry { number: number.clone() })?;
    let (logged, record) = match entry.number_change() {
        Some((n, record)) if n == number => (n.clone(), record.cloned()),
        _ => return Err(LogCheckError::WrongEntry { number: number.clone() }),
    };
    let expected = match &record {
        Some(r) => published(&r.services, r.key),
        None => (Routes::default(), None),
    };
    let got = (resolution.routes.clone(), resolution.key);
    if got != expected {
        return Err(LogCheckError::Mismatch { number: logged, dns: describe(&got), log: describe(&expected) });
    }
    Ok(())
}

fn describe((routes, key): &(Routes, Option<MasterKey>)) -> String {
    if routes.is_empty() && key.is_none() {
        return "nothing (not registered)".into();
    }
    let mut parts = Vec::new();
    if let Some(m) = &routes.matrix {
        parts.push(format!("matrix {m}"));
    }
    parts.extend(routes.sip.iter().map(|s| format!("sip {s}")));
    if let Some(s) = &routes.sms {
        parts.push(format!("sms {s}"));
    }
    if let Some(v) = &routes.voice {
        parts.push(format!("voice {v}"));
    }
    if let Some(k) = key {
        parts.push(format!("key {k}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::ValidationStatus;
    use tincan_enum_core::{NumberRecord, Service, ServiceType};
    use tincan_translog::{TreeHead, TreeHeadSigner, consistency_proof, inclusion_proof, leaf_hash, root};

    fn entry(number: &E164, version: i64, user: Option<&str>) -> String {
        let record = user.map(|u| NumberRecord {
            number: number.clone(),
            services: vec![Service::new(ServiceType::Matrix, &format!("matrix:u/{u}:hs.test")).unwrap()],
            key: None,
        });
        LogEntry::Number { version, number: number.clone(), record, provider: Some(1), at_ms: 0 }.to_json()
    }

    fn proof_of(entries: &[String], index: usize, signer: &TreeHeadSigner) -> InclusionProof {
        let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(e.as_bytes())).collect();
        let sth = signer.sign(TreeHead { tree_size: leaves.len() as u64, timestamp_ms: 1, root_hash: root(&leaves) });
        InclusionProof {
            index: index as u64,
            entry: entries[index].clone(),
            proof: inclusion_proof(&leaves, index).unwrap(),
            sth,
        }
    }

    fn resolved(number: &E164, user: Option<&str>) -> Resolution {
        let (routes, key) = match user {
            Some(u) => published(&[Service::new(ServiceType::Matrix, &format!("matrix:u/{u}:hs.test")).unwrap()], None),
            None => (Routes::default(), None),
        };
        Resolution { number: number.clone(), routes, key, status: ValidationStatus::Secure }
    }

    #[test]
    fn a_resolution_is_checked_against_the_logged_entry() {
        let n = E164::parse("+442079460001").unwrap();
        let other = E164::parse("+442079460002").unwrap();
        let signer = TreeHeadSigner::from_seed(&[5; 32]);
        let key = signer.verifier();
        let entries = vec![entry(&n, 1, Some("alice")), entry(&other, 2, Some("bob")), entry(&n, 3, Some("carol"))];
        let p = proof_of(&entries, 2, &signer);

        check_logged(&resolved(&n, Some("carol")), Some(&p), &key).unwrap();
        let err = check_logged(&resolved(&n, Some("alice")), Some(&p), &key).unwrap_err();
        assert!(matches!(err, LogCheckError::Mismatch { .. }) && err.to_string().contains("+442079460001"), "{err}");
        assert!(matches!(
            check_logged(&resolved(&other, Some("carol")), Some(&p), &key),
            Err(LogCheckError::WrongEntry { .. })
        ));
        let mut forged = p.clone();
        forged.entry = entry(&n, 3, Some("mallory"));
        assert!(matches!(
            check_logged(&resolved(&n, Some("mallory")), Some(&forged), &key),
            Err(LogCheckError::Proof { .. })
        ));
        let stranger = TreeHeadSigner::from_seed(&[6; 32]).verifier();
        assert!(matches!(
            check_logged(&resolved(&n, Some("carol")), Some(&p), &stranger),
            Err(LogCheckError::BadSignature(_))
        ));

        // Deleted in the log: DNS must not publish it. Never logged: only an unregistered answer passes.
        let deleted = vec![entry(&n, 1, Some("alice")), entry(&n, 2, None)];
        let p = proof_of(&deleted, 1, &signer);
        check_logged(&resolved(&n, None), Some(&p), &key).unwrap();
        assert!(check_logged(&resolved(&n, Some("alice")), Some(&p), &key).is_err());
        check_logged(&resolved(&n, None), None, &key).unwrap();
        assert!(matches!(check_logged(&resolved(&n, Some("alice")), None, &key), Err(LogCheckError::NotLogged { .. })));
    }

    #[test]
    fn a_port_entry_backs_the_gaining_providers_routes() {
        let n = E164::parse("+442079460001").unwrap();
        let signer = TreeHeadSigner::from_seed(&[5; 32]);
        let record = NumberRecord {
            number: n.clone(),
            services: vec![Service::new(ServiceType::Matrix, "matrix:u/carol:b.test").unwrap()],
            key: None,
        };
        let party = |id, name: &str| tincan_translog::PortParty { provider: id, name: name.into() };
        let port =
            LogEntry::Port { version: 2, number: n.clone(), record, from: party(1, "a"), to: party(2, "b"), at_ms: 0 };
        let entries = vec![entry(&n, 1, Some("alice")), port.to_json()];
        let p = proof_of(&entries, 1, &signer);
        let resolved_b = Resolution {
            number: n.clone(),
            routes: published(&[Service::new(ServiceType::Matrix, "matrix:u/carol:b.test").unwrap()], None).0,
            key: None,
            status: ValidationStatus::Secure,
        };
        check_logged(&resolved_b, Some(&p), &signer.verifier()).unwrap();
        let err = check_logged(&resolved(&n, Some("alice")), Some(&p), &signer.verifier()).unwrap_err();
        assert!(matches!(err, LogCheckError::Mismatch { .. }), "the old route is not what the port published: {err}");
    }

    #[test]
    fn a_later_head_must_extend_the_one_seen_before() {
        let signer = TreeHeadSigner::from_seed(&[5; 32]);
        let honest: Vec<_> = (0..9).map(|i| leaf_hash(format!("leaf {i}").as_bytes())).collect();
        let head = |leaves: &[tincan_translog::Hash]| {
            signer.sign(TreeHead { tree_size: leaves.len() as u64, timestamp_ms: 1, root_hash: root(leaves) })
        };
        let proof = |leaves: &[tincan_translog::Hash], from: usize| ConsistencyProof {
            from: from as u64,
            to: leaves.len() as u64,
            from_root: root(&leaves[..from]),
            to_root: root(leaves),
            proof: consistency_proof(leaves, from).unwrap(),
        };
        let (seen, later) = (head(&honest[..5]), head(&honest));
        let p = proof(&honest, 5);
        check_consistent(&seen, &later, Some(&p)).unwrap();
        // An older head shown after a newer one is fine when the newer extends it.
        check_consistent(&later, &seen, Some(&p)).unwrap();
        check_consistent(&seen, &seen, None).unwrap();
        check_consistent(&head(&[]), &later, None).unwrap();

        // A fork: the same first five sizes, one leaf rewritten, then grown.
        let mut forked = honest.clone();
        forked[2] = leaf_hash(b"forged");
        let fork = head(&forked);
        let forged_proof = proof(&forked, 5);
        let err = check_consistent(&seen, &fork, Some(&forged_proof)).unwrap_err();
        assert!(matches!(err, LogCheckError::Inconsistent { seen: 5, new: 9, .. }), "{err}");
        assert!(matches!(check_consistent(&seen, &fork, Some(&p)), Err(LogCheckError::Inconsistent { .. })));
        assert!(matches!(check_consistent(&later, &fork, None), Err(LogCheckError::Inconsistent { .. })));
        assert!(matches!(check_consistent(&seen, &later, None), Err(LogCheckError::Inconsistent { .. })));
        assert!(!err.is_unavailable());
    }
}
