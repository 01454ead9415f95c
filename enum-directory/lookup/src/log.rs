//! Checking a resolved number against the directory's transparency log: [`fetch_inclusion`] asks the
//! directory's log API for the proof that the number's newest entry is in the log, and [`check_logged`] verifies
//! the signed tree head with the log's pinned key, the proof, and that the entry says what DNS said.

use tincan_enum_core::{E164, MasterKey, naptr_rdata};
use tincan_translog::wire::InclusionProof;
use tincan_translog::{LogEntry, TreeHeadVerifier};

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
    let (logged, record) = match LogEntry::parse(&proof.entry) {
        Ok(LogEntry::Number { number: n, record, .. }) if &n == number => (n, record),
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
