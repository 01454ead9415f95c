//! What one leaf of the directory's log says: a change to a number, or a change to a zone key. The leaf is the
//! entry's JSON text exactly as stored ([`LogEntry::to_json`]); readers parse it back with [`LogEntry::parse`].

use serde::{Deserialize, Serialize};
use tincan_enum_core::{E164, NumberRecord};

/// One logged change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LogEntry {
    /// A number was registered, changed or deleted.
    Number {
        /// The zone version the change made.
        version: i64,
        /// The number.
        number: E164,
        /// What is published from now on; `None`: deleted.
        record: Option<NumberRecord>,
        /// The database id of the provider that made the change, if one did.
        provider: Option<i64>,
        /// When, Unix milliseconds.
        at_ms: i64,
    },
    /// A number moved from one provider to another (a completed port): its holder, routes and key changed in one
    /// step. Clients that verified the number's old key show the move, backed by this entry, rather than a key
    /// change.
    Port {
        /// The zone version the change made.
        version: i64,
        /// The number.
        number: E164,
        /// What is published from now on (the gaining provider's routes and key).
        record: NumberRecord,
        /// The losing provider.
        from: PortParty,
        /// The gaining provider.
        to: PortParty,
        /// When, Unix milliseconds.
        at_ms: i64,
    },
    /// A zone key was added or changed state.
    Key {
        /// The zone apex.
        apex: String,
        /// The key's database id.
        key_id: i64,
        /// `ksk` or `zsk`.
        role: String,
        /// The DNSSEC algorithm number.
        algorithm: u8,
        /// The key tag.
        key_tag: u16,
        /// The DNSKEY rdata, standard base64.
        dnskey: String,
        /// The state it entered.
        state: String,
        /// When, Unix milliseconds.
        at_ms: i64,
    },
}

/// A provider named in a [`LogEntry::Port`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortParty {
    /// The provider's database id (what [`LogEntry::Number`] names).
    pub provider: i64,
    /// Its name at the directory (the charter list's `provider_id`).
    pub name: String,
}

impl LogEntry {
    /// The entry as logged.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a log entry always serialises")
    }

    /// Parses logged text.
    pub fn parse(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// The number the entry names, if it is a number change (a port is one).
    pub fn number(&self) -> Option<&E164> {
        self.number_change().map(|(n, _)| n)
    }

    /// The number and what is published for it from this entry on (`None`: deleted), for a number change or a
    /// port.
    pub fn number_change(&self) -> Option<(&E164, Option<&NumberRecord>)> {
        match self {
            LogEntry::Number { number, record, .. } => Some((number, record.as_ref())),
            LogEntry::Port { number, record, .. } => Some((number, Some(record))),
            LogEntry::Key { .. } => None,
        }
    }

    /// The zone version a number change or port made.
    pub fn version(&self) -> Option<i64> {
        match self {
            LogEntry::Number { version, .. } | LogEntry::Port { version, .. } => Some(*version),
            LogEntry::Key { .. } => None,
        }
    }
}
