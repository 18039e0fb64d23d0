//! `labctl status`: what the lab has right now, read from AWS.

use std::process::ExitCode;

use labctl_core::Kind;
use labctl_core::plan::Observed;
use serde_json::json;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::lab::Lab;
use crate::printer::Printer;

pub async fn run(
    global: &GlobalArgs,
    args: &StatusArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer).await?;
    let observed = lab.observe().await?;
    print(&lab.desired.lab, &observed, args.json, printer)?;
    Ok(ExitCode::SUCCESS)
}

/// The outputs: instances with ids, states and addresses; the bucket and the zone.
pub fn print(
    lab: &str,
    observed: &Observed,
    as_json: bool,
    printer: &Printer,
) -> anyhow::Result<()> {
    let mut instances: Vec<_> = observed
        .resources
        .iter()
        .filter(|r| r.address.kind == Kind::Instance)
        .collect();
    instances.sort_by(|a, b| a.address.cmp(&b.address));
    let record = |name: &str| {
        observed
            .resources
            .iter()
            .find(|r| r.address.kind == Kind::DnsRecord && r.address.name == name)
            .map(|r| r.name.clone())
    };
    let fact = |r: &labctl_core::plan::Found, k: &str| r.facts.get(k).cloned();
    let bucket = observed
        .resources
        .iter()
        .find(|r| r.address.kind == Kind::Bucket)
        .map(|r| r.id.clone());
    let zone = observed
        .resources
        .iter()
        .find(|r| r.address.kind == Kind::HostedZone)
        .map(|r| (r.name.clone(), r.id.clone()));
    if as_json {
        let rows: Vec<_> = instances
            .iter()
            .map(|r| {
                json!({
                    "name": r.address.name,
                    "id": r.id,
                    "state": fact(r, "state"),
                    "private_ip": fact(r, "private_ip"),
                    "public_ip": fact(r, "public_ip"),
                    "dns": record(&r.address.name),
                    "ami": fact(r, "ami"),
                })
            })
            .collect();
        return printer.json(&json!({
            "lab": lab,
            "instances": rows,
            "bucket": bucket,
            "zone": zone.as_ref().map(|(name, id)| json!({ "name": name, "id": id })),
            "resources": observed.resources.len(),
        }));
    }
    if observed.resources.is_empty() {
        printer.result(&format!("lab `{lab}` owns nothing here"));
        return Ok(());
    }
    let dash = || "-".to_owned();
    let mut table = vec![[
        "INSTANCE".to_owned(),
        "ID".into(),
        "STATE".into(),
        "PRIVATE IP".into(),
        "PUBLIC IP".into(),
        "DNS".into(),
    ]];
    for r in &instances {
        table.push([
            r.address.name.clone(),
            r.id.clone(),
            fact(r, "state").unwrap_or_else(dash),
            fact(r, "private_ip").unwrap_or_else(dash),
            fact(r, "public_ip").unwrap_or_else(dash),
            record(&r.address.name).unwrap_or_else(dash),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        printer.result(line.join("  ").trim_end());
    }
    if let Some(b) = bucket {
        printer.result(&format!("bucket: s3://{b}"));
    }
    if let Some((name, id)) = zone {
        printer.result(&format!("zone:   {name} ({id})"));
    }
    printer.result(&format!(
        "{} resources owned by lab `{lab}`",
        observed.resources.len()
    ));
    Ok(())
}
