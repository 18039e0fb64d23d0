//! `labctl user-data`: what an instance boots with, so a user can read exactly what
//! will run before it runs. Rendering needs no AWS call.

use std::process::ExitCode;

use anyhow::bail;
use labctl_core::diag::closest;
use labctl_core::{Context, expand};

use crate::artifact;
use crate::aws::choose_region;
use crate::cli::{GlobalArgs, UserDataArgs};
use crate::printer::Printer;
use crate::topology_file;

pub fn run(
    global: &GlobalArgs,
    args: &UserDataArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let topology = topology_file::load(&global.file, printer)?;
    // No AWS call here: the region comes from the flag or the file; the account id,
    // part of the bucket's name, stays a placeholder that `up` fills in.
    let region = choose_region(
        global.region.as_deref(),
        topology.region.as_ref().map(|r| r.value.as_str()),
    )?;
    let labnet = artifact::resolve(&topology, &global.file, printer)?;
    let ctx = Context {
        region,
        labnet_sha256: labnet.map(|b| b.sha256),
        ..Context::default()
    };
    let desired = expand(&topology, &ctx);
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
    if text.contains("{account}") {
        printer.note("note: `{account}` stands for your AWS account id, which `up` fills in");
    }
    Ok(ExitCode::SUCCESS)
}
