//! `tincan`: the Tincan terminal client. Parses arguments, sets up logging, runs one command.

mod args;
mod commands;
mod money;
mod output;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args = args::Args::parse();
    // Logs go to stderr; stdout is for the command's output.
    tracing_subscriber_init(log_filter(std::env::var("RUST_LOG").ok(), args.verbose));
    let json = args.json;
    match commands::run(args).await {
        Ok(code) => code,
        Err(e) => output::fail(json, &e),
    }
}

/// The log filter: `RUST_LOG` when set, else by `-v` count. By default only tincan's own crates (targets
/// `tincan…`) log, warnings and up: matrix-sdk reports things at ERROR level that are normal for a one-shot
/// client ("Account data not found" on a fresh account, the crypto store's `OperationAborted` when a command
/// exits mid-sync), and a failure that matters reaches the user as the command's error anyway.
fn log_filter(rust_log: Option<String>, verbose: u8) -> String {
    if let Some(f) = rust_log.filter(|f| !f.trim().is_empty()) {
        return f;
    }
    match verbose {
        0 => "off,tincan=warn",
        1 => "warn,tincan=info",
        2 => "info,tincan=debug",
        _ => "debug",
    }
    .to_owned()
}

fn tracing_subscriber_init(filter: String) {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(filter)).with_writer(std::io::stderr).try_init();
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects the `(target, level)` of every event that passes the filter.
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
        fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            let m = e.metadata();
            self.0.lock().unwrap().push(format!("{} {}", m.target(), m.level()));
        }
    }

    /// Which of a fixed set of events (matrix-sdk's normal-operation ERRORs, tincan's warnings and info) pass.
    fn shown(filter: &str) -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new(filter)).with(Recorder(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "matrix_sdk::account", "Account data not found");
            tracing::error!(target: "matrix_sdk_crypto::store", "OperationAborted");
            tracing::warn!(target: "tincan_client_core::client", "sync stopped");
            tracing::warn!(target: "tincan", "cli warning");
            tracing::info!(target: "tincan_client_core::client", "info");
        });
        seen.lock().unwrap().clone()
    }

    #[test]
    fn default_filter_shows_tincan_warnings_and_no_library_errors() {
        assert_eq!(shown(&log_filter(None, 0)), ["tincan_client_core::client WARN", "tincan WARN"]);
    }

    #[test]
    fn verbose_shows_library_errors_and_tincan_info() {
        let v = shown(&log_filter(None, 1));
        assert!(v.contains(&"matrix_sdk::account ERROR".to_owned()), "{v:?}");
        assert!(v.contains(&"tincan_client_core::client INFO".to_owned()), "{v:?}");
    }

    #[test]
    fn rust_log_overrides_the_default() {
        assert_eq!(log_filter(Some("matrix_sdk=error".into()), 0), "matrix_sdk=error");
        assert_eq!(log_filter(Some("  ".into()), 0), "off,tincan=warn");
    }
}
