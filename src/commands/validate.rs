//! `labctl validate`: every problem in a topology file, each with its position.

use std::process::ExitCode;

use labctl_core::Severity;
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
    // A region given beside the file is part of what `plan` would use: checked alike.
    if let Some(t) = &loaded.topology {
        crate::aws::choose_region(
            global.region.as_deref(),
            t.region.as_ref().map(|r| r.value.as_str()),
        )?;
    }
    let errors = loaded.diagnostics.error_count();
    let count = |severity: Severity| {
        loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    };
    let (warnings, notes) = (count(Severity::Warning), count(Severity::Note));
    if args.json {
        printer.json(&json!({
            "file": loaded.display,
            "valid": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "notes": notes,
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
        let said: Vec<String> = [(warnings, "warning"), (notes, "note")]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| plural(n, what))
            .collect();
        let warned = if said.is_empty() {
            String::new()
        } else {
            format!(" ({})", said.join(", "))
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
