//! `labctl plan`: what `up` would change, without changing anything.

use std::process::ExitCode;

use labctl_core::cost::{self, Component, Estimate};
use labctl_core::plan::{Action, Plan};
use serde_json::{Value, json};

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
        let (estimate, lifetime) = lab.estimate();
        let images: Vec<Value> = images
            .iter()
            .map(|(reference, ami)| json!({ "reference": reference, "ami": ami.id }))
            .collect();
        printer.json(&json!({
            "lab": plan.lab,
            "changes": plan.changes,
            "unchanged": plan.unchanged,
            "summary": summary(&plan),
            "cost": cost_json(&estimate, lifetime),
            "images": images,
        }))?;
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

/// The counts of the summary line (`Plan: 19 to add, ...`).
fn summary(plan: &Plan) -> Value {
    json!({
        "create": plan.count(Action::Create),
        "update": plan.count(Action::Update),
        "replace": plan.count(Action::Replace),
        "delete": plan.count(Action::Delete),
        "unchanged": plan.unchanged,
    })
}

/// The cost estimate as the text shows it: USD per hour in total and per line, the
/// types without a price, and the most one lifetime can cost when the topology sets one.
fn cost_json(estimate: &Estimate, lifetime_minutes: Option<u64>) -> Value {
    let lines: Vec<Value> = estimate
        .lines
        .iter()
        .map(|l| {
            json!({
                "what": l.what,
                "component": l.component,
                "usd_per_hour": usd(l.per_hour),
            })
        })
        .collect();
    let lifetime = lifetime_minutes.and_then(|minutes| {
        let most = estimate.lifetime_most(minutes)?;
        Some(json!({
            "minutes": minutes,
            "usd_at_most": most,
            "usd_per_hour_stopped": usd(estimate.component_per_hour(Component::Storage)),
        }))
    });
    json!({
        "region": estimate.region,
        "region_known": estimate.region_known,
        "usd_per_hour": usd(estimate.per_hour),
        "lower_bound": !estimate.unknown.is_empty(),
        "breakdown": lines,
        "unpriced_types": estimate.unknown,
        "lifetime": lifetime,
        "pricing": "on-demand",
        "prices_as_of": cost::PRICES_AS_OF,
    })
}

/// Dollars to a millionth, without float noise (3 × 0.0104 is 0.0312, not
/// 0.031200000000000002).
fn usd(amount: f64) -> f64 {
    (amount * 1e6).round() / 1e6
}
