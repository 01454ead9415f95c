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

impl LogEntry {
    /// The entry as logged.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a log entry always serialises")
    }

    /// Parses logged text.
    pub fn parse(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// The number the entry names, if it is a number change.
    pub fn number(&self) -> Option<&E164> {
        match self {
            LogEntry::Number { number, .. } => Some(number),
            LogEntry::Key { .. } => None,
        }
    }
}
