//! `labctl down`: delete everything the lab owns, and prove nothing is left.

use std::process::ExitCode;

use anyhow::bail;
use labctl_core::plan::{self, schedule};

use super::{confirm, guard_captures};
use crate::aws::apply::{self, Inputs};
use crate::cli::{DownArgs, GlobalArgs};
use crate::lab::{Lab, Needs};
use crate::printer::{Printer, StepProgress};

pub async fn run(
    global: &GlobalArgs,
    args: &DownArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let (observed, plan, nothing) = lab.teardown().await?;
    if plan.is_empty() {
        printer.success(&format!(
            "lab `{}` owns nothing in {}",
            lab.desired.lab, lab.clients.region
        ));
        return Ok(ExitCode::SUCCESS);
    }
    printer.note(plan::render(&plan).trim_end());
    confirm(&plan, args.yes, printer)?;
    guard_captures(&lab.clients, &plan, &nothing, args.delete_captures).await?;
    // The captures outlive the instances: record their names while EC2 still knows.
    if let (Some(bucket), instances) = super::status::instances_of(&observed)
        && let Err(e) =
            crate::registry::record(&lab.clients, &bucket, &lab.desired.lab, &instances).await
    {
        printer.warn(&format!(
            "could not record the instances' names in s3://{bucket}/instances/ ({e:#}); \
             `labctl pcap-fetch` names their captures by instance id instead"
        ));
    }
    let stages = schedule(&plan, &nothing);
    let images = Default::default();
    let inputs = Inputs {
        lab: &lab.desired.lab,
        plan: &plan,
        desired: &nothing,
        observed: &observed,
        images: &images,
        labnet: None,
    };
    apply::apply(&lab.clients, &inputs, &stages, &StepProgress::new(printer)).await?;
    let (mut left, again, _) = lab.teardown().await?;
    // A copy AWS made behind a lost answer while the lab was coming up, seen only now:
    // it goes in this same run.
    if !left.resources.is_empty() {
        let stages = schedule(&again, &nothing);
        let inputs = Inputs {
            plan: &again,
            observed: &left,
            ..inputs
        };
        apply::apply(&lab.clients, &inputs, &stages, &StepProgress::new(printer)).await?;
        (left, _, _) = lab.teardown().await?;
    }
    if !left.resources.is_empty() {
        let names: Vec<String> = left
            .resources
            .iter()
            .map(|r| format!("{} ({})", r.address, r.id))
            .collect();
        bail!(
            "still owned by the lab after deleting: {}",
            names.join(", ")
        );
    }
    printer.success(&format!("lab `{}` is gone", lab.desired.lab));
    Ok(ExitCode::SUCCESS)
}
