//! RFC 3339 timestamps in the signed files (`expires`), as `SystemTime` (serde `with` module).

use serde::{Deserialize, Deserializer, Serializer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats a time as RFC 3339 UTC, whole seconds.
pub fn format(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_owned())
}

/// Parses an RFC 3339 time.
pub fn parse(s: &str) -> Result<SystemTime, String> {
    let d = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("not an RFC 3339 time: {s:?} ({e})"))?;
    let secs = d.unix_timestamp();
    let secs = u64::try_from(secs).map_err(|_| format!("before 1970: {s:?}"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// serde: writes RFC 3339.
pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*t))
}

/// serde: reads RFC 3339.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}
