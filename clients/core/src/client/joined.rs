//! What was sent in a room before we joined it. Over federation our homeserver joins a room only when we do, so
//! it never received the events sent there before (a DM whose first texts were written while our app was
//! closed, or while our join was on its way): they do not come down our sync — a homeserver fetches them from
//! the room's other servers only when a client asks for the room's history, and events fetched that way never
//! enter the sync stream. So right after joining we read the room's latest history and deliver what it holds;
//! an event that the sync brings as well is delivered once ([`LateKeys::deliver`]).

use super::late_keys::{Arrived, LateKeys};
use super::messaging::from_timeline;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::UInt;
use matrix_sdk::ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::{Client, Room};

/// How many of the latest events are read after a join.
const HISTORY: u32 = 50;

impl LateKeys {
    /// Delivers the messages of the history of `room`, which we just joined, oldest first; those whose room
    /// key has not come yet wait for it as the sync's do.
    pub(super) async fn catch_up(&self, client: &Client, room: &Room) {
        let mut opts = MessagesOptions::backward();
        opts.limit = UInt::from(HISTORY);
        let page = match room.messages(opts).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(room = %room.room_id(), error = %e, "could not read the history of a room just joined");
                return;
            }
        };
        let room_id = room.room_id().as_str();
        let mut kept = false;
        for ev in page.chunk.iter().rev() {
            let json = ev.raw().json().get();
            if ev.encryption_info().is_none()
                && ev.raw().get_field::<String>("type").ok().flatten().as_deref() == Some("m.room.encrypted")
            {
                if let Ok(raw) = Raw::<OriginalSyncRoomEncryptedEvent>::from_json_string(json.to_owned()) {
                    self.keep(client, room_id, &raw).await;
                    kept = true;
                }
                continue;
            }
            self.signal(room_id, json, ev.encryption_info().is_some());
            if let Some(m) = from_timeline(ev, room_id, self.state()) {
                self.deliver(m);
            }
        }
        if kept {
            // A key that came while the history was read would not be noticed until the next one.
            self.retry(client, &Arrived::everything()).await;
        }
    }
}
