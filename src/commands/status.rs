//! `labctl status`: what the lab has right now, read from AWS: instances with their
//! addresses, whether their bootstrap reported ready, and how long until the lifetime
//! guard stops them.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use labctl_core::plan::{Found, Observed};
use labctl_core::{Kind, Spec};
use serde_json::json;

use crate::aws::Clients;
use crate::cli::{GlobalArgs, StatusArgs};
use crate::lab::{Lab, Needs};
use crate::printer::Printer;
use crate::reports::{self, Readiness};

pub async fn run(
    global: &GlobalArgs,
    args: &StatusArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let observed = lab.observe().await?;
    let ready = readiness(&lab.clients, &observed).await?;
    print(&lab.desired.lab, &observed, &ready, args.json, printer)?;
    Ok(ExitCode::SUCCESS)
}

/// The lab's bucket and its instances as (name, id).
pub fn instances_of(observed: &Observed) -> (Option<String>, Vec<(String, String)>) {
    let bucket = observed
        .resources
        .iter()
        .find(|r| r.address.kind == Kind::Bucket)
        .map(|r| r.id.clone());
    let instances = observed
        .resources
        .iter()
        .filter(|r| r.address.kind == Kind::Instance)
        .map(|r| (r.address.name.clone(), r.id.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    (bucket, instances)
}

/// Every instance's bootstrap report, by instance name.
pub async fn readiness(
    c: &Clients,
    observed: &Observed,
) -> anyhow::Result<BTreeMap<String, Readiness>> {
    let (Some(bucket), instances) = instances_of(observed) else {
        return Ok(BTreeMap::new());
    };
    let reads = reports::read_all(c, &bucket, &instances).await?;
    Ok(instances
        .into_iter()
        .zip(reads)
        .map(|((name, _), r)| (name, r))
        .collect())
}

/// Time left before the lifetime guard stops a running instance.
fn remaining(r: &Found) -> Option<Duration> {
    let Spec::Instance {
        lifetime_minutes: Some(minutes),
        running: true,
        ..
    } = &r.spec
    else {
        return None;
    };
    let started = r.observation.instance()?.launch_time?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let ends = started + minutes * 60;
    Some(Duration::from_secs(ends.saturating_sub(now)))
}

/// The outputs: instances with ids, states, addresses, readiness and lifetime left;
/// the bucket and the zone.
pub fn print(
    lab: &str,
    observed: &Observed,
    ready: &BTreeMap<String, Readiness>,
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
    let facts = |r: &Found| r.observation.instance().cloned().unwrap_or_default();
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
                    "state": Some(facts(r).state).filter(|s| !s.is_empty()),
                    "private_ip": facts(r).private_ip,
                    "public_ip": facts(r).public_ip,
                    "dns": record(&r.address.name),
                    "ami": Some(facts(r).ami).filter(|s| !s.is_empty()),
                    "bootstrap": ready.get(&r.address.name).map(|x| match x {
                        Readiness::Pending => json!({ "reported": false }),
                        Readiness::Reported(rep) => json!({
                            "reported": true,
                            "ok": rep.ok,
                            "labnet_version": rep.labnet_version,
                            "services": rep.services,
                            "finished_at": rep.finished_at,
                            "error": rep.error,
                        }),
                        Readiness::Invalid(why) => json!({
                            "reported": true,
                            "ok": false,
                            "error": why,
                        }),
                    }),
                    "lifetime_left_seconds": remaining(r).map(|d| d.as_secs()),
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
        "BOOTSTRAP".into(),
        "STOPS IN".into(),
    ]];
    for r in &instances {
        table.push([
            r.address.name.clone(),
            r.id.clone(),
            Some(facts(r).state)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(dash),
            facts(r).private_ip.unwrap_or_else(dash),
            facts(r).public_ip.unwrap_or_else(dash),
            record(&r.address.name).unwrap_or_else(dash),
            ready
                .get(&r.address.name)
                .map_or_else(dash, Readiness::summary),
            remaining(r).map_or_else(dash, reports::humanize),
        ]);
    }
    let widths: Vec<usize> = (0..8)
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
