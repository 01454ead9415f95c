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
    // Logs go to stderr and stay quiet unless RUST_LOG asks; stdout is for the command's output.
    let filter = tracing_subscriber_filter();
    tracing_subscriber_init(filter);
    let json = args.json;
    match commands::run(args).await {
        Ok(code) => code,
        Err(e) => output::fail(json, &e),
    }
}

fn tracing_subscriber_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,matrix_sdk=error,matrix_sdk_crypto=error".into())
}

fn tracing_subscriber_init(filter: String) {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(filter)).with_writer(std::io::stderr).try_init();
}
