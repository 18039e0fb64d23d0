//! `labctl up`: make AWS match the topology, prove it did, and print the outputs.

use std::process::ExitCode;

use anyhow::bail;
use labctl_core::Kind;
use labctl_core::plan::{self, Action, schedule};

use super::{confirm, guard_captures, status};
use crate::aws::apply::{self, Inputs};
use crate::cli::{GlobalArgs, UpArgs};
use crate::lab::{Lab, Needs};
use crate::printer::{Printer, StepProgress};
use crate::reports;

pub async fn run(
    global: &GlobalArgs,
    args: &UpArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Plan).await?;
    let (observed, plan) = lab.plan().await?;
    // The state the outputs describe: as found, or as verified after applying.
    let now = if plan.is_empty() {
        printer.note(plan::render(&plan).trim_end());
        observed
    } else {
        lab.preflight(&plan, printer).await?;
        let images = lab.images_for(&plan).await?;
        printer.note(plan::render(&plan).trim_end());
        printer.note(&lab.cost());
        if let Some(b) = &lab.labnet
            && plan.changes.iter().any(|c| {
                c.address.kind == Kind::Artifact
                    && matches!(c.action, Action::Create | Action::Replace)
            })
        {
            printer.note(&format!(
                "labnet to upload: {} ({:.1} MiB)",
                b.path.display(),
                b.size as f64 / (1024.0 * 1024.0)
            ));
        }
        confirm(&plan, args.yes, printer)?;
        guard_captures(&lab.clients, &plan, &lab.desired, args.delete_captures).await?;
        let stages = schedule(&plan, &lab.desired);
        let inputs = Inputs {
            lab: &lab.desired.lab,
            plan: &plan,
            desired: &lab.desired,
            observed: &observed,
            images: &images,
            labnet: lab.labnet.as_ref().map(|b| b.path.as_path()),
        };
        apply::apply(&lab.clients, &inputs, &stages, &StepProgress::new(printer)).await?;
        // Proof, not hope: observe again; anything left to do is a failure, except an
        // extra copy that AWS made behind a lost answer, which goes in this same run.
        let (mut after, mut remaining) = lab.plan().await?;
        if !remaining.is_empty() && only_extra_copies(&remaining, &lab.desired) {
            printer.note(&format!(
                "deleting {} extra cop{} that AWS made while answers were lost",
                remaining.changes.len(),
                if remaining.changes.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            ));
            let stages = schedule(&remaining, &lab.desired);
            let inputs = Inputs {
                plan: &remaining,
                observed: &after,
                ..inputs
            };
            apply::apply(&lab.clients, &inputs, &stages, &StepProgress::new(printer)).await?;
            (after, remaining) = lab.plan().await?;
        }
        if !remaining.is_empty() {
            bail!(
                "AWS still differs from the topology after applying:\n{}",
                plan::render(&remaining).trim_end()
            );
        }
        printer.success(&format!("lab `{}` is up", lab.desired.lab));
        after
    };
    // Which id is which name, kept where instances cannot write, before they can
    // write anything to name.
    if let (Some(bucket), instances) = status::instances_of(&now) {
        crate::registry::record(&lab.clients, &bucket, &lab.desired.lab, &instances).await?;
    }
    // With --wait, the reports it waited for are the ones to show. The lab is up
    // either way, so its outputs are printed even when the wait ends in a problem.
    let (ready, problem) = match args.wait {
        Some(timeout) => {
            let (Some(bucket), instances) = status::instances_of(&now) else {
                bail!("the lab has no bucket to read readiness reports from");
            };
            let waited = reports::wait(&lab.clients, &bucket, &instances, timeout, printer).await?;
            let problem = waited.problem(timeout);
            (waited.ready, problem)
        }
        None => (status::readiness(&lab.clients, &now).await?, None),
    };
    status::print(&lab.desired.lab, &now, &ready, args.json, printer)?;
    printer.note(&format!(
        "Take it down with `{}`.",
        crate::invocation::command("down")
    ));
    match problem {
        None => Ok(ExitCode::SUCCESS),
        Some(problem) => bail!("{problem}"),
    }
}

/// Whether a plan only deletes duplicates of what the lab keeps.
fn only_extra_copies(plan: &labctl_core::plan::Plan, desired: &labctl_core::Desired) -> bool {
    plan.changes
        .iter()
        .all(|c| c.action == Action::Delete && desired.get(&c.address).is_some())
}
