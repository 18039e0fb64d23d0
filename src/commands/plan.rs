//! `labctl plan`: what `up` would change, without changing anything.

use std::process::ExitCode;

use crate::cli::{GlobalArgs, PlanArgs};
use crate::lab::{Lab, Needs};
use crate::printer::Printer;

pub async fn run(
    global: &GlobalArgs,
    args: &PlanArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Plan).await?;
    let (_, plan) = lab.plan().await?;
    lab.preflight(&plan, printer).await?;
    // Resolving images now surfaces a missing AMI before `up`, not halfway through it.
    let images = lab.images_for(&plan).await?;
    if args.json {
        printer.json(&plan)?;
    } else {
        for (reference, ami) in images.iter().filter(|(r, a)| **r != a.id) {
            printer.note(&format!(
                "image {reference} is {} in {}",
                ami.id, lab.clients.region
            ));
        }
        printer.result(labctl_core::plan::render(&plan).trim_end());
        printer.result(&lab.cost());
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
