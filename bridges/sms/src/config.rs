//! The bridge's config: the core's sections (`homeserver`, `appservice`, `database`) and `[sms]`.
//!
//! Loaded with [`tincan_common::load_config`]: TOML, then `TINCAN_SMS_<SECTION>__<KEY>` environment overrides,
//! `*_FILE` secrets. Unknown keys are errors. `bridges/sms/README.md` lists every key with its default.

use crate::limits::Rate;
use crate::link::SmscConfig;
use crate::protocol::keywords::Keywords;
use serde::{Deserialize, Serialize};
use tincan_appservice::config::{
    AppserviceConfig, DatabaseConfig, EncryptionConfig, HomeserverConfig, MediaConfig, RegistrationConfig,
};
use tincan_common::Secret;
use tincan_common::config::Validate;

/// The environment prefix.
pub const ENV_PREFIX: &str = "TINCAN_SMS_";

/// The whole config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The homeserver (core).
    pub homeserver: HomeserverConfig,
    /// The registration values and the AS API listener (core).
    pub appservice: RegistrationConfig,
    /// The core's state (portals, ghosts, its queues).
    pub database: DatabaseConfig,
    /// End-to-bridge encryption (core): ghosts read and write encrypted DMs.
    pub encryption: EncryptionConfig,
    /// Attachments (core): the largest image taken for a link.
    pub media: MediaConfig,
    /// The SMS side.
    pub sms: SmsConfig,
}

impl Config {
    /// The core's part.
    // Sections the core adds later keep their defaults until this config names them.
    #[allow(clippy::needless_update)]
    pub fn core(&self) -> AppserviceConfig {
        AppserviceConfig {
            homeserver: self.homeserver.clone(),
            appservice: self.appservice.clone(),
            database: self.database.clone(),
            encryption: self.encryption.clone(),
            media: self.media.clone(),
            ..AppserviceConfig::default()
        }
    }
}

/// Where users send from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderMode {
    /// A number from `sms.numbers`, assigned on first use and kept; more on request (`!number new`).
    #[default]
    Pool,
}

/// `[sms]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// The SMS state: `sqlite:PATH` or `postgres://…` (a database of its own, not the core's).
    pub database_url: String,
    /// Address of `/healthz` and `/metrics`.
    pub listen: String,
    /// Where users send from.
    pub sender: SenderMode,
    /// The provider's numbers (E.164) handed to users.
    pub numbers: Vec<String>,
    /// Matrix users who may use the bridge: `*` for every user of the homeserver, or user IDs.
    pub users: Vec<String>,
    /// The SMSCs.
    pub smsc: Vec<SmscConfig>,
    /// Abuse limits.
    pub limits: LimitsConfig,
    /// Destinations refused before anything is charged or sent.
    pub prefixes: PrefixConfig,
    /// Opt-out keywords.
    pub opt_out: OptOutConfig,
    /// Long inbound messages.
    pub reassembly: ReassemblyConfig,
    /// Charging through the PSTN gateway; without `gateway_url` the bridge runs free.
    pub billing: BillingConfig,
    /// Images.
    pub mms: MmsConfig,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite:tincan-sms.db".into(),
            listen: "127.0.0.1:29319".into(),
            sender: SenderMode::Pool,
            numbers: Vec::new(),
            users: vec!["*".into()],
            smsc: Vec::new(),
            limits: LimitsConfig::default(),
            prefixes: PrefixConfig::default(),
            opt_out: OptOutConfig::default(),
            reassembly: ReassemblyConfig::default(),
            billing: BillingConfig::default(),
            mms: MmsConfig::default(),
        }
    }
}

/// `[sms.limits]`: segments per user and per destination prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Segments one user may send.
    pub per_user: Rate,
    /// Segments all users together may send to one destination prefix.
    pub per_prefix: Rate,
    /// Digits of the prefix (after `+`).
    pub prefix_digits: usize,
    /// Most users and prefixes tracked at once.
    pub max_tracked: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_user: Rate { per_minute: 30.0, burst: 20 },
            per_prefix: Rate { per_minute: 600.0, burst: 200 },
            prefix_digits: 5,
            max_tracked: 100_000,
        }
    }
}

/// `[sms.prefixes]`: E.164 prefixes (`+4490`) never sent to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefixConfig {
    /// Premium-rate ranges (refused with that reason).
    pub premium: Vec<String>,
    /// Other blocked ranges (satellite, high-risk).
    pub blocked: Vec<String>,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        Self {
            // UK premium rate (09), German premium (0900), international premium and satellite.
            premium: vec!["+449".into(), "+49900".into(), "+979".into()],
            blocked: vec!["+881".into(), "+882".into(), "+883".into()],
        }
    }
}

/// `[sms.opt_out]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptOutConfig {
    /// STOP/START words, by country.
    pub keywords: Keywords,
}

/// `[sms.reassembly]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReassemblyConfig {
    /// Seconds a long message waits for its missing parts before what came is delivered.
    pub timeout_secs: u64,
    /// Most long messages waiting at once.
    pub max_waiting: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self { timeout_secs: 300, max_waiting: 10_000 }
    }
}

/// `[sms.billing]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// The gateway's API (`http://127.0.0.1:8095`); empty: no charging.
    pub gateway_url: String,
    /// The bridge's service token at the gateway.
    pub token: Secret,
}

/// `[sms.mms]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MmsConfig {
    /// The carrier's HTTP messaging API for MMS (Twilio's Messages API: `https://api.twilio.com`, or a carrier
    /// speaking it); empty: no MMS. Images then go as MMS from the user's number (see [`crate::mms`]).
    pub api_url: String,
    /// Account id at the carrier.
    pub account: String,
    /// API secret (the auth token; it also signs the carrier's status callbacks).
    pub token: Secret,
    /// Over SMPP, send an image as a link to it (only when no MMS API is set); off: images are refused with a
    /// notice. Whoever has the link sees the image.
    pub images_as_links: bool,
    /// The public URL `GET /m/<token>` of `sms.listen` is reachable at (the operator's reverse proxy), e.g.
    /// `https://sms.example.net`; links are `<this>/m/<token>`.
    pub link_base_url: String,
    /// Where linked images are kept.
    pub link_dir: String,
    /// How long a link works, hours.
    pub link_ttl_hours: u64,
}

impl Default for MmsConfig {
    fn default() -> Self {
        Self {
            api_url: String::new(),
            account: String::new(),
            token: Secret::default(),
            images_as_links: false,
            link_base_url: String::new(),
            link_dir: "tincan-sms-links".into(),
            link_ttl_hours: 72,
        }
    }
}

fn e164_prefix_ok(p: &str) -> bool {
    p.len() > 1 && p.starts_with('+') && p[1..].bytes().all(|b| b.is_ascii_digit())
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        let mut p = self.core().validate();
        let s = &self.sms;
        if !(s.database_url.starts_with("sqlite:") || s.database_url.starts_with("postgres")) {
            p.push(format!("sms.database_url: {:?} is neither sqlite: nor postgres://", s.database_url));
        }
        if s.database_url == self.database.url {
            p.push("sms.database_url: must differ from database.url (the core migrates its own schema)".into());
        }
        if s.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!("sms.listen: {:?} is not ip:port", s.listen));
        }
        for (i, n) in s.numbers.iter().enumerate() {
            if tincan_enum_core::E164::parse(n).map(|e| e.as_str() != n).unwrap_or(true) {
                p.push(format!("sms.numbers[{i}]: {n:?} is not an E.164 number (+ and digits)"));
            }
        }
        if s.sender == SenderMode::Pool && s.numbers.is_empty() {
            p.push("sms.numbers: the pool is empty; users would have no number to send from".into());
        }
        for u in &s.users {
            if u != "*" && ruma::UserId::parse(u).is_err() {
                p.push(format!("sms.users: {u:?} is neither * nor a Matrix user ID"));
            }
        }
        if s.smsc.is_empty() {
            p.push("sms.smsc: at least one SMSC is needed".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in s.smsc.iter().enumerate() {
            p.extend(c.validate(&format!("sms.smsc[{i}]")));
            if !names.insert(&c.name) {
                p.push(format!("sms.smsc[{i}].name: {:?} is used twice", c.name));
            }
        }
        p.extend(s.limits.per_user.validate("sms.limits.per_user"));
        p.extend(s.limits.per_prefix.validate("sms.limits.per_prefix"));
        if !(1..=15).contains(&s.limits.prefix_digits) {
            p.push("sms.limits.prefix_digits: must be 1 to 15".into());
        }
        for (key, list) in [("premium", &s.prefixes.premium), ("blocked", &s.prefixes.blocked)] {
            for x in list.iter().filter(|x| !e164_prefix_ok(x)) {
                p.push(format!("sms.prefixes.{key}: {x:?} is not + and digits"));
            }
        }
        p.extend(s.opt_out.keywords.validate());
        if s.reassembly.timeout_secs == 0 || s.reassembly.max_waiting == 0 {
            p.push("sms.reassembly: timeout_secs and max_waiting must be at least 1".into());
        }
        if !s.billing.gateway_url.is_empty() && url::Url::parse(&s.billing.gateway_url).is_err() {
            p.push(format!("sms.billing.gateway_url: {:?} is not a URL", s.billing.gateway_url));
        }
        if !s.billing.gateway_url.is_empty() && s.billing.token.is_empty() {
            p.push("sms.billing.token: needed with gateway_url".into());
        }
        if s.mms.images_as_links
            && (url::Url::parse(&s.mms.link_base_url).is_err()
                || s.mms.link_dir.is_empty()
                || s.mms.link_ttl_hours == 0)
        {
            p.push("sms.mms: images_as_links needs link_base_url (a URL), link_dir and link_ttl_hours > 0".into());
        }
        if !s.mms.api_url.is_empty() && (url::Url::parse(&s.mms.api_url).is_err() || s.mms.account.is_empty()) {
            p.push("sms.mms: api_url must be a URL and account set".into());
        }
        // The carrier fetches the image from its link and calls back under the same public URL.
        if !s.mms.api_url.is_empty()
            && (url::Url::parse(&s.mms.link_base_url).is_err()
                || s.mms.link_dir.is_empty()
                || s.mms.link_ttl_hours == 0
                || s.mms.token.is_empty())
        {
            p.push("sms.mms: api_url needs token, link_base_url (a URL), link_dir and link_ttl_hours > 0".into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        let mut c = Config::default();
        c.homeserver.server_name = "hs.test".into();
        c.appservice.id = "sms".into();
        c.appservice.bot_localpart = "smsbot".into();
        c.sms.numbers = vec!["+447400000001".into()];
        c.sms.smsc = vec![SmscConfig {
            name: "a".into(),
            address: "127.0.0.1:2775".into(),
            system_id: "tincan".into(),
            ..SmscConfig::default()
        }];
        c
    }

    #[test]
    fn a_minimal_config_is_valid() {
        assert_eq!(valid().validate(), Vec::<String>::new());
    }

    #[test]
    fn problems_name_their_keys() {
        let mut c = valid();
        c.sms.numbers.push("447400000002".into());
        c.sms.smsc.push(c.sms.smsc[0].clone());
        c.sms.prefixes.premium.push("4490".into());
        c.sms.users.push("alice".into());
        c.sms.database_url = c.database.url.clone();
        c.sms.billing.gateway_url = "http://127.0.0.1:8095".into();
        let p = c.validate();
        for key in [
            "sms.numbers[1]",
            "sms.smsc[1].name",
            "sms.prefixes.premium",
            "sms.users",
            "sms.database_url",
            "sms.billing.token",
        ] {
            assert!(p.iter().any(|x| x.starts_with(key)), "{key} in {p:?}");
        }
    }

    #[test]
    fn loads_toml_with_smscs_and_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sms.toml");
        std::fs::write(
            &file,
            r#"
[homeserver]
server_name = "hs.test"
[appservice]
id = "sms"
bot_localpart = "smsbot"
[sms]
numbers = ["+447400000001", "+447400000002"]
[[sms.smsc]]
name = "carrier-a"
address = "127.0.0.1:2775"
system_id = "tincan"
window = 50
[[sms.smsc]]
name = "carrier-b"
address = "127.0.0.1:2776"
system_id = "tincan"
priority = 1
[sms.limits]
per_user = { per_minute = 10, burst = 5 }
[sms.opt_out.keywords.countries.IT]
stop = ["BASTA"]
"#,
        )
        .unwrap();
        let c: Config = tincan_common::config::load_config_from(
            Some(&file),
            ENV_PREFIX,
            [("TINCAN_SMS_SMS__BILLING__TOKEN".to_string(), "svc".to_string())],
        )
        .unwrap();
        assert_eq!(c.sms.smsc.len(), 2);
        assert_eq!((c.sms.smsc[0].window, c.sms.smsc[1].priority), (50, 1));
        assert_eq!(c.sms.limits.per_user.burst, 5);
        assert_eq!(c.sms.billing.token.expose(), "svc");
        assert_eq!(c.sms.opt_out.keywords.countries["IT"].stop, ["BASTA"]);
        assert!(c.sms.opt_out.keywords.countries.contains_key("US"), "built-in countries stay unless replaced");
        std::fs::write(&file, "[sms]\nnumber = []\n").unwrap();
        let e = tincan_common::config::load_config_from::<Config>(Some(&file), ENV_PREFIX, []).unwrap_err();
        assert!(e.to_string().contains("number"), "{e}");
    }
}
