//! Tracing set-up for binaries: human-readable logs by default, JSON lines with `--log-json`.
//!
//! The level comes from `RUST_LOG` (default `info`). Phone numbers and secrets must never be logged in clear at
//! info level; use [`redact_number`] where a number helps an operator.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, one line per event.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber, writing to stderr. Calling it twice is harmless.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Keeps the country code and the last two digits of an E.164 number: `+44…01`.
pub fn redact_number(e164: &str) -> String {
    let digits: Vec<char> = e164.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() < 5 {
        return "+…".to_owned();
    }
    let head: String = digits[..2].iter().collect();
    let tail: String = digits[digits.len() - 2..].iter().collect();
    format!("+{head}…{tail}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts() {
        assert_eq!(super::redact_number("+442079460001"), "+44…01");
        assert_eq!(super::redact_number("+1"), "+…");
    }
}
