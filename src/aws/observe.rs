//! Finding what a lab owns in AWS, and describing it in the core's terms.
//!
//! Ownership is read from AWS itself, never from a local file, through the marks in
//! `labctl_core::marks`:
//! - EC2 resources by their `labctl:lab` tag;
//! - IAM roles and instance profiles by their path `/labctl/<lab>/<region>/`;
//! - the hosted zone by its caller reference `labctl:<lab>:…` (set in the create call,
//!   so a crash before tagging still leaves it findable);
//! - the bucket by its `labctl:lab` tag, and the labnet binaries in it by their key.
//!
//! A resource that carries the lab's name but not its mark is never adopted: it is
//! reported as a clash. This module only orchestrates the reads (what runs
//! concurrently, what needs what); each kind's module turns what AWS says into a
//! [`Found`].

#![warn(clippy::wildcard_enum_match_arm)]

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Tag};
use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use labctl_core::plan::{Found, Observation, Observed};
use labctl_core::{Address, Kind, Spec};

use super::kinds::{
    bucket, hosted_zone, iam_role, instance, instance_profile, internet_gateway, route_table,
    security_group, security_group_rules, subnet, vpc,
};
use super::{Clients, aws};

/// Names the lab expects, so squatters on them are reported instead of adopted.
pub struct Expected<'a> {
    /// Lab name.
    pub lab: &'a str,
    /// IAM role (and profile) name from the topology, if known.
    pub iam_role: Option<&'a str>,
    /// Capture bucket name from the topology, if known.
    pub bucket: Option<&'a str>,
    /// Whether that name is the `auto` one, which only this account and lab derive.
    pub bucket_is_auto: bool,
    /// Key of the labnet binary the topology wants in the bucket, if any.
    pub labnet_key: Option<&'a str>,
}

/// The lab's resources: tagged with its name. A filter only narrows a listing; check
/// the tag on every item too.
pub(crate) fn lab_filter(lab: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{TAG_LAB}"))
        .values(lab)
        .build()
}

/// The value of tag `key`.
pub(crate) fn tag<'t>(tags: &'t [Tag], key: &str) -> Option<&'t str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Instances that are not terminated or shutting down.
pub(crate) fn live_filter() -> Filter {
    Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopping")
        .values("stopped")
        .build()
}

/// The address a resource's tag gives it, if it is of `kind`.
pub(crate) fn address_of(tags: &[Tag], kind: Kind) -> Address {
    tag(tags, TAG_ADDRESS)
        .and_then(Address::parse)
        .filter(|a| a.kind == kind)
        .unwrap_or_else(|| Address::new(kind, "?unknown"))
}

/// A found resource with nothing read beyond its spec.
pub(crate) fn found(address: Address, id: &str, name: &str, spec: Spec) -> Found {
    Found {
        address,
        id: id.to_owned(),
        name: name.to_owned(),
        spec,
        observation: Observation::Plain,
    }
}

/// Everything the lab owns in the client's region (and IAM, which is global).
pub async fn observe(c: &Clients, expected: &Expected<'_>) -> anyhow::Result<Observed> {
    let lab = expected.lab;
    // EC2 needs nothing else; the bucket is looked for under the names the lab may
    // have used, among them the one its role grants now (the old one, after a rename).
    let (ec2, (iam, buckets)) = tokio::try_join!(observe_ec2(c, lab), async {
        let (mut iam, profiles) = tokio::try_join!(
            iam_role::observe(c, expected),
            instance_profile::observe(c, lab, expected.iam_role)
        )?;
        let granted: Vec<&str> = iam
            .iter()
            .filter_map(|f| {
                if let Spec::IamRole {
                    inline_policy_bucket: Some(b),
                    ..
                } = &f.spec
                {
                    Some(b.as_str())
                } else {
                    None
                }
            })
            .collect();
        let buckets = bucket::observe(c, expected, &granted).await?;
        iam.extend(profiles);
        Ok::<_, anyhow::Error>((iam, buckets))
    })?;
    let mut resources = ec2.resources;
    let zone = hosted_zone::observe(c, lab, &ec2.vpc_id, &ec2.private_ips).await?;
    resources.extend(iam);
    resources.extend(buckets);
    resources.extend(zone);
    Ok(Observed { resources })
}

struct Ec2View {
    resources: Vec<Found>,
    vpc_id: Option<String>,
    /// Private IPv4 → instance name, for reading DNS records back.
    private_ips: BTreeMap<String, String>,
}

async fn observe_ec2(c: &Clients, lab: &str) -> anyhow::Result<Ec2View> {
    let ec2 = &c.ec2;
    // Every page of a lab-filtered describe call; the SDK's paginators differ in type,
    // so a macro rather than a function.
    macro_rules! all {
        ($request:expr, $what:literal) => {
            async {
                $request
                    .filters(lab_filter(lab))
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .map_err(aws($what))
            }
        };
    }
    let live = live_filter();
    let (vpcs, subnets, igws, tables, groups, reservations) = tokio::try_join!(
        all!(ec2.describe_vpcs(), "EC2 DescribeVpcs"),
        all!(ec2.describe_subnets(), "EC2 DescribeSubnets"),
        all!(
            ec2.describe_internet_gateways(),
            "EC2 DescribeInternetGateways"
        ),
        all!(ec2.describe_route_tables(), "EC2 DescribeRouteTables"),
        all!(ec2.describe_security_groups(), "EC2 DescribeSecurityGroups"),
        all!(
            ec2.describe_instances().filters(live),
            "EC2 DescribeInstances"
        ),
    )?;

    // The tag filter narrows the listing; ownership is still checked on every item.
    let owned = |tags: &[Tag]| tag(tags, TAG_LAB) == Some(lab);
    let mut out = Vec::new();
    for v in vpcs.iter().filter(|x| owned(x.tags())) {
        out.push(vpc::observe(c, v).await?);
    }
    let vpc_id = out.first().map(|f| f.id.clone());

    let subnets: Vec<Found> = subnets
        .iter()
        .filter(|x| owned(x.tags()))
        .map(subnet::observe)
        .collect();
    let subnet_names: BTreeMap<String, String> = subnets
        .iter()
        .map(|f| (f.id.clone(), f.address.name.clone()))
        .collect();
    out.extend(subnets);

    let gateways: Vec<Found> = igws
        .iter()
        .filter(|x| owned(x.tags()))
        .map(|g| internet_gateway::observe(g, vpc_id.as_deref()))
        .collect();
    let gateway_ids: Vec<String> = gateways.iter().map(|f| f.id.clone()).collect();
    out.extend(gateways);

    out.extend(
        tables
            .iter()
            .filter(|x| owned(x.tags()))
            .map(|t| route_table::observe(t, &gateway_ids, &subnet_names)),
    );

    let groups: Vec<_> = groups.into_iter().filter(|x| owned(x.tags())).collect();
    let group_roles: BTreeMap<String, String> = groups
        .iter()
        .map(|g| {
            let address = address_of(g.tags(), Kind::SecurityGroup);
            (g.group_id().unwrap_or_default().to_owned(), address.name)
        })
        .collect();
    for g in &groups {
        let group = security_group::observe(g);
        out.push(security_group_rules::observe(
            g,
            &group.address.name,
            &group_roles,
        ));
        out.push(group);
    }

    let instances: Vec<_> = reservations
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| owned(i.tags()))
        .collect();
    let profiles = instance::profiles(c, instances.iter().filter_map(|i| i.instance_id())).await?;
    let names = instance::Names {
        roles: &group_roles,
        subnets: &subnet_names,
        profiles: &profiles,
    };
    let mut private_ips = BTreeMap::new();
    for i in instances {
        let f = instance::observe(i, &names);
        if let Some(ip) = f.observation.instance().and_then(|x| x.private_ip.clone()) {
            private_ips.insert(ip, f.address.name.clone());
        }
        out.push(f);
    }
    Ok(Ec2View {
        resources: out,
        vpc_id,
        private_ips,
    })
}
