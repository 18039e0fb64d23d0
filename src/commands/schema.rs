//! `labctl schema`: the topology file's JSON Schema on stdout.

use std::process::ExitCode;

use crate::printer::Printer;

pub fn run(printer: &Printer) -> anyhow::Result<ExitCode> {
    printer.raw_json(&labctl_core::schema::topology_schema())?;
    Ok(ExitCode::SUCCESS)
}
