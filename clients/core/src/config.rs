//! Where the client keeps its data and which services it talks to.

use std::net::SocketAddr;
use std::path::PathBuf;
use url::Url;

/// Configuration of a [`TincanClient`](crate::TincanClient).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The data dir: matrix-sdk's SQLite store (`matrix/`) and our `state.json`.
    pub data_dir: PathBuf,
    /// The homeserver extension (`tincan-ext`), for sign-up, key publishing and contact import.
    pub ext_url: Option<Url>,
    /// The directory, for `resolve` and key verification.
    pub directory: Option<DirectoryConfig>,
    /// The display name of new devices.
    pub device_name: String,
}

impl ClientConfig {
    /// A configuration with only a data dir (no extension, no directory).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into(), ext_url: None, directory: None, device_name: "tincan".into() }
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
    /// `trust-anchors` clause (what `tincan-directory keys ds` prints).
    pub trust_anchor: String,
    /// Accept unsigned answers (development only; bogus answers are an error either way).
    pub allow_insecure: bool,
}
