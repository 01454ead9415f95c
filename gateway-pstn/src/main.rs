//! `tincan-gateway`: the provider's business service. Everything lives in the library; this parses
//! arguments, sets up logging and runs the command.

use std::process::ExitCode;

use clap::Parser;
use tincan_common::telemetry::{self, LogFormat};
use tincan_gateway::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(if cli.global.log_json { LogFormat::Json } else { LogFormat::Human });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
