//! Where a lab's subnets go: an availability zone that offers every instance type
//! launched there.
//!
//! Left to AWS, a subnet can land in a zone that does not offer `t3.micro` (some of
//! us-east-1's do not), and `RunInstances` then fails half-way through `up` with
//! `Unsupported`. So the plan chooses the zone: a subnet keeps the zone it is in while
//! that zone offers its types, and a new subnet gets the first zone id, in sorted
//! order, that offers every type the lab launches. Zone ids (`use1-az1`) name the same
//! place in every account, where zone names are shuffled per account, so the choice
//! is the same on every run and every laptop.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use labctl_core::Topology;
use labctl_core::marks::{TAG_ADDRESS, TAG_LAB};

use crate::aws::{Clients, aws};

/// The zone id for each subnet of `t`, by subnet name.
pub async fn choose(c: &Clients, t: &Topology) -> anyhow::Result<BTreeMap<String, String>> {
    let first = t.network.subnets.first().map(|s| s.name.value.clone());
    let mut wanted: BTreeMap<String, BTreeSet<String>> = t
        .network
        .subnets
        .iter()
        .map(|s| (s.name.value.clone(), BTreeSet::new()))
        .collect();
    for inst in &t.instances {
        let subnet = inst
            .subnet
            .as_ref()
            .map(|s| s.value.clone())
            .or(first.clone());
        if let Some(types) = subnet.and_then(|s| wanted.get_mut(&s)) {
            types.insert(inst.instance_type.value.clone());
        }
    }
    let all_types: BTreeSet<&String> = wanted.values().flatten().collect();

    let zones = c
        .ec2
        .describe_availability_zones()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("zone-type")
                .values("availability-zone")
                .build(),
        )
        .send()
        .await
        .map_err(aws("EC2 DescribeAvailabilityZones"))?;
    // Zone id → zone name, in id order.
    let zones: BTreeMap<String, String> = zones
        .availability_zones()
        .iter()
        .filter(|z| z.state().is_none_or(|s| s.as_str() == "available"))
        .filter_map(|z| Some((z.zone_id()?.to_owned(), z.zone_name()?.to_owned())))
        .collect();

    let mut offered: BTreeSet<(String, String)> = BTreeSet::new();
    if !all_types.is_empty() {
        let mut pages = c
            .ec2
            .describe_instance_type_offerings()
            .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-type")
                    .set_values(Some(all_types.iter().map(|t| (*t).clone()).collect()))
                    .build(),
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("EC2 DescribeInstanceTypeOfferings"))?;
            for o in page.instance_type_offerings() {
                if let (Some(ty), Some(zone)) = (o.instance_type(), o.location()) {
                    offered.insert((ty.as_str().to_owned(), zone.to_owned()));
                }
            }
        }
    }
    let offers = |zone_name: &str, types: &BTreeSet<String>| {
        types
            .iter()
            .all(|ty| offered.contains(&(ty.clone(), zone_name.to_owned())))
    };

    let existing = existing_zones(c, &t.name.value).await?;
    let mut out = BTreeMap::new();
    for (subnet, types) in &wanted {
        let kept = existing
            .get(subnet)
            .filter(|id| zones.get(*id).is_some_and(|name| offers(name, types)));
        let chosen = kept.cloned().or_else(|| {
            zones
                .iter()
                .find(|(_, name)| offers(name, types))
                .map(|(id, _)| id.clone())
        });
        match chosen {
            Some(id) => {
                out.insert(subnet.clone(), id);
            }
            None => bail!(
                "no availability zone of {} offers {} (subnet `{subnet}`); choose another \
                 instance type or region; nothing was changed",
                c.region,
                types.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
    Ok(out)
}

/// The zone ids the lab's subnets are in now, by subnet name.
async fn existing_zones(c: &Clients, lab: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let found = c
        .ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{TAG_LAB}"))
                .values(lab)
                .build(),
        )
        .send()
        .await
        .map_err(aws("EC2 DescribeSubnets"))?;
    Ok(found
        .subnets()
        .iter()
        .filter(|s| {
            s.tags()
                .iter()
                .any(|t| t.key() == Some(TAG_LAB) && t.value() == Some(lab))
        })
        .filter_map(|s| {
            let address = s
                .tags()
                .iter()
                .find(|t| t.key() == Some(TAG_ADDRESS))?
                .value()?;
            let name = address.strip_prefix("subnet/")?;
            Some((name.to_owned(), s.availability_zone_id()?.to_owned()))
        })
        .collect())
}
