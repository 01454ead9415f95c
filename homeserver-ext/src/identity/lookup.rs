//! `GET /_matrix/identity/v2/hash_details` and `POST /_matrix/identity/v2/lookup`: local bindings first, then
//! numbers other providers registered (the [`crate::mirror`], each hit resolved through validated DNS).

use super::{IsCaller, IsUser, current_pepper, msisdn_address};
use crate::api::{ClientIp, Ruma};
use crate::app::App;
use crate::error::ApiError;
use crate::number::E164;
use axum::extract::State;
use ruma::OwnedUserId;
use ruma::api::identity_service::lookup::{IdentifierHashingAlgorithm, get_hash_parameters, lookup_3pid};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The algorithms and the current pepper.
pub async fn hash_details(
    State(app): State<Arc<App>>,
    _user: IsUser,
) -> Result<Ruma<get_hash_parameters::v2::Response>, ApiError> {
    let pepper = current_pepper(&app).await?;
    let mut algorithms = vec![IdentifierHashingAlgorithm::Sha256];
    if app.config.identity.lookup_allow_none {
        algorithms.push(IdentifierHashingAlgorithm::None);
    }
    Ok(Ruma(get_hash_parameters::v2::Response::new(pepper, algorithms)))
}

/// At most this many addresses per request.
const MAX_ADDRESSES: usize = 10_000;

/// A request's checks that need no state: at most [`MAX_ADDRESSES`], and an algorithm offered here (`none`
/// only when `allow_none`).
pub(crate) fn check_request(req: &lookup_3pid::v2::Request, allow_none: bool) -> Result<(), ApiError> {
    if req.addresses.len() > MAX_ADDRESSES {
        return Err(ApiError::InvalidParam("addresses"));
    }
    match req.algorithm {
        IdentifierHashingAlgorithm::Sha256 => Ok(()),
        IdentifierHashingAlgorithm::None if allow_none => Ok(()),
        _ => Err(ApiError::InvalidAlgorithm),
    }
}

/// The addresses of an `algorithm: none` lookup (`"<digits> msisdn"`), each as sent, by the number it names
/// (several spellings may name one number); addresses that name no valid number are left out.
pub(crate) fn plain_numbers(addresses: &[String]) -> BTreeMap<String, Vec<&String>> {
    let mut by_number: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for a in addresses {
        let Some((address, "msisdn")) = a.rsplit_once(' ') else { continue };
        let Ok(number) = E164::parse(&format!("+{}", msisdn_address(address))) else { continue };
        by_number.entry(number.as_str().to_owned()).or_default().push(a);
    }
    by_number
}

/// Answers which addresses are bound, keyed by the address as the client sent it.
///
/// Every address asked counts against the caller's budgets of numbers per hour (`limits.lookup_per_token`,
/// `lookup_per_user`, `lookup_per_ip`, and `lookup_per_homeserver` for other homeservers' users): a request the budgets cannot
/// cover whole is refused with `M_LIMIT_EXCEEDED` and takes nothing, so the directory cannot be walked through
/// this endpoint. `algorithm: none` (plaintext) is refused unless `identity.lookup_allow_none`.
pub async fn lookup(
    State(app): State<Arc<App>>,
    IsCaller(caller, token_digest): IsCaller,
    ClientIp(ip): ClientIp,
    Ruma(req): Ruma<lookup_3pid::v2::Request>,
) -> Result<Ruma<lookup_3pid::v2::Response>, ApiError> {
    let started = std::time::Instant::now();
    check_request(&req, app.config.identity.lookup_allow_none)?;
    let pepper = current_pepper(&app).await?;
    if req.pepper != pepper {
        return Err(ApiError::InvalidPepper);
    }
    let foreign = (caller.server_name != app.config.server_name).then_some(caller.server_name.as_str());
    app.limiter.check_lookup(&caller.user_id, &token_digest, foreign, ip, req.addresses.len()).inspect_err(|l| {
        tracing::info!(scope = l.scope.name(), addresses = req.addresses.len(), "lookup refused by its budget")
    })?;
    let mut mappings = BTreeMap::new();
    // Addresses not bound here but mirrored from the directory: (address as sent, number), resolved below
    // through DNSSEC-validated DNS.
    let mut directory_hits = Vec::new();
    match req.algorithm {
        IdentifierHashingAlgorithm::Sha256 => {
            for (hash, user_id) in app.store.lookup_hashes(&req.addresses).await? {
                mappings.insert(hash, user_id);
            }
            if app.lookup.is_some() {
                let missing: Vec<String> =
                    req.addresses.iter().filter(|a| !mappings.contains_key(*a)).cloned().collect();
                directory_hits = app.store.mirror_lookup(&missing).await?;
            }
        }
        IdentifierHashingAlgorithm::None => {
            let mut by_number = plain_numbers(&req.addresses);
            let numbers: Vec<String> = by_number.keys().cloned().collect();
            for b in app.store.bindings(&numbers).await? {
                for a in by_number.remove(&b.number).unwrap_or_default() {
                    mappings.insert(a.clone(), b.user_id.clone());
                }
            }
            if app.lookup.is_some() {
                let unbound: Vec<String> = by_number.keys().cloned().collect();
                for number in app.store.mirrored(&unbound).await? {
                    for a in by_number.remove(&number).unwrap_or_default() {
                        directory_hits.push((a.clone(), number.clone()));
                    }
                }
            }
        }
        _ => return Err(ApiError::InvalidAlgorithm),
    }
    let from_directory = directory_hits.len();
    for (address, user_id) in crate::mirror::resolve_validated(&app, directory_hits).await {
        mappings.insert(address, user_id);
    }
    tracing::debug!(
        addresses = req.addresses.len(),
        found = mappings.len(),
        from_directory,
        took_us = started.elapsed().as_micros() as u64,
        "lookup answered"
    );
    // Bound user IDs were valid when bound; one that is not (a damaged row) is left out, not sent.
    let mappings: BTreeMap<String, OwnedUserId> = mappings
        .into_iter()
        .filter_map(|(address, user_id)| match OwnedUserId::try_from(user_id) {
            Ok(user_id) => Some((address, user_id)),
            Err(e) => {
                tracing::warn!(error = %e, "lookup: a binding names an invalid user ID; left out");
                None
            }
        })
        .collect();
    Ok(Ruma(lookup_3pid::v2::Response::new(mappings)))
}
