//! `/v1/numbers/{e164}`: one file per operation, and the record every one of them answers with.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tincan_enum_core::{E164, MasterKey, Service};

use super::ApiError;
use crate::storage::{Provider, StoredNumber};

pub(super) mod delete;
pub(super) mod get;
pub(super) mod put;
pub(super) mod put_key;

/// A number as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberResponse {
    /// The number.
    pub number: E164,
    /// Its services, in NAPTR order.
    pub services: Vec<Service>,
    /// Its master key, once published.
    pub key: Option<KeyBody>,
    /// The zone version of its last change.
    pub version: i64,
    /// The name of the provider holding it.
    pub provider: String,
    /// First registered, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last changed, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// `{"ed25519":"<unpadded base64>"}`: the body of `PUT …/key` and the `key` of a [`NumberResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// The ed25519 master cross-signing key, unpadded standard base64.
    pub ed25519: String,
}

impl From<MasterKey> for KeyBody {
    fn from(k: MasterKey) -> Self {
        KeyBody { ed25519: k.to_base64() }
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl NumberResponse {
    pub(super) fn new(stored: StoredNumber, provider: &str) -> NumberResponse {
        NumberResponse {
            number: stored.record.number,
            services: stored.record.services,
            key: stored.record.key.map(KeyBody::from),
            version: stored.version,
            provider: provider.to_owned(),
            created_at_ms: millis(stored.created_at),
            updated_at_ms: millis(stored.updated_at),
        }
    }
}

/// A provider may write a number inside its prefixes (else 403) that nobody else holds (else 409), and a number
/// it holds outside them (ported in from another provider) unless it is suspended (has no prefixes at all).
fn may_write(provider: &Provider, number: &E164, existing: Option<&StoredNumber>) -> Result<(), ApiError> {
    let ported_in = existing.is_some_and(|e| e.provider == provider.id) && !provider.prefixes.is_empty();
    if !provider.serves(number) && !ported_in {
        return Err(ApiError::OutsidePrefixes { number: number.to_string() });
    }
    match existing {
        Some(e) if e.provider != provider.id => Err(ApiError::HeldByOther),
        _ => Ok(()),
    }
}
