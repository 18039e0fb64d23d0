//! Carrying out a plan: one function per kind and step, run stage by stage.
//!
//! The applier never decides what to change; it gets the plan's steps (ordered by the
//! core's `schedule`) and the specs each change carries. Every resource is created with
//! the lab's tags in the create call where the API takes them. Deletions tolerate what
//! is already gone; eventual consistency (a fresh instance profile EC2 cannot see yet, a
//! group still held by a terminating instance) is retried with backoff and a deadline.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, AttributeValue, BlockDeviceMapping, EbsBlockDevice, Filter,
    HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, IpPermission, IpRange,
    ResourceType, ShutdownBehavior, Tag, TagSpecification, UserIdGroupPair, VolumeType,
};
use labctl_core::desired::{Permission, PermissionPeer, TAG_ADDRESS, TAG_LAB};
use labctl_core::plan::{Action, Change, Observed, Plan, Step};
use labctl_core::topology::Proto;
use labctl_core::{Address, Desired, Kind, Spec};
use serde_json::json;

use super::images::Ami;
use super::observe::{
    INLINE_POLICY, TAG_IMAGE, TAG_LIFETIME, TAG_PUBLIC_IP, TAG_SERVICES, TAG_USER_DATA,
    caller_reference_prefix, iam_path,
};
use super::wait::{self, Backoff};
use super::{AwsError, Clients, aws};

/// Error codes that mean "already gone": success for a deletion.
const GONE: &[&str] = &[
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidAssociationID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidPermission.NotFound",
    "Gateway.NotAttached",
    "NoSuchEntity",
    "NoSuchBucket",
    "NoSuchHostedZone",
];

fn gone<T>(result: Result<T, AwsError>) -> Result<(), AwsError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is(GONE) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What the applier needs besides the plan.
pub struct Inputs<'a> {
    pub lab: &'a str,
    pub plan: &'a Plan,
    pub desired: &'a Desired,
    pub observed: &'a Observed,
    /// Image references resolved to AMIs (for instances to create).
    pub images: &'a BTreeMap<String, Ami>,
}

/// Receives progress as steps start and finish.
pub trait Progress: Sync {
    /// A step started.
    fn started(&self, step: &Step);
    /// A step ended, with a short outcome (an id) or an error.
    fn finished(&self, step: &Step, outcome: &Result<String, String>, elapsed: std::time::Duration);
}

/// Runs the stages in order, the steps of a stage concurrently. Stops after the first
/// stage with a failure (later stages depend on it) and reports every failure of it.
pub async fn apply(
    c: &Clients,
    inputs: &Inputs<'_>,
    stages: &[Vec<Step>],
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let applier = Applier::new(c, inputs);
    for stage in stages {
        let results = futures::future::join_all(stage.iter().map(|step| async {
            progress.started(step);
            let start = Instant::now();
            let result = applier.run(step).await.map_err(|e| format!("{e:#}"));
            progress.finished(step, &result, start.elapsed());
            result.map_err(|e| format!("{}: {e}", step_label(step)))
        }))
        .await;
        let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if !failures.is_empty() {
            bail!("{}", failures.join("\n"));
        }
    }
    Ok(())
}

/// `create instance/server`.
pub fn step_label(step: &Step) -> String {
    match step {
        Step::Delete(a) => format!("delete {a}"),
        Step::Revoke(a) => format!("revoke stale rules of {a}"),
        Step::Create(a) => format!("create {a}"),
        Step::Update(a) => format!("update {a}"),
    }
}

struct Applier<'a> {
    c: &'a Clients,
    inputs: &'a Inputs<'a>,
    /// Address → AWS id and facts (private IP …), from observation and from creations.
    ids: Mutex<BTreeMap<Address, BTreeMap<String, String>>>,
}

impl<'a> Applier<'a> {
    fn new(c: &'a Clients, inputs: &'a Inputs<'a>) -> Self {
        let mut ids: BTreeMap<Address, BTreeMap<String, String>> = BTreeMap::new();
        // The first found resource per address is the one the plan kept (diff claims
        // the first); later ones are duplicates the plan deletes by their own id.
        for f in &inputs.observed.resources {
            ids.entry(f.address.clone()).or_insert_with(|| {
                let mut facts = f.facts.clone();
                facts.insert("id".into(), f.id.clone());
                facts
            });
        }
        Self {
            c,
            inputs,
            ids: Mutex::new(ids),
        }
    }

    fn remember(&self, address: &Address, facts: BTreeMap<String, String>) {
        self.ids
            .lock()
            .expect("ids lock")
            .insert(address.clone(), facts);
    }

    fn fact(&self, address: &Address, key: &str) -> Option<String> {
        self.ids
            .lock()
            .expect("ids lock")
            .get(address)
            .and_then(|f| f.get(key).cloned())
    }

    fn id(&self, address: &Address) -> anyhow::Result<String> {
        self.fact(address, "id")
            .ok_or_else(|| anyhow!("{address} does not exist (it should have been created first)"))
    }

    fn change(&self, address: &Address, want_delete: bool) -> anyhow::Result<&'a Change> {
        let plan = self.inputs.plan;
        plan.changes
            .iter()
            .find(|c| &c.address == address && (c.action == Action::Delete) == want_delete)
            .or_else(|| plan.changes.iter().find(|c| &c.address == address))
            .ok_or_else(|| anyhow!("{address} is not in the plan"))
    }

    fn tags(&self, address: &Address, name: &str) -> Vec<Tag> {
        vec![
            Tag::builder().key("Name").value(name).build(),
            Tag::builder().key(TAG_LAB).value(self.inputs.lab).build(),
            Tag::builder()
                .key(TAG_ADDRESS)
                .value(address.to_string())
                .build(),
        ]
    }

    fn tag_spec(
        &self,
        ty: ResourceType,
        address: &Address,
        name: &str,
        extra: Vec<Tag>,
    ) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(ty)
            .set_tags(Some(
                self.tags(address, name).into_iter().chain(extra).collect(),
            ))
            .build()
    }

    async fn run(&self, step: &Step) -> anyhow::Result<String> {
        match step {
            Step::Delete(a) => {
                // Every existing resource at the address that goes: a replacement's old
                // one, or duplicates left by an interrupted run.
                let doomed: Vec<&Change> = self
                    .inputs
                    .plan
                    .changes
                    .iter()
                    .filter(|c| {
                        &c.address == a && matches!(c.action, Action::Delete | Action::Replace)
                    })
                    .collect();
                let mut ids = Vec::new();
                for change in doomed {
                    let id = change
                        .id
                        .clone()
                        .ok_or_else(|| anyhow!("{a} has no id to delete"))?;
                    self.delete(a, &id, change).await?;
                    ids.push(id);
                }
                Ok(ids.join(", "))
            }
            Step::Revoke(a) => {
                let change = self.change(a, false)?;
                self.revoke_stale(a, change).await?;
                Ok(String::new())
            }
            Step::Create(a) => {
                let change = self.change(a, false)?;
                let spec = change
                    .desired
                    .as_ref()
                    .ok_or_else(|| anyhow!("{a} has no desired state"))?;
                self.create(a, &change.name, spec).await
            }
            Step::Update(a) => {
                let change = self.change(a, false)?;
                self.update(a, change).await?;
                self.id(a).or_else(|_| Ok(String::new()))
            }
        }
    }

    // ---------------------------------------------------------------- create

    async fn create(&self, a: &Address, name: &str, spec: &Spec) -> anyhow::Result<String> {
        let ec2 = &self.c.ec2;
        let id = match spec {
            Spec::Vpc { cidr, .. } => {
                let out = ec2
                    .create_vpc()
                    .cidr_block(cidr.to_string())
                    .tag_specifications(self.tag_spec(ResourceType::Vpc, a, name, vec![]))
                    .send()
                    .await
                    .map_err(aws("EC2 CreateVpc"))?;
                let id = out
                    .vpc()
                    .and_then(|v| v.vpc_id())
                    .context("CreateVpc returned no id")?
                    .to_owned();
                self.vpc_dns(&id).await?;
                id
            }
            Spec::Subnet { cidr, public } => {
                let vpc = self.id(&Address::single(Kind::Vpc))?;
                let out = ec2
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(cidr.to_string())
                    .tag_specifications(self.tag_spec(ResourceType::Subnet, a, name, vec![]))
                    .send()
                    .await
                    .map_err(aws("EC2 CreateSubnet"))?;
                let id = out
                    .subnet()
                    .and_then(|s| s.subnet_id())
                    .context("CreateSubnet returned no id")?
                    .to_owned();
                if *public {
                    self.subnet_public(&id, true).await?;
                }
                id
            }
            Spec::InternetGateway { .. } => {
                let out = ec2
                    .create_internet_gateway()
                    .tag_specifications(self.tag_spec(
                        ResourceType::InternetGateway,
                        a,
                        name,
                        vec![],
                    ))
                    .send()
                    .await
                    .map_err(aws("EC2 CreateInternetGateway"))?;
                let id = out
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .context("CreateInternetGateway returned no id")?
                    .to_owned();
                let vpc = self.id(&Address::single(Kind::Vpc))?;
                ec2.attach_internet_gateway()
                    .internet_gateway_id(&id)
                    .vpc_id(vpc)
                    .send()
                    .await
                    .map_err(aws("EC2 AttachInternetGateway"))?;
                id
            }
            Spec::RouteTable { subnets, .. } => {
                let vpc = self.id(&Address::single(Kind::Vpc))?;
                let out = ec2
                    .create_route_table()
                    .vpc_id(vpc)
                    .tag_specifications(self.tag_spec(ResourceType::RouteTable, a, name, vec![]))
                    .send()
                    .await
                    .map_err(aws("EC2 CreateRouteTable"))?;
                let id = out
                    .route_table()
                    .and_then(|t| t.route_table_id())
                    .context("CreateRouteTable returned no id")?
                    .to_owned();
                self.default_route(&id, false).await?;
                for s in subnets {
                    self.associate(&id, s).await?;
                }
                id
            }
            Spec::SecurityGroup { role } => {
                let vpc = self.id(&Address::single(Kind::Vpc))?;
                let out = ec2
                    .create_security_group()
                    .group_name(name)
                    .description(format!("labctl lab {} role {role}", self.inputs.lab))
                    .vpc_id(vpc)
                    .tag_specifications(self.tag_spec(ResourceType::SecurityGroup, a, name, vec![]))
                    .send()
                    .await
                    .map_err(aws("EC2 CreateSecurityGroup"))?;
                out.group_id()
                    .context("CreateSecurityGroup returned no id")?
                    .to_owned()
            }
            Spec::SecurityGroupRules {
                role,
                ingress,
                egress,
            } => {
                let group = self.id(&Address::new(Kind::SecurityGroup, role))?;
                // A new group has no ingress and AWS's default egress rule.
                let default_egress = [Permission::all_outbound()];
                self.set_rules(&group, &[], ingress, &default_egress, egress)
                    .await?;
                group
            }
            Spec::IamRole {
                managed_policies,
                inline_policy_bucket,
            } => {
                self.create_role(a, name, managed_policies, inline_policy_bucket.as_deref())
                    .await?;
                name.to_owned()
            }
            Spec::InstanceProfile { role } => {
                let iam = &self.c.iam;
                wait::retry(Backoff::CONSISTENCY, &["EntityAlreadyExists"], || async {
                    gone_or_exists(
                        iam.create_instance_profile()
                            .instance_profile_name(name)
                            .path(iam_path(self.inputs.lab, &self.c.region))
                            .tags(iam_tag(TAG_LAB, self.inputs.lab))
                            .tags(iam_tag(TAG_ADDRESS, &a.to_string()))
                            .send()
                            .await
                            .map_err(aws("IAM CreateInstanceProfile")),
                    )
                })
                .await?;
                self.profile_role(name, None, role).await?;
                name.to_owned()
            }
            Spec::Bucket { .. } => {
                self.create_bucket(name).await?;
                self.bucket_settings(a, name).await?;
                name.to_owned()
            }
            Spec::HostedZone { zone, .. } => self.create_zone(a, zone).await?,
            Spec::Instance { .. } => return self.create_instance(a, name, spec).await,
            Spec::DnsRecord { fqdn, ttl, target } => {
                self.upsert_record(fqdn, *ttl, target).await?;
                fqdn.clone()
            }
        };
        self.remember(a, BTreeMap::from([("id".to_owned(), id.clone())]));
        Ok(id)
    }

    async fn vpc_dns(&self, vpc: &str) -> anyhow::Result<()> {
        // One attribute per call, support before hostnames (AWS requires both this way).
        let on = AttributeBooleanValue::builder().value(true).build();
        self.c
            .ec2
            .modify_vpc_attribute()
            .vpc_id(vpc)
            .enable_dns_support(on.clone())
            .send()
            .await
            .map_err(aws("EC2 ModifyVpcAttribute"))?;
        self.c
            .ec2
            .modify_vpc_attribute()
            .vpc_id(vpc)
            .enable_dns_hostnames(on)
            .send()
            .await
            .map_err(aws("EC2 ModifyVpcAttribute"))?;
        Ok(())
    }

    async fn subnet_public(&self, subnet: &str, public: bool) -> anyhow::Result<()> {
        let value = AttributeBooleanValue::builder().value(public).build();
        self.c
            .ec2
            .modify_subnet_attribute()
            .subnet_id(subnet)
            .map_public_ip_on_launch(value)
            .send()
            .await
            .map_err(aws("EC2 ModifySubnetAttribute"))?;
        Ok(())
    }

    async fn default_route(&self, table: &str, replace: bool) -> anyhow::Result<()> {
        let igw = self.id(&Address::single(Kind::InternetGateway))?;
        if replace {
            self.c
                .ec2
                .replace_route()
                .route_table_id(table)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(igw)
                .send()
                .await
                .map_err(aws("EC2 ReplaceRoute"))?;
        } else {
            self.c
                .ec2
                .create_route()
                .route_table_id(table)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(igw)
                .send()
                .await
                .map_err(aws("EC2 CreateRoute"))?;
        }
        Ok(())
    }

    async fn associate(&self, table: &str, subnet: &str) -> anyhow::Result<()> {
        let subnet_id = self.id(&Address::new(Kind::Subnet, subnet))?;
        self.c
            .ec2
            .associate_route_table()
            .route_table_id(table)
            .subnet_id(subnet_id)
            .send()
            .await
            .map_err(aws("EC2 AssociateRouteTable"))?;
        Ok(())
    }

    /// Revokes `have − want` and authorizes `want − have`, for both directions.
    async fn set_rules(
        &self,
        group: &str,
        have_in: &[Permission],
        want_in: &[Permission],
        have_out: &[Permission],
        want_out: &[Permission],
    ) -> anyhow::Result<()> {
        let ec2 = &self.c.ec2;
        let missing = |have: &[Permission], want: &[Permission]| -> Vec<Permission> {
            want.iter().filter(|p| !have.contains(p)).cloned().collect()
        };
        let stale_in = missing(want_in, have_in);
        let stale_out = missing(want_out, have_out);
        if !stale_in.is_empty() {
            gone(
                ec2.revoke_security_group_ingress()
                    .group_id(group)
                    .set_ip_permissions(Some(self.ip_permissions(&stale_in)?))
                    .send()
                    .await
                    .map_err(aws("EC2 RevokeSecurityGroupIngress")),
            )?;
        }
        if !stale_out.is_empty() {
            gone(
                ec2.revoke_security_group_egress()
                    .group_id(group)
                    .set_ip_permissions(Some(self.ip_permissions(&stale_out)?))
                    .send()
                    .await
                    .map_err(aws("EC2 RevokeSecurityGroupEgress")),
            )?;
        }
        let new_in = missing(have_in, want_in);
        let new_out = missing(have_out, want_out);
        let duplicate = |r: Result<(), AwsError>| match r {
            Err(e) if e.is(&["InvalidPermission.Duplicate"]) => Ok(()),
            other => other,
        };
        if !new_in.is_empty() {
            let perms = self.ip_permissions(&new_in)?;
            duplicate(
                wait::retry(Backoff::CONSISTENCY, &["InvalidGroup.NotFound"], || async {
                    ec2.authorize_security_group_ingress()
                        .group_id(group)
                        .set_ip_permissions(Some(perms.clone()))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(aws("EC2 AuthorizeSecurityGroupIngress"))
                })
                .await,
            )?;
        }
        if !new_out.is_empty() {
            let perms = self.ip_permissions(&new_out)?;
            duplicate(
                wait::retry(Backoff::CONSISTENCY, &["InvalidGroup.NotFound"], || async {
                    ec2.authorize_security_group_egress()
                        .group_id(group)
                        .set_ip_permissions(Some(perms.clone()))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(aws("EC2 AuthorizeSecurityGroupEgress"))
                })
                .await,
            )?;
        }
        Ok(())
    }

    fn ip_permissions(&self, perms: &[Permission]) -> anyhow::Result<Vec<IpPermission>> {
        perms
            .iter()
            .map(|p| {
                let (proto, from, to) = match p.proto {
                    Proto::Tcp | Proto::Udp => {
                        let ports = p.ports.context("a TCP/UDP permission without ports")?;
                        (p.proto.as_str(), i32::from(ports.from), i32::from(ports.to))
                    }
                    Proto::Icmp => ("icmp", -1, -1),
                    Proto::All => ("-1", -1, -1),
                };
                let mut b = IpPermission::builder().ip_protocol(proto);
                if proto != "-1" {
                    b = b.from_port(from).to_port(to);
                }
                b = match &p.peer {
                    PermissionPeer::Cidr(c) => b.ip_ranges(
                        IpRange::builder()
                            .cidr_ip(c.to_string())
                            .set_description(p.description.clone())
                            .build(),
                    ),
                    PermissionPeer::Role(role) => b.user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .group_id(self.id(&Address::new(Kind::SecurityGroup, role))?)
                            .set_description(p.description.clone())
                            .build(),
                    ),
                    PermissionPeer::Group(id) => b.user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .group_id(id)
                            .set_description(p.description.clone())
                            .build(),
                    ),
                    PermissionPeer::MyIp => bail!("`my-ip` was not resolved before applying"),
                };
                Ok(b.build())
            })
            .collect()
    }

    async fn create_role(
        &self,
        a: &Address,
        name: &str,
        managed: &[String],
        bucket: Option<&str>,
    ) -> anyhow::Result<()> {
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": "ec2.amazonaws.com" },
                "Action": "sts:AssumeRole"
            }]
        });
        gone_or_exists(
            self.c
                .iam
                .create_role()
                .role_name(name)
                .path(iam_path(self.inputs.lab, &self.c.region))
                .assume_role_policy_document(trust.to_string())
                .description(format!("Instances of labctl lab {}", self.inputs.lab))
                .tags(iam_tag(TAG_LAB, self.inputs.lab))
                .tags(iam_tag(TAG_ADDRESS, &a.to_string()))
                .send()
                .await
                .map_err(aws("IAM CreateRole")),
        )?;
        self.role_policies(name, &[], managed, None, bucket).await
    }

    async fn role_policies(
        &self,
        role: &str,
        have: &[String],
        want: &[String],
        have_bucket: Option<&str>,
        want_bucket: Option<&str>,
    ) -> anyhow::Result<()> {
        let iam = &self.c.iam;
        for arn in want.iter().filter(|p| !have.contains(p)) {
            iam.attach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .map_err(aws(format!("IAM AttachRolePolicy {arn}")))?;
        }
        for arn in have.iter().filter(|p| !want.contains(p)) {
            gone(
                iam.detach_role_policy()
                    .role_name(role)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(aws(format!("IAM DetachRolePolicy {arn}"))),
            )?;
        }
        if have_bucket != want_bucket {
            match want_bucket {
                Some(bucket) => {
                    iam.put_role_policy()
                        .role_name(role)
                        .policy_name(INLINE_POLICY)
                        .policy_document(bucket_policy(bucket).to_string())
                        .send()
                        .await
                        .map_err(aws("IAM PutRolePolicy"))?;
                }
                None => {
                    gone(
                        iam.delete_role_policy()
                            .role_name(role)
                            .policy_name(INLINE_POLICY)
                            .send()
                            .await
                            .map_err(aws("IAM DeleteRolePolicy")),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Makes `role` the profile's only role.
    async fn profile_role(
        &self,
        profile: &str,
        have: Option<&str>,
        want: &str,
    ) -> anyhow::Result<()> {
        let iam = &self.c.iam;
        if let Some(old) = have.filter(|h| !h.is_empty() && *h != want) {
            gone(
                iam.remove_role_from_instance_profile()
                    .instance_profile_name(profile)
                    .role_name(old)
                    .send()
                    .await
                    .map_err(aws("IAM RemoveRoleFromInstanceProfile")),
            )?;
        }
        if have != Some(want) {
            let added = iam
                .add_role_to_instance_profile()
                .instance_profile_name(profile)
                .role_name(want)
                .send()
                .await
                .map_err(aws("IAM AddRoleToInstanceProfile"));
            match added {
                Err(e) if e.is(&["LimitExceeded", "EntityAlreadyExists"]) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    async fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let mut req = self.c.s3.create_bucket().bucket(name);
        // us-east-1 takes no location constraint; every other region requires one.
        if self.c.region != "us-east-1" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        self.c.region.as_str(),
                    ))
                    .build(),
            );
        }
        match req
            .send()
            .await
            .map_err(aws(format!("S3 CreateBucket {name}")))
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(&["BucketAlreadyOwnedByYou"]) => Ok(()),
            Err(e) if e.is(&["BucketAlreadyExists"]) => bail!(
                "bucket name {name} is taken by another AWS account; set `captures.bucket` to another name"
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Tags, public access block, default encryption and the TLS-only policy.
    async fn bucket_settings(&self, a: &Address, name: &str) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{
            PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
            ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag as S3Tag, Tagging,
        };
        let s3 = &self.c.s3;
        let tagging = Tagging::builder()
            .tag_set(
                S3Tag::builder()
                    .key(TAG_LAB)
                    .value(self.inputs.lab)
                    .build()?,
            )
            .tag_set(
                S3Tag::builder()
                    .key(TAG_ADDRESS)
                    .value(a.to_string())
                    .build()?,
            )
            .build()?;
        s3.put_bucket_tagging()
            .bucket(name)
            .tagging(tagging)
            .send()
            .await
            .map_err(aws("S3 PutBucketTagging"))?;
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        s3.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(block)
            .send()
            .await
            .map_err(aws("S3 PutPublicAccessBlock"))?;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()?,
            )
            .bucket_key_enabled(true)
            .build();
        s3.put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()?,
            )
            .send()
            .await
            .map_err(aws("S3 PutBucketEncryption"))?;
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [format!("arn:aws:s3:::{name}"), format!("arn:aws:s3:::{name}/*")],
                "Condition": { "Bool": { "aws:SecureTransport": "false" } }
            }]
        });
        s3.put_bucket_policy()
            .bucket(name)
            .policy(policy.to_string())
            .send()
            .await
            .map_err(aws("S3 PutBucketPolicy"))?;
        Ok(())
    }

    async fn create_zone(&self, a: &Address, zone: &str) -> anyhow::Result<String> {
        use aws_sdk_route53::types::{
            HostedZoneConfig, Tag as R53Tag, TagResourceType, Vpc, VpcRegion,
        };
        let vpc = self.id(&Address::single(Kind::Vpc))?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        // The caller reference marks the zone as the lab's from the create call on.
        let reference = format!("{}{millis}", caller_reference_prefix(self.inputs.lab));
        let out = self
            .c
            .route53
            .create_hosted_zone()
            .name(zone)
            .caller_reference(reference)
            .vpc(
                Vpc::builder()
                    .vpc_id(vpc)
                    .vpc_region(VpcRegion::from(self.c.region.as_str()))
                    .build(),
            )
            .hosted_zone_config(
                HostedZoneConfig::builder()
                    .comment(format!("labctl lab {}", self.inputs.lab))
                    .private_zone(true)
                    .build(),
            )
            .send()
            .await
            .map_err(aws("Route53 CreateHostedZone"))?;
        let id = out
            .hosted_zone()
            .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
            .context("CreateHostedZone returned no zone")?;
        self.c
            .route53
            .change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(&id)
            .add_tags(
                R53Tag::builder()
                    .key(TAG_LAB)
                    .value(self.inputs.lab)
                    .build(),
            )
            .add_tags(
                R53Tag::builder()
                    .key(TAG_ADDRESS)
                    .value(a.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(aws("Route53 ChangeTagsForResource"))?;
        Ok(id)
    }

    async fn create_instance(
        &self,
        a: &Address,
        name: &str,
        spec: &Spec,
    ) -> anyhow::Result<String> {
        let Spec::Instance {
            instance_type,
            image,
            role,
            subnet,
            public_ip,
            profile,
            services,
            lifetime_minutes,
            user_data,
            ..
        } = spec
        else {
            bail!("{a} is not an instance");
        };
        let ami = self
            .inputs
            .images
            .get(image)
            .with_context(|| format!("image {image} was not resolved"))?;
        let text = self
            .inputs
            .desired
            .user_data
            .get(&a.name)
            .with_context(|| format!("no user-data rendered for {a}"))?;
        let subnet_id = self.id(&Address::new(Kind::Subnet, subnet))?;
        let group = self.id(&Address::new(Kind::SecurityGroup, role))?;
        let extra = vec![
            Tag::builder().key(TAG_USER_DATA).value(user_data).build(),
            Tag::builder()
                .key(TAG_SERVICES)
                .value(services.join(","))
                .build(),
            Tag::builder().key(TAG_IMAGE).value(image).build(),
            Tag::builder()
                .key(TAG_PUBLIC_IP)
                .value(public_ip.to_string())
                .build(),
        ];
        let mut extra = extra;
        if let Some(m) = lifetime_minutes {
            extra.push(
                Tag::builder()
                    .key(TAG_LIFETIME)
                    .value(m.to_string())
                    .build(),
            );
        }
        let encoded = aws_smithy_types::base64::encode(text.as_bytes());
        let ec2 = &self.c.ec2;
        let launch = || async {
            ec2.run_instances()
                .image_id(&ami.id)
                .instance_type(InstanceType::from(instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnet_id)
                .security_group_ids(&group)
                .iam_instance_profile(
                    IamInstanceProfileSpecification::builder()
                        .name(profile)
                        .build(),
                )
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_tokens(HttpTokensState::Required)
                        .http_endpoint(InstanceMetadataEndpointState::Enabled)
                        .build(),
                )
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name(&ami.root_device)
                        .ebs(
                            EbsBlockDevice::builder()
                                .encrypted(true)
                                .volume_size(ami.root_size)
                                .volume_type(VolumeType::Gp3)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .user_data(&encoded)
                .instance_initiated_shutdown_behavior(ShutdownBehavior::Stop)
                .tag_specifications(self.tag_spec(ResourceType::Instance, a, name, extra.clone()))
                .tag_specifications(self.tag_spec(ResourceType::Volume, a, name, vec![]))
                .send()
                .await
                .map_err(aws("EC2 RunInstances"))
        };
        // A fresh instance profile takes a while to become visible to EC2.
        let out = wait::retry_if(
            Backoff::CONSISTENCY,
            |e| {
                e.is(&["InvalidParameterValue"])
                    && e.message.to_ascii_lowercase().contains("profile")
            },
            launch,
        )
        .await?;
        let instance = out
            .instances()
            .first()
            .context("RunInstances returned no instance")?;
        let id = instance
            .instance_id()
            .context("RunInstances returned no id")?
            .to_owned();
        let mut facts = BTreeMap::from([("id".to_owned(), id.clone())]);
        if let Some(ip) = instance.private_ip_address() {
            facts.insert("private_ip".into(), ip.to_owned());
        }
        self.remember(a, facts);
        Ok(id)
    }

    async fn upsert_record(&self, fqdn: &str, ttl: u32, target: &str) -> anyhow::Result<()> {
        let instance = Address::parse(target).filter(|t| t.kind == Kind::Instance);
        let ip = instance
            .as_ref()
            .and_then(|i| self.fact(i, "private_ip"))
            .with_context(|| format!("{target} has no private address yet"))?;
        self.record_change(aws_sdk_route53::types::ChangeAction::Upsert, fqdn, ttl, &ip)
            .await
    }

    async fn record_change(
        &self,
        action: aws_sdk_route53::types::ChangeAction,
        fqdn: &str,
        ttl: u32,
        ip: &str,
    ) -> anyhow::Result<()> {
        use aws_sdk_route53::types::{
            Change as R53Change, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
        };
        let zone = self.id(&Address::single(Kind::HostedZone))?;
        let set = ResourceRecordSet::builder()
            .name(fqdn)
            .r#type(RrType::A)
            .ttl(i64::from(ttl))
            .resource_records(ResourceRecord::builder().value(ip).build()?)
            .build()?;
        let batch = ChangeBatch::builder()
            .changes(
                R53Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()?,
            )
            .build()?;
        let result = self
            .c
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(aws("Route53 ChangeResourceRecordSets"));
        match result {
            // Deleting a record that is already gone.
            Err(e) if e.is(&["InvalidChangeBatch"]) && e.message.contains("not found") => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    // ---------------------------------------------------------------- update

    async fn update(&self, a: &Address, change: &Change) -> anyhow::Result<()> {
        let want = change
            .desired
            .as_ref()
            .context("update without desired state")?;
        let have = change
            .observed
            .as_ref()
            .context("update without observed state")?;
        let id = change.id.clone().unwrap_or_default();
        match (want, have) {
            (Spec::Vpc { .. }, _) => self.vpc_dns(&id).await,
            (Spec::Subnet { public, .. }, _) => self.subnet_public(&id, *public).await,
            (Spec::InternetGateway { .. }, _) => {
                let vpc = self.id(&Address::single(Kind::Vpc))?;
                self.c
                    .ec2
                    .attach_internet_gateway()
                    .internet_gateway_id(&id)
                    .vpc_id(vpc)
                    .send()
                    .await
                    .map_err(aws("EC2 AttachInternetGateway"))?;
                Ok(())
            }
            (
                Spec::RouteTable {
                    internet_route,
                    subnets,
                },
                Spec::RouteTable {
                    internet_route: had_route,
                    subnets: had,
                },
            ) => {
                if *internet_route && !had_route {
                    self.default_route(&id, self.fact(a, "default_route").is_some())
                        .await?;
                }
                for s in subnets.iter().filter(|s| !had.contains(s)) {
                    self.associate(&id, s).await?;
                }
                for s in had.iter().filter(|s| !subnets.contains(s)) {
                    let subnet_id = self
                        .fact(&Address::new(Kind::Subnet, s), "id")
                        .unwrap_or_else(|| s.clone());
                    if let Some(assoc) = self.fact(a, &format!("association:{subnet_id}")) {
                        gone(
                            self.c
                                .ec2
                                .disassociate_route_table()
                                .association_id(assoc)
                                .send()
                                .await
                                .map_err(aws("EC2 DisassociateRouteTable")),
                        )?;
                    }
                }
                Ok(())
            }
            (
                Spec::SecurityGroupRules {
                    ingress, egress, ..
                },
                Spec::SecurityGroupRules {
                    ingress: hi,
                    egress: he,
                    ..
                },
            ) => self.set_rules(&id, hi, ingress, he, egress).await,
            (
                Spec::IamRole {
                    managed_policies,
                    inline_policy_bucket,
                },
                Spec::IamRole {
                    managed_policies: hm,
                    inline_policy_bucket: hb,
                },
            ) => {
                self.role_policies(
                    &id,
                    hm,
                    managed_policies,
                    hb.as_deref(),
                    inline_policy_bucket.as_deref(),
                )
                .await
            }
            (Spec::InstanceProfile { role }, Spec::InstanceProfile { role: had }) => {
                self.profile_role(&id, Some(had), role).await
            }
            (Spec::Bucket { .. }, _) => self.bucket_settings(a, &id).await,
            (Spec::HostedZone { .. }, _) => {
                use aws_sdk_route53::types::{Vpc, VpcRegion};
                let vpc = self.id(&Address::single(Kind::Vpc))?;
                self.c
                    .route53
                    .associate_vpc_with_hosted_zone()
                    .hosted_zone_id(&id)
                    .vpc(
                        Vpc::builder()
                            .vpc_id(vpc)
                            .vpc_region(VpcRegion::from(self.c.region.as_str()))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(aws("Route53 AssociateVPCWithHostedZone"))?;
                Ok(())
            }
            (Spec::Instance { .. }, Spec::Instance { .. }) => {
                self.update_instance(&id, want, have).await
            }
            (Spec::DnsRecord { fqdn, ttl, target }, _) => {
                self.upsert_record(fqdn, *ttl, target).await
            }
            _ => bail!("{a}: observed state is of another kind"),
        }
    }

    async fn update_instance(&self, id: &str, want: &Spec, have: &Spec) -> anyhow::Result<()> {
        let (
            Spec::Instance {
                instance_type,
                role,
                profile,
                imdsv2,
                running,
                ..
            },
            Spec::Instance {
                instance_type: had_type,
                role: had_role,
                profile: had_profile,
                imdsv2: had_imds,
                running: was_running,
                ..
            },
        ) = (want, have)
        else {
            bail!("not an instance");
        };
        let ec2 = &self.c.ec2;
        let mut is_running = *was_running;
        if instance_type != had_type {
            // The type of a running instance cannot change: stop, modify, start.
            if is_running {
                ec2.stop_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(aws("EC2 StopInstances"))?;
                self.wait_state(id, &[InstanceStateName::Stopped]).await?;
                is_running = false;
            }
            ec2.modify_instance_attribute()
                .instance_id(id)
                .instance_type(AttributeValue::builder().value(instance_type).build())
                .send()
                .await
                .map_err(aws("EC2 ModifyInstanceAttribute"))?;
        }
        if role != had_role {
            let group = self.id(&Address::new(Kind::SecurityGroup, role))?;
            ec2.modify_instance_attribute()
                .instance_id(id)
                .groups(group)
                .send()
                .await
                .map_err(aws("EC2 ModifyInstanceAttribute"))?;
        }
        if imdsv2 != had_imds {
            ec2.modify_instance_metadata_options()
                .instance_id(id)
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .send()
                .await
                .map_err(aws("EC2 ModifyInstanceMetadataOptions"))?;
        }
        if profile != had_profile {
            let spec = IamInstanceProfileSpecification::builder()
                .name(profile)
                .build();
            let associations = ec2
                .describe_iam_instance_profile_associations()
                .filters(Filter::builder().name("instance-id").values(id).build())
                .send()
                .await
                .map_err(aws("EC2 DescribeIamInstanceProfileAssociations"))?;
            match associations
                .iam_instance_profile_associations()
                .first()
                .and_then(|x| x.association_id())
            {
                Some(assoc) => {
                    ec2.replace_iam_instance_profile_association()
                        .association_id(assoc)
                        .iam_instance_profile(spec)
                        .send()
                        .await
                        .map_err(aws("EC2 ReplaceIamInstanceProfileAssociation"))?;
                }
                None => {
                    ec2.associate_iam_instance_profile()
                        .instance_id(id)
                        .iam_instance_profile(spec)
                        .send()
                        .await
                        .map_err(aws("EC2 AssociateIamInstanceProfile"))?;
                }
            }
        }
        if *running && !is_running {
            // A stopping instance must finish stopping before it can start.
            self.wait_state(
                id,
                &[InstanceStateName::Stopped, InstanceStateName::Running],
            )
            .await?;
            ec2.start_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(aws("EC2 StartInstances"))?;
        }
        Ok(())
    }

    async fn wait_state(&self, id: &str, states: &[InstanceStateName]) -> anyhow::Result<()> {
        let ec2 = &self.c.ec2;
        wait::until(
            &format!("instance {id} to reach {states:?}"),
            Backoff::INSTANCE_STATE,
            || async {
                let out = ec2.describe_instances().instance_ids(id).send().await;
                let out = match out.map_err(aws("EC2 DescribeInstances")) {
                    Ok(out) => out,
                    Err(e) if e.is(&["InvalidInstanceID.NotFound"]) => {
                        return Ok(states.contains(&InstanceStateName::Terminated));
                    }
                    Err(e) => return Err(e.into()),
                };
                let state = out
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| i.state().and_then(|s| s.name()).cloned());
                Ok(state.is_none_or(|s| states.contains(&s)))
            },
        )
        .await
    }

    // ---------------------------------------------------------------- delete

    async fn revoke_stale(&self, a: &Address, change: &Change) -> anyhow::Result<()> {
        let (
            Some(Spec::SecurityGroupRules {
                ingress, egress, ..
            }),
            Some(Spec::SecurityGroupRules {
                ingress: hi,
                egress: he,
                ..
            }),
        ) = (&change.desired, &change.observed)
        else {
            bail!("{a}: revoke needs both rule sets");
        };
        let id = change.id.clone().context("rules without a group id")?;
        // Only revocations here: authorizations may name groups created later.
        let keep_in: Vec<Permission> = hi.iter().filter(|p| ingress.contains(p)).cloned().collect();
        let keep_out: Vec<Permission> = he.iter().filter(|p| egress.contains(p)).cloned().collect();
        self.set_rules(&id, hi, &keep_in, he, &keep_out).await
    }

    async fn delete(&self, a: &Address, id: &str, change: &Change) -> anyhow::Result<()> {
        let ec2 = &self.c.ec2;
        let iam = &self.c.iam;
        match a.kind {
            Kind::Instance => {
                gone(
                    ec2.terminate_instances()
                        .instance_ids(id)
                        .send()
                        .await
                        .map_err(aws("EC2 TerminateInstances")),
                )?;
                // Its network interface holds the subnet and groups until it is gone.
                self.wait_state(id, &[InstanceStateName::Terminated])
                    .await?;
            }
            Kind::DnsRecord => {
                if let Some(Spec::DnsRecord { fqdn, ttl, .. }) = &change.observed
                    && let Some(ip) = self.fact(a, "value")
                {
                    self.record_change(
                        aws_sdk_route53::types::ChangeAction::Delete,
                        fqdn,
                        *ttl,
                        &ip,
                    )
                    .await?;
                }
            }
            Kind::SecurityGroupRules => {
                if let Some(Spec::SecurityGroupRules {
                    ingress, egress, ..
                }) = &change.observed
                {
                    self.set_rules(id, ingress, &[], egress, egress).await?;
                }
            }
            Kind::SecurityGroup => {
                gone(
                    wait::retry(
                        Backoff::DEPENDENCIES,
                        &["DependencyViolation", "InvalidGroup.InUse"],
                        || async {
                            ec2.delete_security_group()
                                .group_id(id)
                                .send()
                                .await
                                .map(|_| ())
                                .map_err(aws("EC2 DeleteSecurityGroup"))
                        },
                    )
                    .await,
                )?;
            }
            Kind::RouteTable => {
                let assocs: Vec<String> = self
                    .ids
                    .lock()
                    .expect("ids lock")
                    .get(a)
                    .map(|f| {
                        f.iter()
                            .filter(|(k, _)| k.starts_with("association:"))
                            .map(|(_, v)| v.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for assoc in assocs {
                    gone(
                        ec2.disassociate_route_table()
                            .association_id(assoc)
                            .send()
                            .await
                            .map_err(aws("EC2 DisassociateRouteTable")),
                    )?;
                }
                gone(
                    wait::retry(Backoff::DEPENDENCIES, &["DependencyViolation"], || async {
                        ec2.delete_route_table()
                            .route_table_id(id)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(aws("EC2 DeleteRouteTable"))
                    })
                    .await,
                )?;
            }
            Kind::InternetGateway => {
                let attached = self.fact(a, "attached_to").unwrap_or_default();
                for vpc in attached.split(',').filter(|v| !v.is_empty()) {
                    // Fails while instances still hold public addresses in the VPC.
                    gone(
                        wait::retry(Backoff::DEPENDENCIES, &["DependencyViolation"], || async {
                            ec2.detach_internet_gateway()
                                .internet_gateway_id(id)
                                .vpc_id(vpc)
                                .send()
                                .await
                                .map(|_| ())
                                .map_err(aws("EC2 DetachInternetGateway"))
                        })
                        .await,
                    )?;
                }
                gone(
                    ec2.delete_internet_gateway()
                        .internet_gateway_id(id)
                        .send()
                        .await
                        .map_err(aws("EC2 DeleteInternetGateway")),
                )?;
            }
            Kind::Subnet => {
                gone(
                    wait::retry(Backoff::DEPENDENCIES, &["DependencyViolation"], || async {
                        ec2.delete_subnet()
                            .subnet_id(id)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(aws("EC2 DeleteSubnet"))
                    })
                    .await,
                )?;
            }
            Kind::Vpc => {
                gone(
                    wait::retry(Backoff::DEPENDENCIES, &["DependencyViolation"], || async {
                        ec2.delete_vpc()
                            .vpc_id(id)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(aws("EC2 DeleteVpc"))
                    })
                    .await,
                )
                .map_err(|e| {
                    anyhow!("{e} (something not owned by the lab may still be in VPC {id})")
                })?;
            }
            Kind::InstanceProfile => {
                if let Some(Spec::InstanceProfile { role }) = &change.observed
                    && !role.is_empty()
                {
                    gone(
                        iam.remove_role_from_instance_profile()
                            .instance_profile_name(id)
                            .role_name(role)
                            .send()
                            .await
                            .map_err(aws("IAM RemoveRoleFromInstanceProfile")),
                    )?;
                }
                gone(
                    iam.delete_instance_profile()
                        .instance_profile_name(id)
                        .send()
                        .await
                        .map_err(aws("IAM DeleteInstanceProfile")),
                )?;
            }
            Kind::IamRole => {
                if let Some(Spec::IamRole {
                    managed_policies, ..
                }) = &change.observed
                {
                    for arn in managed_policies {
                        gone(
                            iam.detach_role_policy()
                                .role_name(id)
                                .policy_arn(arn)
                                .send()
                                .await
                                .map_err(aws("IAM DetachRolePolicy")),
                        )?;
                    }
                }
                let inline = iam
                    .list_role_policies()
                    .role_name(id)
                    .send()
                    .await
                    .map_err(aws("IAM ListRolePolicies"));
                if let Ok(inline) = inline {
                    for policy in inline.policy_names() {
                        gone(
                            iam.delete_role_policy()
                                .role_name(id)
                                .policy_name(policy)
                                .send()
                                .await
                                .map_err(aws("IAM DeleteRolePolicy")),
                        )?;
                    }
                }
                gone(
                    iam.delete_role()
                        .role_name(id)
                        .send()
                        .await
                        .map_err(aws("IAM DeleteRole")),
                )?;
            }
            Kind::Bucket => self.delete_bucket(id).await?,
            Kind::HostedZone => {
                gone(
                    self.c
                        .route53
                        .delete_hosted_zone()
                        .id(id)
                        .send()
                        .await
                        .map_err(aws("Route53 DeleteHostedZone")),
                )?;
            }
        }
        self.ids.lock().expect("ids lock").remove(a);
        Ok(())
    }

    async fn delete_bucket(&self, name: &str) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let s3 = &self.c.s3;
        let mut objects = s3.list_objects_v2().bucket(name).into_paginator().send();
        while let Some(page) = objects.next().await {
            let page = match page.map_err(aws(format!("S3 ListObjectsV2 {name}"))) {
                Ok(p) => p,
                Err(e) if e.is(GONE) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let keys: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            if !keys.is_empty() {
                s3.delete_objects()
                    .bucket(name)
                    .delete(
                        Delete::builder()
                            .set_objects(Some(keys))
                            .quiet(true)
                            .build()?,
                    )
                    .send()
                    .await
                    .map_err(aws("S3 DeleteObjects"))?;
            }
        }
        gone(
            s3.delete_bucket()
                .bucket(name)
                .send()
                .await
                .map_err(aws("S3 DeleteBucket")),
        )?;
        Ok(())
    }
}

fn iam_tag(key: &str, value: &str) -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value are set")
}

/// Treats "already exists" as success: a retried or crashed run created it.
fn gone_or_exists<T>(result: Result<T, AwsError>) -> Result<(), AwsError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is(&["EntityAlreadyExists"]) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The inline policy: list the lab's bucket, read and write its objects. Nothing else.
pub fn bucket_policy(bucket: &str) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListLabBucket",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{bucket}")
            },
            {
                "Sid": "ReadWriteLabObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": format!("arn:aws:s3:::{bucket}/*")
            }
        ]
    })
}

/// The bucket an inline policy document grants, if it is exactly labctl's policy.
/// IAM returns documents URL-encoded.
pub fn bucket_of_policy(document: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(document)
        .decode_utf8()
        .ok()?;
    let doc: serde_json::Value = serde_json::from_str(&decoded).ok()?;
    let resource = doc["Statement"][0]["Resource"].as_str()?;
    let bucket = resource.strip_prefix("arn:aws:s3:::")?;
    (doc == bucket_policy(bucket)).then(|| bucket.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_policy_round_trips_through_iams_encoding() {
        let doc = bucket_policy("netlab-captures-1-eu-north-1").to_string();
        let encoded =
            percent_encoding::utf8_percent_encode(&doc, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            bucket_of_policy(&encoded).as_deref(),
            Some("netlab-captures-1-eu-north-1")
        );
        assert_eq!(
            bucket_of_policy(&doc).as_deref(),
            Some("netlab-captures-1-eu-north-1")
        );
        let widened = doc.replace("s3:PutObject", "s3:*");
        assert_eq!(
            bucket_of_policy(&widened),
            None,
            "a changed policy is not ours"
        );
    }
}
