//! The bridge's config: homeserver, application-service registration values, database, metrics.
//!
//! Loaded with [`tincan_common::load_config`] (TOML, then `TINCAN_<BRIDGE>_…` environment overrides,
//! `*_FILE` secrets). Bridges embed [`AppserviceConfig`] in their own config or use it as is.

use serde::{Deserialize, Serialize};
use tincan_common::Secret;
use tincan_common::config::Validate;

/// The whole core config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppserviceConfig {
    /// The homeserver.
    pub homeserver: HomeserverConfig,
    /// The registration values and the listener.
    pub appservice: RegistrationConfig,
    /// Bridge state.
    pub database: DatabaseConfig,
    /// End-to-bridge encryption (ghost devices).
    pub encryption: EncryptionConfig,
    /// Attachments.
    pub media: MediaConfig,
}

/// Attachments both ways (`m.image`, `m.file`, `m.audio`, `m.video`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The largest attachment the bridge downloads for the network or uploads from it, in bytes; a bigger
    /// one is refused (a failed message status and a notice; from the network, refused when queued).
    pub max_bytes: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { max_bytes: 10 * 1024 * 1024 }
    }
}

/// End-to-bridge encryption: each ghost gets a Matrix device (an Olm/Megolm account) so that it reads and
/// writes encrypted portal rooms. Needs a homeserver with MSC2409/MSC4203 to-device messages, MSC3202
/// device lists and one-time-key counts in transactions, and MSC4190 device management for appservices
/// (Synapse: `experimental_features.msc2409_to_device_messages_enabled` and
/// `experimental_features.msc3202_transaction_extensions`; the registration carries `org.matrix.msc3202`
/// and `io.element.msc4190`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Whether ghosts have devices, decrypt what they receive and send encrypted in encrypted rooms; portal
    /// rooms the bridge creates are then encrypted too.
    pub enabled: bool,
    /// Folder of the ghosts' crypto stores of earlier versions (one matrix-sdk-sqlite store per ghost): a
    /// ghost's store found there is imported into the bridge's database, where the stores are now, the first
    /// time its device is loaded, and its folder renamed `<name>.imported`. Empty: nothing is imported.
    pub store_dir: String,
    /// Passphrase the crypto stores are encrypted with; empty leaves them unencrypted (not recommended). A
    /// database whose stores were encrypted does not open without it.
    pub store_passphrase: Secret,
    /// How long an event that cannot be decrypted yet waits for its room key before the sender is told, in a
    /// notice in the room, that it was not delivered.
    pub undecryptable_timeout_secs: u64,
    /// How many ghost devices stay loaded in memory (their Olm machines); beyond it the least recently used
    /// one no task holds is unloaded and loads again from its store when needed.
    pub max_loaded_devices: usize,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            store_dir: "tincan-bridge-crypto".into(),
            store_passphrase: Secret::default(),
            undecryptable_timeout_secs: 60,
            max_loaded_devices: 1000,
        }
    }
}

/// Where the homeserver is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeserverConfig {
    /// Client-server API base URL.
    pub url: String,
    /// The homeserver's `server_name` (the part after `:` in user IDs).
    pub server_name: String,
}

impl Default for HomeserverConfig {
    fn default() -> Self {
        Self { url: "http://127.0.0.1:8008".into(), server_name: String::new() }
    }
}

/// The application service itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Registration `id`, unique on the homeserver.
    pub id: String,
    /// Address the AS API listens on.
    pub listen: String,
    /// URL the homeserver reaches the AS API at (registration `url`).
    pub url: String,
    /// Token the bridge presents to the homeserver.
    pub as_token: Secret,
    /// Token the homeserver presents to the bridge.
    pub hs_token: Secret,
    /// Localpart of the bridge bot (registration `sender_localpart`).
    pub bot_localpart: String,
    /// Ghost localpart prefix (`sms_`); empty means the connector's default.
    pub ghost_prefix: String,
    /// Registration `protocols` (third-party protocols this bridge answers), default `m.protocol.pstn`.
    pub protocols: Vec<String>,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            listen: "127.0.0.1:29318".into(),
            url: "http://127.0.0.1:29318".into(),
            as_token: Secret::default(),
            hs_token: Secret::default(),
            bot_localpart: String::new(),
            ghost_prefix: String::new(),
            protocols: vec![crate::PSTN_PROTOCOL.into()],
        }
    }
}

/// Where bridge state lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:/var/lib/tincan/bridge.db` (default backend) or `postgres://…`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long finished inbox and remote-queue rows (and recorded transaction IDs) are kept before they are
    /// pruned, in seconds; 0 keeps them for ever. Pending rows and message mappings are never pruned.
    pub retention_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: "sqlite:tincan-bridge.db".into(), max_connections: 5, retention_secs: 7 * 24 * 3600 }
    }
}

impl AppserviceConfig {
    /// The effective ghost prefix: the configured one, else the connector's.
    pub fn ghost_prefix<'a>(&'a self, connector_default: &'a str) -> &'a str {
        if self.appservice.ghost_prefix.is_empty() { connector_default } else { &self.appservice.ghost_prefix }
    }

    /// Problems that only show once tokens are required (running, not printing a registration).
    pub fn validate_tokens(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.appservice.as_token.is_empty() {
            problems.push("appservice.as_token: must be set (see `registration`)".into());
        }
        if self.appservice.hs_token.is_empty() {
            problems.push("appservice.hs_token: must be set (see `registration`)".into());
        }
        problems
    }
}

impl Validate for AppserviceConfig {
    fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if url_ok(&self.homeserver.url).is_none() {
            p.push(format!("homeserver.url: {:?} is not an http(s) URL", self.homeserver.url));
        }
        if self.homeserver.server_name.is_empty() || ruma::ServerName::parse(&self.homeserver.server_name).is_err() {
            p.push(format!("homeserver.server_name: {:?} is not a server name", self.homeserver.server_name));
        }
        if self.appservice.id.is_empty() {
            p.push("appservice.id: must be set".into());
        }
        if self.appservice.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!("appservice.listen: {:?} is not ip:port", self.appservice.listen));
        }
        if url_ok(&self.appservice.url).is_none() {
            p.push(format!("appservice.url: {:?} is not an http(s) URL", self.appservice.url));
        }
        let localpart_ok =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b"abcdefghijklmnopqrstuvwxyz0123456789._=-/+".contains(&b));
        if !localpart_ok(&self.appservice.bot_localpart) {
            p.push(format!("appservice.bot_localpart: {:?} is not a Matrix localpart", self.appservice.bot_localpart));
        }
        if !self.appservice.ghost_prefix.is_empty() && !localpart_ok(&self.appservice.ghost_prefix) {
            p.push(format!("appservice.ghost_prefix: {:?} is not a localpart prefix", self.appservice.ghost_prefix));
        }
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres")) {
            p.push(format!("database.url: {:?} is neither sqlite: nor postgres://", self.database.url));
        }
        if self.database.max_connections == 0 {
            p.push("database.max_connections: must be at least 1".into());
        }
        if self.media.max_bytes == 0 {
            p.push("media.max_bytes: must be at least 1".into());
        }
        if self.encryption.max_loaded_devices == 0 {
            p.push("encryption.max_loaded_devices: must be at least 1".into());
        }
        if self.encryption.undecryptable_timeout_secs == 0 {
            p.push("encryption.undecryptable_timeout_secs: must be at least 1".into());
        }
        p
    }
}

fn url_ok(s: &str) -> Option<()> {
    (s.starts_with("http://") || s.starts_with("https://")).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_the_site_specific_values() {
        let problems = AppserviceConfig::default().validate();
        assert!(problems.iter().any(|p| p.starts_with("homeserver.server_name")));
        assert!(problems.iter().any(|p| p.starts_with("appservice.id")));
        assert!(problems.iter().any(|p| p.starts_with("appservice.bot_localpart")));
    }

    #[test]
    fn loads_toml_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[homeserver]\nserver_name = \"hs.test\"\n[appservice]\nid = \"sms\"\nbot_localpart = \"smsbot\"\n",
        )
        .unwrap();
        let c: AppserviceConfig = tincan_common::config::load_config_from(
            Some(&file),
            "TINCAN_AS_",
            [("TINCAN_AS_APPSERVICE__HS_TOKEN".to_string(), "abc".to_string())],
        )
        .unwrap();
        assert_eq!(c.appservice.hs_token.expose(), "abc");
        assert_eq!(c.validate_tokens().len(), 1, "as_token is still missing");
    }
}
