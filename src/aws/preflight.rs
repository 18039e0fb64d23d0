//! Quotas checked before a plan that launches instances or makes a VPC is carried
//! out, so a fresh account's limits stop `up` before any change rather than half-way
//! through it.
//!
//! A new account may run fewer On-Demand Standard vCPUs than three `t3.micro` need,
//! and `RunInstances` then answers `VcpuLimitExceeded` with half a lab made. The
//! quotas are read from Service Quotas and compared with what the account uses now
//! and what the plan adds. Reading quotas needs `servicequotas:GetServiceQuota`; a
//! caller without it gets a warning naming the permission, not an error.

use std::collections::BTreeMap;

use labctl_core::plan::{Action, Plan};
use labctl_core::{Desired, Kind, Spec};

use crate::aws::{AwsError, Clients, aws};

/// Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, in vCPUs.
pub const VCPUS: &str = "L-1216C47A";
/// VPCs per region.
pub const VPCS: &str = "L-F678F1CE";
/// Internet gateways per region.
pub const GATEWAYS: &str = "L-A4707A72";

/// What the pre-flight found: nothing wrong, or warnings to show.
pub struct Cleared {
    pub warnings: Vec<String>,
}

/// Checks the quotas the plan needs. Errors when one would be exceeded, naming the
/// numbers and how to raise it.
pub async fn check(c: &Clients, plan: &Plan, desired: &Desired) -> anyhow::Result<Cleared> {
    let creates = |kind: Kind| {
        plan.changes
            .iter()
            .filter(|ch| ch.address.kind == kind && matches!(ch.action, Action::Create))
            .count()
    };
    let launched: Vec<&str> = plan
        .changes
        .iter()
        .filter(|ch| {
            ch.address.kind == Kind::Instance
                && matches!(ch.action, Action::Create | Action::Replace)
        })
        .filter_map(|ch| match desired.get(&ch.address).map(|r| &r.spec) {
            Some(Spec::Instance { instance_type, .. }) => Some(instance_type.as_str()),
            _ => None,
        })
        .collect();
    let mut refusals = Vec::new();
    // The first quota that cannot be read says why; the rest are not asked.
    let mut unread: Option<String> = None;
    let mut unchecked: Vec<&str> = Vec::new();

    if !launched.is_empty() {
        let standard: Vec<&str> = launched
            .iter()
            .copied()
            .filter(|t| is_standard(t))
            .collect();
        let sizes = vcpus_of(c, &launched).await?;
        let needed: i64 = standard.iter().filter_map(|t| sizes.get(*t)).sum();
        // Replaced instances stop counting once they are gone, before their successors.
        let leaving: Vec<&str> = plan
            .changes
            .iter()
            .filter(|ch| {
                ch.address.kind == Kind::Instance
                    && matches!(ch.action, Action::Replace | Action::Delete)
            })
            .filter_map(|ch| ch.id.as_deref())
            .collect();
        let in_use = running_vcpus(c, &leaving).await?;
        match quota(c, "ec2", VCPUS, unread.is_some()).await {
            Ok(limit) if needed > 0 && in_use + needed > limit => refusals.push(format!(
                "the lab launches {needed} On-Demand Standard vCPUs and the account runs \
                 {in_use} of its {limit} ({VCPUS} in {}); raise it with `aws service-quotas \
                 request-service-quota-increase --service-code ec2 --quota-code {VCPUS} \
                 --desired-value {}`, or stop other instances",
                c.region,
                in_use + needed
            )),
            Ok(_) => {}
            Err(why) => {
                unread = unread.or(why);
                unchecked.push("vCPUs");
            }
        }
    }
    for (kind, code, what) in [
        (Kind::Vpc, VPCS, "VPCs"),
        (Kind::InternetGateway, GATEWAYS, "internet gateways"),
    ] {
        let adds = i64::try_from(creates(kind)).unwrap_or(i64::MAX);
        if adds == 0 {
            continue;
        }
        let have = match kind {
            Kind::Vpc => count_vpcs(c).await?,
            _ => count_gateways(c).await?,
        };
        let have = i64::try_from(have).unwrap_or(i64::MAX);
        match quota(c, "vpc", code, unread.is_some()).await {
            Ok(limit) if have + adds > limit => refusals.push(format!(
                "the lab makes {adds} more of the {what} and {} already has {have} of its \
                 {limit} ({code}); delete one or raise it with `aws service-quotas \
                 request-service-quota-increase --service-code vpc --quota-code {code} \
                 --desired-value {}`",
                c.region,
                have + adds
            )),
            Ok(_) => {}
            Err(why) => {
                unread = unread.or(why);
                unchecked.push(what);
            }
        }
    }
    let warnings = unread
        .map(|why| {
            format!(
                "{why}: the quotas for {} were not checked before `up`",
                unchecked.join(", ")
            )
        })
        .into_iter()
        .collect();
    if !refusals.is_empty() {
        anyhow::bail!(
            "the account's quotas do not cover the lab; nothing was changed:\n  {}",
            refusals.join("\n  ")
        );
    }
    Ok(Cleared { warnings })
}

/// The instance families Service Quotas counts as On-Demand Standard.
fn is_standard(instance_type: &str) -> bool {
    instance_type
        .chars()
        .next()
        .is_some_and(|c| "acdhimrtz".contains(c))
}

/// A quota's value; `Err(Some(why))` when it cannot be read, `Err(None)` when it was
/// not asked (`skip`: an earlier one could not be read either).
pub async fn quota(
    c: &Clients,
    service: &str,
    code: &str,
    skip: bool,
) -> Result<i64, Option<String>> {
    if skip {
        return Err(None);
    }
    let out = c
        .quotas
        .get_service_quota()
        .service_code(service)
        .quota_code(code)
        // A quota that cannot be read is a warning, so it is asked once: an endpoint
        // without Service Quotas would otherwise be retried for minutes.
        .customize()
        .config_override(
            aws_sdk_servicequotas::config::Builder::default()
                .retry_config(aws_config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
        .map_err(aws(format!(
            "Service Quotas GetServiceQuota {service}/{code}"
        )));
    match out {
        Ok(out) => out
            .quota()
            .and_then(|q| q.value())
            .map(|v| v as i64)
            .ok_or_else(|| Some(format!("quota {service}/{code} has no value"))),
        Err(e) if denied(&e) => Err(Some(
            "the caller may not read quotas (it lacks `servicequotas:GetServiceQuota`)".to_owned(),
        )),
        Err(e) => Err(Some(format!("cannot read quotas ({e})"))),
    }
}

fn denied(e: &AwsError) -> bool {
    e.is(&[
        "AccessDeniedException",
        "AccessDenied",
        "UnauthorizedOperation",
    ])
}

/// Default vCPUs by instance type.
async fn vcpus_of(c: &Clients, types: &[&str]) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut unique: Vec<&str> = types.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let out = c
        .ec2
        .describe_instance_types()
        .set_instance_types(Some(unique.iter().map(|t| (*t).into()).collect()))
        .send()
        .await
        .map_err(aws("EC2 DescribeInstanceTypes"))?;
    Ok(out
        .instance_types()
        .iter()
        .filter_map(|t| {
            Some((
                t.instance_type()?.as_str().to_owned(),
                i64::from(t.v_cpu_info()?.default_v_cpus()?),
            ))
        })
        .collect())
}

/// vCPUs of the account's running and pending standard instances, less `leaving`.
async fn running_vcpus(c: &Clients, leaving: &[&str]) -> anyhow::Result<i64> {
    let mut pages = c
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .into_paginator()
        .send();
    let mut total = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("EC2 DescribeInstances"))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let standard = i.instance_type().is_some_and(|t| is_standard(t.as_str()));
            if !standard || i.instance_id().is_some_and(|id| leaving.contains(&id)) {
                continue;
            }
            total += i
                .cpu_options()
                .and_then(|o| Some(i64::from(o.core_count()?) * i64::from(o.threads_per_core()?)))
                .unwrap_or(2);
        }
    }
    Ok(total)
}

async fn count_vpcs(c: &Clients) -> anyhow::Result<usize> {
    let out = c
        .ec2
        .describe_vpcs()
        .send()
        .await
        .map_err(aws("EC2 DescribeVpcs"))?;
    Ok(out.vpcs().len())
}

async fn count_gateways(c: &Clients) -> anyhow::Result<usize> {
    let out = c
        .ec2
        .describe_internet_gateways()
        .send()
        .await
        .map_err(aws("EC2 DescribeInternetGateways"))?;
    Ok(out.internet_gateways().len())
}
