//! One module per command; [`run`] dispatches to them.

mod doctor;
mod graph;
mod schema;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::printer::Printer;

/// An error that has already been shown to the user; only the exit status remains.
#[derive(Debug, thiserror::Error)]
#[error("already reported")]
pub struct Reported;

/// Runs the parsed command.
pub fn run(cli: Cli, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(&cli.global, &args, printer),
        Command::Schema => schema::run(printer),
        Command::Graph(args) => graph::run(&cli.global, &args, printer),
        Command::Doctor(args) => block_on(doctor::run(&cli.global, &args, printer)),
    }
}

/// Runs an async command on a runtime made for it; commands that need no I/O never
/// start one.
fn block_on<F: Future<Output = anyhow::Result<ExitCode>>>(future: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}
