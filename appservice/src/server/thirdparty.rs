//! `GET /_matrix/app/v1/thirdparty/protocol/{protocol}` and `…/thirdparty/user/{protocol}`: phone numbers
//! (`m.protocol.pstn`, field `m.id.phone`, the protocol Element's dial pad uses) looked up to ghosts.

use super::ApiError;
use crate::{BridgeHandle, PSTN_FIELD, PSTN_PROTOCOL};
use axum::Json;
use axum::extract::{Path, Query, State};
use ruma::thirdparty::{FieldTypeInit, Protocol, ProtocolInit, ProtocolInstanceInit, User};
use std::collections::BTreeMap;

/// The protocol description (404 for any other protocol).
pub(crate) async fn protocol(
    State(bridge): State<BridgeHandle>,
    Path(protocol): Path<String>,
) -> Result<Json<Protocol>, ApiError> {
    if protocol != PSTN_PROTOCOL || !bridge.0.connector.capabilities().pstn_lookup {
        return Err(ApiError::NotFound);
    }
    let field = FieldTypeInit { regexp: r"^\+?[0-9 ()./-]+$".into(), placeholder: "+4915112345678".into() };
    let instance = ProtocolInstanceInit {
        desc: format!("Phone numbers via {}", bridge.0.connector.name()),
        fields: BTreeMap::new(),
        network_id: bridge.0.connector.name().to_owned(),
    };
    Ok(Json(
        ProtocolInit {
            user_fields: vec![PSTN_FIELD.into()],
            location_fields: vec![],
            icon: String::new(),
            field_types: BTreeMap::from([(PSTN_FIELD.to_owned(), field.into())]),
            instances: vec![instance.into()],
        }
        .into(),
    ))
}

/// The ghost for `?m.id.phone=<number>` (an international number, its `+` optional, digits and the usual
/// separators); 404 when none.
pub(crate) async fn user(
    State(bridge): State<BridgeHandle>,
    Path(protocol): Path<String>,
    Query(fields): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<User>>, ApiError> {
    if protocol != PSTN_PROTOCOL {
        return Err(ApiError::NotFound);
    }
    let number = fields.get(PSTN_FIELD).ok_or(ApiError::NotFound)?;
    let e164 = normalise(number).ok_or(ApiError::NotFound)?;
    let remote = match bridge.0.connector.remote_user_for_phone(&e164) {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) => return Err(ApiError::NotFound),
    };
    let user = User::new(
        bridge.0.namer.user_id(&remote),
        PSTN_PROTOCOL.to_owned(),
        BTreeMap::from([(PSTN_FIELD.to_owned(), e164)]),
    );
    Ok(Json(vec![user]))
}

/// An international number in E.164, or `None` when it is not a valid number. Parsed like every number in the
/// workspace ([`tincan_enum_core::E164`]): digits and spaces, dashes, dots or brackets only.
pub fn normalise(number: &str) -> Option<String> {
    let n = number.trim();
    let n = if n.starts_with('+') { n.to_owned() } else { format!("+{n}") };
    tincan_enum_core::E164::parse(&n).ok().map(|e| e.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn numbers_normalise_to_e164() {
        assert_eq!(normalise("+49 151 12345678").as_deref(), Some("+4915112345678"));
        assert_eq!(normalise("4915112345678").as_deref(), Some("+4915112345678"));
        assert_eq!(normalise("+44 20 7946 0018").as_deref(), Some("+442079460018"));
        assert_eq!(normalise("12"), None);
        assert_eq!(normalise("hello"), None);
        assert_eq!(normalise("+39 06 1234 5678").as_deref(), Some("+390612345678"));
        assert_eq!(normalise("+44 999"), None, "a short number is not E.164");
    }
}
