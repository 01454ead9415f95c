//! `tincan-directory audit`: checks a directory from outside, through its public interfaces only.
//!
//! 1. The current signed tree head (`GET /v1/log/sth`) is signed by the log key (`--log-key`, pinned; else the
//!    key the directory serves, which only proves self-consistency).
//! 2. With `--from-sth FILE` (a tree head saved by an earlier audit, `--save-sth`): the log only grew since
//!    (a verified consistency proof between the two heads).
//! 3. With `--token` (an auditor's or a provider's): every entry readable in clear hashes to its leaf, and the
//!    leaves hash to the signed root; the newest entry per number is what the log says DNS should publish.
//! 4. With `--dns ADDR --anchor DS|FILE` (the global `--dns`: here the server to query): for a sample of numbers (`--sample`, spread evenly over the numbers
//!    found in step 3, plus every `--number`), the DNSSEC-validated DNS answer (`tincan-enum-lookup`) equals the
//!    log's newest entry, and the log's inclusion proof for that entry verifies against the signed head.
//!
//! Any failure ends the audit with an error naming the number (or the log entry) at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;
use tincan_enum_core::{E164, NumberRecord};
use tincan_enum_lookup::log::{LogCheckError, check_logged, fetch_inclusion};
use tincan_enum_lookup::{Lookup, LookupConfig, TrustAnchor};
use tincan_translog::wire::{ConsistencyProof, Entries, SthResponse};
use tincan_translog::{LogEntry, SignedTreeHead, TreeHeadVerifier, leaf_hash, root};

/// What to audit and how.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Base URL of the directory's API, e.g. http://127.0.0.1:8053.
    #[arg(long)]
    pub url: String,
    /// The log's public key (unpadded base64), pinned. Default: trust the key the directory serves.
    #[arg(long, value_name = "BASE64")]
    pub log_key: Option<String>,
    /// A signed tree head saved by an earlier audit: the log must be consistent with it.
    #[arg(long, value_name = "FILE")]
    pub from_sth: Option<PathBuf>,
    /// Where to save the verified current tree head (for the next `--from-sth`).
    #[arg(long, value_name = "FILE")]
    pub save_sth: Option<PathBuf>,
    /// Bearer token to read log entries (an auditor token, or a provider's for its own numbers).
    #[arg(long, env = "TINCAN_AUDIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust anchor of the apex: a DS or DNSKEY line, or a file holding them (what `keys ds` prints).
    #[arg(long, value_name = "DS|FILE")]
    pub anchor: Option<String>,
    /// How many logged numbers to check in DNS (spread over all of them).
    #[arg(long, default_value_t = 100)]
    pub sample: usize,
    /// A number to check in DNS in any case (repeatable; works without a token).
    #[arg(long = "number", value_name = "E164")]
    pub numbers: Vec<E164>,
}

/// Why an audit failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The directory could not be asked.
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The directory answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A saved tree head does not parse.
    #[error("{path}: not a signed tree head: {source}")]
    SavedSth {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The log key does not parse.
    #[error("--log-key: {0}")]
    LogKey(tincan_translog::Error),
    /// A tree head is not signed by the log key.
    #[error("the {which} tree head (size {size}) is not signed by the log key: {source}")]
    Signature {
        /// `current` or `saved`.
        which: &'static str,
        /// Its size.
        size: u64,
        /// Why.
        source: tincan_translog::Error,
    },
    /// The log is not an extension of the saved head.
    #[error("the log of {to} entries is not consistent with the saved tree head of {from}: {reason}")]
    Inconsistent {
        /// The saved size.
        from: u64,
        /// The current size.
        to: u64,
        /// Why.
        reason: String,
    },
    /// An entry's text does not hash to its leaf.
    #[error("log entry {index} ({}) was altered: it does not hash to its leaf", .number.as_ref().map_or("no number".into(), |n| n.to_string()))]
    AlteredEntry {
        /// The leaf index.
        index: u64,
        /// The number the (altered) entry names.
        number: Option<E164>,
    },
    /// The leaves do not hash to the signed root.
    #[error("the log's {size} leaves do not hash to the signed root")]
    RootMismatch {
        /// The tree size.
        size: u64,
    },
    /// The trust anchor does not parse or fit.
    #[error("--anchor: {0}")]
    Anchor(String),
    /// DNS could not be resolved or validated for a number.
    #[error("{number}: DNS lookup failed: {source}")]
    Lookup {
        /// The number.
        number: E164,
        /// Why.
        source: tincan_enum_lookup::LookupError,
    },
    /// DNS and the log disagree about a number (or its proof fails).
    #[error(transparent)]
    Logged(#[from] LogCheckError),
    /// The logged record and the log's inclusion proof disagree.
    #[error("{number}: the log's entries and its inclusion proof disagree about the newest entry")]
    ProofEntry {
        /// The number.
        number: E164,
    },
}

/// What a passing audit checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// The verified tree size.
    pub tree_size: u64,
    /// Whether consistency with a saved head was proven.
    pub consistent_with: Option<u64>,
    /// Entries read in clear and checked against their leaves.
    pub entries_checked: usize,
    /// Numbers whose DNS answer was checked against the log.
    pub numbers_checked: usize,
}

/// Runs the audit; `dns` is the DNS server to check answers against (the directory or a secondary).
pub async fn run(args: &AuditArgs, dns: Option<SocketAddr>) -> Result<AuditReport, AuditError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| AuditError::Http { url: args.url.clone(), source })?;
    let base = args.url.trim_end_matches('/').to_owned();
    let mut report = AuditReport::default();

    let current: SthResponse = get_json(&http, &format!("{base}/v1/log/sth"), None).await?;
    let verifier = TreeHeadVerifier::from_base64(args.log_key.as_deref().unwrap_or(&current.log_key))
        .map_err(AuditError::LogKey)?;
    if args.log_key.is_none() {
        tracing::warn!("no --log-key given: trusting the key the directory serves");
    }
    let sth = current.sth;
    let size = sth.head.tree_size;
    verifier.verify(&sth).map_err(|source| AuditError::Signature { which: "current", size, source })?;
    report.tree_size = size;

    if let Some(path) = &args.from_sth {
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::File { path: path.clone(), source })?;
        let old: SignedTreeHead =
            serde_json::from_str(&text).map_err(|source| AuditError::SavedSth { path: path.clone(), source })?;
        let from = old.head.tree_size;
        verifier.verify(&old).map_err(|source| AuditError::Signature { which: "saved", size: from, source })?;
        let inconsistent = |reason: String| AuditError::Inconsistent { from, to: size, reason };
        if from > size {
            return Err(inconsistent("the log shrank".into()));
        }
        let proof: ConsistencyProof =
            get_json(&http, &format!("{base}/v1/log/proof/consistency?from={from}&to={size}"), None).await?;
        proof.verify_between(&old, &sth).map_err(|e| inconsistent(e.to_string()))?;
        report.consistent_with = Some(from);
    }

    // The newest record per number, as the log tells it (None: deleted).
    let mut latest: BTreeMap<E164, Option<NumberRecord>> = BTreeMap::new();
    if let Some(token) = &args.token {
        let mut leaves = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while (leaves.len() as u64) < size {
            let start = leaves.len() as u64;
            let page: Entries =
                get_json(&http, &format!("{base}/v1/log/entries?start={start}&end={size}"), Some(token)).await?;
            if page.entries.is_empty() {
                return Err(AuditError::RootMismatch { size });
            }
            for e in page.entries {
                if let Some(text) = &e.entry {
                    let parsed = LogEntry::parse(text).ok();
                    let number = parsed.as_ref().and_then(|p| p.number().cloned());
                    if leaf_hash(text.as_bytes()) != e.leaf_hash {
                        return Err(AuditError::AlteredEntry { index: e.index, number });
                    }
                    if let Some((number, record)) = parsed.as_ref().and_then(LogEntry::number_change) {
                        latest.insert(number.clone(), record.cloned());
                    }
                    report.entries_checked += 1;
                }
                leaves.push(e.leaf_hash);
            }
        }
        if root(&leaves) != sth.head.root_hash {
            return Err(AuditError::RootMismatch { size });
        }
    }

    if args.anchor.is_some() && dns.is_none() {
        return Err(AuditError::Anchor("--anchor needs --dns ADDR, the server to check".into()));
    }
    if let (Some(dns), Some(anchor_text)) = (dns, args.anchor.as_deref()) {
        let anchor_text = if std::path::Path::new(anchor_text).is_file() {
            std::fs::read_to_string(anchor_text)
                .map_err(|source| AuditError::File { path: anchor_text.into(), source })?
        } else {
            anchor_text.to_owned()
        };
        let anchor = TrustAnchor::parse(&anchor_text).map_err(|e| AuditError::Anchor(e.to_string()))?;
        let apex: Name = anchor.zone().clone();
        let lookup =
            Lookup::new(LookupConfig::new(vec![dns], apex, anchor)).map_err(|e| AuditError::Anchor(e.to_string()))?;
        let mut sample: Vec<E164> = spread(latest.keys(), args.sample);
        for n in &args.numbers {
            if !sample.contains(n) {
                sample.push(n.clone());
            }
        }
        for number in sample {
            let resolution = lookup
                .resolve(&number)
                .await
                .map_err(|source| AuditError::Lookup { number: number.clone(), source })?;
            let proof = fetch_inclusion(&http, &base, &number).await?;
            check_logged(&resolution, proof.as_ref(), &verifier)?;
            // The proof's entry must be the newest one the entries listed (when the tree did not grow since).
            if let (Some(p), Some(expected)) = (&proof, latest.get(&number))
                && p.sth.head.tree_size == size
                && !LogEntry::parse(&p.entry)
                    .is_ok_and(|e| e.number_change().is_some_and(|(_, record)| record == expected.as_ref()))
            {
                return Err(AuditError::ProofEntry { number });
            }
            report.numbers_checked += 1;
        }
    }

    if let Some(path) = &args.save_sth {
        let text = serde_json::to_string_pretty(&sth).expect("a tree head serialises");
        std::fs::write(path, text).map_err(|source| AuditError::File { path: path.clone(), source })?;
    }
    Ok(report)
}

/// At most `n` items spread evenly over `items`.
fn spread<'a>(items: impl ExactSizeIterator<Item = &'a E164>, n: usize) -> Vec<E164> {
    let len = items.len();
    if n == 0 || len == 0 {
        return Vec::new();
    }
    let step = len.div_ceil(n);
    items.step_by(step.max(1)).cloned().collect()
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<T, AuditError> {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let http_err = |source| AuditError::Http { url: url.to_owned(), source };
    let response = req.send().await.map_err(http_err)?;
    if !response.status().is_success() {
        return Err(AuditError::Status { url: url.to_owned(), status: response.status().as_u16() });
    }
    response.json().await.map_err(http_err)
}
