//! The binary's commands: `run` (default), `registration`, `config check` — the core's command line, with this
//! bridge's config.

use crate::billing::{Billing, Free, Gateway};
use crate::bridge::SmsBridge;
use crate::config::{Config, ENV_PREFIX};
use std::process::ExitCode;
use std::sync::Arc;
use tincan_appservice::cli::{Cli, Command, ConfigAction};
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_common::SystemClock;

/// Runs the command line.
pub fn main(cli: &Cli) -> ExitCode {
    let config: Config = match tincan_common::load_config(cli.config.as_deref(), ENV_PREFIX) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match &cli.command {
        None | Some(Command::Run) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "tincan-sms stopped");
                    eprintln!("tincan-sms: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Registration) => {
            let core = config.core();
            let tokens = Tokens::from_config(&core).unwrap_or_else(|| {
                use rand::SeedableRng;
                eprintln!("note: fresh tokens generated; set appservice.as_token and appservice.hs_token to them");
                Tokens::generate(&mut rand::rngs::StdRng::from_os_rng())
            });
            print!("{}", registration_yaml(&core, core.ghost_prefix("sms_"), &tokens));
            ExitCode::SUCCESS
        }
        Some(Command::Config { action: ConfigAction::Check }) => {
            match serde_json::to_string_pretty(&config) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("cannot print the config: {e}"),
            }
            let problems = config.core().validate_tokens();
            if problems.is_empty() {
                eprintln!("config ok");
                ExitCode::SUCCESS
            } else {
                eprintln!("invalid config:\n  - {}", problems.join("\n  - "));
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs the bridge until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = crate::store::open(&config.sms.database_url).await?;
    let billing: Arc<dyn Billing> = if config.sms.billing.gateway_url.is_empty() {
        Arc::new(Free)
    } else {
        Arc::new(Gateway::http(&config.sms.billing.gateway_url, config.sms.billing.token.expose())?)
    };
    let connector =
        SmsBridge::new(config.sms.clone(), &config.homeserver.server_name, store, billing, Arc::new(SystemClock));
    let bridge = tincan_appservice::Bridge::builder(config.core()).start(Arc::new(connector.clone())).await?;
    let listener = tokio::net::TcpListener::bind(&config.sms.listen).await?;
    tracing::info!(listen = %config.sms.listen, "healthz and metrics");
    let http = tokio::spawn(axum::serve(listener, crate::http::router(connector.clone())).into_future());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    http.abort();
    connector.stop().await;
    bridge.stop().await;
    Ok(())
}
