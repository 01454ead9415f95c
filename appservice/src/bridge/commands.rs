//! The management room, after mautrix bridgev2's: a room a user invited the bridge bot into, where they log in
//! and out of the network. Commands (the first word, any case; the rest is its argument):
//!
//! - `help`: the commands;
//! - `login <…>`: the connector checks the argument ([`crate::NetworkConnector::create_login`]: the number the
//!   user sends from, credentials…) and the core keeps the login in the bridge's database
//!   ([`crate::store::UserLogin`]), replacing an earlier one;
//! - `logout`: the connector undoes its side ([`crate::NetworkConnector::delete_login`]) and the login is
//!   deleted;
//! - `status`: whether and as whom the user is logged in.
//!
//! The bot answers each command with a notice, sent with a transaction ID made from the command's event ID (a
//! command handled again after a crash is answered once as far as the homeserver remembers). After `login` and
//! `logout` the connector is asked for the user's [`crate::NetworkApi`] afresh. Arguments are never logged.
//!
//! Element and Tincan's client create encrypted DMs. With end-to-bridge encryption (`encryption.enabled`) the
//! bot has a device of its own, made when it is invited (like a ghost's: MSC4190, keys uploaded), so the user's
//! client shares the room key with it: it decrypts the commands and answers encrypted. Without encryption it
//! cannot read an encrypted room and says so there.

use super::{BridgeHandle, Result};
use crate::connector::ConnectorError;
use crate::ids::escape_localpart;
use crate::store::UserLogin;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{EventId, OwnedTransactionId, RoomId, UserId};

/// What `help` answers.
pub const HELP: &str = "Commands:\n\
    help: this list\n\
    login <…>: log in to the network (for example with the number you send from)\n\
    logout: log out of the network\n\
    status: whether and as whom you are logged in";

/// What the bot says in an encrypted management room when end-to-bridge encryption is off.
pub const ENCRYPTED: &str =
    "This room is encrypted and the bridge bot cannot read it. Invite me into an unencrypted room to send commands.";

/// The bot greets the user of a management room it joined.
pub(crate) async fn greet(bridge: &BridgeHandle, room: &RoomId) -> Result<()> {
    let network = bridge.0.connector.name();
    let text = format!("Hello! I am the {network} bridge bot. Send `help` for what I can do.");
    let txn = OwnedTransactionId::from(format!("tc.hello.{}", escape_localpart(room.as_str())));
    say(bridge, room, txn, &text).await
}

/// Answers the command `body` that `user` sent as `event_id` in their management room `room`.
pub(crate) async fn handle(
    bridge: &BridgeHandle,
    room: &RoomId,
    user: &UserId,
    event_id: &EventId,
    body: &str,
) -> Result<()> {
    let Some(answer) = answer(bridge, user, body.trim()).await? else { return Ok(()) };
    reply(bridge, room, event_id, &answer).await
}

/// Answers the event `event_id` with `text`, a notice from the bot; the transaction ID is fixed by `event_id`.
pub(crate) async fn reply(bridge: &BridgeHandle, room: &RoomId, event_id: &EventId, text: &str) -> Result<()> {
    let txn = OwnedTransactionId::from(format!("tc.cmd.{}", escape_localpart(event_id.as_str())));
    say(bridge, room, txn, text).await
}

/// Sends `text` into `room` as a notice from the bot: encrypted with the bot's device when the room is
/// encrypted (and end-to-bridge encryption is on), like a ghost's message.
async fn say(bridge: &BridgeHandle, room: &RoomId, txn: OwnedTransactionId, text: &str) -> Result<()> {
    let content = RoomMessageEventContent::notice_plain(text);
    super::remote::send(bridge, room, &bridge.0.bot, txn, &content).await?;
    Ok(())
}

async fn answer(bridge: &BridgeHandle, user: &UserId, body: &str) -> Result<Option<String>> {
    let (command, args) = match body.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (body, ""),
    };
    let network = bridge.0.connector.name().to_owned();
    let store = &bridge.0.store;
    Ok(Some(match command.to_lowercase().as_str() {
        "" => return Ok(None),
        "help" => HELP.to_owned(),
        "status" => match store.user_login(user).await? {
            Some(login) => format!("Logged in to {network} as {}.", login.remote_id),
            None => match bridge.login(user).await {
                Ok(Some(_)) => format!("You are bridged to {network}; no login is needed."),
                Ok(None) => format!("Not logged in to {network}. Send `login …` to log in."),
                Err(e) => format!("Cannot tell: {e}"),
            },
        },
        "login" if args.is_empty() => {
            "Usage: login <…> (what to log in with, for example the number you send from).".to_owned()
        }
        "login" => match bridge.0.connector.create_login(user, args).await {
            Ok(new) => {
                let login = UserLogin { user_id: user.to_owned(), remote_id: new.remote_id, metadata: new.metadata };
                store.upsert_user_login(&login).await?;
                forget_cached_login(bridge, user);
                tracing::info!(%user, network, "a user logged in");
                format!("Logged in to {network} as {}.", login.remote_id)
            }
            Err(ConnectorError::Unsupported) => format!("{network} has no logins on this bridge."),
            Err(e) => format!("Login failed: {e}"),
        },
        "logout" => match store.user_login(user).await? {
            None => format!("You are not logged in to {network}."),
            Some(login) => {
                let said = bridge.0.connector.delete_login(user, &login).await.err();
                store.delete_user_login(user).await?;
                forget_cached_login(bridge, user);
                tracing::info!(%user, network, "a user logged out");
                match said {
                    None => format!("Logged out of {network}."),
                    Some(e) => format!("Logged out of {network} (the network said: {e})."),
                }
            }
        },
        other => format!("Unknown command {other:?}. Send `help` for the commands."),
    }))
}

/// Drops the cached network API of `user`, so that the connector is asked again.
fn forget_cached_login(bridge: &BridgeHandle, user: &UserId) {
    bridge.0.logins.lock().expect("not poisoned").remove(user);
}
