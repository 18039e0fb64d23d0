//! `labctl graph`: the resources a topology expands to, without calling AWS.

use std::process::ExitCode;

use labctl_core::{Context, Desired, expand, graph};
use serde_json::{Value, json};

use crate::aws::choose_region;
use crate::cli::{GlobalArgs, GraphArgs};
use crate::printer::Printer;
use crate::topology_file;

pub fn run(global: &GlobalArgs, args: &GraphArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let topology = topology_file::load(&global.file, printer)?;
    let region = choose_region(
        global.region.as_deref(),
        topology.region.as_ref().map(|r| r.value.as_str()),
    )?;
    // No AWS call here: the account id and an unresolved `my-ip` stay placeholders.
    let ctx = Context {
        account: None,
        region,
        my_ip: global.my_ip.map(crate::myip::given).transpose()?,
        // labnet is built (and its digest known) only by `plan`; the graph still lists
        // the upload, as one of the resources `plan` counts.
        labnet_sha256: Some("(digest known at plan)".to_owned()),
        policy_arns: Default::default(),
        zones: Default::default(),
    };
    let desired = expand(&topology, &ctx);
    if args.json {
        printer.json(&json(&desired))?;
    } else if args.dot {
        printer.result(graph::render_dot(&desired).trim_end());
    } else {
        printer.result(graph::render_text(&desired).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every resource with its spec, and the steps `up` creates them in: each step's
/// resources run in parallel, after what they depend on.
fn json(desired: &Desired) -> Value {
    let steps: Vec<Value> = desired
        .waves()
        .iter()
        .enumerate()
        .map(|(i, wave)| {
            let resources: Vec<Value> = wave
                .iter()
                .map(|r| {
                    let depends_on: Vec<String> = r
                        .depends_on()
                        .iter()
                        .filter(|d| desired.get(d).is_some())
                        .map(ToString::to_string)
                        .collect();
                    json!({
                        "address": r.address,
                        "name": r.name,
                        "depends_on": depends_on,
                    })
                })
                .collect();
            json!({ "step": i + 1, "resources": resources })
        })
        .collect();
    json!({
        "lab": desired.lab,
        "resources": desired.resources,
        "steps": steps,
    })
}
