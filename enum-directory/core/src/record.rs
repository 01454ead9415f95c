//! Everything the directory publishes for one number.

use serde::{Deserialize, Serialize};

use crate::{E164, MasterKey, Service};

/// One number's entry: its services (one NAPTR each) and, once published, its master key (one TXT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberRecord {
    /// The number.
    pub number: E164,
    /// The services, in publishing order (NAPTR preference 10, 20, …).
    pub services: Vec<Service>,
    /// The user's master cross-signing key.
    pub key: Option<MasterKey>,
}
