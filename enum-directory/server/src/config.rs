//! The directory's configuration: embedded defaults, then an optional TOML file, then `TINCAN_DIRECTORY_…`
//! environment variables, then command-line overrides (`--data-dir`, `--dns`, `--api`, `--apex`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use tincan_common::Secret;
use tincan_common::config::Validate;

use crate::api::RateLimitConfig;
use crate::storage::KeyAlgorithm;

/// The environment prefix of every setting (`TINCAN_DIRECTORY_DNS__LISTEN=…`).
pub const ENV_PREFIX: &str = "TINCAN_DIRECTORY_";

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// Where the SQLite database (when no URL is set) lives. Default: the platform data dir,
    /// `$XDG_DATA_HOME/tincan-directory` or `~/.local/share/tincan-directory`.
    pub data_dir: Option<PathBuf>,
    /// The database.
    pub database: DatabaseConfig,
    /// The authoritative DNS server.
    pub dns: DnsConfig,
    /// The registrar HTTP API.
    pub api: ApiConfig,
}

/// The database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…` (may hold a password, so it is redacted when printed). Default:
    /// `sqlite://<data dir>/directory.sqlite3`.
    pub url: Option<Secret>,
}

/// The authoritative DNS server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// UDP and TCP listen address.
    pub listen: SocketAddr,
    /// The zone apex, e.g. `e164.tincan.test.`.
    pub apex: String,
    /// The algorithm of keys generated for the zone.
    pub algorithm: KeyAlgorithm,
    /// The DNS server's own settings (workers, TCP limits, response rate limiting).
    pub server: crate::dns::ServerConfig,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5353)),
            apex: "e164.tincan.test.".into(),
            algorithm: KeyAlgorithm::EcdsaP256,
            server: crate::dns::ServerConfig::default(),
        }
    }
}

/// The registrar HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Per-provider rate limit.
    pub rate_limit: RateLimitConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: SocketAddr::from(([127, 0, 0, 1], 8053)), rate_limit: RateLimitConfig::default() }
    }
}

impl Validate for DirectoryConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.apex() {
            problems.push(format!("dns.apex: {e}"));
        }
        if let Some(url) = &self.database.url {
            let u = url.expose();
            if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                problems.push("database.url: must start with sqlite:// or postgres://".into());
            }
        }
        let rate = self.api.rate_limit.per_second;
        if rate.is_nan() || rate <= 0.0 {
            problems.push("api.rate_limit.per_second: must be greater than 0".into());
        }
        if self.api.rate_limit.burst == 0 {
            problems.push("api.rate_limit.burst: must be at least 1".into());
        }
        if self.dns.listen == self.api.listen {
            problems.push("api.listen: must differ from dns.listen".into());
        }
        problems
    }
}

/// Why the apex is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ApexError {
    /// Not a domain name.
    #[error("not a domain name: {0}")]
    Syntax(#[from] hickory_proto::ProtoError),
    /// The root cannot be an ENUM apex.
    #[error("the root cannot be the apex")]
    Root,
    /// Too long to leave room for 15 digit labels.
    #[error("too long: an ENUM name adds 30 octets to the apex")]
    TooLong,
}

impl DirectoryConfig {
    /// The apex as a fully qualified, lowercase name.
    pub fn apex(&self) -> Result<Name, ApexError> {
        let mut name = Name::from_ascii(&self.dns.apex)?.to_lowercase();
        name.set_fqdn(true);
        if name.is_root() {
            return Err(ApexError::Root);
        }
        if name.len() + 30 > 255 {
            return Err(ApexError::TooLong);
        }
        Ok(name)
    }

    /// The data directory: configured, or the platform default.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// The database URL: configured, or SQLite in the data directory.
    pub fn database_url(&self) -> Secret {
        self.database.url.clone().unwrap_or_else(|| sqlite_url(&self.data_dir().join("directory.sqlite3")))
    }
}

fn sqlite_url(path: &Path) -> Secret {
    Secret::new(format!("sqlite://{}", path.display()))
}

/// `$XDG_DATA_HOME/tincan-directory`, else `$HOME/.local/share/tincan-directory`, else `./tincan-directory`.
pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tincan-directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = DirectoryConfig::default();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.apex().unwrap().to_ascii(), "e164.tincan.test.");
        assert_eq!(c.dns.listen.to_string(), "127.0.0.1:5353");
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:8053");
    }

    #[test]
    fn apex_is_normalised_and_checked() {
        let mut c = DirectoryConfig::default();
        c.dns.apex = "E164.Example".into();
        assert_eq!(c.apex().unwrap().to_ascii(), "e164.example.");
        c.dns.apex = ".".into();
        assert!(c.apex().is_err());
        c.database.url = Some(Secret::new("mysql://x"));
        c.api.rate_limit.burst = 0;
        assert_eq!(c.validate().len(), 3, "{:?}", c.validate());
    }

    #[test]
    fn database_defaults_to_sqlite_in_the_data_dir() {
        let c = DirectoryConfig { data_dir: Some("/d".into()), ..Default::default() };
        assert_eq!(c.database_url().expose(), "sqlite:///d/directory.sqlite3");
    }
}
