//! Where the client keeps its data and which services it talks to.

use crate::at_rest::StoreKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use url::Url;

/// Configuration of a [`TincanClient`](crate::TincanClient).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The data dir: matrix-sdk's SQLite store (`matrix/`) and our `state.json`; made private (0700).
    pub data_dir: PathBuf,
    /// The homeserver extension (`tincan-ext`), for sign-up, key publishing and contact import.
    pub ext_url: Option<Url>,
    /// The directory, for `resolve` and key verification.
    pub directory: Option<DirectoryConfig>,
    /// The display name of new devices.
    pub device_name: String,
    /// The key that encrypts the data dir (matrix-sdk's stores and the access token). Default: the key file
    /// `store.key` in the data dir, made on first run.
    pub store_key: StoreKey,
    /// The charter's trust list: the directory's anchor and log key, the providers one may sign up with and
    /// whose users can be verified (see [`charter`](crate::charter)). `None`: no list, flags only.
    pub charter: Option<crate::charter::CharterConfig>,
    /// Where the session (user, device, sealed access token) is kept: `None` in the data dir's state file, or
    /// the app's own store (a keychain/keystore, see [`session`](crate::session)).
    pub session_store: Option<Arc<dyn crate::session::SessionStore>>,
    /// While a session is open, how often the client tells the extension this device is active, which keeps
    /// the account's registration lock from lapsing (the extension's lapse is 7 days by default). Default: a
    /// day.
    pub activity_report_every: std::time::Duration,
}

impl ClientConfig {
    /// A configuration with only a data dir (no extension, no directory), its key in `<data_dir>/store.key`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let store_key = StoreKey::File(data_dir.join(crate::at_rest::KEY_FILE));
        Self {
            data_dir,
            ext_url: None,
            directory: None,
            device_name: "tincan".into(),
            store_key,
            charter: None,
            session_store: None,
            activity_report_every: std::time::Duration::from_secs(86_400),
        }
    }
}

/// How to reach and trust the ENUM directory.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// DNS servers to ask (the directory itself or a DNSSEC-aware resolver).
    pub servers: Vec<SocketAddr>,
    /// The ENUM apex, e.g. `e164.tincan.test.`.
    pub apex: String,
    /// The trust anchor of the apex, as text: a DS or DNSKEY record in presentation format, or a
    /// `trust-anchors` clause (what `tincan-directory keys ds` prints). Empty: taken from the charter's trust
    /// list (its directory with this apex), together with the transparency log unless `log` is set.
    pub trust_anchor: String,
    /// Accept unsigned answers (development only; bogus answers are an error either way). An unsigned answer
    /// never makes a contact verified, whatever this says.
    pub allow_insecure: bool,
    /// The directory's transparency log. Every answer [`check_contact`](crate::TincanClient::check_contact)
    /// uses is checked against it; without it no contact counts as verified
    /// ([`KeyStatus::NoTransparencyLog`](crate::KeyStatus::NoTransparencyLog)).
    pub log: Option<TransparencyLogConfig>,
}

impl DirectoryConfig {
    /// The directory answering on `servers` for `apex`, trusted through `trust_anchor` (empty: the charter's
    /// list), signed answers only, no transparency log ([`with_log`](Self::with_log)).
    pub fn new(servers: Vec<SocketAddr>, apex: impl Into<String>, trust_anchor: impl Into<String>) -> Self {
        Self { servers, apex: apex.into(), trust_anchor: trust_anchor.into(), allow_insecure: false, log: None }
    }

    /// With the directory's transparency log.
    pub fn with_log(self, log: TransparencyLogConfig) -> Self {
        Self { log: Some(log), ..self }
    }
}

/// Where the directory's transparency log is and which key signs its tree heads.
#[derive(Debug, Clone)]
pub struct TransparencyLogConfig {
    /// The directory's API base URL (it serves `/v1/log/…`).
    pub url: Url,
    /// The log's Ed25519 public key, unpadded base64: pinned out of band like the trust anchor (the `log_key`
    /// of the directory's `GET /v1/log/sth`, checked with its operator).
    pub key: String,
}
