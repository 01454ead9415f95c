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
    /// The transparency log.
    pub log: LogConfig,
    /// Zone transfer to secondaries (AXFR/IXFR, NOTIFY, TSIG).
    pub xfr: crate::xfr::XfrConfig,
    /// Number porting between providers.
    pub ports: PortsConfig,
}

/// Number porting between providers (`/v1/ports`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortsConfig {
    /// How long the losing provider has to release or object, in seconds; without either the port completes at
    /// its end. Default 86400 (one day).
    pub window_secs: u64,
    /// How often `serve` completes the ports whose window ended, in seconds. Default 30.
    pub check_interval_secs: u64,
    /// Where each provider (by its name) is told about its ports: `POST URL` with
    /// `{"port_id":N,"event":"filed"|"completed"|"objected"|"cancelled"}`. The body carries no detail and
    /// needs no signature: the provider reads the port through `GET /v1/ports/{id}` with its token.
    pub webhooks: std::collections::BTreeMap<String, String>,
}

impl Default for PortsConfig {
    fn default() -> Self {
        PortsConfig { window_secs: 86_400, check_interval_secs: 30, webhooks: Default::default() }
    }
}

/// The transparency log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Bearer tokens of auditors, who may read every log entry (`GET /v1/log/entries`) in clear. Providers see
    /// only their own entries in clear; everyone may fetch tree heads and proofs.
    pub auditor_tokens: Vec<Secret>,
}

/// The database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…` (may hold a password, so it is redacted when printed). Default:
    /// `sqlite://<data dir>/directory.sqlite3`.
    pub url: Option<Secret>,
    /// How often `serve` reads the change journal for changes written by another process (`numbers import`)
    /// or another node on the same database, in milliseconds. Default 250.
    pub follow_interval_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, follow_interval_ms: 250 }
    }
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
    /// The DNS server's own settings (workers, TCP limits, response rate limiting, the signing budget).
    pub server: crate::dns::ServerConfig,
    /// The zone's TTLs, SOA timers and signature validity.
    pub zone: ZoneSettings,
    /// The key rollover schedule.
    pub rollover: crate::rollover::RolloverConfig,
}

/// The zone's TTLs, SOA timers and signature validity, in seconds (mapped onto [`crate::dns::ZoneConfig`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoneSettings {
    /// Name servers in the apex NS RRset (the first is the SOA MNAME). Default `ns1.<apex>`.
    pub name_servers: Vec<String>,
    /// SOA RNAME, the hostmaster's mailbox as a name. Default `hostmaster.<apex>`.
    pub hostmaster: Option<String>,
    /// TTL of NAPTR and TXT records.
    pub record_ttl: u32,
    /// TTL of SOA, NS and DNSKEY.
    pub apex_ttl: u32,
    /// SOA refresh.
    pub soa_refresh: u32,
    /// SOA retry.
    pub soa_retry: u32,
    /// SOA expire.
    pub soa_expire: u32,
    /// SOA minimum: the negative-answer TTL.
    pub negative_ttl: u32,
    /// How long a signature is valid from its inception.
    pub signature_validity: u32,
    /// Re-sign when less than this remains of a signature's validity.
    pub signature_refresh: u32,
    /// How far inception is backdated for validators with slow clocks.
    pub inception_skew: u32,
    /// Validity of the online-signed NSEC of negative answers.
    pub negative_signature_validity: u32,
    /// How many negative-answer NSEC signatures are cached (about 150 bytes each; 0 turns the cache off).
    pub negative_cache_entries: usize,
}

impl Default for ZoneSettings {
    fn default() -> Self {
        let z = crate::dns::ZoneConfig::default();
        ZoneSettings {
            name_servers: z.name_servers.iter().map(Name::to_ascii).collect(),
            hostmaster: z.hostmaster.as_ref().map(Name::to_ascii),
            record_ttl: z.record_ttl,
            apex_ttl: z.apex_ttl,
            soa_refresh: z.soa_refresh,
            soa_retry: z.soa_retry,
            soa_expire: z.soa_expire,
            negative_ttl: z.negative_ttl,
            signature_validity: z.signature_validity,
            signature_refresh: z.signature_refresh,
            inception_skew: z.inception_skew,
            negative_signature_validity: z.negative_signature_validity,
            negative_cache_entries: z.negative_cache_entries,
        }
    }
}

fn fqdn(s: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut n = Name::from_ascii(s)?.to_lowercase();
    n.set_fqdn(true);
    Ok(n)
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5353)),
            apex: "e164.tincan.test.".into(),
            algorithm: KeyAlgorithm::EcdsaP256,
            server: crate::dns::ServerConfig::default(),
            zone: ZoneSettings::default(),
            rollover: crate::rollover::RolloverConfig::default(),
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
    /// Per-client (IPv4 address, IPv6 /64) rate limit of the public reads: `/v1/log/sth` and the log's proofs.
    pub public_rate_limit: RateLimitConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8053)),
            rate_limit: RateLimitConfig::default(),
            public_rate_limit: crate::api::default_public_limit(),
        }
    }
}

impl Validate for DirectoryConfig {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.apex() {
            problems.push(format!("dns.apex: {e}"));
        }
        let zone = &self.dns.zone;
        for (i, ns) in zone.name_servers.iter().enumerate() {
            if let Err(e) = fqdn(ns) {
                problems.push(format!("dns.zone.name_servers[{i}]: {e}"));
            }
        }
        if let Some(Err(e)) = zone.hostmaster.as_deref().map(fqdn) {
            problems.push(format!("dns.zone.hostmaster: {e}"));
        }
        if zone.signature_refresh >= zone.signature_validity {
            problems.push("dns.zone.signature_refresh: must be shorter than dns.zone.signature_validity".into());
        }
        if let Some(url) = &self.database.url {
            let u = url.expose();
            if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                problems.push("database.url: must start with sqlite:// or postgres://".into());
            }
        }
        if self.database.follow_interval_ms == 0 {
            problems.push("database.follow_interval_ms: must be at least 1".into());
        }
        if self.ports.check_interval_secs == 0 {
            problems.push("ports.check_interval_secs: must be at least 1".into());
        }
        for (provider, url) in &self.ports.webhooks {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!("ports.webhooks.{provider}: must be an http:// or https:// URL"));
            }
        }
        let rate = self.api.rate_limit.per_second;
        if rate.is_nan() || rate <= 0.0 {
            problems.push("api.rate_limit.per_second: must be greater than 0".into());
        }
        if self.api.rate_limit.burst == 0 {
            problems.push("api.rate_limit.burst: must be at least 1".into());
        }
        let public = self.api.public_rate_limit;
        if public.per_second.is_nan() || public.per_second <= 0.0 {
            problems.push("api.public_rate_limit.per_second: must be greater than 0".into());
        }
        if public.burst == 0 {
            problems.push("api.public_rate_limit.burst: must be at least 1".into());
        }
        let budget = &self.dns.server.signing_budget;
        if budget.signatures_per_second.is_nan() || budget.signatures_per_second < 0.0 {
            problems.push("dns.server.signing_budget.signatures_per_second: must be 0 (off) or more".into());
        }
        if budget.signatures_per_second > 0.0 && budget.burst == 0 {
            problems.push("dns.server.signing_budget.burst: must be at least 1 (or signatures_per_second 0)".into());
        }
        let server = &self.dns.server;
        if server.tcp_max_connections_per_client == 0 || server.tcp_max_queries_per_connection == 0 {
            problems.push(
                "dns.server.tcp_max_connections_per_client and tcp_max_queries_per_connection: must be at least 1"
                    .into(),
            );
        }
        if self.dns.listen == self.api.listen {
            problems.push("api.listen: must differ from dns.listen".into());
        }
        problems.extend(self.xfr.problems());
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

    /// The DNS engine's zone settings: `dns.zone` with the apex from `dns.apex`.
    pub fn zone(&self) -> Result<crate::dns::ZoneConfig, ApexError> {
        let z = &self.dns.zone;
        Ok(crate::dns::ZoneConfig {
            apex: self.apex()?,
            name_servers: z.name_servers.iter().map(|n| fqdn(n)).collect::<Result<_, _>>()?,
            hostmaster: z.hostmaster.as_deref().map(fqdn).transpose()?,
            record_ttl: z.record_ttl,
            apex_ttl: z.apex_ttl,
            soa_refresh: z.soa_refresh,
            soa_retry: z.soa_retry,
            soa_expire: z.soa_expire,
            negative_ttl: z.negative_ttl,
            signature_validity: z.signature_validity,
            signature_refresh: z.signature_refresh,
            inception_skew: z.inception_skew,
            negative_signature_validity: z.negative_signature_validity,
            negative_cache_entries: z.negative_cache_entries,
        })
    }

    /// The rollover waits for this zone's TTLs and the schedule.
    pub fn rollover_policy(&self) -> crate::rollover::Policy {
        let z = &self.dns.zone;
        crate::rollover::Policy::new(&self.dns.rollover, z.apex_ttl, z.record_ttl.max(z.negative_ttl).max(z.apex_ttl))
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
        c.dns.zone.signature_refresh = c.dns.zone.signature_validity;
        assert_eq!(c.validate().len(), 4, "{:?}", c.validate());
    }

    #[test]
    fn zone_settings_map_onto_the_engine() {
        let mut c = DirectoryConfig::default();
        c.dns.apex = "e164.example".into();
        c.dns.zone.record_ttl = 60;
        c.dns.zone.name_servers = vec!["NS.Example".into()];
        let z = c.zone().unwrap();
        assert_eq!(z.apex.to_ascii(), "e164.example.");
        assert_eq!(z.name_servers[0].to_ascii(), "ns.example.");
        assert_eq!((z.record_ttl, z.signature_validity), (60, crate::dns::ZoneConfig::default().signature_validity));
    }

    #[test]
    fn database_defaults_to_sqlite_in_the_data_dir() {
        let c = DirectoryConfig { data_dir: Some("/d".into()), ..Default::default() };
        assert_eq!(c.database_url().expose(), "sqlite:///d/directory.sqlite3");
    }
}
