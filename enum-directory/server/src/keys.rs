//! The zone's DNSSEC keys in storage: a KSK and a ZSK generated on first start (or by `keys generate`), loaded
//! into the DNS engine's [`ZoneKeys`] at start, and the DS records the parent zone publishes for the KSK.

use hickory_proto::rr::Name;
use tincan_common::Clock;

use crate::dns;
use crate::dns::{ZoneKey, ZoneKeys};
use tincan_translog::LogEntry;

use crate::storage::{DnssecKey, KeyAlgorithm, KeyRole, KeyState, Repository, Storage, StorageError};

/// Why keys could not be made, loaded or shown.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The DNS engine could not make or load a key.
    #[error(transparent)]
    Key(#[from] dns::KeyError),
    /// The zone could not take the new keys.
    #[error("zone: {0}")]
    Zone(#[from] dns::ZoneError),
    /// A rollover of this role is already under way.
    #[error("a {role:?} rollover is already in progress for {apex}: see `tincan-directory keys status`")]
    RollInProgress {
        /// The apex.
        apex: String,
        /// The role.
        role: KeyRole,
    },
    /// The zone lacks an active key of this role.
    #[error("no active {role:?} for {apex}: run `tincan-directory keys generate`")]
    Missing {
        /// The apex.
        apex: String,
        /// The missing role.
        role: KeyRole,
    },
}

/// The DNS engine's algorithm for a stored algorithm.
pub fn dns_algorithm(a: KeyAlgorithm) -> dns::KeyAlgorithm {
    match a {
        KeyAlgorithm::EcdsaP256 => dns::KeyAlgorithm::EcdsaP256Sha256,
        KeyAlgorithm::Ed25519 => dns::KeyAlgorithm::Ed25519,
    }
}

pub(crate) fn dns_role(r: KeyRole) -> dns::KeyRole {
    match r {
        KeyRole::Ksk => dns::KeyRole::Ksk,
        KeyRole::Zsk => dns::KeyRole::Zsk,
    }
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A stored key, loaded for signing.
pub fn zone_key(k: &DnssecKey) -> Result<ZoneKey, KeyError> {
    Ok(ZoneKey::from_pkcs8(dns_role(k.role), dns_algorithm(k.algorithm), unix(k.created_at), &k.pkcs8)?)
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The zone's live keys (active or published), oldest first.
    pub keys: Vec<DnssecKey>,
    /// Whether any key was generated now.
    pub generated: bool,
}

/// Makes sure `apex` has an active KSK and ZSK, generating the missing ones with `algo` in one transaction.
pub async fn ensure(
    storage: &dyn Storage,
    clock: &dyn Clock,
    apex: &Name,
    algo: KeyAlgorithm,
) -> Result<Ensured, KeyError> {
    let apex_str = apex.to_ascii();
    let mut tx = storage.begin().await?;
    let existing = tx.keys().for_apex(&apex_str).await?;
    let mut generated = false;
    for role in [KeyRole::Ksk, KeyRole::Zsk] {
        if !existing.iter().any(|k| k.role == role && k.state == KeyState::Active) {
            let key = ZoneKey::generate(dns_role(role), dns_algorithm(algo), clock.unix_seconds())?;
            let stored = tx.keys().add(&apex_str, role, algo, &key.to_pkcs8(), KeyState::Active).await?;
            log_key(&mut *tx, &stored, clock).await?;
            generated = true;
        }
    }
    let keys: Vec<DnssecKey> =
        tx.keys().for_apex(&apex_str).await?.into_iter().filter(|k| k.state != KeyState::Retired).collect();
    tx.commit().await?;
    Ok(Ensured { keys, generated })
}

/// Appends `key` (in its current state) to the transparency log, in the caller's transaction.
pub async fn log_key(tx: &mut dyn Repository, key: &DnssecKey, clock: &dyn Clock) -> Result<(), KeyError> {
    use base64::Engine as _;
    let z = zone_key(key)?;
    let at_ms = clock.now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let entry = LogEntry::Key {
        apex: key.apex.clone(),
        key_id: key.id,
        role: key.role.as_str().to_owned(),
        algorithm: z.algorithm().number(),
        key_tag: z.key_tag(),
        dnskey: base64::engine::general_purpose::STANDARD.encode(z.dnskey_rdata()),
        state: key.state.as_str().to_owned(),
        at_ms,
    };
    tx.log().append(&entry).await?;
    Ok(())
}

/// The newest active KSK and ZSK of `apex`, ready to sign.
pub async fn load(storage: &dyn Storage, apex: &Name) -> Result<ZoneKeys, KeyError> {
    let apex_str = apex.to_ascii();
    let mut tx = storage.begin().await?;
    let keys = tx.keys().for_apex(&apex_str).await?;
    drop(tx);
    let newest = |role| {
        keys.iter()
            .rev()
            .find(|k| k.role == role && k.state == KeyState::Active)
            .ok_or_else(|| KeyError::Missing { apex: apex_str.clone(), role })
    };
    // Double-DS: a staged or retiring KSK is not in DNSKEY; pre-publication: a published or inactive ZSK is.
    let published = keys
        .iter()
        .filter(|k| k.role == KeyRole::Zsk && matches!(k.state, KeyState::Published | KeyState::Inactive))
        .map(zone_key)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ZoneKeys::with_published(zone_key(newest(KeyRole::Ksk)?)?, zone_key(newest(KeyRole::Zsk)?)?, published))
}

/// The DS records (SHA-256) of every live KSK of `apex`, presentation format (`<apex> IN DS <tag> <alg> 2 <HEX>`).
pub async fn ds_records(storage: &dyn Storage, apex: &Name) -> Result<Vec<String>, KeyError> {
    let apex_str = apex.to_ascii();
    let mut tx = storage.begin().await?;
    let keys = tx.keys().for_apex(&apex_str).await?;
    drop(tx);
    let out = keys
        .iter()
        .filter(|k| k.role == KeyRole::Ksk && k.state != KeyState::Retired)
        .map(|k| Ok(zone_key(k)?.ds_presentation(apex)))
        .collect::<Result<Vec<_>, KeyError>>()?;
    if out.is_empty() {
        return Err(KeyError::Missing { apex: apex_str, role: KeyRole::Ksk });
    }
    Ok(out)
}
