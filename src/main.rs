//! labctl: glue between the command line, the pure core and AWS.
//!
//! This file only parses arguments, sets up logging, runs the command and turns its
//! outcome into an exit status; everything else lives in the modules below.

mod artifact;
mod aws;
mod cli;
mod commands;
mod invocation;
mod lab;
mod logs;
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

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;
use crate::printer::Printer;

fn main() -> ExitCode {
    let cli = match Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)))
    {
        Ok((matches, cli)) => {
            invocation::record(&matches, &cli.global);
            cli
        }
        Err(err) => {
            // Help and version are successes; every usage error exits 1, not clap's 2,
            // because 2 means "changes pending" for `plan --detailed-exitcode`.
            return commands::usage::report(err);
        }
    };
    logs::init(cli.global.verbose);
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
