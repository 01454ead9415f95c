//! The number's old account after a port away: its user keeps it (the default) or closes it.
//!
//! **Kept.** The number now leads to the new account, but people who knew the old Matrix ID may go on writing
//! to it. While it is kept, the extension watches it — a `/sync` long-poll, signed in as it on one device
//! ([`DEVICE_ID`], "Tincan: number moved") with the JWT backend, acting for it with the appservice's token (no
//! login, no device) with the appservice backend — and answers a message someone else sends it in a room of at
//! most two joined members with the moved notice ([`super::notice`]: the new Matrix ID and provider, no
//! number), at most once per room every `porting.moved_reply_interval_secs`. Encrypted messages count (the extension sees that
//! one arrived, not what it says). Only messages sent after the port are answered, and only when the account
//! has not written in the room since (so a restart of the extension does not answer a message twice). Every
//! node of a deployment watches every kept account; each answer is claimed first in the database they share
//! (`moved_replies`: per port and room, the event answered and when), so a message gets one notice and a room
//! at most one per interval, whichever nodes see it.
//!
//! An invitation sent to it after the port is answered as well: a direct chat (the invitation says `is_direct`)
//! is joined and gets the notice; any other room is declined with the notice's text as the reason. An
//! invitation's stripped state carries no time, so "after the port" is "after the watch's first look": the
//! `/sync` token the watch read up to is kept in the database (`moved_watch`), so a restarted node, or another,
//! goes on from it and still sees an invitation that came meanwhile; what the very first look finds pending is
//! left to the user (it may predate the port; the watch starts seconds after the port completes here).
//!
//! An account stops being watched when it is closed, or when its number comes back here (a port back).
//!
//! **Closed.** `POST /_tincan/client/v1/account/close` with the old account's access token (the old device
//! still holds one) deactivates it at the homeserver — only an account whose number moved away by a port: 409
//! `IO.TINCAN.PORT_PENDING` while its port is still pending, 409 `IO.TINCAN.NOT_MOVED_AWAY` for any other
//! account. The local account record goes, so the watch stops (every node's, at its next look) and a sign-in
//! with the number here later makes a new account (and files a port back). A closed account gets no moved notice
//! any more: nobody can act as a deactivated account, which has left its rooms (their members see it leave; the
//! notices it sent stay in the history). An invitation to it is still taken by the homeserver (Synapse does not
//! refuse to invite a deactivated user) and is never answered; the number itself leads to the new account through
//! the directory. Deactivation without user-interactive auth (the client-server route asks for it, and a
//! JWT-made account has no password or SSO to pass it with):
//! - appservice backend: the client-server `POST /_matrix/client/v3/account/deactivate?user_id=…` as the
//!   appservice (the homeserver lets an appservice deactivate its own users without it);
//! - JWT backend: Synapse's admin API `POST /_synapse/admin/v1/deactivate/{user_id}` with
//!   `homeserver.admin_token` (a Synapse admin's access token, used for nothing else); without it closing
//!   answers 501 `M_UNRECOGNIZED` and the account can only be kept.

use super::notice::{self, Session};
use crate::api::{extract_bearer, no_parameters};
use crate::app::App;
use crate::config::HomeserverBackend;
use crate::error::ApiError;
use crate::homeserver::{HomeserverError, refused, whoami};
use crate::store::PortSide;
use axum::extract::State;
use axum::http::HeaderMap;
use ruma::UInt;
use ruma::api::client::filter::{Filter, FilterDefinition, RoomEventFilter};
use ruma::api::client::sync::sync_events::v3::Response as SyncResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The device the watch signs in on with the JWT backend (a JWT login reuses it rather than adding one per
/// restart; the registration lock does not count it as the user's activity). The appservice backend makes none.
pub const DEVICE_ID: &str = "TINCANMOVED";

/// The longest interval between two answers in a room the database is asked about (a century is "never again").
const CENTURY_SECS: i64 = 100 * 365 * 24 * 3600;

/// What an invitation's answer is claimed as ([`claim`]; an invitation's stripped state has no event id).
const INVITATION: &str = "invitation";

/// The event types that are someone writing to the account.
const MESSAGE_TYPES: [&str; 2] = ["m.room.message", "m.room.encrypted"];

/// An old account whose number moved away, kept by its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAway {
    /// The port that moved the number.
    pub port_id: i64,
    /// The number (E.164).
    pub number: String,
    /// The old account.
    pub user_id: String,
    /// Its localpart.
    pub localpart: String,
    /// When the port's completion was applied here, Unix seconds.
    pub moved_at: i64,
}

/// The accounts whose number a completed port took away and that are still kept here: their account record
/// is still theirs (a closed one has none) and the number is not bound to them again (no port back).
pub async fn moved_away(app: &App) -> Result<Vec<MovedAway>, crate::store::StoreError> {
    let mut by_user = BTreeMap::new();
    for p in app.store.completed_losing_ports().await? {
        let Some(user_id) = p.user_id else { continue };
        let Some(account) = app.store.account_by_number(&p.number).await? else { continue };
        if account.user_id != user_id || app.store.binding(&p.number).await?.is_some_and(|b| b.user_id == user_id) {
            continue;
        }
        // Oldest first: a later port of the same account wins.
        let moved = MovedAway {
            port_id: p.id,
            number: p.number,
            user_id,
            localpart: account.localpart,
            moved_at: p.updated_at,
        };
        by_user.insert(moved.user_id.clone(), moved);
    }
    Ok(by_user.into_values().collect())
}

/// Keeps a watch on every kept old account: at start, when a port away completes or an account is closed
/// (`App::moved_away`), and every `porting.poll_interval_secs`.
pub async fn run(app: Arc<App>) {
    let mut watching: HashMap<String, (i64, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        match moved_away(&app).await {
            Ok(kept) => {
                let wanted: HashMap<&str, i64> = kept.iter().map(|m| (m.user_id.as_str(), m.port_id)).collect();
                watching.retain(|user, (port, task)| {
                    let keep = wanted.get(user.as_str()) == Some(&*port);
                    if !keep {
                        task.abort();
                        tracing::info!(user_id = %user, port_id = *port, "stopped watching a moved-away account: it was closed, or its number came back");
                    }
                    keep
                });
                for m in kept {
                    if !watching.contains_key(&m.user_id) {
                        let (user, port) = (m.user_id.clone(), m.port_id);
                        watching.insert(user, (port, tokio::spawn(watch(app.clone(), m))));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "the old accounts to watch could not be read"),
        }
        let every = app.config.porting.poll_interval_secs;
        if every == 0 {
            app.moved_away.notified().await;
        } else {
            tokio::select! {
                () = app.moved_away.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(every)) => {}
            }
        }
    }
}

/// Why a watch ended for good.
enum Ended {
    /// The homeserver refuses the account (deactivated, or no longer ours).
    Refused,
    /// The port names no Matrix account to point to.
    NoRoute,
}

/// Watches `m` until the account is refused; a failure meanwhile is retried with a growing pause.
async fn watch(app: Arc<App>, m: MovedAway) {
    let mut pause = Duration::from_secs(1);
    loop {
        match watch_once(&app, &m).await {
            Ok(Ended::Refused) => {
                tracing::info!(user_id = %m.user_id, "no longer watching a moved-away account: the homeserver refuses it");
                return;
            }
            Ok(Ended::NoRoute) => {
                tracing::info!(user_id = %m.user_id, port_id = m.port_id, "not watching a moved-away account: its port names no Matrix account");
                return;
            }
            Err(e) => {
                tracing::warn!(user_id = %m.user_id, error = %e, "watching a moved-away account failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Whether the homeserver refuses the account itself (not a passing failure).
fn refuses_account(e: &HomeserverError) -> bool {
    matches!(e, HomeserverError::Refused { status: 401 | 403, .. })
}

async fn watch_once(app: &App, m: &MovedAway) -> Result<Ended, WatchError> {
    let dir = app.directory.as_ref().ok_or(WatchError::NoDirectory)?;
    let view = dir.port(m.port_id).await?;
    let Some(new_user) = super::new_user_of(&view) else { return Ok(Ended::NoRoute) };
    let content = notice::content(&new_user, &view.gaining);
    // Where this account's watch read up to, on this node or another; none yet: a first look.
    let mut since = app.store.moved_watch_since(m.port_id).await?;
    let session = match Session::start(app, &m.localpart, Some(DEVICE_ID)).await {
        Ok(s) => s,
        Err(e) if refuses_account(&e) => return Ok(Ended::Refused),
        Err(e) => return Err(e.into()),
    };
    let filter = sync_filter();
    // The first request of a session answers at once; the next ones wait for news.
    let mut timeout = Duration::ZERO;
    let result = loop {
        let sync = match session.sync(&filter, since.as_deref(), timeout).await {
            Ok(v) => v,
            // A token that stopped working is not the account refused: with the JWT backend every node of a
            // deployment signs in on the one device, and one node ending its session (after a failure) logs the
            // device out, the other nodes' tokens with it. The next try signs in again; a login the homeserver
            // refuses (a deactivated account) ends the watch then.
            Err(e @ HomeserverError::Refused { status: 401, .. }) => break Err(e.into()),
            Err(e) if refuses_account(&e) => break Ok(Ended::Refused),
            Err(e) => break Err(e.into()),
        };
        let first_look = since.is_none();
        if let Err(e) = answer(app, &session, m, &sync, &content, first_look).await {
            break Err(e);
        }
        if let Err(e) = app.store.set_moved_watch_since(m.port_id, &sync.next_batch).await {
            break Err(e.into());
        }
        if timeout.is_zero() {
            tracing::info!(user_id = %m.user_id, port_id = m.port_id, "watching a moved-away account");
            timeout = Duration::from_secs(30);
        }
        since = Some(sync.next_batch);
    };
    session.end().await;
    result
}

/// What the watch syncs: the last messages of each room, and invitations (their stripped state); no other state,
/// presence, ephemeral events or account data.
fn sync_filter() -> FilterDefinition {
    let mut filter = FilterDefinition::empty();
    filter.room.timeline.limit = Some(UInt::from(20u32));
    filter.room.timeline.types = Some(MESSAGE_TYPES.map(String::from).to_vec());
    filter.room.state = RoomEventFilter::ignore_all();
    filter.room.ephemeral = RoomEventFilter::ignore_all();
    filter.room.account_data = RoomEventFilter::ignore_all();
    filter.presence = Filter::ignore_all();
    filter.account_data = Filter::ignore_all();
    filter
}

/// The fields of a timeline event the watch reads.
#[derive(Deserialize)]
struct TimelineEvent {
    #[serde(rename = "type")]
    kind: String,
    sender: String,
    event_id: String,
    #[serde(default)]
    origin_server_ts: i64,
}

/// The fields of an invitation's stripped state event the watch reads.
#[derive(Deserialize)]
struct StrippedEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    state_key: String,
    #[serde(default)]
    content: StrippedMember,
}

#[derive(Deserialize, Default)]
struct StrippedMember {
    #[serde(default)]
    membership: String,
    #[serde(default)]
    is_direct: Option<bool>,
}

/// Answers what `sync` brought: messages ([`answer_messages`]) and invitations ([`answer_invites`]).
async fn answer(
    app: &App,
    session: &Session<'_>,
    m: &MovedAway,
    sync: &SyncResponse,
    content: &Value,
    first_look: bool,
) -> Result<(), WatchError> {
    answer_messages(app, session, m, sync, content).await?;
    if first_look {
        // A first look lists every pending invitation, from before the port too, and an invitation's stripped
        // state carries no time to tell them apart: these are left to the user.
        return Ok(());
    }
    answer_invites(app, session, m, sync, content).await
}

/// Answers, in each room of `sync` where someone else wrote to the account after the port and the account has
/// not written since, with the moved notice: once per message and at most once per room every
/// `porting.moved_reply_interval_secs`, however many nodes watch the account ([`claim`]).
async fn answer_messages(
    app: &App,
    session: &Session<'_>,
    m: &MovedAway,
    sync: &SyncResponse,
    content: &Value,
) -> Result<(), WatchError> {
    for (room, joined) in &sync.rooms.join {
        let room = room.as_str();
        // The newest message of the batch decides: someone else's after the port, not yet answered by us.
        let Some(last) = joined
            .timeline
            .events
            .iter()
            .rev()
            .filter_map(|e| e.deserialize_as_unchecked::<TimelineEvent>().ok())
            .find(|e| MESSAGE_TYPES.contains(&e.kind.as_str()))
        else {
            continue;
        };
        let after_port = last.origin_server_ts >= m.moved_at.saturating_mul(1000);
        if last.sender == m.user_id || !after_port {
            tracing::debug!(user_id = %m.user_id, event_id = %last.event_id, after_port, "nothing to answer: the newest message is the account's own, or from before the port");
            continue;
        }
        if !notice::is_direct(session, room).await? {
            continue;
        }
        let event_id = last.event_id.as_str();
        if !claim(app, m, room, event_id).await? {
            continue;
        }
        let txn = format!("tincan-moved-{}-{}", m.port_id, txn_part(event_id));
        if let Err(e) = session.send(room, &txn, content).await {
            release(app, m, room, event_id).await;
            return Err(e.into());
        }
        tracing::info!(user_id = %m.user_id, port_id = m.port_id, %event_id, "answered a message to a moved-away account");
    }
    Ok(())
}

/// Answers each invitation in `sync`, a batch after the watch's first look (so sent after the port): a direct
/// chat (the invitation's `is_direct`, and at most two joined members once joined) is joined and gets the moved
/// notice; any other room is declined with the notice's text as the reason, so its inviter learns the new route
/// either way. Once, however many nodes watch the account ([`claim`]). A room that refuses the join or the
/// leave (the invitation was withdrawn, the room is gone) is skipped, not retried.
async fn answer_invites(
    app: &App,
    session: &Session<'_>,
    m: &MovedAway,
    sync: &SyncResponse,
    content: &Value,
) -> Result<(), WatchError> {
    for (room, invited) in &sync.rooms.invite {
        let room = room.as_str();
        let Some(invite) = invited
            .invite_state
            .events
            .iter()
            .filter_map(|e| e.deserialize_as_unchecked::<StrippedEvent>().ok())
            .find(|e| e.kind == "m.room.member" && e.state_key == m.user_id && e.content.membership == "invite")
        else {
            continue;
        };
        // Stripped state has no event id: a room's invitation is answered once per port.
        let event_id = INVITATION;
        if !claim(app, m, room, event_id).await? {
            continue;
        }
        match answer_invite(session, m, room, &invite, content).await {
            Ok(Answered::Notice) => {
                tracing::info!(user_id = %m.user_id, port_id = m.port_id, "answered an invitation to a moved-away account");
            }
            Ok(Answered::Declined) => {
                tracing::info!(user_id = %m.user_id, port_id = m.port_id, "declined an invitation to a moved-away account");
            }
            Err(e) => {
                release(app, m, room, event_id).await;
                match e {
                    HomeserverError::Refused { status, errcode } if ![401, 429].contains(&status) => {
                        tracing::warn!(user_id = %m.user_id, status, %errcode, "an invitation to a moved-away account could not be answered");
                    }
                    e => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

/// Claims the answer to `event_id` in `room` in the database every node shares
/// ([`crate::store::PortRepository::claim_moved_reply`]): false when this event was answered already, or the
/// room within the interval, by this node or another.
async fn claim(app: &App, m: &MovedAway, room: &str, event_id: &str) -> Result<bool, WatchError> {
    // Bounded so the database's subtraction cannot overflow.
    let interval = i64::try_from(app.config.porting.moved_reply_interval_secs).unwrap_or(i64::MAX).min(CENTURY_SECS);
    let claimed = app.store.claim_moved_reply(m.port_id, room, event_id, app.now(), interval).await?;
    if !claimed {
        tracing::info!(user_id = %m.user_id, port_id = m.port_id, %event_id, "a moved-away account's room was answered already (here or by another node); not again");
    }
    Ok(claimed)
}

/// Gives a claim back after its answer failed, so a later look may answer (a failure here is logged).
async fn release(app: &App, m: &MovedAway, room: &str, event_id: &str) {
    if let Err(e) = app.store.release_moved_reply(m.port_id, room, event_id).await {
        tracing::warn!(user_id = %m.user_id, error = %e, "a failed moved notice's claim could not be given back");
    }
}

/// How an invitation was answered.
enum Answered {
    /// Joined; the moved notice is in the room.
    Notice,
    /// Declined with the notice's text as the reason.
    Declined,
}

async fn answer_invite(
    session: &Session<'_>,
    m: &MovedAway,
    room: &str,
    invite: &StrippedEvent,
    content: &Value,
) -> Result<Answered, HomeserverError> {
    if invite.content.is_direct == Some(true) {
        session.join(room).await?;
        if notice::is_direct(session, room).await? {
            // Stripped state has no event id: the room names the answer (a room is joined once).
            let txn = format!("tincan-moved-{}-{}", m.port_id, txn_part(room));
            session.send(room, &txn, content).await?;
            return Ok(Answered::Notice);
        }
    }
    session.leave(room, content["body"].as_str().map(str::to_owned)).await?;
    Ok(Answered::Declined)
}

/// An event id as a transaction id part (`$` and `:` are not welcome in a path segment's meaning).
fn txn_part(event_id: &str) -> String {
    event_id.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// A watch's passing failure.
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("no directory configured")]
    NoDirectory,
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// `POST /_tincan/client/v1/account/close`: the caller's account, whose number moved away by a port, is
/// deactivated at the homeserver and forgotten here, and its watch stops (see the module doc). 409
/// `IO.TINCAN.PORT_PENDING` while the port is pending, 409 `IO.TINCAN.NOT_MOVED_AWAY` for an account whose number
/// did not move away; 501 when the homeserver backend cannot deactivate (JWT without `homeserver.admin_token`).
/// It takes no parameters: a body other than none or a JSON object is 400 before anything is asked or done.
pub async fn close(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let token = extract_bearer(&headers).ok_or(ApiError::MissingToken)?;
    no_parameters(&body)?;
    let user_id = whoami(&app.http, &app.config.homeserver_url, token).await?.ok_or(ApiError::UnknownToken)?;
    let kept = moved_away(&app).await?;
    let Some(moved) = kept.into_iter().find(|m| m.user_id == user_id) else {
        return Err(if port_pending(&app, &user_id).await? { ApiError::PortPending } else { ApiError::NotMovedAway });
    };
    deactivate(&app, &user_id).await?;
    app.store.delete_account(&moved.number).await?;
    app.moved_away.notify_one();
    tracing::info!(%user_id, port_id = moved.port_id, "moved-away account closed (deactivated)");
    Ok(axum::Json(json!({"closed": user_id})))
}

/// Whether a port taking one of `user_id`'s numbers away is pending here (as this node last heard of it).
async fn port_pending(app: &App, user_id: &str) -> Result<bool, crate::store::StoreError> {
    for account in app.store.accounts_by_user(user_id).await? {
        let port = app.store.port_of_number(&account.number, PortSide::Losing).await?;
        if port.is_some_and(|p| p.state == "pending" && p.user_id.as_deref() == Some(user_id)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deactivates `user_id` at the homeserver without user-interactive auth (see the module doc).
async fn deactivate(app: &App, user_id: &str) -> Result<(), ApiError> {
    let base = app.config.homeserver_url.trim_end_matches('/');
    let h = &app.config.homeserver;
    let body = json!({"erase": false});
    let request = match h.backend {
        HomeserverBackend::Appservice => {
            let mut url = url::Url::parse(&format!("{base}/_matrix/client/v3/account/deactivate"))
                .map_err(|_| ApiError::Internal("homeserver_url is not a URL"))?;
            url.query_pairs_mut().append_pair("user_id", user_id);
            app.http.post(url).bearer_auth(h.as_token.expose())
        }
        HomeserverBackend::Jwt if h.admin_token.is_empty() => {
            return Err(ApiError::Unavailable("homeserver.admin_token"));
        }
        HomeserverBackend::Jwt => {
            let mut url = url::Url::parse(base).map_err(|_| ApiError::Internal("homeserver_url is not a URL"))?;
            url.path_segments_mut()
                .map_err(|()| ApiError::Internal("homeserver_url is not a URL"))?
                .pop_if_empty()
                .extend(["_synapse", "admin", "v1", "deactivate", user_id]);
            app.http.post(url).bearer_auth(h.admin_token.expose())
        }
    };
    let resp = request.json(&body).send().await.map_err(HomeserverError::from)?;
    if !resp.status().is_success() {
        return Err(refused(resp).await.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_makes_a_plain_transaction_id_part() {
        assert_eq!(txn_part("$AbC-12_x:hs.test"), "AbC12xhstest");
    }
}
