//! `labctl user-data`: what an instance boots with, so a user can read exactly what
//! will run before it runs. Rendering needs no AWS call.

use std::process::ExitCode;

use anyhow::bail;
use labctl_core::diag::closest;
use labctl_core::{Context, expand};

use crate::cli::{GlobalArgs, UserDataArgs};
use crate::printer::Printer;
use crate::topology_file;

pub fn run(
    global: &GlobalArgs,
    args: &UserDataArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let topology = topology_file::load(&global.file, printer)?;
    let desired = expand(&topology, &Context::default());
    let Some(text) = desired.user_data.get(&args.instance) else {
        let names: Vec<&str> = desired.user_data.keys().map(String::as_str).collect();
        let hint = closest(&args.instance, names.iter().copied())
            .map(|n| format!("; did you mean `{n}`?"))
            .unwrap_or_default();
        bail!(
            "the topology has no instance `{}` (it has {}){hint}",
            args.instance,
            names.join(", ")
        );
    };
    printer.result(text.trim_end());
    Ok(ExitCode::SUCCESS)
}
