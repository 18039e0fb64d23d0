//! `labctl graph`: the resources a topology expands to, without calling AWS.

use std::process::ExitCode;

use labctl_core::{Context, expand, graph};

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
        labnet_sha256: None,
        policy_arns: Default::default(),
        zones: Default::default(),
    };
    let desired = expand(&topology, &ctx);
    if args.json {
        printer.json(&desired)?;
    } else if args.dot {
        printer.result(graph::render_dot(&desired).trim_end());
    } else {
        printer.result(graph::render_text(&desired).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
