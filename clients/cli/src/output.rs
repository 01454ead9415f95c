//! Human and JSON output, and how errors end the process.

use serde::Serialize;
use std::process::ExitCode;
use tincan_client_core::ClientError;

/// Exit code: the number is not on the network (the route is printed).
pub const EXIT_NOT_ON_NETWORK: u8 = 2;
/// Exit code: the text went to the provider's bridge, which reports that it was not delivered (`status: "failed"`
/// with the reason).
pub const EXIT_NOT_DELIVERED: u8 = 4;
/// Exit code: the contact's key does not match the directory's, or the directory's answer is not backed by its
/// transparency log (or the log forked), or the directory's parent zone publishes another DS set than the
/// charter's list names, or a pinned trust anchor the list does not vouch for; nothing sent.
pub const EXIT_KEY_MISMATCH: u8 = 3;

/// An irreversible command run without its `--yes`: nothing was done (code `confirmation_needed`, exit 1).
#[derive(Debug)]
pub struct Unconfirmed(pub String);

impl std::fmt::Display for Unconfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unconfirmed {}

/// Prints `value` as JSON, or `human` otherwise.
pub fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string(value).expect("output serializes"));
    } else {
        println!("{}", human());
    }
}

/// A stable code for each error, for `--json` and scripts (the core's, shared with the bindings).
pub fn error_code(e: &ClientError) -> &'static str {
    e.code()
}

/// Reports a failure on stderr (and as JSON on stdout with `--json`) and picks the exit code.
pub fn fail(json: bool, e: &anyhow::Error) -> ExitCode {
    let client = e.downcast_ref::<ClientError>();
    let code = match client {
        Some(c) => error_code(c),
        None if e.is::<Unconfirmed>() => "confirmation_needed",
        None => "other",
    };
    let message = match client {
        Some(ClientError::NotOnNetwork { number, route }) => {
            format!("{number} is not reachable on the network yet; the directory's route: {route}")
        }
        Some(ClientError::Unreachable { number, route, reason }) => match route {
            Some(route) => {
                format!("{number} is not reachable on the network yet: {reason}; the directory's route: {route}")
            }
            None => format!("{number} is not reachable on the network yet: {reason}"),
        },
        Some(ClientError::KeyMismatch(m)) => format!(
            "WARNING: {m}. The contact is NOT verified and the message was NOT sent (use --force to send anyway)."
        ),
        Some(ClientError::Lookup(l)) if l.is_validation_failure() => {
            format!("DNSSEC validation failed, no route shown: {l}")
        }
        Some(ClientError::Log(l)) if !l.is_unavailable() => format!(
            "WARNING: the directory's answer is not backed by its transparency log: {l}. The contact is NOT \
             verified and nothing was sent."
        ),
        Some(m @ ClientError::AnchorNotVouched { .. }) => format!(
            "WARNING: {m}. No route is shown, the contact is NOT verified and nothing was sent; take the trust \
             anchor from the charter's list (drop --trust-anchor) or pin one it names."
        ),
        Some(m @ ClientError::DirectoryNotListed { .. }) => format!(
            "WARNING: {m}. No route is shown, the contact is NOT verified and nothing was sent; use a directory \
             the charter's list names (its --apex)."
        ),
        Some(m @ ClientError::TrustListNotCurrent { .. }) => format!(
            "WARNING: {m}. No route is shown, the contact is NOT verified and nothing was sent; the charter's \
             trust list must be fetched again (is --charter-url reachable?)."
        ),
        Some(m @ ClientError::ParentDsMismatch { .. }) => format!(
            "WARNING: {m}. No route is shown, the contact is NOT verified and nothing was sent; tell the \
             directory's operator (`tincan-directory keys check-ds`)."
        ),
        _ => format!("{e:#}"),
    };
    if json {
        let mut body = serde_json::json!({"error": {"code": code, "message": message}});
        match client {
            Some(ClientError::NotOnNetwork { route, .. }) => {
                body["error"]["route"] = serde_json::to_value(route).unwrap_or_default();
            }
            Some(ClientError::Unreachable { route, reason, .. }) => {
                body["error"]["route"] = serde_json::to_value(route).unwrap_or_default();
                body["error"]["reason"] = serde_json::to_value(reason).unwrap_or_default();
            }
            Some(ClientError::Gateway { status, code, .. }) => {
                body["error"]["gateway_code"] = serde_json::json!(code);
                body["error"]["status"] = serde_json::json!(status);
            }
            _ => {}
        }
        println!("{body}");
    }
    eprintln!("error: {message}");
    ExitCode::from(match client {
        Some(ClientError::NotOnNetwork { .. } | ClientError::Unreachable { .. }) => EXIT_NOT_ON_NETWORK,
        Some(ClientError::KeyMismatch(_)) => EXIT_KEY_MISMATCH,
        Some(ClientError::Log(l)) if !l.is_unavailable() => EXIT_KEY_MISMATCH,
        Some(ClientError::ParentDsMismatch { .. }) => EXIT_KEY_MISMATCH,
        Some(ClientError::AnchorNotVouched { .. }) => EXIT_KEY_MISMATCH,
        Some(ClientError::DirectoryNotListed { .. }) => EXIT_KEY_MISMATCH,
        Some(ClientError::TrustListNotCurrent { .. }) => EXIT_KEY_MISMATCH,
        _ => 1,
    })
}
