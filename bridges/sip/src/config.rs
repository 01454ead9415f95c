//! The SIP bridge's config: the core's sections (`homeserver`, `appservice`, `database`) and its own (`sip`,
//! `media`, `subscribers`, `routes`).
//!
//! Loaded with [`tincan_common::load_config`]: TOML, then `TINCAN_SIP_…` environment overrides (`__` for
//! nesting), `*_FILE` for secrets.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tincan_appservice::config::{
    AppserviceConfig, DatabaseConfig, EncryptionConfig, HomeserverConfig, RegistrationConfig,
};
use tincan_common::Secret;
use tincan_common::config::Validate;
use tincan_sip_core::stack::{Target, Transport};

/// The environment prefix.
pub const ENV_PREFIX: &str = "TINCAN_SIP_";

/// The whole config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipBridgeConfig {
    /// The homeserver (as for every bridge).
    pub homeserver: HomeserverConfig,
    /// The application-service registration values.
    pub appservice: RegistrationConfig,
    /// The core's state (portals, queues).
    pub database: DatabaseConfig,
    /// End-to-bridge encryption (core): ghosts read and write encrypted DMs.
    pub encryption: EncryptionConfig,
    /// The SIP side.
    pub sip: SipConfig,
    /// Media relay.
    pub media: MediaConfig,
    /// Who holds which number, and their SIP devices.
    pub subscribers: SubscribersConfig,
    /// Where numbers that are not ours are sent.
    pub routes: RoutesConfig,
}

/// The SIP listeners, domain and registrar.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// The provider's SIP domain: Tincan numbers are `sip:+E164@<domain>`.
    pub domain: String,
    /// Listeners, `transport:ip:port` (`udp:0.0.0.0:5060`, `tcp:…`, `tls:…:5061`, `ws:…`).
    pub listen: Vec<String>,
    /// TLS certificate chain (PEM) for `tls`/`wss` listeners.
    pub tls_cert_file: Option<String>,
    /// TLS private key (PEM).
    pub tls_key_file: Option<String>,
    /// The digest realm of the registrar; the domain when empty.
    pub realm: String,
    /// The secret nonces are signed with (shared by every bridge node of a domain). Required.
    pub nonce_secret: Secret,
    /// How long a nonce is accepted, seconds.
    pub nonce_lifetime_secs: u64,
    /// Digest algorithms offered, in the order challenged: `MD5`, `SHA-256`. MD5 comes first by default
    /// because many phones (and sipp) read only the first challenge and give up on SHA-256; the passwords are
    /// random per device, so MD5's weakness does not expose them.
    pub digest_algorithms: Vec<String>,
    /// The longest registration we grant, seconds.
    pub max_expires_secs: u32,
    /// The shortest registration we accept (shorter ones get 423 Interval Too Brief), seconds.
    pub min_expires_secs: u32,
    /// SIP requests per second accepted from one IP address (503 beyond).
    pub per_source_rate: u32,
    /// The state of the SIP side (device registrations, media sessions): `sqlite:…` or `postgres://…`.
    pub database_url: String,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            domain: String::new(),
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            tls_cert_file: None,
            tls_key_file: None,
            realm: String::new(),
            nonce_secret: Secret::default(),
            nonce_lifetime_secs: 300,
            digest_algorithms: vec!["MD5".into(), "SHA-256".into()],
            max_expires_secs: 3600,
            min_expires_secs: 60,
            per_source_rate: 200,
            database_url: "sqlite:tincan-sip.db".into(),
        }
    }
}

impl SipConfig {
    /// The realm (the domain when not set).
    pub fn realm(&self) -> &str {
        if self.realm.is_empty() { &self.domain } else { &self.realm }
    }

    /// The digest algorithms, parsed.
    pub fn algorithms(&self) -> Result<Vec<tincan_sip_core::digest::Algorithm>, String> {
        use tincan_sip_core::digest::Algorithm;
        self.digest_algorithms
            .iter()
            .map(|a| match a.to_ascii_uppercase().as_str() {
                "MD5" => Ok(Algorithm::Md5),
                "SHA-256" => Ok(Algorithm::Sha256),
                other => Err(format!("unknown digest algorithm {other:?} (MD5, SHA-256)")),
            })
            .collect()
    }

    /// The listeners, parsed.
    pub fn targets(&self) -> Result<Vec<Target>, String> {
        self.listen.iter().map(|l| parse_listen(l)).collect()
    }
}

/// `udp:127.0.0.1:5060` → a target.
pub fn parse_listen(s: &str) -> Result<Target, String> {
    let (t, addr) = s.split_once(':').ok_or_else(|| format!("{s:?} is not transport:ip:port"))?;
    let transport = Transport::from_param(t).ok_or_else(|| format!("{s:?}: unknown transport {t:?}"))?;
    let addr: SocketAddr = addr.parse().map_err(|_| format!("{s:?}: {addr:?} is not ip:port"))?;
    Ok(Target { transport, addr })
}

/// rtpengine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// rtpengine's ng control address (UDP).
    pub rtpengine_ng: String,
    /// Codecs offered to SIP phones by transcoding when the Matrix side has only Opus.
    pub sip_codecs: Vec<String>,
    /// Seconds to wait for a ringing call to be answered before giving up (480 / hang-up).
    pub ring_timeout_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            rtpengine_ng: "127.0.0.1:2223".into(),
            sip_codecs: vec!["PCMU".into(), "PCMA".into()],
            ring_timeout_secs: 60,
        }
    }
}

/// Who holds which number.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscribersConfig {
    /// The sign-up extension (`tincan-ext`), whose internal API answers who holds a number and checks SIP
    /// device credentials. Empty: only `static_numbers`.
    pub ext_url: String,
    /// The token the bridge presents to the extension's internal API (its `sip.bridge_token`).
    pub ext_token: Secret,
    /// Fixed number → Matrix user bindings (development; tests), E.164 → `@user:server`.
    pub static_numbers: BTreeMap<String, String>,
    /// Fixed SIP devices (development; tests): username → `{number, password}`.
    pub static_devices: BTreeMap<String, StaticDevice>,
}

/// A fixed SIP device.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticDevice {
    /// The number it registers under.
    pub number: String,
    /// Its password.
    pub password: Secret,
}

/// Outbound routing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// DNS servers for RFC 3263 resolution of SIP URIs (`ip:port`); empty: the system's.
    pub dns_servers: Vec<String>,
    /// The ENUM apex to look numbers up in (`e164.tincan.example.`); empty: no ENUM lookups.
    pub enum_apex: String,
    /// The apex's trust anchor (DS or DNSKEY, presentation format).
    pub enum_trust_anchor: String,
    /// DNS servers for ENUM (`ip:port`); empty: `dns_servers`.
    pub enum_servers: Vec<String>,
    /// Where numbers go after their validated `E2U+sip` routes, if any (the PSTN gateway, other trunks): SIP
    /// URIs such as `sip:gateway.provider.example;transport=tcp`, tried in this order. One URI may be given as
    /// a plain string. Empty: numbers without an ENUM route are refused.
    #[serde(deserialize_with = "one_or_many")]
    pub fallback: Vec<String>,
    /// How long a route has to ring (18x) or answer an INVITE before the call moves on to the next route,
    /// milliseconds (a 100 Trying alone does not count: a gateway that took the call but cannot place it says
    /// nothing more). Behind the PSTN gateway, longer than its own carriers' failover takes.
    pub invite_timeout_ms: u64,
}

impl Default for RoutesConfig {
    fn default() -> Self {
        Self {
            dns_servers: Vec::new(),
            enum_apex: String::new(),
            enum_trust_anchor: String::new(),
            enum_servers: Vec::new(),
            fallback: Vec::new(),
            invite_timeout_ms: 10_000,
        }
    }
}

/// A list, or one string as a list of one (an empty string: none).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) if s.is_empty() => Vec::new(),
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl SipBridgeConfig {
    /// The core's part.
    // Sections the core adds later keep their defaults until this config names them.
    #[allow(clippy::needless_update)]
    pub fn core(&self) -> AppserviceConfig {
        AppserviceConfig {
            homeserver: self.homeserver.clone(),
            appservice: self.appservice.clone(),
            database: self.database.clone(),
            encryption: self.encryption.clone(),
            ..AppserviceConfig::default()
        }
    }
}

impl Validate for SipBridgeConfig {
    fn validate(&self) -> Vec<String> {
        let mut p = self.core().validate();
        let s = &self.sip;
        if s.domain.is_empty() || !domain_ok(&s.domain) {
            p.push(format!("sip.domain: {:?} is not a domain", s.domain));
        }
        match s.targets() {
            Ok(t) if t.is_empty() => p.push("sip.listen: at least one listener".into()),
            Ok(t) => {
                if t.iter().any(|t| t.transport.is_secure()) && (s.tls_cert_file.is_none() || s.tls_key_file.is_none())
                {
                    p.push("sip.tls_cert_file, sip.tls_key_file: needed by a tls/wss listener".into());
                }
            }
            Err(e) => p.push(format!("sip.listen: {e}")),
        }
        if s.nonce_secret.expose().len() < 16 {
            p.push("sip.nonce_secret: at least 16 characters (set sip.nonce_secret or its _FILE)".into());
        }
        match s.algorithms() {
            Ok(a) if a.is_empty() => p.push("sip.digest_algorithms: at least one".into()),
            Ok(_) => {}
            Err(e) => p.push(format!("sip.digest_algorithms: {e}")),
        }
        if s.min_expires_secs == 0 || s.min_expires_secs > s.max_expires_secs {
            p.push("sip.min_expires_secs: must be at least 1 and at most sip.max_expires_secs".into());
        }
        if !(s.database_url.starts_with("sqlite:") || s.database_url.starts_with("postgres")) {
            p.push(format!("sip.database_url: {:?} is neither sqlite: nor postgres://", s.database_url));
        }
        if self.media.rtpengine_ng.parse::<SocketAddr>().is_err() {
            p.push(format!("media.rtpengine_ng: {:?} is not ip:port", self.media.rtpengine_ng));
        }
        let sub = &self.subscribers;
        if sub.ext_url.is_empty() && sub.static_numbers.is_empty() {
            p.push("subscribers: set ext_url (the sign-up extension) or static_numbers".into());
        }
        if !sub.ext_url.is_empty() && sub.ext_token.is_empty() {
            p.push("subscribers.ext_token: needed with ext_url".into());
        }
        for (n, u) in &sub.static_numbers {
            if tincan_enum_lookup::E164::parse(n).is_err() {
                p.push(format!("subscribers.static_numbers: {n:?} is not an E.164 number"));
            }
            if ruma::UserId::parse(u.as_str()).is_err() {
                p.push(format!("subscribers.static_numbers.{n}: {u:?} is not a Matrix user ID"));
            }
        }
        for (name, d) in &sub.static_devices {
            if !sub.static_numbers.contains_key(&d.number) {
                p.push(format!("subscribers.static_devices.{name}: number {:?} is not in static_numbers", d.number));
            }
        }
        let r = &self.routes;
        for s in r.dns_servers.iter().chain(&r.enum_servers) {
            if s.parse::<SocketAddr>().is_err() {
                p.push(format!("routes: DNS server {s:?} is not ip:port"));
            }
        }
        if !r.enum_apex.is_empty() && r.enum_trust_anchor.is_empty() {
            p.push("routes.enum_trust_anchor: needed with enum_apex (routes come only from validated answers)".into());
        }
        for f in &r.fallback {
            if f.parse::<tincan_sip_core::uri::SipUri>().is_err() {
                p.push(format!("routes.fallback: {f:?} is not a SIP URI"));
            }
        }
        if !(100..=60_000).contains(&r.invite_timeout_ms) {
            p.push("routes.invite_timeout_ms: 100 to 60000".into());
        }
        p
    }
}

fn domain_ok(d: &str) -> bool {
    format!("sip:{d}").parse::<tincan_sip_core::uri::SipUri>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse() {
        assert_eq!(parse_listen("udp:127.0.0.1:5060").unwrap().transport, Transport::Udp);
        assert_eq!(parse_listen("tls:[::1]:5061").unwrap().addr, "[::1]:5061".parse().unwrap());
        assert!(parse_listen("sctp:127.0.0.1:5060").is_err());
        assert!(parse_listen("udp:nowhere").is_err());
    }

    #[test]
    fn defaults_name_what_is_missing() {
        let p = SipBridgeConfig::default().validate();
        for key in ["sip.domain", "sip.nonce_secret", "subscribers", "homeserver.server_name"] {
            assert!(p.iter().any(|m| m.starts_with(key)), "{key} not reported in {p:?}");
        }
    }

    #[test]
    fn loads_toml_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[homeserver]\nserver_name = \"hs.test\"\n[appservice]\nid = \"sip\"\nbot_localpart = \"sipbot\"\n\
             [sip]\ndomain = \"sip.provider.test\"\n[subscribers.static_numbers]\n\"+442079460001\" = \
             \"@alice:hs.test\"\n",
        )
        .unwrap();
        let secret = dir.path().join("nonce");
        std::fs::write(&secret, "0123456789abcdef0123\n").unwrap();
        let c: SipBridgeConfig = tincan_common::config::load_config_from(
            Some(&file),
            ENV_PREFIX,
            [
                ("TINCAN_SIP_SIP__NONCE_SECRET_FILE".to_string(), secret.display().to_string()),
                ("TINCAN_SIP_APPSERVICE__AS_TOKEN".to_string(), "a".to_string()),
                ("TINCAN_SIP_APPSERVICE__HS_TOKEN".to_string(), "h".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(c.sip.nonce_secret.expose(), "0123456789abcdef0123");
        assert_eq!(c.sip.realm(), "sip.provider.test");
        assert_eq!(c.subscribers.static_numbers["+442079460001"], "@alice:hs.test");
    }

    #[test]
    fn fallback_routes_are_one_uri_or_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let base = "[homeserver]\nserver_name = \"hs.test\"\n[appservice]\nid = \"sip\"\nbot_localpart = \"sipbot\"\n\
                    as_token = \"a\"\nhs_token = \"h\"\n[sip]\ndomain = \"sip.provider.test\"\n\
                    nonce_secret = \"0123456789abcdef0123\"\n[subscribers.static_numbers]\n\
                    \"+442079460001\" = \"@alice:hs.test\"\n";
        let load = |routes: &str, env: Vec<(String, String)>| {
            let file = dir.path().join("c.toml");
            std::fs::write(&file, format!("{base}[routes]\n{routes}")).unwrap();
            tincan_common::config::load_config_from::<SipBridgeConfig>(Some(&file), ENV_PREFIX, env)
        };
        let c = load("fallback = \"sip:gw.test\"\n", vec![]).unwrap();
        assert_eq!(c.routes.fallback, vec!["sip:gw.test".to_owned()]);
        assert_eq!(c.routes.invite_timeout_ms, 10_000);
        let c = load("fallback = [\"sip:a.test\", \"sip:b.test:5070\"]\ninvite_timeout_ms = 2000\n", vec![]).unwrap();
        assert_eq!(c.routes.fallback, vec!["sip:a.test".to_owned(), "sip:b.test:5070".to_owned()]);
        assert_eq!(c.routes.invite_timeout_ms, 2000);
        let env = vec![("TINCAN_SIP_ROUTES__FALLBACK".to_owned(), "sip:env.test".to_owned())];
        assert_eq!(load("", env).unwrap().routes.fallback, vec!["sip:env.test".to_owned()]);
        assert!(load("fallback = \"\"\n", vec![]).unwrap().routes.fallback.is_empty());
        let e = load("fallback = [\"sip:a.test\", \"not a uri\"]\ninvite_timeout_ms = 0\n", vec![]).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("routes.fallback: \"not a uri\"") && e.contains("routes.invite_timeout_ms"), "{e}");
    }
}
