//! The application-service registration file the homeserver loads (`app_service_config_files`).
//!
//! Namespaces come from the config: the ghosts (`@<prefix>.*:<server>`) and the bot, both exclusive. Ephemeral
//! events are requested (`receive_ephemeral`, for receipts and typing) and the bridge is not rate limited.
//! With encryption enabled it also asks for to-device messages, device lists and one-time-key counts in
//! transactions and for device management without login (see [`crate::config::EncryptionConfig`]).

use crate::config::AppserviceConfig;
use base64::Engine;

/// Tokens for a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// What the bridge presents to the homeserver.
    pub as_token: String,
    /// What the homeserver presents to the bridge.
    pub hs_token: String,
}

impl Tokens {
    /// Two fresh random tokens (256 bits each, unpadded base64url) from `rng`.
    pub fn generate(rng: &mut impl rand::RngCore) -> Self {
        let mut token = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        };
        Self { as_token: token(), hs_token: token() }
    }

    /// The tokens set in `config`, where both are set.
    pub fn from_config(config: &AppserviceConfig) -> Option<Self> {
        config.validate_tokens().is_empty().then(|| Self {
            as_token: config.appservice.as_token.expose().to_owned(),
            hs_token: config.appservice.hs_token.expose().to_owned(),
        })
    }
}

pub use tincan_common::appservice::regex_escape;
use tincan_common::appservice::{Registration, one_user, users_with_prefix};

/// The registration YAML for `config`, with the ghost prefix `ghost_prefix` and `tokens`.
pub fn registration_yaml(config: &AppserviceConfig, ghost_prefix: &str, tokens: &Tokens) -> String {
    let server = &config.homeserver.server_name;
    let a = &config.appservice;
    // Ghost devices created without login (MSC4190): every ghost sends from a device, so the homeserver
    // deduplicates a send replayed after a crash from its database (see `bridge::ghost::send_device`).
    let mut flags = vec!["io.element.msc4190"];
    if config.encryption.enabled {
        // End-to-bridge encryption: to-device messages come with the ephemeral events (MSC2409, also under its
        // unstable name), device lists and one-time-key counts in transactions (MSC3202).
        flags.extend(["de.sorunome.msc2409.push_ephemeral", "org.matrix.msc3202"]);
    }
    Registration {
        id: &a.id,
        url: &a.url,
        as_token: &tokens.as_token,
        hs_token: &tokens.hs_token,
        sender_localpart: &a.bot_localpart,
        users: vec![users_with_prefix(ghost_prefix, server), one_user(&a.bot_localpart, server)],
        receive_ephemeral: true,
        flags,
        protocols: Some(&a.protocols),
    }
    .to_yaml()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn config() -> AppserviceConfig {
        let mut c = AppserviceConfig::default();
        c.homeserver.server_name = "hs.example".into();
        c.appservice.id = "tincan-sms".into();
        c.appservice.bot_localpart = "smsbot".into();
        c
    }

    #[test]
    fn registration_snapshot() {
        let tokens = Tokens { as_token: "AS".into(), hs_token: "HS".into() };
        insta::assert_snapshot!(registration_yaml(&config(), "sms_", &tokens));
    }

    #[test]
    fn encryption_adds_the_msc_flags() {
        let tokens = Tokens { as_token: "AS".into(), hs_token: "HS".into() };
        let mut c = config();
        c.encryption.enabled = true;
        let y = registration_yaml(&c, "sms_", &tokens);
        for flag in ["de.sorunome.msc2409.push_ephemeral: true", "org.matrix.msc3202: true", "io.element.msc4190: true"]
        {
            assert!(y.contains(flag), "{flag} missing from\n{y}");
        }
        let plain = registration_yaml(&config(), "sms_", &tokens);
        assert!(!plain.contains("msc3202"));
        assert!(plain.contains("io.element.msc4190: true"), "ghosts send from a device even without encryption");
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = Tokens::generate(&mut rng);
        let b = Tokens::generate(&mut rng);
        assert_ne!(a, b);
        assert_ne!(a.as_token, a.hs_token);
        assert_eq!(a.as_token.len(), 43);
    }

    #[test]
    fn escapes_regex() {
        assert_eq!(regex_escape("sms_+"), "sms_\\+");
        assert_eq!(regex_escape("hs.example"), "hs\\.example");
    }
}
