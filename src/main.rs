//! labctl: glue between the command line, the pure core and AWS.
//!
//! This file only parses arguments, sets up logging, runs the command and turns its
//! outcome into an exit status; everything else lives in the modules below.

mod artifact;
mod aws;
mod cli;
mod commands;
mod lab;
mod myip;
mod plot;
mod printer;
mod registry;
mod reports;
mod session;
mod targets;
mod terminal;
mod topology_file;
mod untrusted;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::printer::Printer;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version are successes; every usage error exits 1, not clap's 2,
            // because 2 means "changes pending" for `plan --detailed-exitcode`.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(cli.global.verbose);
    let printer = Printer::new(cli.global.quiet);
    let api_stats = cli.global.api_stats;
    let code = match commands::run(cli, &printer) {
        Ok(code) => code,
        Err(err) => {
            if !err.is::<commands::Reported>() {
                printer.error(&format!("{err:#}"));
            }
            ExitCode::FAILURE
        }
    };
    if api_stats {
        eprintln!("labctl: {} AWS API calls", aws::calls());
    }
    code
}

fn init_tracing(verbose: u8) {
    let filter = match verbose {
        // The my-ip lookup's certificate failures are reported once, as the error.
        0 => "warn,aws_config=error,aws_smithy_runtime=error,rustls_platform_verifier=off",
        1 => "labctl=info,warn",
        2 => "labctl=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LABCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .init();
}
