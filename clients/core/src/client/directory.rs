//! Numbers through the directory: resolution to a route, contact key verification against the directory's
//! key, and contact import through the extension's Identity Service v2 hashed lookup.

use super::{TincanClient, master_key_of};
use crate::contacts::lookup_hash;
use crate::error::{ClientError, Result};
use crate::route::Route;
use crate::trust::{KeyStatus, assess};
use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::ruma::api::client::account::request_openid_token;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use tincan_enum_core::E164;

/// A number's contact as the client sees it: the directory's route and, on Matrix, the key status.
#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    /// The number.
    pub number: E164,
    /// The DNSSEC-validated route.
    pub route: Route,
    /// The Matrix user, when the route is Matrix.
    pub user_id: Option<String>,
    /// The key status, when the route is Matrix and we are signed in.
    pub key_status: Option<KeyStatus>,
}

/// A number found by contact import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedContact {
    /// The number.
    pub number: E164,
    /// Its Matrix user.
    pub user_id: String,
}

/// Addresses per Identity Service `lookup` request.
const LOOKUP_BATCH: usize = 1000;

impl TincanClient {
    /// Resolves `phone` in the directory, DNSSEC-validated: the best route. A bogus answer is
    /// [`ClientError::Lookup`], never a route.
    pub async fn resolve(&self, phone: &str) -> Result<Route> {
        let number = E164::parse(phone)?;
        let lookup = self.lookup.as_ref().ok_or(ClientError::NoDirectory)?;
        let res = lookup.resolve(&number).await?;
        Ok(Route::from_resolution(&res))
    }

    /// Resolves `phone` and, when it is on Matrix and we are signed in, compares the contact's master key
    /// (fresh `/keys/query`) with the directory's key; a match is recorded as verified in our state, a
    /// mismatch or a change is reported in [`Contact::key_status`].
    pub async fn check_contact(&self, phone: &str) -> Result<Contact> {
        let number = E164::parse(phone)?;
        let route = self.resolve(number.as_str()).await?;
        let Route::Matrix { user_id, key, .. } = &route else {
            return Ok(Contact { number, route, user_id: None, key_status: None });
        };
        let (user_id, directory_key) = (user_id.clone(), *key);
        let Some(client) = self.matrix.as_ref() else {
            return Ok(Contact { number, route, user_id: Some(user_id), key_status: None });
        };
        let user: OwnedUserId = user_id.as_str().try_into().map_err(|_| ClientError::InvalidUserId(user_id.clone()))?;
        let identity = client.encryption().request_user_identity(&user).await?;
        let homeserver_key = identity.as_ref().and_then(master_key_of);
        let stored = self.lock().contacts.get(&user_id).cloned();
        let (status, record) = assess(&user_id, &number, stored.as_ref(), directory_key, homeserver_key, self.now());
        if let Some(record) = record
            && Some(&record) != stored.as_ref()
        {
            self.lock().contacts.insert(user_id.clone(), record);
            self.save()?;
        }
        if let KeyStatus::Mismatch(m) = &status {
            tracing::warn!(%m, "contact key does not match the directory");
        }
        Ok(Contact { number, route, user_id: Some(user_id), key_status: Some(status) })
    }

    /// The contacts verified against the directory so far, by Matrix ID.
    pub fn verified_contacts(&self) -> Vec<crate::trust::TrustRecord> {
        self.lock().contacts.values().cloned().collect()
    }

    /// Finds which of `numbers` are on the network, through the extension's Identity Service v2 `lookup`
    /// (sha256 hashes with the server's pepper; the numbers themselves are never sent). `progress` is called
    /// with (done, total) after each batch.
    pub async fn import_contacts(
        &self,
        numbers: &[E164],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<ImportedContact>> {
        let ext = self.ext()?;
        let client = self.client()?;
        let me = client.user_id().ok_or(ClientError::NotLoggedIn)?.to_owned();
        let openid = client.send(request_openid_token::v3::Request::new(me)).await?;
        let is_token = ext
            .is_register(&json!({
                "access_token": openid.access_token,
                "token_type": openid.token_type.to_string(),
                "matrix_server_name": openid.matrix_server_name.to_string(),
                "expires_in": openid.expires_in.as_secs(),
            }))
            .await?;
        let pepper = ext.is_pepper(&is_token).await?;
        let mut found = Vec::new();
        let mut done = 0;
        for batch in numbers.chunks(LOOKUP_BATCH) {
            let by_hash: HashMap<String, &E164> = batch.iter().map(|n| (lookup_hash(n, &pepper), n)).collect();
            let hashes: Vec<String> = by_hash.keys().cloned().collect();
            let mappings = ext.is_lookup(&is_token, &pepper, &hashes).await?;
            for (hash, user_id) in mappings {
                if let Some(n) = by_hash.get(&hash) {
                    found.push(ImportedContact { number: (*n).clone(), user_id });
                }
            }
            done += batch.len();
            progress(done, numbers.len());
        }
        found.sort_by(|a, b| a.number.cmp(&b.number));
        Ok(found)
    }
}
