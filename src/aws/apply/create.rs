//! Creating resources: one branch per kind, each with the lab's tags in the create call.

use anyhow::{Context as _, bail};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType, ResourceType,
    ShutdownBehavior, Tag, VolumeType,
};
use labctl_core::desired::{Permission, TAG_ADDRESS, TAG_LAB};
use labctl_core::plan::{InstanceFacts, Observation};
use labctl_core::{Address, Kind, Spec};

use super::{Applier, gone_or_exists, iam_tag, profile_not_visible};
use crate::aws::aws;
use crate::aws::observe::{
    TAG_IMAGE, TAG_LIFETIME, TAG_PUBLIC_IP, TAG_SERVICES, TAG_USER_DATA, iam_path,
};
use crate::aws::wait::{self, Backoff};

impl Applier<'_> {
    pub(super) async fn create(
        &self,
        a: &Address,
        name: &str,
        spec: &Spec,
    ) -> anyhow::Result<String> {
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
            Spec::Artifact { bucket, sha256 } => {
                self.upload_artifact(a, bucket, name, sha256).await?;
                name.to_owned()
            }
            Spec::HostedZone { zone, .. } => self.create_zone(a, zone).await?,
            Spec::Instance { .. } => return self.create_instance(a, name, spec).await,
            Spec::DnsRecord { fqdn, ttl, target } => {
                self.upsert_record(fqdn, *ttl, target).await?;
                fqdn.clone()
            }
        };
        self.remember(a, &id, Observation::Plain);
        Ok(id)
    }

    pub(super) async fn create_instance(
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
        let encoded = aws_smithy_types::base64::encode(labctl_core::userdata::encode(text));
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
        let out = wait::retry_if(Backoff::CONSISTENCY, profile_not_visible, launch).await?;
        let instance = out
            .instances()
            .first()
            .context("RunInstances returned no instance")?;
        let id = instance
            .instance_id()
            .context("RunInstances returned no id")?
            .to_owned();
        let facts = InstanceFacts {
            private_ip: instance.private_ip_address().map(str::to_owned),
            ..InstanceFacts::default()
        };
        self.remember(a, &id, Observation::Instance(facts));
        Ok(id)
    }
}
