//! Validated NAPTR and TXT rdata of one number → typed routes and key (pure, no I/O).

use hickory_proto::rr::rdata::{NAPTR, TXT};
use tincan_enum_core::{E164, MasterKey, ServiceType, key_from_txt, service_from_naptr};

/// A Matrix user published for a number (`matrix:u/<localpart>:<server>` in an `E2U+x-matrix` NAPTR).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatrixUser {
    localpart: String,
    server: String,
}

impl MatrixUser {
    /// Parses a Matrix user URI (`matrix:u/alice:hs.example[?action=chat]`); `None` for anything else.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("matrix:u/")?;
        let id = rest.split_once('?').map_or(rest, |(id, _)| id);
        let (localpart, server) = id.split_once(':')?;
        if localpart.is_empty() || server.is_empty() {
            return None;
        }
        Some(Self { localpart: localpart.to_owned(), server: server.to_owned() })
    }

    /// The localpart, e.g. `alice`.
    pub fn localpart(&self) -> &str {
        &self.localpart
    }

    /// The server name, e.g. `hs.example` (may carry a port).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The user ID, e.g. `@alice:hs.example`.
    pub fn user_id(&self) -> String {
        format!("@{}:{}", self.localpart, self.server)
    }
}

impl std::fmt::Display for MatrixUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "@{}:{}", self.localpart, self.server)
    }
}

/// The ways to reach a number, from its NAPTR records (best first, by NAPTR order then preference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// The Matrix user (`E2U+x-matrix`); the best one when several are published.
    pub matrix: Option<MatrixUser>,
    /// SIP URIs (`E2U+sip`), best first.
    pub sip: Vec<String>,
    /// The number that takes SMS (`E2U+sms:tel`).
    pub sms: Option<E164>,
    /// The number that takes voice calls (`E2U+voice:tel`).
    pub voice: Option<E164>,
}

impl Routes {
    /// No route at all.
    pub fn is_empty(&self) -> bool {
        self.matrix.is_none() && self.sip.is_empty() && self.sms.is_none() && self.voice.is_none()
    }

    /// The routes published by `naptrs`. Records that are not ours (other flags, enumservices or regexps, URIs
    /// that do not fit their service) are skipped, as RFC 6116 §3.2 has clients skip what they do not
    /// understand.
    pub fn from_naptrs<'a>(naptrs: impl IntoIterator<Item = &'a NAPTR>) -> Self {
        let mut sorted: Vec<&NAPTR> = naptrs.into_iter().collect();
        sorted.sort_by_key(|n| (n.order, n.preference));
        let mut routes = Routes::default();
        for service in sorted.into_iter().filter_map(service_from_naptr) {
            match service.kind() {
                ServiceType::Matrix => {
                    if routes.matrix.is_none() {
                        routes.matrix = MatrixUser::from_uri(service.uri());
                    }
                }
                ServiceType::Sip => {
                    if !routes.sip.iter().any(|s| s == service.uri()) {
                        routes.sip.push(service.uri().to_owned());
                    }
                }
                ServiceType::Sms => {
                    if routes.sms.is_none() {
                        routes.sms = tel_number(service.uri());
                    }
                }
                ServiceType::Voice => {
                    if routes.voice.is_none() {
                        routes.voice = tel_number(service.uri());
                    }
                }
            }
        }
        routes
    }
}

fn tel_number(uri: &str) -> Option<E164> {
    let rest = uri.strip_prefix("tel:")?;
    let number = rest.split_once(';').map_or(rest, |(n, _)| n);
    E164::parse(number).ok()
}

/// Two different `v=tc1` keys published for one number: the directory never does this, so the answer is not
/// trusted to name one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the number publishes {count} different master keys")]
pub struct ConflictingKeys {
    /// How many distinct keys were seen.
    pub count: usize,
}

/// The master key published by `txts`: TXT records that are not `v=tc1` are skipped; the same key twice is fine;
/// two different keys are an error.
pub fn key_from_txts<'a>(txts: impl IntoIterator<Item = &'a TXT>) -> Result<Option<MasterKey>, ConflictingKeys> {
    let mut keys: Vec<MasterKey> = Vec::new();
    for key in txts.into_iter().filter_map(key_from_txt) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    match keys.len() {
        0 => Ok(None),
        1 => Ok(keys.pop()),
        count => Err(ConflictingKeys { count }),
    }
}

#[cfg(test)]
mod tests;
