//! The one path every change to a number takes, from the registrar API and from `numbers import`: the new
//! records are signed first, then stored with their signatures in the caller's transaction (taking the next
//! zone version and appending to the journal), and only after the commit published in the zone. Signing before
//! storing means a start-up loads signatures instead of making them, and a signing failure writes nothing.

use tincan_enum_core::{E164, NumberRecord};

use crate::api::ZoneWriter;
use crate::dns::{SignedEntry, ZoneError};
use crate::storage::{ProviderId, Repository, StorageError, StoredNumber};

/// Why a change could not be made; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The records could not be signed.
    #[error("signing the records failed: {0}")]
    Sign(#[from] ZoneError),
}

/// A stored change, to [`Stored::publish`] once its transaction has committed.
#[derive(Debug)]
#[must_use = "publish the change after committing"]
pub struct Stored {
    /// The number as stored.
    pub number: StoredNumber,
    signed: Option<SignedEntry>,
}

impl Stored {
    /// Publishes the change in the zone (call after the commit, in commit order); returns the stored number.
    pub fn publish(self, zone: &dyn ZoneWriter) -> StoredNumber {
        zone.publish(&self.number.record, self.signed);
        self.number
    }
}

/// Signs `record` and stores it, held by `provider`, in `tx` (next version, journalled).
pub async fn put_number(
    tx: &mut dyn Repository,
    zone: &dyn ZoneWriter,
    record: &NumberRecord,
    provider: ProviderId,
) -> Result<Stored, ChangeError> {
    let signed = zone.sign(record)?;
    put_signed(tx, record, provider, signed).await
}

/// [`put_number`] with the records already signed by [`ZoneWriter::sign`] (a bulk import signs on several
/// threads ahead of its transaction).
pub async fn put_signed(
    tx: &mut dyn Repository,
    record: &NumberRecord,
    provider: ProviderId,
    signed: Option<SignedEntry>,
) -> Result<Stored, ChangeError> {
    let number = tx.numbers().put_signed(record, provider, signed.as_ref().map(SignedEntry::as_bytes)).await?;
    Ok(Stored { number, signed })
}

/// Removes `number` in `tx` (journalled); `None` when it was not registered. Call [`ZoneWriter::remove`]
/// after the commit.
pub async fn delete_number(
    tx: &mut dyn Repository,
    number: &E164,
    provider: Option<ProviderId>,
) -> Result<Option<StoredNumber>, ChangeError> {
    Ok(tx.numbers().delete(number, provider).await?)
}
