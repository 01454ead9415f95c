//! The gateway's configuration: embedded defaults, then an optional TOML file, then `TINCAN_GATEWAY_…`
//! environment variables (`__` for nesting, `…_FILE` for secrets), then command-line overrides
//! (`--data-dir`, `--api`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tincan_common::Secret;
use tincan_common::config::Validate;

use crate::api::RateLimitConfig;
use crate::ledger::LedgerConfig;
use crate::money::Currency;

/// The environment prefix of every setting (`TINCAN_GATEWAY_API__LISTEN=…`).
pub const ENV_PREFIX: &str = "TINCAN_GATEWAY_";

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where the SQLite database (when no URL is set) lives. Default: `$XDG_DATA_HOME/tincan-gateway` or
    /// `~/.local/share/tincan-gateway`.
    pub data_dir: Option<PathBuf>,
    /// The database.
    pub database: DatabaseConfig,
    /// The provider API.
    pub api: ApiConfig,
    /// The ledger's hold workers and hold lifetimes.
    pub ledger: LedgerConfig,
    /// Accounts.
    pub accounts: AccountsConfig,
    /// Fraud limits for every account.
    pub fraud: crate::fraud::FraudConfig,
    /// The homeserver whose users sign in (Matrix OpenID).
    pub homeserver: crate::api::HomeserverConfig,
    /// Vouchers.
    pub vouchers: VouchersConfig,
    /// Payment webhooks.
    pub payments: crate::payments::PaymentsConfig,
    /// Calls to the phone network (the SIP side); off unless a listener is set.
    pub calls: crate::calls::CallsConfig,
    /// The users' web page; off unless `portal.ext_url` is set.
    pub portal: crate::portal::PortalConfig,
}

/// Vouchers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VouchersConfig {
    /// Redemption attempts per account: a burst, then this many per minute. Default 10, 5.
    pub attempts_burst: u32,
    /// Attempts per minute after the burst.
    pub attempts_per_minute: u32,
}

impl Default for VouchersConfig {
    fn default() -> Self {
        VouchersConfig { attempts_burst: 10, attempts_per_minute: 5 }
    }
}

/// The database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…` (may hold a password, so it is redacted when printed). Default:
    /// `sqlite://<data dir>/gateway.sqlite3`.
    pub url: Option<Secret>,
}

/// The provider API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address. Default `127.0.0.1:8095`.
    pub listen: SocketAddr,
    /// Per-caller rate limit (every token; every client address before sign-in).
    pub rate_limit: RateLimitConfig,
    /// The largest rate deck `PUT /v1/plans/{plan}/rates` takes, in bytes (bigger: 413). Default 8 MiB.
    pub max_deck_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8095)),
            rate_limit: RateLimitConfig::default(),
            max_deck_bytes: crate::api::DEFAULT_MAX_DECK_BYTES,
        }
    }
}

/// Accounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// The currency of accounts created on first use. Default `EUR`.
    pub currency: Currency,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig { currency: "EUR".parse().expect("a valid code") }
    }
}

impl Validate for GatewayConfig {
    fn validate(&self) -> Vec<String> {
        let mut p = self.ledger.problems();
        p.extend(self.fraud.problems());
        p.extend(self.calls.problems());
        p.extend(self.portal.problems());
        if self.api.max_deck_bytes == 0 {
            p.push("api.max_deck_bytes: at least 1".into());
        }
        if let Some(url) = &self.database.url {
            let u = url.expose();
            if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                p.push("database.url: sqlite://PATH or postgres://…".into());
            }
        }
        if url::Url::parse(&self.homeserver.url).is_err() {
            p.push("homeserver.url: a URL like http://127.0.0.1:8008".into());
        }
        if self.homeserver.server_name.is_empty() {
            p.push("homeserver.server_name: the homeserver's server name".into());
        }
        if self.api.rate_limit.burst == 0 {
            p.push("api.rate_limit.burst: at least 1".into());
        }
        p
    }
}

impl GatewayConfig {
    /// The data directory: configured, or the platform default.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// The database URL: configured, or SQLite in the data directory.
    pub fn database_url(&self) -> Secret {
        self.database.url.clone().unwrap_or_else(|| sqlite_url(&self.data_dir().join("gateway.sqlite3")))
    }
}

fn sqlite_url(path: &Path) -> Secret {
    Secret::new(format!("sqlite://{}", path.display()))
}

/// `$XDG_DATA_HOME/tincan-gateway`, else `$HOME/.local/share/tincan-gateway`, else `./tincan-gateway`.
pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tincan-gateway")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_common::config::load_config_from;

    #[test]
    fn defaults_validate_and_env_overrides_apply() {
        let c: GatewayConfig = load_config_from(
            None,
            ENV_PREFIX,
            [
                ("TINCAN_GATEWAY_API__LISTEN".to_string(), "127.0.0.1:9999".to_string()),
                ("TINCAN_GATEWAY_LEDGER__WRITERS".to_string(), "2".to_string()),
                ("TINCAN_GATEWAY_ACCOUNTS__CURRENCY".to_string(), "USD".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(c.api.listen.port(), 9999);
        assert_eq!(c.ledger.writers, 2);
        assert_eq!(c.accounts.currency.as_str(), "USD");
        assert_eq!(c.calls.ack_timeout_ms, 4000);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = load_config_from::<GatewayConfig>(
            None,
            ENV_PREFIX,
            [
                ("TINCAN_GATEWAY_LEDGER__WRITERS".to_string(), "0".to_string()),
                ("TINCAN_GATEWAY_DATABASE__URL".to_string(), "mysql://x".to_string()),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ledger.writers") && err.contains("database.url"), "{err}");
        let err = load_config_from::<GatewayConfig>(
            None,
            ENV_PREFIX,
            [("TINCAN_GATEWAY_ACCOUNTS__CURRENCY".to_string(), "euro".to_string())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("currency"), "{err}");
        // The ACK wait: more than 0, less than the stack's own 64*T1 (32 s).
        let ack = |ms: &str| {
            load_config_from::<GatewayConfig>(
                None,
                ENV_PREFIX,
                [("TINCAN_GATEWAY_CALLS__ACK_TIMEOUT_MS".to_string(), ms.to_string())],
            )
        };
        for bad in ["0", "32000"] {
            let err = ack(bad).unwrap_err().to_string();
            assert!(err.contains("calls.ack_timeout_ms"), "{bad}: {err}");
        }
        assert_eq!(ack("31999").unwrap().calls.ack_timeout_ms, 31_999);
    }
}
