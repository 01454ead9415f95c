//! Push: an HTTP pusher for this device (the homeserver posts event ids to the app's push gateway), and the
//! notification path that fetches and decrypts one event (what Element X's notification extension does).

use super::TincanClient;
use super::messaging::IncomingMessage;
use crate::error::{ClientError, Result};
use matrix_sdk::ruma::api::client::push::{Pusher, PusherIds, PusherInit, PusherKind};
use matrix_sdk::ruma::events::room::message::{MessageType, RoomMessageEventContent};
use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent};
use matrix_sdk::ruma::push::{HttpPusherData, PushFormat};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId};
use std::time::Duration;

/// Where the app's push gateway is and who the app is (from the app's configuration).
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The gateway's notify URL (`…/_matrix/push/v1/notify`).
    pub gateway_url: String,
    /// The app id the gateway knows the app by (e.g. `org.tincan.android`).
    pub app_id: String,
}

/// How often [`TincanClient::decrypt_notification`] syncs for a room key that has not arrived yet.
const KEY_WAIT_ROUNDS: usize = 5;

impl TincanClient {
    /// Registers an HTTP pusher for this device: the homeserver posts the ids of events that notify (format
    /// `event_id_only`: no content leaves the homeserver in clear) to `push.gateway_url` with `pushkey` (the
    /// platform's push token). Registering the same pushkey again updates it.
    pub async fn register_pusher(&self, push: &PushConfig, pushkey: &str, device_name: &str, lang: &str) -> Result<()> {
        let client = self.client()?;
        let mut data = HttpPusherData::new(push.gateway_url.clone());
        data.format = Some(PushFormat::EventIdOnly);
        let pusher: Pusher = PusherInit {
            ids: PusherIds::new(pushkey.to_owned(), push.app_id.clone()),
            kind: PusherKind::Http(data),
            app_display_name: "Tincan".to_owned(),
            device_display_name: device_name.to_owned(),
            profile_tag: None,
            lang: lang.to_owned(),
        }
        .into();
        client.pusher().set(pusher, false).await?;
        Ok(())
    }

    /// The text of one event a push named, decrypted: fetched from the homeserver and decrypted with the keys
    /// we hold, syncing a few times when its room key has not arrived yet. `None` when it is not a text message
    /// (or cannot be decrypted).
    pub async fn decrypt_notification(&self, room_id: &str, event_id: &str) -> Result<Option<IncomingMessage>> {
        let client = self.client()?;
        let room_id: OwnedRoomId = room_id.try_into().map_err(|_| ClientError::InvalidUserId(room_id.into()))?;
        let event_id: OwnedEventId = event_id.try_into().map_err(|_| ClientError::InvalidUserId(event_id.into()))?;
        for round in 0..=KEY_WAIT_ROUNDS {
            if round > 0 || client.get_room(&room_id).is_none() {
                self.sync_once(Duration::ZERO).await?;
            }
            let Some(room) = client.get_room(&room_id) else { continue };
            let event = room.event(&event_id, None).await?;
            let encrypted = event.encryption_info().is_some();
            let Ok(AnySyncTimelineEvent::MessageLike(ev)) = event.raw().deserialize() else { continue };
            match ev {
                AnySyncMessageLikeEvent::RoomMessage(SyncMessageLikeEvent::Original(m)) => {
                    let RoomMessageEventContent { msgtype: MessageType::Text(text), .. } = &m.content else {
                        return Ok(None);
                    };
                    let sender = m.sender.to_string();
                    let sender_number = self.lock().contacts.get(&sender).map(|r| r.number.clone());
                    return Ok(Some(IncomingMessage {
                        room_id: room_id.to_string(),
                        event_id: event_id.to_string(),
                        sender,
                        sender_number,
                        body: text.body.clone(),
                        encrypted,
                        timestamp_ms: m.origin_server_ts.0.into(),
                        moved: None,
                    }));
                }
                // Still encrypted: the room key is on its way (to-device, with a sync).
                AnySyncMessageLikeEvent::RoomEncrypted(_) => continue,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}
