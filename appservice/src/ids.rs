//! Remote identifiers (opaque to the core) and the mapping between remote users and ghost Matrix IDs.
//!
//! Only the connector parses a remote ID; the core stores, compares and escapes them. Ghost localparts are
//! `<prefix><escaped remote id>`, escaped so that any remote ID fits Matrix's localpart grammar
//! (`a-z 0-9 . _ = - / +`) and maps back one to one: `_` becomes `__`, an upper-case letter `X` becomes `_x`,
//! any other byte outside the grammar becomes `=hh` (lower-case hex).

use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! remote_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a connector-produced identifier.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The identifier as the connector produced it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

remote_id!(
    /// A user on the remote network (for SMS: an E.164 number).
    RemoteUserId
);
remote_id!(
    /// A chat on the remote network; for a direct chat it is the other party's [`RemoteUserId`] string.
    RemoteChatId
);
remote_id!(
    /// A message on the remote network, unique within its chat.
    RemoteMessageId
);

impl From<&RemoteUserId> for RemoteChatId {
    fn from(u: &RemoteUserId) -> Self {
        RemoteChatId(u.0.clone())
    }
}

/// Which portal an event belongs to: the local Matrix user who receives it and the remote chat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortalKey {
    /// The local Matrix user the portal belongs to.
    pub receiver: OwnedUserId,
    /// The remote chat.
    pub chat: RemoteChatId,
}

/// Escapes a remote ID into a localpart fragment (see the module doc).
pub fn escape_localpart(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        match b {
            b'_' => out.push_str("__"),
            b'A'..=b'Z' => {
                out.push('_');
                out.push(b.to_ascii_lowercase() as char);
            }
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'/' | b'+' => out.push(b as char),
            _ => out.push_str(&format!("={b:02x}")),
        }
    }
    out
}

/// Reverses [`escape_localpart`]; `None` when `s` is not a valid escaping.
pub fn unescape_localpart(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let next = *bytes.get(i + 1)?;
                match next {
                    b'_' => out.push(b'_'),
                    b'a'..=b'z' => out.push(next.to_ascii_uppercase()),
                    _ => return None,
                }
                i += 2;
            }
            b'=' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
                    return None;
                }
                let b = u8::from_str_radix(hex, 16).ok()?;
                // Only bytes the escaper would have escaped, in lower-case hex, so the mapping stays one to one.
                if b.is_ascii_alphanumeric() || b"._/+-".contains(&b) || hex.bytes().any(|c| c.is_ascii_uppercase()) {
                    return None;
                }
                out.push(b);
                i += 3;
            }
            c @ (b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'/' | b'+') => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Builds ghost user IDs from remote user IDs and back, for one prefix and server name.
#[derive(Debug, Clone)]
pub struct GhostNamer {
    prefix: String,
    server_name: String,
}

impl GhostNamer {
    /// A namer for ghosts `@<prefix>…:<server_name>`.
    pub fn new(prefix: impl Into<String>, server_name: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), server_name: server_name.into() }
    }

    /// The ghost localpart prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The ghost user ID of a remote user.
    pub fn user_id(&self, remote: &RemoteUserId) -> OwnedUserId {
        let s = format!("@{}{}:{}", self.prefix, escape_localpart(remote.as_str()), self.server_name);
        UserId::parse(s).expect("escaped localparts are valid")
    }

    /// The remote user behind a ghost user ID; `None` for any user outside the ghost namespace.
    pub fn remote_id(&self, user: &UserId) -> Option<RemoteUserId> {
        if user.server_name().as_str() != self.server_name {
            return None;
        }
        let rest = user.localpart().strip_prefix(&self.prefix)?;
        if rest.is_empty() {
            return None;
        }
        unescape_localpart(rest).map(RemoteUserId)
    }

    /// Whether `user` is one of this bridge's ghosts.
    pub fn is_ghost(&self, user: &UserId) -> bool {
        self.remote_id(user).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phone_numbers_stay_readable() {
        assert_eq!(escape_localpart("+4915112345678"), "+4915112345678");
        assert_eq!(escape_localpart("Ab_c d"), "_ab__c=20d");
        let n = GhostNamer::new("sms_", "hs.test");
        let u = n.user_id(&RemoteUserId::new("+4915112345678"));
        assert_eq!(u.as_str(), "@sms_+4915112345678:hs.test");
        assert_eq!(n.remote_id(&u), Some(RemoteUserId::new("+4915112345678")));
        assert_eq!(n.remote_id(UserId::parse("@alice:hs.test").unwrap().as_ref()), None);
        assert_eq!(n.remote_id(UserId::parse("@sms_+1:other.test").unwrap().as_ref()), None);
        assert_eq!(n.remote_id(UserId::parse("@sms_:hs.test").unwrap().as_ref()), None);
    }

    #[test]
    fn rejects_non_canonical_escapes() {
        assert_eq!(unescape_localpart("_"), None);
        assert_eq!(unescape_localpart("=4"), None);
        assert_eq!(unescape_localpart("=61"), None); // 'a' is never escaped
        assert_eq!(unescape_localpart("=2A"), None); // upper-case hex is never produced
        assert_eq!(unescape_localpart("_1"), None);
    }

    proptest! {
        #[test]
        fn escape_round_trips(s in "\\PC{0,40}") {
            let e = escape_localpart(&s);
            prop_assert!(e.bytes().all(|b| b"abcdefghijklmnopqrstuvwxyz0123456789._=-/+".contains(&b)));
            prop_assert_eq!(unescape_localpart(&e), Some(s));
        }

        #[test]
        fn unescape_is_injective(s in "[a-z0-9._=/+-]{0,20}") {
            if let Some(u) = unescape_localpart(&s) {
                prop_assert_eq!(escape_localpart(&u), s);
            }
        }
    }
}
