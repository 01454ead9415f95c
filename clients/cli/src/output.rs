//! Human and JSON output, and how errors end the process.

use serde::Serialize;
use std::process::ExitCode;
use tincan_client_core::ClientError;
use tincan_client_core::LogCheckError;

/// Exit code: the number is not on the network (the route is printed).
pub const EXIT_NOT_ON_NETWORK: u8 = 2;
/// Exit code: the contact's key does not match the directory's, or the directory's answer is not backed by its
/// transparency log (or the log forked); nothing sent.
pub const EXIT_KEY_MISMATCH: u8 = 3;

/// Prints `value` as JSON, or `human` otherwise.
pub fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string(value).expect("output serializes"));
    } else {
        println!("{}", human());
    }
}

/// A stable code for each error, for `--json` and scripts.
pub fn error_code(e: &ClientError) -> &'static str {
    match e {
        ClientError::InvalidNumber(_) => "invalid_number",
        ClientError::NotLoggedIn => "not_logged_in",
        ClientError::NoPendingRegistration => "no_pending_registration",
        ClientError::NoExtension => "no_extension",
        ClientError::NoDirectory => "no_directory",
        ClientError::Extension { .. } => "extension_refused",
        ClientError::Http(_) => "extension_unreachable",
        ClientError::UnsupportedLogin(_) => "unsupported_login",
        ClientError::Lookup(l) if l.is_validation_failure() => "dnssec_validation_failed",
        ClientError::Lookup(_) => "lookup_failed",
        ClientError::Log(l) if l.is_unavailable() => "log_unavailable",
        ClientError::Log(LogCheckError::Inconsistent { .. }) => "log_forked",
        ClientError::Log(_) => "not_in_log",
        ClientError::DirectoryConfig(_) => "directory_config",
        ClientError::NotOnNetwork { .. } => "not_on_network",
        ClientError::KeyMismatch(_) => "key_mismatch",
        ClientError::NotEncrypted { .. } => "not_encrypted",
        ClientError::InvalidUserId(_) => "invalid_user_id",
        ClientError::Matrix(_) | ClientError::MatrixHttp(_) | ClientError::Build(_) => "matrix",
        ClientError::CryptoStore(_) => "crypto_store",
        ClientError::State { .. } | ClientError::StateCorrupt { .. } => "state",
        ClientError::NoOwnIdentity => "no_identity",
        ClientError::StoreKey(_) => "store_key",
        ClientError::UnencryptedDataDir { .. } => "unencrypted_data_dir",
    }
}

/// Reports a failure on stderr (and as JSON on stdout with `--json`) and picks the exit code.
pub fn fail(json: bool, e: &anyhow::Error) -> ExitCode {
    let client = e.downcast_ref::<ClientError>();
    let code = client.map_or("other", error_code);
    let message = match client {
        Some(ClientError::NotOnNetwork { number, route }) => {
            format!("{number} is not reachable on the network yet; the directory's route: {route}")
        }
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
        _ => format!("{e:#}"),
    };
    if json {
        let mut body = serde_json::json!({"error": {"code": code, "message": message}});
        if let Some(ClientError::NotOnNetwork { route, .. }) = client {
            body["error"]["route"] = serde_json::to_value(route).unwrap_or_default();
        }
        println!("{body}");
    }
    eprintln!("error: {message}");
    ExitCode::from(match client {
        Some(ClientError::NotOnNetwork { .. }) => EXIT_NOT_ON_NETWORK,
        Some(ClientError::KeyMismatch(_)) => EXIT_KEY_MISMATCH,
        Some(ClientError::Log(l)) if !l.is_unavailable() => EXIT_KEY_MISMATCH,
        _ => 1,
    })
}
