//! The moved notice: once one of our numbers has been ported away, its old account tells the people it has
//! direct chats with where the number went, so a conversation with the old Matrix ID does not end in silence.
//!
//! The extension acts as the old account — with the JWT backend through a login like a sign-in's (a JWT
//! exchanged at the homeserver), with the appservice backend as the appservice acting for its user (its token
//! and `?user_id=`: no login, so no device is made) — and in every joined room of at most two members sends an
//! `m.notice` whose body says it for people and whose `io.tincan.moved` field says it for clients:
//!
//! ```json
//! {"msgtype": "m.notice", "body": "…", "io.tincan.moved": {"user_id": "@new:b.example", "provider": "b"}}
//! ```
//!
//! The number itself is not in it: someone who knew only the old Matrix ID learns nothing of the number. The
//! notice is sent in clear (the extension holds none of the account's encryption keys) and says nothing the
//! directory does not publish; a client takes it only as a hint to check the number against the directory
//! again, which shows the move backed by the transparency log's port entry. A JWT login's session ends
//! afterwards (its device goes). Sent once, when the port's completion is applied here; a homeserver failure
//! then is logged, not retried. Messages people send the old account afterwards are answered with the same notice while the
//! account is kept ([`super::old_account`]).

use crate::app::App;
use crate::config::HomeserverBackend;
use crate::homeserver::{Caller, HomeserverError, Login, call, call_keeping_error};
use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::membership::{join_room_by_id, joined_members, joined_rooms, leave_room};
use ruma::api::client::message::send_message_event;
use ruma::api::client::session::{login, logout};
use ruma::api::client::sync::sync_events;
use ruma::api::error::{ErrorKind, RetryAfter};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::{Value, json};
use std::time::Duration;
use tincan_common::matrix_client::{CallError, Refused};

/// The content field clients read.
pub const MOVED_FIELD: &str = "io.tincan.moved";

/// Rooms of at most this many joined members count as direct chats.
const DIRECT_MEMBERS: usize = 2;

/// A session of the old account, ended on [`Session::end`].
pub(super) struct Session<'a> {
    app: &'a App,
    base: String,
    token: String,
    /// With the appservice backend: the user the appservice's token acts for (`?user_id=` on every request).
    acting_for: Option<OwnedUserId>,
}

impl Session<'_> {
    /// Acts as `localpart`. With the appservice backend through the appservice's own token: no login, no device
    /// (a device would count as the user's activity where the registration lock asks when the account's devices
    /// were last seen, and a login per watch would leave one more each time), and the homeserver records no
    /// activity of the user for an appservice's requests (Synapse: unless `track_appservice_user_ips`, and then
    /// under no device of the user's). Otherwise a login, on device `device_id` when given, else a new device.
    pub(super) async fn start<'a>(
        app: &'a App,
        localpart: &str,
        device_id: Option<&str>,
    ) -> Result<Session<'a>, HomeserverError> {
        let base = app.config.homeserver_url.trim_end_matches('/').to_owned();
        let h = &app.config.homeserver;
        if h.backend == HomeserverBackend::Appservice && !h.as_token.is_empty() {
            let user_id = OwnedUserId::try_from(format!("@{localpart}:{}", app.config.server_name))
                .map_err(|_| HomeserverError::Malformed("a user ID of ours"))?;
            return Ok(Session { app, base, token: h.as_token.expose().to_owned(), acting_for: Some(user_id) });
        }
        let token = match app.homeserver.login(localpart).await? {
            Login::Session { access_token, .. } => access_token,
            Login::Jwt { token } => {
                let mut data = serde_json::Map::new();
                data.insert("token".into(), json!(token));
                let info = login::v3::LoginInfo::new("org.matrix.login.jwt", data)
                    .map_err(|e| HomeserverError::Unexpected(e.to_string()))?;
                let mut request = login::v3::Request::new(info);
                request.initial_device_display_name = Some("Tincan: number moved".into());
                request.device_id = device_id.map(Into::into);
                call(&app.http, &base, Caller::Anonymous, request).await?.access_token
            }
        };
        Ok(Session { app, base, token, acting_for: None })
    }

    /// Who the session's calls are from.
    fn caller(&self) -> Caller<'_> {
        match &self.acting_for {
            Some(user) => Caller::Appservice(&self.token, Some(user)),
            None => Caller::User(&self.token),
        }
    }

    /// `GET /sync` with `filter`, from `since` (none: a first look), waiting up to `timeout` for news.
    pub(super) async fn sync(
        &self,
        filter: &FilterDefinition,
        since: Option<&str>,
        timeout: Duration,
    ) -> Result<sync_events::v3::Response, HomeserverError> {
        let mut request = sync_events::v3::Request::new();
        request.filter = Some(sync_events::v3::Filter::FilterDefinition(filter.clone()));
        request.since = since.map(str::to_owned);
        request.timeout = Some(timeout);
        call(&self.app.http, &self.base, self.caller(), request).await
    }

    /// Joins `room` (an invitation's).
    pub(super) async fn join(&self, room: &str) -> Result<(), HomeserverError> {
        let request = join_room_by_id::v3::Request::new(room_id(room)?);
        call(&self.app.http, &self.base, self.caller(), request).await.map(drop)
    }

    /// Leaves (or declines the invitation to) `room`, giving `reason`.
    pub(super) async fn leave(&self, room: &str, reason: Option<String>) -> Result<(), HomeserverError> {
        let mut request = leave_room::v3::Request::new(room_id(room)?);
        request.reason = reason;
        call(&self.app.http, &self.base, self.caller(), request).await.map(drop)
    }

    /// Sends `content` (an `m.room.message`) into `room`, waiting out the homeserver's rate limit (a few times at
    /// most).
    pub(super) async fn send(&self, room: &str, txn: &str, content: &Value) -> Result<(), HomeserverError> {
        let room = room_id(room)?;
        let body = serde_json::value::to_raw_value(content).map_err(|e| HomeserverError::Unexpected(e.to_string()))?;
        let request =
            send_message_event::v3::Request::new_raw(room, txn.into(), "m.room.message".into(), Raw::from_json(body));
        for _ in 0..5 {
            let e = match call_keeping_error(&self.app.http, &self.base, self.caller(), request.clone()).await {
                Ok(_) => return Ok(()),
                Err(CallError::Server(e)) => e,
                Err(e) => return Err(e.into()),
            };
            let wait = match e.error_kind() {
                Some(ErrorKind::LimitExceeded(limit)) => match limit.retry_after {
                    Some(RetryAfter::Delay(d)) => Some(d),
                    _ => Some(Duration::from_secs(1)),
                },
                _ => None,
            };
            let Some(wait) = wait else { return Err(Refused::Matrix(e).into()) };
            tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
        }
        Err(HomeserverError::Refused { status: 429, errcode: "M_LIMIT_EXCEEDED".into() })
    }

    pub(super) async fn end(self) {
        if self.acting_for.is_some() {
            // The appservice's own token: nothing was signed in, nothing to end.
            return;
        }
        if let Err(e) = call(&self.app.http, &self.base, self.caller(), logout::v3::Request::new()).await {
            tracing::warn!(error = %e, "ending the moved notice's session failed");
        }
    }
}

/// The notice's content.
pub fn content(new_user: &str, provider: &str) -> Value {
    json!({
        "msgtype": "m.notice",
        "body": format!(
            "This phone number has moved to another provider. Its owner is now {new_user}: write to them there."
        ),
        MOVED_FIELD: {"user_id": new_user, "provider": provider},
    })
}

/// Sends the notice from `localpart`'s account into its direct chats; how many got it.
pub async fn send(
    app: &App,
    localpart: &str,
    new_user: &str,
    provider: &str,
    port_id: i64,
) -> Result<usize, HomeserverError> {
    let session = Session::start(app, localpart, None).await?;
    let sent = send_in_rooms(&session, &content(new_user, provider), port_id).await;
    session.end().await;
    sent
}

/// `room` as a room ID.
fn room_id(room: &str) -> Result<OwnedRoomId, HomeserverError> {
    OwnedRoomId::try_from(room).map_err(|_| HomeserverError::Malformed("a room ID"))
}

/// Whether `room` is a direct chat: at most [`DIRECT_MEMBERS`] joined members.
pub(super) async fn is_direct(s: &Session<'_>, room: &str) -> Result<bool, HomeserverError> {
    let members = call(&s.app.http, &s.base, s.caller(), joined_members::v3::Request::new(room_id(room)?)).await?;
    Ok(members.joined.len() <= DIRECT_MEMBERS)
}

async fn send_in_rooms(s: &Session<'_>, content: &Value, port_id: i64) -> Result<usize, HomeserverError> {
    let rooms = call(&s.app.http, &s.base, s.caller(), joined_rooms::v3::Request::new()).await?;
    let mut sent = 0;
    for room in rooms.joined_rooms {
        if !is_direct(s, room.as_str()).await? {
            continue;
        }
        // One transaction id per port and room: a retried send is not a second notice.
        s.send(room.as_str(), &format!("tincan-moved-{port_id}"), content).await?;
        sent += 1;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_the_new_account_for_people_and_for_clients_but_not_the_number() {
        let c = content("@tc_new:b.test", "b");
        assert_eq!(c["msgtype"], "m.notice");
        assert!(c["body"].as_str().unwrap().contains("@tc_new:b.test"));
        assert_eq!(c[MOVED_FIELD], json!({"user_id": "@tc_new:b.test", "provider": "b"}));
    }
}
