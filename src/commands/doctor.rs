//! `labctl doctor`: what can be checked from a laptop before a lab is built: the
//! credentials and where they come from, the region, the quotas a lab needs, the
//! zones that offer its instance types, and Canonical's image parameter. Only the
//! credentials and the endpoint are errors; the rest is reported, since a caller
//! may lack the permission to read it.

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
    credentials: String,
    account: String,
    caller: String,
    vpcs_visible: usize,
    lab: Option<String>,
    lab_vpcs: Option<usize>,
    /// Quota code → its value, or why it could not be read.
    quotas: Vec<Checked>,
    /// Subnet → the zone id the plan would choose, or why none.
    zones: Vec<Checked>,
    /// Canonical's Ubuntu 24.04 parameter → the AMI it names, or why not.
    image: Checked,
}

/// One thing checked: what, and what was found (or why not, with `ok: false`).
#[derive(Debug, Serialize)]
struct Checked {
    what: String,
    ok: bool,
    found: String,
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
    let clients = aws::Clients::new(&session);
    let mut quotas = Vec::new();
    for (service, code, what) in [
        ("ec2", aws::preflight::VCPUS, "On-Demand Standard vCPUs"),
        ("vpc", aws::preflight::VPCS, "VPCs per region"),
        (
            "vpc",
            aws::preflight::GATEWAYS,
            "internet gateways per region",
        ),
    ] {
        let read = aws::preflight::quota(&clients, service, code, false).await;
        quotas.push(Checked {
            what: format!("{what} ({code})"),
            ok: read.is_ok(),
            found: match read {
                Ok(v) => v.to_string(),
                Err(why) => why.unwrap_or_default(),
            },
        });
    }
    let zones = match &topology {
        Some(t) => match aws::zones::choose(&clients, t).await {
            Ok(chosen) => chosen
                .into_iter()
                .map(|(subnet, zone)| Checked {
                    what: format!("subnet `{subnet}`"),
                    ok: true,
                    found: zone,
                })
                .collect(),
            Err(e) => vec![Checked {
                what: "zones".into(),
                ok: false,
                found: format!("{e:#}"),
            }],
        },
        None => Vec::new(),
    };
    let image = match aws::images::parameter(&clients, aws::images::UBUNTU_2404_PARAMETER).await {
        Ok(Some(ami)) => Checked {
            what: aws::images::UBUNTU_2404_PARAMETER.into(),
            ok: true,
            found: ami,
        },
        Ok(None) => Checked {
            what: aws::images::UBUNTU_2404_PARAMETER.into(),
            ok: false,
            found: "not in this region; `up` looks for Canonical's newest image instead".into(),
        },
        Err(e) => Checked {
            what: aws::images::UBUNTU_2404_PARAMETER.into(),
            ok: false,
            found: format!("{e:#}"),
        },
    };
    let findings = Findings {
        credentials: credential_source(global),
        quotas,
        zones,
        image,
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
        printer.result(&format!("region:      {}", f.region));
        printer.result(&format!(
            "endpoint:    {}",
            f.endpoint.as_deref().unwrap_or("AWS (default endpoints)")
        ));
        printer.result(&format!("credentials: {}", f.credentials));
        printer.result(&format!("account:     {}", f.account));
        printer.result(&format!("caller:      {}", f.caller));
        printer.result(&format!("VPCs:        {} visible", f.vpcs_visible));
        if let (Some(lab), Some(n)) = (&f.lab, f.lab_vpcs) {
            printer.result(&format!(
                "lab:         `{lab}` has {n} VPC(s) in this region"
            ));
        }
        for c in f.quotas.iter().chain(&f.zones).chain([&f.image]) {
            let line = format!("{}: {}", c.what, c.found);
            if c.ok {
                printer.result(&line);
            } else {
                printer.warn(&line);
            }
        }
        printer.success("AWS is reachable with these credentials");
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the credentials come from, as the standard chain would find them first.
fn credential_source(global: &GlobalArgs) -> String {
    if let Some(profile) = &global.profile {
        return format!("profile `{profile}` (--profile)");
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return "environment (AWS_ACCESS_KEY_ID)".into();
    }
    if let Some(profile) = std::env::var_os("AWS_PROFILE") {
        return format!("profile `{}` (AWS_PROFILE)", profile.to_string_lossy());
    }
    "the default chain: profile `default`, SSO, or a role of this machine".into()
}
