//! `labctl doctor`: proves the credentials, region and endpoint work before a lab is
//! built, with one STS and one (paginated) EC2 call.

use std::process::ExitCode;

use anyhow::anyhow;
use labctl_core::desired::TAG_LAB;
use serde::Serialize;

use crate::aws::{self, explain};
use crate::cli::{DoctorArgs, GlobalArgs};
use crate::printer::Printer;
use crate::topology_file;

#[derive(Debug, Serialize)]
struct Findings {
    region: String,
    endpoint: Option<String>,
    account: String,
    caller: String,
    vpcs_visible: usize,
    lab: Option<String>,
    lab_vpcs: Option<usize>,
}

pub async fn run(
    global: &GlobalArgs,
    args: &DoctorArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    // The topology is optional here: doctor also helps before one exists.
    let topology = if global.file.exists() {
        Some(topology_file::load(&global.file, printer)?)
    } else {
        None
    };
    let session = aws::connect(
        global,
        topology
            .as_ref()
            .and_then(|t| t.region.as_ref())
            .map(|r| r.value.as_str()),
    )
    .await?;
    let endpoint = session.config.endpoint_url().map(str::to_owned);

    let sts = aws_sdk_sts::Client::new(&session.config);
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| anyhow!(explain(&session.service("STS"), &e)))?;

    let ec2 = aws_sdk_ec2::Client::new(&session.config);
    let vpcs = ec2
        .describe_vpcs()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| anyhow!(explain(&session.service("EC2"), &e)))?;
    let lab = topology.as_ref().map(|t| t.name.value.clone());
    let lab_vpcs = lab.as_ref().map(|name| {
        vpcs.iter()
            .filter(|v| {
                v.tags()
                    .iter()
                    .any(|t| t.key() == Some(TAG_LAB) && t.value() == Some(name))
            })
            .count()
    });
    let findings = Findings {
        region: session.region,
        endpoint,
        account: identity.account().unwrap_or("unknown").to_owned(),
        caller: identity.arn().unwrap_or("unknown").to_owned(),
        vpcs_visible: vpcs.len(),
        lab,
        lab_vpcs,
    };
    if args.json {
        printer.json(&findings)?;
    } else {
        let f = &findings;
        printer.result(&format!("region:    {}", f.region));
        printer.result(&format!(
            "endpoint:  {}",
            f.endpoint.as_deref().unwrap_or("AWS (default endpoints)")
        ));
        printer.result(&format!("account:   {}", f.account));
        printer.result(&format!("caller:    {}", f.caller));
        printer.result(&format!("VPCs:      {} visible", f.vpcs_visible));
        if let (Some(lab), Some(n)) = (&f.lab, f.lab_vpcs) {
            printer.result(&format!("lab:       `{lab}` has {n} VPC(s) in this region"));
        }
        printer.success("AWS is reachable with these credentials");
    }
    Ok(ExitCode::SUCCESS)
}
