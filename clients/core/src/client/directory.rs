//! Numbers through the directory: resolution to a route, contact key verification against the directory's
//! key, and contact import through the extension's Identity Service v2 hashed lookup.

use super::{TincanClient, master_key_of};
use crate::contacts::lookup_hash;
use crate::error::{ClientError, Result};
use crate::route::Route;
use crate::state::SeenTreeHead;
use crate::trust::{DirectoryKey, KeyStatus, PortMove, assess_moved};
use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::ruma::api::client::account::request_openid_token;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use tincan_enum_core::E164;
use tincan_enum_lookup::log::check_resolution_entry;
use tincan_enum_lookup::{Lookup, Resolution};
use tincan_translog::LogEntry;

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
    /// Resolves `phone` in the directory, DNSSEC-validated and, when a transparency log is configured, checked
    /// against it as [`check_contact`](Self::check_contact) does: the best route. A bogus answer is
    /// [`ClientError::Lookup`]; an answer the log does not back, or a log that forked, is [`ClientError::Log`];
    /// a directory whose parent zone publishes another DS set than the charter's list names is
    /// [`ClientError::ParentDsMismatch`], a pinned trust anchor the list does not vouch for
    /// [`ClientError::AnchorNotVouched`], a directory the list does not name
    /// [`ClientError::DirectoryNotListed`], and any directory while a configured charter gives no current list
    /// [`ClientError::TrustListNotCurrent`] (see [`crate::charter`]); never a route.
    pub async fn resolve(&self, phone: &str) -> Result<Route> {
        let number = E164::parse(phone)?;
        let (res, _, _) = self.resolve_logged(&number).await?;
        Ok(Route::from_resolution(&res))
    }

    /// The directory's lookup; `None` when no directory is configured. A directory whose trust anchor is to come
    /// from the charter's list while the client has no current list (none fetched yet, or the last good one
    /// expired) has no lookup, and is [`ClientError::TrustListNotCurrent`] (as with a pinned anchor, see
    /// [`crate::charter`]), never `None`: [`route_to_number`](Self::route_to_number) takes `None` for "no
    /// directory" and goes to the bridges, so whoever blocks the list's refreshes would move every text and call
    /// off end-to-end encrypted Matrix and hand the numbers to the bridges. Likewise a current list that does not
    /// name the directory (a refresh brought one that dropped it) is [`ClientError::DirectoryNotListed`], and a
    /// directory the last refresh could not set up from the list is [`ClientError::DirectoryConfig`].
    pub(super) fn directory_lookup(&self) -> Result<Option<&Lookup>> {
        if let Some(lookup) = &self.lookup {
            return Ok(Some(lookup));
        }
        if let Some(why) = &self.directory_unusable {
            return Err(ClientError::DirectoryConfig(why.clone()));
        }
        match (&self.config.directory, &self.charter) {
            (Some(d), Some(charter)) => Err(charter.no_anchor_for(&d.apex, self.clock.now())),
            _ => Ok(None),
        }
    }

    /// Resolves `number` and checks the answer against the transparency log, when one is configured: the
    /// number's inclusion proof must verify under the pinned log key and say what DNS said, and its tree head
    /// must be consistent with the last one this client accepted (which is then advanced). Whether the answer
    /// was logged is returned beside it, and the completed port the log proves it came from, if it did.
    async fn resolve_logged(&self, number: &E164) -> Result<(Resolution, bool, Option<PortMove>)> {
        let lookup = self.directory_lookup()?.ok_or(ClientError::NoDirectory)?;
        if let Some(check) = &self.parent_ds {
            check.check(self.clock.now()).await?;
        }
        let resolution = lookup.resolve(number).await?;
        let Some(log) = &self.log else { return Ok((resolution, false, None)) };
        let key = log.key.to_base64();
        let seen = self.lock().log_head.clone().filter(|h| h.log_key == key).map(|h| h.sth);
        let checked = check_resolution_entry(&self.http, &log.url, &log.key, &resolution, seen.as_ref()).await;
        let checked = checked
            .inspect_err(|e| tracing::warn!(%number, error = %e, "the directory's answer fails the log check"))?;
        let port = match checked.entry {
            Some(LogEntry::Port { from, to, .. }) => Some(PortMove { from: from.name, to: to.name }),
            _ => None,
        };
        if let Some(sth) = checked.head {
            let mut state = self.lock();
            // Another check may have advanced it meanwhile: keep the larger head.
            let keep =
                state.log_head.as_ref().is_some_and(|h| h.log_key == key && h.sth.head.tree_size >= sth.head.tree_size);
            if !keep {
                state.log_head = Some(SeenTreeHead { log_key: key, sth });
                drop(state);
                self.save()?;
            }
        }
        Ok((resolution, true, port))
    }

    /// Resolves `phone`, checks the answer against the transparency log (see
    /// [`TransparencyLogConfig`](crate::config::TransparencyLogConfig); an answer the log does not back, or a
    /// log that forked, is [`ClientError::Log`]) and, when it is on Matrix and we are signed in, compares the
    /// contact's master key (fresh `/keys/query`) with the directory's key. A match on a DNSSEC-validated,
    /// logged answer is recorded as verified in our state; anything else is reported in
    /// [`Contact::key_status`].
    pub async fn check_contact(&self, phone: &str) -> Result<Contact> {
        let number = E164::parse(phone)?;
        let (resolution, logged, port) = self.resolve_logged(&number).await?;
        let route = Route::from_resolution(&resolution);
        let Route::Matrix { user_id, key, validation } = &route else {
            return Ok(Contact { number, route, user_id: None, key_status: None });
        };
        let (user_id, directory_key) = (user_id.clone(), DirectoryKey { key: *key, validation: *validation, logged });
        let Some(client) = self.matrix.as_ref() else {
            return Ok(Contact { number, route, user_id: Some(user_id), key_status: None });
        };
        let user: OwnedUserId = user_id.as_str().try_into().map_err(|_| ClientError::InvalidUserId(user_id.clone()))?;
        let identity = client.encryption().request_user_identity(&user).await?;
        let homeserver_key = identity.as_ref().and_then(master_key_of);
        let stored = self.lock().contacts.get(&user_id).cloned();
        // The number verified for someone else before (it may have moved here by a port).
        let earlier = self.lock().contacts.values().find(|r| r.number == number && r.user_id != user_id).cloned();
        let (status, record) = if self.listed_server(user.server_name().as_str()) {
            let (stored, earlier) = (stored.as_ref(), earlier.as_ref());
            assess_moved(&user_id, &number, stored, earlier, port.as_ref(), directory_key, homeserver_key, self.now())
        } else {
            (KeyStatus::NotListed { server: user.server_name().to_string() }, None)
        };
        if let Some(record) = record
            && Some(&record) != stored.as_ref()
        {
            let mut state = self.lock();
            // The number is no longer the earlier Matrix ID's: its record would claim it still is.
            if let (KeyStatus::Moved { previous_user, .. } | KeyStatus::Reassigned { previous_user, .. }, Some(_)) =
                (&status, &earlier)
            {
                state.contacts.remove(previous_user);
            }
            state.contacts.insert(user_id.clone(), record);
            drop(state);
            self.save()?;
        }
        if let KeyStatus::Moved { previous_user, from, to, .. } = &status {
            tracing::info!(%previous_user, %from, %to, "the contact's number moved to another provider");
        }
        if let KeyStatus::Reassigned { previous_user, .. } = &status {
            tracing::warn!(%previous_user, %user_id, "the contact's number leads to another account, with no port in the log");
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
