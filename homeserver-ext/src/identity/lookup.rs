//! `GET /_matrix/identity/v2/hash_details` and `POST /_matrix/identity/v2/lookup`.

use super::{authenticate, current_pepper, msisdn_address};
use crate::api::Json;
use crate::app::App;
use crate::error::ApiError;
use crate::number::E164;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The algorithms and the current pepper.
pub async fn hash_details(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<axum::Json<Value>, ApiError> {
    authenticate(&app, &headers).await?;
    let pepper = current_pepper(&app).await?;
    Ok(axum::Json(json!({"algorithms": ["sha256", "none"], "lookup_pepper": pepper})))
}

/// `lookup` body.
#[derive(Debug, Deserialize)]
pub struct Lookup {
    algorithm: String,
    pepper: String,
    addresses: Vec<String>,
}

/// At most this many addresses per request.
const MAX_ADDRESSES: usize = 10_000;

/// Answers which addresses are bound, keyed by the address as the client sent it.
pub async fn lookup(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<Lookup>,
) -> Result<axum::Json<Value>, ApiError> {
    authenticate(&app, &headers).await?;
    if req.addresses.len() > MAX_ADDRESSES {
        return Err(ApiError::InvalidParam("addresses"));
    }
    let pepper = current_pepper(&app).await?;
    if req.pepper != pepper {
        return Err(ApiError::InvalidPepper);
    }
    let mut mappings = BTreeMap::new();
    match req.algorithm.as_str() {
        "sha256" => {
            for (hash, user_id) in app.store.lookup_hashes(&req.addresses).await? {
                mappings.insert(hash, user_id);
            }
        }
        "none" => {
            for a in &req.addresses {
                let Some((address, "msisdn")) = a.rsplit_once(' ') else { continue };
                let Ok(number) = E164::parse(&format!("+{}", msisdn_address(address))) else { continue };
                if let Some(b) = app.store.binding(number.as_str()).await? {
                    mappings.insert(a.clone(), b.user_id);
                }
            }
        }
        _ => return Err(ApiError::InvalidAlgorithm),
    }
    Ok(axum::Json(json!({ "mappings": mappings })))
}
