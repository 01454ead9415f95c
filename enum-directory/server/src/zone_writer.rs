//! The DNS zone as the API's [`ZoneWriter`]: committed changes are signed into the in-memory zone.

use tincan_enum_core::{E164, NumberRecord};

use crate::api::ZoneWriter;
use crate::dns::{SignedEntry, Zone, ZoneError};

impl ZoneWriter for Zone {
    fn sign(&self, record: &NumberRecord) -> Result<Option<SignedEntry>, ZoneError> {
        self.sign_record(record)
    }

    fn publish(&self, record: &NumberRecord, signed: Option<SignedEntry>) {
        // Signed before the commit: publishing only swaps it in. Unsigned (a record publishing nothing) removes.
        if let Err(e) = self.install(&record.number, signed) {
            tracing::error!(error = %e, "could not publish a committed change in the zone");
        }
    }

    fn remove(&self, number: &E164) {
        if let Err(e) = Zone::remove(self, number) {
            tracing::error!(error = %e, "could not remove a committed deletion from the zone");
        }
    }

    fn publish_many(&self, changes: Vec<(E164, Option<SignedEntry>)>) -> usize {
        let n = changes.len();
        self.install_many(changes).unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not publish changes made elsewhere in the zone");
            n
        })
    }
}
