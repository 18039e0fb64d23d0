//! `labctl schema`: the topology file's JSON Schema on stdout.

use std::process::ExitCode;

use crate::printer::Printer;

pub fn run(printer: &Printer) -> anyhow::Result<ExitCode> {
    // The text `labctl init` writes beside a new topology, byte for byte.
    printer.text(&super::init::schema()?);
    Ok(ExitCode::SUCCESS)
}
