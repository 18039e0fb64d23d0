//! `labctl validate`: every problem in a topology file, each with its position.

use std::process::ExitCode;

use serde_json::json;

use crate::cli::{GlobalArgs, ValidateArgs};
use crate::printer::Printer;
use crate::topology_file::{self, plural};

pub fn run(
    global: &GlobalArgs,
    args: &ValidateArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let loaded = topology_file::read(&global.file)?;
    let errors = loaded.diagnostics.error_count();
    let warnings = loaded.diagnostics.len() - errors;
    if args.json {
        printer.json(&json!({
            "file": loaded.display,
            "valid": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "diagnostics": loaded.diagnostics,
        }))?;
    } else {
        for d in &loaded.diagnostics {
            printer.diagnostic(&loaded.display, d);
        }
    }
    let Some(t) = loaded.topology else {
        if !args.json {
            printer.error(&format!(
                "{} has {}",
                loaded.display,
                plural(errors, "error")
            ));
        }
        return Ok(ExitCode::FAILURE);
    };
    if !args.json {
        let instances: usize = t.instances.iter().map(|i| i.count.value as usize).sum();
        let warned = if warnings > 0 {
            format!(" ({})", plural(warnings, "warning"))
        } else {
            String::new()
        };
        printer.success(&format!(
            "{} is valid: lab `{}`, {}, {}, {}{warned}",
            loaded.display,
            t.name.value,
            plural(t.network.subnets.len(), "subnet"),
            plural(t.roles.len(), "role"),
            plural(instances, "instance"),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
