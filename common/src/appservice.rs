//! What every Tincan application service (the bridges and the sign-up extension) tells its homeserver and checks
//! on the way in: the registration file (`app_service_config_files`), its namespace regexes and the `hs_token`.

use subtle::ConstantTimeEq;

/// Escapes regex metacharacters in `s` for a namespace regex. The set is what the Rust `regex` crate treats as
/// meta (the Conduit family reads namespaces with it, and older versions refuse other escapes); Synapse reads them
/// as Python `re` patterns, where a backslash before any of these characters means the character itself.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The namespace regex of every user whose localpart starts with `prefix` on `server_name`.
pub fn users_with_prefix(prefix: &str, server_name: &str) -> String {
    format!("@{}.*:{}", regex_escape(prefix), regex_escape(server_name))
}

/// The namespace regex of the one user `localpart` on `server_name`.
pub fn one_user(localpart: &str, server_name: &str) -> String {
    format!("@{}:{}", regex_escape(localpart), regex_escape(server_name))
}

/// Whether the token a request presented is the configured `hs_token`: a constant-time comparison, and an empty
/// configured token matches nothing.
pub fn hs_token_matches(presented: &str, configured: &str) -> bool {
    !configured.is_empty() && bool::from(presented.as_bytes().ct_eq(configured.as_bytes()))
}

/// An application-service registration, written as YAML by [`Registration::to_yaml`].
#[derive(Debug, Clone, Default)]
pub struct Registration<'a> {
    /// The registration's id.
    pub id: &'a str,
    /// Where the homeserver sends transactions and queries.
    pub url: &'a str,
    /// What the appservice presents to the homeserver.
    pub as_token: &'a str,
    /// What the homeserver presents to the appservice.
    pub hs_token: &'a str,
    /// The appservice's own user.
    pub sender_localpart: &'a str,
    /// Exclusive user namespaces (regexes, see [`users_with_prefix`] and [`one_user`]).
    pub users: Vec<String>,
    /// Ask for receipts and typing (`receive_ephemeral`).
    pub receive_ephemeral: bool,
    /// Further top-level flags set to `true` (unstable features: `io.element.msc4190`, …).
    pub flags: Vec<&'static str>,
    /// The third-party protocols the appservice serves; `None` leaves the key out.
    pub protocols: Option<&'a [String]>,
}

impl Registration<'_> {
    /// The registration file. Strings are JSON-quoted (valid YAML), so no value can break the file's structure.
    /// The appservice is never rate limited, and claims no aliases or rooms.
    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        for (key, value) in [
            ("id", self.id),
            ("url", self.url),
            ("as_token", self.as_token),
            ("hs_token", self.hs_token),
            ("sender_localpart", self.sender_localpart),
        ] {
            y.push_str(&format!("{key}: {}\n", q(value)));
        }
        y.push_str("rate_limited: false\n");
        if self.receive_ephemeral {
            y.push_str("receive_ephemeral: true\n");
        }
        for flag in &self.flags {
            y.push_str(&format!("{flag}: true\n"));
        }
        y.push_str("namespaces:\n");
        if self.users.is_empty() {
            y.push_str("  users: []\n");
        } else {
            y.push_str("  users:\n");
            for regex in &self.users {
                y.push_str(&format!("    - exclusive: true\n      regex: {}\n", q(regex)));
            }
        }
        y.push_str("  aliases: []\n  rooms: []\n");
        match self.protocols {
            None => {}
            Some([]) => y.push_str("protocols: []\n"),
            Some(protocols) => {
                y.push_str("protocols:\n");
                for p in protocols {
                    y.push_str(&format!("  - {}\n", q(p)));
                }
            }
        }
        y
    }
}

/// A YAML (and JSON) double-quoted string.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_both_regex_dialects_treat_as_meta() {
        assert_eq!(regex_escape("sms_+"), "sms_\\+");
        assert_eq!(regex_escape("hs.example"), "hs\\.example");
        assert_eq!(regex_escape("my-hs.test:8448"), "my\\-hs\\.test:8448");
        assert_eq!(users_with_prefix("tc_", "hs.test"), "@tc_.*:hs\\.test");
        assert_eq!(one_user("bot", "hs.test"), "@bot:hs\\.test");
    }

    #[test]
    fn only_the_configured_token_matches() {
        assert!(hs_token_matches("secret", "secret"));
        assert!(!hs_token_matches("secreT", "secret"));
        assert!(!hs_token_matches("secret-longer", "secret"));
        assert!(!hs_token_matches("", ""), "an unset hs_token lets nobody in");
    }

    #[test]
    fn a_value_cannot_break_out_of_its_line() {
        let reg = Registration {
            id: "x\nhs_token: injected",
            users: vec![users_with_prefix("a", "b")],
            ..Default::default()
        };
        let y = reg.to_yaml();
        assert!(y.starts_with("id: \"x\\nhs_token: injected\"\n"), "{y}");
        assert_eq!(y.lines().filter(|l| l.starts_with("hs_token:")).count(), 1, "{y}");
        assert!(!y.contains("protocols"), "no protocols key unless asked: {y}");
        assert!(!y.contains("receive_ephemeral"), "{y}");
    }
}
