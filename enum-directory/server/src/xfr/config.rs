//! `[xfr]`: the secondaries allowed to transfer the zone, their TSIG keys and flavours, and NOTIFY timing.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use tincan_common::Secret;

/// Zone transfer out (AXFR/IXFR, NOTIFY) to standard secondaries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XfrConfig {
    /// The secondaries, by a local name (`[xfr.secondaries.knot1]`; lowercase letters, digits, `-`, `_`, so that
    /// `TINCAN_DIRECTORY_XFR__SECONDARIES__KNOT1__TSIG_SECRET_FILE` can set its secret).
    pub secondaries: BTreeMap<String, SecondaryConfig>,
    /// NOTIFY timing.
    pub notify: NotifyConfig,
}

/// One secondary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    /// Where NOTIFY is sent (UDP), e.g. `192.0.2.53:53`. Transfers are accepted from its IP address.
    pub address: SocketAddr,
    /// Further source addresses the secondary may transfer from (multi-homed secondaries).
    #[serde(default)]
    pub allow_from: Vec<IpAddr>,
    /// The TSIG key's name, as the secondary knows it (e.g. `knot1-xfr`). Algorithm: HMAC-SHA256.
    pub tsig_key: String,
    /// The TSIG secret, standard base64 (at least 16 bytes decoded), e.g. from `keymgr -t NAME hmac-sha256`.
    #[serde(default)]
    pub tsig_secret: Secret,
    /// What the secondary receives.
    #[serde(default)]
    pub flavour: Flavour,
    /// Whether to send it NOTIFY on every change (default true).
    #[serde(default = "yes")]
    pub notify: bool,
}

fn yes() -> bool {
    true
}

/// What a secondary receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// The zone without any DNSSEC record, for secondaries that sign online with the zone's own keys (Knot
    /// `mod-onlinesign` with the keys from `keys export --format knot`): walk-proof at the edge. Supports IXFR.
    #[default]
    Unsigned,
    /// A pre-signed copy with an NSEC3 chain (RFC 9276: SHA-1, 0 extra iterations, no salt, no opt-out), for
    /// secondaries that cannot sign. An NSEC3 chain of phone numbers can be enumerated offline: this gives up
    /// the directory's walk-proof property. Always sent whole (IXFR requests get the full zone).
    Nsec3,
}

/// NOTIFY timing (milliseconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Changes within this window after the first one are announced by one NOTIFY.
    pub debounce_ms: u64,
    /// How long to wait for the secondary's answer before retrying.
    pub timeout_ms: u64,
    /// First retry delay; doubled after every unanswered attempt up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// The longest delay between two attempts.
    pub max_backoff_ms: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig { debounce_ms: 200, timeout_ms: 2_000, initial_backoff_ms: 1_000, max_backoff_ms: 60_000 }
    }
}

impl XfrConfig {
    /// Every problem of the section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, s) in &self.secondaries {
            let at = format!("xfr.secondaries.{name}");
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                out.push(format!("{at}: the name may hold only lowercase letters, digits, '-' and '_'"));
            }
            if tsig_key_name(&s.tsig_key).is_err() {
                out.push(format!("{at}.tsig_key: not a domain name"));
            }
            match s.secret() {
                Ok(k) if k.len() >= 16 => {}
                Ok(_) => out.push(format!("{at}.tsig_secret: must decode to at least 16 bytes")),
                Err(_) => out.push(format!(
                    "{at}.tsig_secret: must be standard base64 (set it or {at}.tsig_secret_file via the environment)"
                )),
            }
            if s.address.port() == 0 {
                out.push(format!("{at}.address: needs a port (53 for a standard server)"));
            }
        }
        let n = &self.notify;
        if n.timeout_ms == 0 || n.initial_backoff_ms == 0 || n.max_backoff_ms < n.initial_backoff_ms {
            out.push("xfr.notify: timeout_ms and initial_backoff_ms must be > 0, max_backoff_ms >= initial".into());
        }
        out
    }
}

impl SecondaryConfig {
    /// The decoded TSIG secret.
    pub fn secret(&self) -> Result<Vec<u8>, base64::DecodeError> {
        let s = self.tsig_secret.expose().trim();
        if s.is_empty() {
            return Err(base64::DecodeError::InvalidLength(0));
        }
        base64::engine::general_purpose::STANDARD.decode(s)
    }

    /// Whether a transfer from `ip` may come from this secondary.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let canon = |ip: IpAddr| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let ip = canon(ip);
        canon(self.address.ip()) == ip || self.allow_from.iter().any(|a| canon(*a) == ip)
    }
}

/// The key name as a lowercase, fully qualified name.
pub(crate) fn tsig_key_name(s: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut n = Name::from_ascii(s)?.to_lowercase();
    n.set_fqdn(true);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secondary(secret: &str) -> SecondaryConfig {
        SecondaryConfig {
            address: "127.0.0.1:53".parse().unwrap(),
            allow_from: vec!["::1".parse().unwrap()],
            tsig_key: "knot1-xfr".into(),
            tsig_secret: Secret::new(secret),
            flavour: Flavour::Unsigned,
            notify: true,
        }
    }

    #[test]
    fn checks_names_secrets_and_timers() {
        let mut c = XfrConfig::default();
        assert!(c.problems().is_empty());
        c.secondaries.insert("knot1".into(), secondary("c2VjcmV0LXNlY3JldC1zZWNyZXQ="));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        c.secondaries.insert("Bad.Name".into(), secondary("short"));
        c.notify.timeout_ms = 0;
        let p = c.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("xfr.secondaries.Bad.Name"), "{p:?}");
    }

    #[test]
    fn allows_its_address_and_extra_sources() {
        let s = secondary("x");
        assert!(s.allows("127.0.0.1".parse().unwrap()));
        assert!(s.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(s.allows("::1".parse().unwrap()));
        assert!(!s.allows("127.0.0.2".parse().unwrap()));
    }
}
