//! `PUT /v1/numbers/{e164}` with `{"services":[{"type":"matrix","uri":"matrix:u/alice:hs.test"},…]}`: registers
//! the number for the calling provider or replaces its services (its key is kept). 200 with the stored record.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use serde::Deserialize;
use tincan_enum_core::{NumberRecord, Service, ServiceType};

use super::super::path::NumberPath;
use super::super::{ApiError, Authenticated, WriteLock, ZoneWriter, body};
use super::{NumberResponse, may_write};
use crate::storage::Storage;

/// The most services one number may publish.
pub const MAX_SERVICES: usize = 16;

/// The request body. Service types and URIs are checked after parsing so each failure gets its own code.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    services: Vec<RawService>,
}

/// One service as written in a request (or an import line), before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    #[serde(rename = "type")]
    kind: String,
    uri: String,
}

/// Validates the services of a request: 1 to [`MAX_SERVICES`], known types, URIs fitting their type.
pub(crate) fn services(raw: Vec<RawService>) -> Result<Vec<Service>, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::NoServices);
    }
    if raw.len() > MAX_SERVICES {
        return Err(ApiError::TooManyServices { max: MAX_SERVICES });
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, s)| {
            let kind = ServiceType::ALL
                .into_iter()
                .find(|t| t.as_str() == s.kind)
                .ok_or(ApiError::UnknownServiceType(s.kind))?;
            Service::new(kind, &s.uri).map_err(|source| ApiError::InvalidUri { index, source })
        })
        .collect()
}

/// A request body's services, validated: what the handler stores (also [`crate::api::parse_put_body`]).
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Service>, ApiError> {
    let request: Request = serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    services(request.services)
}

pub(crate) async fn handler(
    State(storage): State<Arc<dyn Storage>>,
    State(zone): State<Arc<dyn ZoneWriter>>,
    State(writes): State<WriteLock>,
    Authenticated(provider): Authenticated,
    NumberPath(number): NumberPath,
    body: Body,
) -> Result<Json<NumberResponse>, ApiError> {
    let services = parse(&body::read(body).await?)?;
    let _order = writes.lock().await;
    let mut tx = storage.begin().await?;
    let existing = tx.numbers().get(&number).await?;
    may_write(&provider, &number, existing.as_ref())?;
    let record = NumberRecord { key: existing.as_ref().and_then(|e| e.record.key), number, services };
    if let Some(unchanged) = existing.filter(|e| e.record == record) {
        return Ok(Json(NumberResponse::new(unchanged, &provider.name)));
    }
    let change = crate::change::put_number(&mut *tx, &*zone, &record, provider.id).await?;
    tx.commit().await?;
    let stored = change.publish(&*zone);
    let redacted = tincan_common::telemetry::redact_number(stored.record.number.as_str());
    tracing::info!(number = %redacted, provider = %provider.name, version = stored.version, "number stored");
    Ok(Json(NumberResponse::new(stored, &provider.name)))
}
