//! `labctl down`: delete everything the lab owns, and prove nothing is left.
//!
//! Route 53 deletes a zone only when it holds nothing but its own SOA and NS, so
//! `down` reads every record set in the lab's zone before it changes anything. A
//! record labctl did not make would strand the lab half-deleted: `down` names each
//! one and refuses, unless `--force`, with which they are in the plan, confirmed, and
//! deleted before the zone like the lab's own records. An A record at a name the
//! topology gives an instance is labctl's even when that instance is gone.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::bail;
use labctl_core::Kind;
use labctl_core::plan::{self, Found, Observed, Plan, schedule};

use super::{confirm, guard_captures};
use crate::aws::apply::{self, Inputs};
use crate::aws::kinds::dns_record;
use crate::cli::{DownArgs, GlobalArgs};
use crate::lab::{Lab, Needs};
use crate::printer::{Printer, StepProgress};

pub async fn run(
    global: &GlobalArgs,
    args: &DownArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let (observed, mut plan, nothing) = lab.teardown().await?;
    let records = ZoneRecords::read(&lab, &observed).await?;
    if !records.foreign.is_empty() && !args.force {
        bail!("{}", records.refusal(&observed));
    }
    records.join(&mut plan, args.force);
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
             `{}` names their captures by instance id instead",
            crate::invocation::command("pcap-fetch")
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

/// The records of the lab's zones that the teardown plan leaves alone.
struct ZoneRecords {
    /// A records at names the topology gives instances that are gone: labctl's.
    own: Vec<Found>,
    /// Every other record set but the zones' own SOA and NS.
    foreign: Vec<Found>,
}

impl ZoneRecords {
    async fn read(lab: &Lab, observed: &Observed) -> anyhow::Result<Self> {
        let (own, mut foreign): (Vec<Found>, Vec<Found>) = observed
            .resources
            .iter()
            .filter(|f| f.observation.foreign_record().is_some())
            .cloned()
            .partition(|f| lab.desired.get(&f.address).is_some());
        foreign.extend(dns_record::unobserved(&lab.clients, observed).await?);
        foreign.sort_by_key(|f| f.observation.foreign_record().map(dns_record::describe));
        Ok(Self { own, foreign })
    }

    /// Why `down` stops, naming each record that stops it.
    fn refusal(&self, observed: &Observed) -> String {
        let zones: BTreeSet<&str> = observed
            .resources
            .iter()
            .filter(|f| f.address.kind == Kind::HostedZone)
            .map(|f| f.name.as_str())
            .collect();
        let names: Vec<String> = self
            .foreign
            .iter()
            .filter_map(|f| f.observation.foreign_record())
            .map(|set| format!("  {}", dns_record::describe(set)))
            .collect();
        format!(
            "zone {} holds {} record(s) that labctl did not make, and Route 53 deletes a zone \
             only when it is empty:\n{}\ndelete them yourself, or pass --force, which deletes \
             them too; nothing was changed",
            zones.into_iter().collect::<Vec<_>>().join(", "),
            names.len(),
            names.join("\n")
        )
    }

    /// Puts the deletions in front of the plan: nothing depends on a record, and the
    /// schedule deletes them before their zone.
    fn join(self, plan: &mut Plan, force: bool) {
        let reason = "labctl did not make it, and --force deletes it with the zone";
        let own = self.own.iter().map(|f| dns_record::deletion(f, None));
        let foreign = self
            .foreign
            .iter()
            .filter(|_| force)
            .map(|f| dns_record::deletion(f, Some(reason.to_owned())));
        plan.changes.splice(0..0, own.chain(foreign));
    }
}
