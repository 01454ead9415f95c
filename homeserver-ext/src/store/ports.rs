//! Number ports this provider is a party of (see [`crate::porting`]): which side we are, and whether the
//! port's local effect was applied. The directory holds the request itself.

use super::{Result, StoreError};

/// Which party of a port this provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSide {
    /// We filed it: the number comes here.
    Gaining,
    /// Another provider asked for one of our numbers.
    Losing,
}

impl PortSide {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PortSide::Gaining => "gaining",
            PortSide::Losing => "losing",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "gaining" => Ok(PortSide::Gaining),
            "losing" => Ok(PortSide::Losing),
            _ => Err(StoreError::Corrupt("ports.side")),
        }
    }
}

/// A port as this provider knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRecord {
    /// The directory's id of the request.
    pub id: i64,
    /// E.164 number.
    pub number: String,
    /// Our side.
    pub side: PortSide,
    /// Gaining: the account here that gets the number. Losing: the account that had it here, if any.
    pub user_id: Option<String>,
    /// `pending`, `completed`, `objected` or `cancelled` (the directory's states).
    pub state: String,
    /// The objection's reason, once objected.
    pub reason: Option<String>,
    /// The end of the losing provider's window, Unix milliseconds.
    pub window_ends_at_ms: i64,
    /// Last change here, Unix seconds.
    pub updated_at: i64,
}

/// Ports.
#[async_trait::async_trait]
pub trait PortRepository: Send + Sync {
    /// Stores `p` unless a port with its id is stored; returns the stored one. A gaining-side `p` (we filed it)
    /// replaces a losing-side row of its id (made by a sync that ran before the filing was recorded).
    async fn insert_port(&self, p: &PortRecord) -> Result<PortRecord>;
    /// The port `id`.
    async fn port(&self, id: i64) -> Result<Option<PortRecord>>;
    /// The newest port of `number` on `side`.
    async fn port_of_number(&self, number: &str, side: PortSide) -> Result<Option<PortRecord>>;
    /// Ports still pending here, oldest first.
    async fn pending_ports(&self) -> Result<Vec<PortRecord>>;
    /// Completed ports that took one of our numbers away, oldest first.
    async fn completed_losing_ports(&self) -> Result<Vec<PortRecord>>;
    /// Records that a pending port closed (`state`, `reason`), in one conditional `UPDATE`: true when this call
    /// closed it, so the port's local effect happens once however many webhooks and polls report it.
    async fn close_port(&self, id: i64, state: &str, reason: Option<&str>, now: i64) -> Result<bool>;
    /// The `/sync` token the watch of port `id`'s old account read up to, if it ever read.
    async fn moved_watch_since(&self, id: i64) -> Result<Option<String>>;
    /// Records that the watch of port `id`'s old account read up to `since`.
    async fn set_moved_watch_since(&self, id: i64, since: &str) -> Result<()>;
    /// Claims the moved notice's answer to `event_id` in `room` for port `port_id` at `now`, in one conditional
    /// upsert: true when this call claimed it, false when that event was claimed already or the room's last
    /// answer is less than `interval` seconds old (of several nodes asking at once, one gets true).
    async fn claim_moved_reply(
        &self,
        port_id: i64,
        room: &str,
        event_id: &str,
        now: i64,
        interval: i64,
    ) -> Result<bool>;
    /// Gives back the claim of `event_id` in `room` (its answer could not be sent), so a later look may answer.
    async fn release_moved_reply(&self, port_id: i64, room: &str, event_id: &str) -> Result<()>;
}

/// Implements [`PortRepository`] for `$store` (a struct with a `pool: sqlx::Pool<$db>` field), in a child module
/// of the caller's.
macro_rules! impl_ports_store {
    ($store:ident, $db:ty) => {
        mod port_repository {
            use super::$store;
            use sqlx::Row;
            use $crate::store::Result;
            use $crate::store::ports::*;

            fn port_from_row(r: &<$db as sqlx::Database>::Row) -> Result<PortRecord> {
                Ok(PortRecord {
                    id: r.try_get("id")?,
                    number: r.try_get("number")?,
                    side: PortSide::parse(r.try_get::<&str, _>("side")?)?,
                    user_id: r.try_get("user_id")?,
                    state: r.try_get("state")?,
                    reason: r.try_get("reason")?,
                    window_ends_at_ms: r.try_get("window_ends_at_ms")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            #[async_trait::async_trait]
            impl PortRepository for $store {
                async fn insert_port(&self, p: &PortRecord) -> Result<PortRecord> {
                    let insert = match p.side {
                        PortSide::Losing => {
                            "INSERT INTO ports (id, number, side, user_id, state, reason, window_ends_at_ms, \
                             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING"
                        }
                        // Our filing is authoritative: a row a sync made before it was recorded is ours.
                        PortSide::Gaining => {
                            "INSERT INTO ports (id, number, side, user_id, state, reason, window_ends_at_ms, \
                             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET \
                             side = excluded.side, user_id = excluded.user_id, state = excluded.state, \
                             reason = excluded.reason WHERE ports.side = 'losing'"
                        }
                    };
                    sqlx::query(insert)
                    .bind(p.id)
                    .bind(&p.number)
                    .bind(p.side.as_str())
                    .bind(&p.user_id)
                    .bind(&p.state)
                    .bind(&p.reason)
                    .bind(p.window_ends_at_ms)
                    .bind(p.updated_at)
                    .execute(&self.pool)
                    .await?;
                    self.port(p.id).await?.ok_or($crate::store::StoreError::Corrupt("ports"))
                }

                async fn port(&self, id: i64) -> Result<Option<PortRecord>> {
                    let row =
                        sqlx::query("SELECT * FROM ports WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
                    row.as_ref().map(port_from_row).transpose()
                }

                async fn port_of_number(&self, number: &str, side: PortSide) -> Result<Option<PortRecord>> {
                    let row = sqlx::query("SELECT * FROM ports WHERE number = $1 AND side = $2 ORDER BY id DESC LIMIT 1")
                        .bind(number)
                        .bind(side.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(port_from_row).transpose()
                }

                async fn pending_ports(&self) -> Result<Vec<PortRecord>> {
                    let rows = sqlx::query("SELECT * FROM ports WHERE state = 'pending' ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(port_from_row).collect()
                }

                async fn completed_losing_ports(&self) -> Result<Vec<PortRecord>> {
                    let rows =
                        sqlx::query("SELECT * FROM ports WHERE side = 'losing' AND state = 'completed' ORDER BY id")
                            .fetch_all(&self.pool)
                            .await?;
                    rows.iter().map(port_from_row).collect()
                }

                async fn close_port(&self, id: i64, state: &str, reason: Option<&str>, now: i64) -> Result<bool> {
                    let done = sqlx::query(
                        "UPDATE ports SET state = $2, reason = $3, updated_at = $4 WHERE id = $1 AND state = 'pending'",
                    )
                    .bind(id)
                    .bind(state)
                    .bind(reason)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn moved_watch_since(&self, id: i64) -> Result<Option<String>> {
                    let row = sqlx::query("SELECT next_batch FROM moved_watch WHERE port_id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(|r| r.try_get::<String, _>("next_batch")).transpose()?)
                }

                async fn set_moved_watch_since(&self, id: i64, since: &str) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO moved_watch (port_id, next_batch) VALUES ($1, $2) \
                         ON CONFLICT (port_id) DO UPDATE SET next_batch = excluded.next_batch",
                    )
                    .bind(id)
                    .bind(since)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn claim_moved_reply(
                    &self,
                    port_id: i64,
                    room: &str,
                    event_id: &str,
                    now: i64,
                    interval: i64,
                ) -> Result<bool> {
                    let done = sqlx::query(
                        "INSERT INTO moved_replies (port_id, room_id, event_id, replied_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (port_id, room_id) DO UPDATE SET event_id = excluded.event_id, \
                         replied_at = excluded.replied_at WHERE moved_replies.event_id <> excluded.event_id \
                         AND moved_replies.replied_at <= excluded.replied_at - $5",
                    )
                    .bind(port_id)
                    .bind(room)
                    .bind(event_id)
                    .bind(now)
                    .bind(interval)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn release_moved_reply(&self, port_id: i64, room: &str, event_id: &str) -> Result<()> {
                    sqlx::query("DELETE FROM moved_replies WHERE port_id = $1 AND room_id = $2 AND event_id = $3")
                        .bind(port_id)
                        .bind(room)
                        .bind(event_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }
            }
        }
    };
}
pub(crate) use impl_ports_store;
