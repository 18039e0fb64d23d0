//! Finding what a lab owns in AWS, and describing it in the core's terms.
//!
//! Ownership is read from AWS itself, never from a local file:
//! - EC2 resources by their `labctl:lab` tag;
//! - IAM roles and instance profiles by their path `/labctl/<lab>/`;
//! - the hosted zone by its caller reference `labctl:<lab>:…` (set in the create call,
//!   so a crash before tagging still leaves it findable);
//! - the bucket by its `labctl:lab` tag, and the labnet binaries in it by their key.
//!
//! A resource that carries the lab's name but not its mark is never adopted: it is
//! reported as a clash.

use std::collections::BTreeMap;

use anyhow::bail;
use aws_sdk_ec2::types::{Filter, IpPermission, Tag, VpcAttributeName};
use ipnet::Ipv4Net;
use labctl_core::desired::{
    LABNET_ARTIFACT, LABNET_KEY_PREFIX, Permission, PermissionPeer, TAG_ADDRESS, TAG_LAB,
};
use labctl_core::plan::{Association, Found, InstanceFacts, Observation, Observed};
use labctl_core::topology::{PortRange, Proto};
use labctl_core::{Address, Kind, Spec};

use super::{Absent, Clients, aws};

pub use labctl_core::marks::{
    INLINE_POLICY, TAG_IMAGE, TAG_LIFETIME, TAG_PUBLIC_IP, TAG_SERVICES, TAG_USER_DATA,
    caller_reference_prefix, iam_path,
};

/// Names the lab expects, so squatters on them are reported instead of adopted.
pub struct Expected<'a> {
    /// Lab name.
    pub lab: &'a str,
    /// IAM role (and profile) name from the topology, if known.
    pub iam_role: Option<&'a str>,
    /// Capture bucket name from the topology, if known.
    pub bucket: Option<&'a str>,
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

fn address_of(tags: &[Tag], kind: Kind) -> Address {
    tag(tags, TAG_ADDRESS)
        .and_then(Address::parse)
        .filter(|a| a.kind == kind)
        .unwrap_or_else(|| Address::new(kind, "?unknown"))
}

fn found(address: Address, id: &str, name: &str, spec: Spec) -> Found {
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
    // Independent families in parallel; EC2 first needs nothing else.
    // The bucket is looked for under the names the lab may have used: the one wanted,
    // and the one the lab's role grants now (the old one, after a rename).
    let (ec2, (iam, bucket)) = tokio::try_join!(observe_ec2(c, lab), async {
        let iam = observe_iam(c, expected).await?;
        let granted: Vec<&str> = iam
            .iter()
            .filter_map(|f| match &f.spec {
                Spec::IamRole {
                    inline_policy_bucket: Some(b),
                    ..
                } => Some(b.as_str()),
                _ => None,
            })
            .collect();
        let bucket = observe_bucket(c, expected, &granted).await?;
        Ok::<_, anyhow::Error>((iam, bucket))
    })?;
    let mut resources = ec2.resources;
    let zone = observe_dns(c, lab, &ec2.vpc_id, &ec2.private_ips).await?;
    resources.extend(iam);
    resources.extend(bucket);
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
    let vpcs: Vec<_> = vpcs.into_iter().filter(|x| owned(x.tags())).collect();
    let subnets: Vec<_> = subnets.into_iter().filter(|x| owned(x.tags())).collect();
    let igws: Vec<_> = igws.into_iter().filter(|x| owned(x.tags())).collect();
    let tables: Vec<_> = tables.into_iter().filter(|x| owned(x.tags())).collect();
    let groups: Vec<_> = groups.into_iter().filter(|x| owned(x.tags())).collect();
    let mut out = Vec::new();
    let mut vpc_id = None;
    for vpc in &vpcs {
        let id = vpc.vpc_id().unwrap_or_default();
        let (support, hostnames) = tokio::try_join!(
            vpc_attribute(c, id, VpcAttributeName::EnableDnsSupport),
            vpc_attribute(c, id, VpcAttributeName::EnableDnsHostnames),
        )?;
        let cidr: Ipv4Net = vpc
            .cidr_block()
            .unwrap_or("0.0.0.0/0")
            .parse()
            .unwrap_or_default();
        let address = address_of(vpc.tags(), Kind::Vpc);
        if address.kind == Kind::Vpc && vpc_id.is_none() {
            vpc_id = Some(id.to_owned());
        }
        let name = tag(vpc.tags(), "Name").unwrap_or(id);
        out.push(found(
            address,
            id,
            name,
            Spec::Vpc {
                cidr,
                dns: support && hostnames,
            },
        ));
    }

    let mut subnet_names: BTreeMap<String, String> = BTreeMap::new();
    for s in &subnets {
        let id = s.subnet_id().unwrap_or_default();
        let address = address_of(s.tags(), Kind::Subnet);
        subnet_names.insert(id.to_owned(), address.name.clone());
        let spec = Spec::Subnet {
            cidr: s
                .cidr_block()
                .unwrap_or("0.0.0.0/0")
                .parse()
                .unwrap_or_default(),
            public: s.map_public_ip_on_launch().unwrap_or(false),
        };
        out.push(found(
            address,
            id,
            tag(s.tags(), "Name").unwrap_or(id),
            spec,
        ));
    }

    let mut igw_ids = Vec::new();
    for g in &igws {
        let id = g.internet_gateway_id().unwrap_or_default();
        igw_ids.push(id.to_owned());
        let attached = g
            .attachments()
            .iter()
            .any(|a| a.vpc_id() == vpc_id.as_deref());
        let mut f = found(
            address_of(g.tags(), Kind::InternetGateway),
            id,
            tag(g.tags(), "Name").unwrap_or(id),
            Spec::InternetGateway { attached },
        );
        f.observation = Observation::InternetGateway {
            attached_to: g
                .attachments()
                .iter()
                .filter_map(|a| a.vpc_id())
                .map(str::to_owned)
                .collect(),
        };
        out.push(f);
    }

    for t in &tables {
        let id = t.route_table_id().unwrap_or_default();
        let internet_route = t.routes().iter().any(|r| {
            r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id()
                    .is_some_and(|g| igw_ids.iter().any(|i| i == g))
        });
        let mut f = found(
            address_of(t.tags(), Kind::RouteTable),
            id,
            tag(t.tags(), "Name").unwrap_or(id),
            Spec::RouteTable {
                internet_route,
                subnets: Vec::new(),
            },
        );
        let mut names = Vec::new();
        let mut associations = Vec::new();
        for a in t.associations() {
            if let (Some(subnet), Some(assoc)) = (a.subnet_id(), a.route_table_association_id()) {
                names.push(
                    subnet_names
                        .get(subnet)
                        .cloned()
                        .unwrap_or_else(|| subnet.to_owned()),
                );
                associations.push(Association {
                    subnet_id: subnet.to_owned(),
                    id: assoc.to_owned(),
                });
            }
        }
        f.observation = Observation::RouteTable {
            associations,
            default_route: t
                .routes()
                .iter()
                .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")),
        };
        names.sort();
        f.spec = Spec::RouteTable {
            internet_route,
            subnets: names,
        };
        out.push(f);
    }

    let group_roles: BTreeMap<String, String> = groups
        .iter()
        .map(|g| {
            let address = address_of(g.tags(), Kind::SecurityGroup);
            (g.group_id().unwrap_or_default().to_owned(), address.name)
        })
        .collect();
    for g in &groups {
        let id = g.group_id().unwrap_or_default();
        let address = address_of(g.tags(), Kind::SecurityGroup);
        let role = address.name.clone();
        let name = g.group_name().unwrap_or(id);
        out.push(found(
            address,
            id,
            name,
            Spec::SecurityGroup { role: role.clone() },
        ));
        let mut ingress = permissions(g.ip_permissions(), &group_roles);
        let mut egress = permissions(g.ip_permissions_egress(), &group_roles);
        ingress.sort();
        egress.sort();
        out.push(found(
            Address::new(Kind::SecurityGroupRules, &role),
            id,
            name,
            Spec::SecurityGroupRules {
                role,
                ingress,
                egress,
            },
        ));
    }

    let profiles = instance_profiles(
        c,
        reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| owned(i.tags()))
            .filter_map(|i| i.instance_id()),
    )
    .await?;
    let mut private_ips = BTreeMap::new();
    for r in &reservations {
        for i in r.instances().iter().filter(|i| owned(i.tags())) {
            let id = i.instance_id().unwrap_or_default();
            let tags = i.tags();
            let address = address_of(tags, Kind::Instance);
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default();
            let role = i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id())
                .map(|g| group_roles.get(g).cloned().unwrap_or_else(|| g.to_owned()))
                .collect::<Vec<_>>()
                .join(",");
            let subnet = i
                .subnet_id()
                .map(|s| subnet_names.get(s).cloned().unwrap_or_else(|| s.to_owned()))
                .unwrap_or_default();
            // The association is the authority on an instance's profile: it is what
            // ReplaceIamInstanceProfileAssociation changes.
            let profile = profiles
                .get(id)
                .map(String::as_str)
                .or_else(|| i.iam_instance_profile().and_then(|p| p.arn()))
                .and_then(|arn| arn.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            let mut services: Vec<String> = tag(tags, TAG_SERVICES)
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            services.sort();
            let spec = Spec::Instance {
                instance_type: i
                    .instance_type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
                image: tag(tags, TAG_IMAGE)
                    .unwrap_or(i.image_id().unwrap_or_default())
                    .to_owned(),
                role,
                subnet,
                public_ip: tag(tags, TAG_PUBLIC_IP) == Some("true"),
                profile,
                imdsv2: i
                    .metadata_options()
                    .and_then(|m| m.http_tokens())
                    .is_some_and(|t| t.as_str() == "required"),
                running: matches!(state.as_str(), "pending" | "running"),
                services,
                lifetime_minutes: tag(tags, TAG_LIFETIME).and_then(|m| m.parse().ok()),
                user_data: tag(tags, TAG_USER_DATA).unwrap_or("unknown").to_owned(),
            };
            let mut f = found(address.clone(), id, tag(tags, "Name").unwrap_or(id), spec);
            if let Some(ip) = i.private_ip_address() {
                private_ips.insert(ip.to_owned(), address.name.clone());
            }
            f.observation = Observation::Instance(InstanceFacts {
                state,
                ami: i.image_id().unwrap_or_default().to_owned(),
                private_ip: i.private_ip_address().map(str::to_owned),
                public_ip: i.public_ip_address().map(str::to_owned),
                // The latest start: the lifetime guard counts from each boot.
                launch_time: i.launch_time().and_then(|t| u64::try_from(t.secs()).ok()),
            });
            out.push(f);
        }
    }
    Ok(Ec2View {
        resources: out,
        vpc_id,
        private_ips,
    })
}

/// Instance id → ARN of the instance profile associated with it now.
async fn instance_profiles(
    c: &Clients,
    ids: impl Iterator<Item = &str>,
) -> anyhow::Result<BTreeMap<String, String>> {
    use aws_sdk_ec2::types::IamInstanceProfileAssociationState as State;
    let ids: Vec<&str> = ids.collect();
    let mut out = BTreeMap::new();
    // EC2 takes at most 200 values in one filter.
    for chunk in ids.chunks(200) {
        let associations = c
            .ec2
            .describe_iam_instance_profile_associations()
            .filters(
                Filter::builder()
                    .name("instance-id")
                    .set_values(Some(chunk.iter().map(|s| (*s).to_owned()).collect()))
                    .build(),
            )
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(aws("EC2 DescribeIamInstanceProfileAssociations"))?;
        for a in associations {
            let current = matches!(a.state(), Some(State::Associated | State::Associating));
            if let (true, Some(id), Some(arn)) = (
                current,
                a.instance_id(),
                a.iam_instance_profile().and_then(|p| p.arn()),
            ) {
                out.insert(id.to_owned(), arn.to_owned());
            }
        }
    }
    Ok(out)
}

async fn vpc_attribute(
    c: &Clients,
    vpc: &str,
    attribute: VpcAttributeName,
) -> anyhow::Result<bool> {
    let out = c
        .ec2
        .describe_vpc_attribute()
        .vpc_id(vpc)
        .attribute(attribute.clone())
        .send()
        .await
        .map_err(aws(format!("EC2 DescribeVpcAttribute {vpc}")))?;
    let value = match attribute {
        VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
        _ => out.enable_dns_hostnames(),
    };
    Ok(value.and_then(|v| v.value()).unwrap_or(false))
}

/// Flattens AWS permissions into the core's one-peer-per-permission form.
pub fn permissions(perms: &[IpPermission], roles: &BTreeMap<String, String>) -> Vec<Permission> {
    let mut out = Vec::new();
    for p in perms {
        let proto = match p.ip_protocol() {
            Some("tcp" | "6") => Proto::Tcp,
            Some("udp" | "17") => Proto::Udp,
            Some("icmp" | "1") => Proto::Icmp,
            _ => Proto::All,
        };
        let ports = match (proto.has_ports(), p.from_port(), p.to_port()) {
            (true, Some(from), Some(to)) => Some(PortRange {
                from: u16::try_from(from).unwrap_or(0),
                to: u16::try_from(to).unwrap_or(u16::MAX),
            }),
            _ => None,
        };
        for r in p.ip_ranges() {
            let Some(cidr) = r.cidr_ip().and_then(|c| c.parse::<Ipv4Net>().ok()) else {
                continue;
            };
            out.push(Permission {
                proto,
                ports,
                peer: PermissionPeer::Cidr(cidr),
                description: r.description().map(str::to_owned),
            });
        }
        for g in p.user_id_group_pairs() {
            let id = g.group_id().unwrap_or_default();
            let peer = match roles.get(id) {
                Some(role) => PermissionPeer::Role(role.clone()),
                None => PermissionPeer::Group(id.to_owned()),
            };
            out.push(Permission {
                proto,
                ports,
                peer,
                description: g.description().map(str::to_owned),
            });
        }
    }
    out
}

async fn observe_iam(c: &Clients, expected: &Expected<'_>) -> anyhow::Result<Vec<Found>> {
    let path = iam_path(expected.lab, &c.region);
    let roles = c
        .iam
        .list_roles()
        .path_prefix(&path)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws("IAM ListRoles"))?;
    let profiles = c
        .iam
        .list_instance_profiles()
        .path_prefix(&path)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws("IAM ListInstanceProfiles"))?;
    // Ownership is checked here, not left to the server's filter: some endpoints
    // ignore PathPrefix and list everything.
    let roles: Vec<_> = roles.into_iter().filter(|r| r.path() == path).collect();
    let profiles: Vec<_> = profiles.into_iter().filter(|p| p.path() == path).collect();
    let mut out = Vec::new();
    for role in &roles {
        let name = role.role_name();
        let mut managed: Vec<String> = c
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(aws(format!("IAM ListAttachedRolePolicies {name}")))?
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect();
        managed.sort();
        let inline = c
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(INLINE_POLICY)
            .send()
            .await
            .map_err(aws(format!("IAM GetRolePolicy {name}")))
            .absent_if(&["NoSuchEntity"])?
            .map(|p| p.policy_document().to_owned());
        let spec = Spec::IamRole {
            managed_policies: managed,
            inline_policy_bucket: inline.and_then(|doc| super::apply::bucket_of_policy(&doc)),
        };
        out.push(found(Address::single(Kind::IamRole), name, name, spec));
    }
    for p in &profiles {
        let name = p.instance_profile_name();
        let role = p
            .roles()
            .first()
            .map(|r| r.role_name().to_owned())
            .unwrap_or_default();
        out.push(found(
            Address::single(Kind::InstanceProfile),
            name,
            name,
            Spec::InstanceProfile { role },
        ));
    }
    // A role of the expected name outside the lab's path belongs to someone else.
    if let Some(name) = expected.iam_role
        && !roles.iter().any(|r| r.role_name() == name)
    {
        let found = c
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(aws(format!("IAM GetRole {name}")))
            .absent_if(&["NoSuchEntity"])?;
        if let Some(found) = found {
            let arn = found.role().map(|r| r.arn()).unwrap_or(name);
            bail!(
                "IAM role {name} already exists ({arn}) but is not owned by lab `{}`; \
                 rename the lab or the role in the topology (labctl never adopts it)",
                expected.lab
            );
        }
    }
    Ok(out)
}

async fn observe_bucket(
    c: &Clients,
    expected: &Expected<'_>,
    granted: &[&str],
) -> anyhow::Result<Vec<Found>> {
    let listed =
        c.s3.list_buckets()
            .send()
            .await
            .map_err(aws("S3 ListBuckets"))?;
    let auto = |n: &str| labctl_core::marks::is_auto_bucket_name(n, expected.lab, &c.region);
    let mut candidates: Vec<String> = listed
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| auto(n) || Some(*n) == expected.bucket || granted.contains(n))
        .map(str::to_owned)
        .collect();
    candidates.sort();
    candidates.dedup();
    let mut out = Vec::new();
    for name in candidates {
        let tags =
            c.s3.get_bucket_tagging()
                .bucket(&name)
                .send()
                .await
                .map_err(aws(format!("S3 GetBucketTagging {name}")))
                .absent_if(&["NoSuchTagSet", "NoSuchTagSetError"])?
                .map(|t| t.tag_set().to_vec())
                .unwrap_or_default();
        let owned = tags
            .iter()
            .any(|t| t.key() == TAG_LAB && t.value() == expected.lab);
        // Our own deterministic name with no tags at all: a crash between CreateBucket
        // and PutBucketTagging. It is ours (S3 names are global; only this account and
        // this lab derive it), so it is adopted and tagged.
        let crashed = tags.is_empty() && auto(&name);
        if !owned && !crashed {
            if Some(name.as_str()) == expected.bucket {
                bail!(
                    "bucket {name} already exists but is not owned by lab `{}`; choose another \
                     `captures.bucket` (labctl never adopts it)",
                    expected.lab
                );
            }
            continue;
        }
        let spec = bucket_spec(c, &name, owned).await?;
        out.push(found(
            Address::new(Kind::Bucket, "captures"),
            &name,
            &name,
            spec,
        ));
        out.extend(observe_artifacts(c, &name, expected.labnet_key).await?);
    }
    Ok(out)
}

/// The labnet binaries uploaded to the bucket. The one the topology wants now is
/// `artifact/labnet`; older ones get an address of their own, so the plan deletes them.
async fn observe_artifacts(
    c: &Clients,
    bucket: &str,
    wanted: Option<&str>,
) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut pages =
        c.s3.list_objects_v2()
            .bucket(bucket)
            .prefix(LABNET_KEY_PREFIX)
            .into_paginator()
            .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws(format!("S3 ListObjectsV2 {bucket}")))?;
        for key in page.contents().iter().filter_map(|o| o.key()) {
            let Some(sha256) = key.strip_prefix(LABNET_KEY_PREFIX) else {
                continue;
            };
            let name = if Some(key) == wanted {
                LABNET_ARTIFACT.to_owned()
            } else {
                let short: String = sha256.chars().take(12).collect();
                format!("{LABNET_ARTIFACT}-{short}")
            };
            let spec = Spec::Artifact {
                bucket: bucket.to_owned(),
                sha256: sha256.to_owned(),
            };
            out.push(found(Address::new(Kind::Artifact, name), key, key, spec));
        }
    }
    Ok(out)
}

async fn bucket_spec(c: &Clients, name: &str, tagged: bool) -> anyhow::Result<Spec> {
    let private =
        c.s3.get_public_access_block()
            .bucket(name)
            .send()
            .await
            .map_err(aws(format!("S3 GetPublicAccessBlock {name}")))
            .absent_if(&["NoSuchPublicAccessBlockConfiguration"])?
            .and_then(|out| out.public_access_block_configuration().cloned())
            .is_some_and(|p| {
                p.block_public_acls() == Some(true)
                    && p.ignore_public_acls() == Some(true)
                    && p.block_public_policy() == Some(true)
                    && p.restrict_public_buckets() == Some(true)
            });
    let encrypted =
        c.s3.get_bucket_encryption()
            .bucket(name)
            .send()
            .await
            .map_err(aws(format!("S3 GetBucketEncryption {name}")))
            .absent_if(&["ServerSideEncryptionConfigurationNotFoundError"])?
            .and_then(|out| out.server_side_encryption_configuration().cloned())
            .is_some_and(|c| !c.rules().is_empty());
    let tls_only =
        c.s3.get_bucket_policy()
            .bucket(name)
            .send()
            .await
            .map_err(aws(format!("S3 GetBucketPolicy {name}")))
            .absent_if(&["NoSuchBucketPolicy"])?
            .and_then(|out| out.policy().map(str::to_owned))
            .is_some_and(|p| p.contains("aws:SecureTransport"));
    Ok(Spec::Bucket {
        tagged,
        private,
        encrypted,
        tls_only,
    })
}

async fn observe_dns(
    c: &Clients,
    lab: &str,
    vpc_id: &Option<String>,
    private_ips: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Found>> {
    let prefix = caller_reference_prefix(lab);
    let mut zones = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c
            .route53
            .list_hosted_zones()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(aws("Route53 ListHostedZones"))?;
        zones.extend(
            page.hosted_zones()
                .iter()
                .filter(|z| z.caller_reference().starts_with(&prefix))
                .cloned(),
        );
        match page.next_marker() {
            Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    let mut out = Vec::new();
    for z in zones {
        let id = z.id().trim_start_matches("/hostedzone/").to_owned();
        let zone = z.name().trim_end_matches('.').to_owned();
        let detail = c
            .route53
            .get_hosted_zone()
            .id(&id)
            .send()
            .await
            .map_err(aws(format!("Route53 GetHostedZone {id}")))?;
        let vpc_associated = vpc_id
            .as_deref()
            .is_some_and(|v| detail.vpcs().iter().any(|x| x.vpc_id() == Some(v)));
        out.push(found(
            Address::single(Kind::HostedZone),
            &id,
            &zone,
            Spec::HostedZone {
                zone: zone.clone(),
                vpc_associated,
            },
        ));
        out.extend(records(c, &id, &zone, private_ips).await?);
    }
    Ok(out)
}

async fn records(
    c: &Clients,
    zone_id: &str,
    zone: &str,
    private_ips: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut start: Option<(String, aws_sdk_route53::types::RrType)> = None;
    loop {
        let mut req = c
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id);
        if let Some((name, ty)) = &start {
            req = req.start_record_name(name).start_record_type(ty.clone());
        }
        let page = req
            .send()
            .await
            .map_err(aws(format!("Route53 ListResourceRecordSets {zone_id}")))?;
        for r in page.resource_record_sets() {
            if r.r#type().as_str() != "A" {
                continue;
            }
            let fqdn = r.name().trim_end_matches('.');
            let Some(host) = fqdn.strip_suffix(&format!(".{zone}")) else {
                continue;
            };
            let values: Vec<String> = r
                .resource_records()
                .iter()
                .map(|v| v.value().to_owned())
                .collect();
            let target = match values.as_slice() {
                [one] => match private_ips.get(one) {
                    Some(instance) => format!("instance/{instance}"),
                    None => one.clone(),
                },
                many => many.join(","),
            };
            let mut f = found(
                Address::new(Kind::DnsRecord, host),
                fqdn,
                fqdn,
                Spec::DnsRecord {
                    fqdn: fqdn.to_owned(),
                    ttl: r.ttl().and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
                    target,
                },
            );
            f.observation = Observation::DnsRecord {
                zone_id: zone_id.to_owned(),
                values,
            };
            out.push(f);
        }
        match (
            page.is_truncated(),
            page.next_record_name(),
            page.next_record_type(),
        ) {
            (true, Some(name), Some(ty)) => start = Some((name.to_owned(), ty.clone())),
            _ => break,
        }
    }
    Ok(out)
}
