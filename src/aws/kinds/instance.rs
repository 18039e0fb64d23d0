//! A lab instance: launched with IMDSv2 required, an encrypted root volume, the
//! lab's profile and its user-data; tags record what it was launched from, so a
//! later plan can compare. Its type changes by stop, modify, start.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use aws_sdk_ec2::types::{
    AttributeValue, BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState,
    IamInstanceProfileAssociationState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    ResourceType, ShutdownBehavior, Tag, VolumeType,
};
use labctl_core::marks::{TAG_IMAGE, TAG_LIFETIME, TAG_PUBLIC_IP, TAG_SERVICES, TAG_USER_DATA};
use labctl_core::plan::{Found, InstanceFacts, Observation};
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::{Applier, gone, profile_not_visible};
use crate::aws::observe::{address_of, found, tag};
use crate::aws::wait::{self, Backoff};
use crate::aws::{Clients, aws};

/// What an instance's spec refers to, by the ids AWS holds: group ids → roles,
/// subnet ids → names, instance ids → profile ARNs (from the associations).
pub struct Names<'a> {
    pub roles: &'a BTreeMap<String, String>,
    pub subnets: &'a BTreeMap<String, String>,
    pub profiles: &'a BTreeMap<String, String>,
}

/// An instance as found.
pub fn observe(i: &aws_sdk_ec2::types::Instance, names: &Names<'_>) -> Found {
    let id = i.instance_id().unwrap_or_default();
    let tags = i.tags();
    let state = i
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    let role = i
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .map(|g| names.roles.get(g).cloned().unwrap_or_else(|| g.to_owned()))
        .collect::<Vec<_>>()
        .join(",");
    let subnet = i
        .subnet_id()
        .map(|s| {
            names
                .subnets
                .get(s)
                .cloned()
                .unwrap_or_else(|| s.to_owned())
        })
        .unwrap_or_default();
    // The association is the authority on an instance's profile: it is what
    // ReplaceIamInstanceProfileAssociation changes.
    let profile = names
        .profiles
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
    let address = address_of(tags, Kind::Instance);
    let mut f = found(address, id, tag(tags, "Name").unwrap_or(id), spec);
    f.observation = Observation::Instance(InstanceFacts {
        state,
        ami: i.image_id().unwrap_or_default().to_owned(),
        private_ip: i.private_ip_address().map(str::to_owned),
        public_ip: i.public_ip_address().map(str::to_owned),
        // The latest start: the lifetime guard counts from each boot.
        launch_time: i.launch_time().and_then(|t| u64::try_from(t.secs()).ok()),
    });
    f
}

/// Instance id → ARN of the instance profile associated with it now.
pub async fn profiles(
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

impl Applier<'_> {
    pub(in crate::aws) async fn create_instance(
        &self,
        a: &Address,
        name: &str,
        spec: &Spec,
    ) -> anyhow::Result<String> {
        let Spec::Instance {
            image,
            role,
            subnet,
            public_ip,
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
        // The same launch (lab, address, user-data, subnet and group) always sends the
        // same token, so a retry or a run after a crash gets the instance the first
        // attempt made instead of a second one. AWS keeps a token for at least a day
        // and answers it with the instance even once that has terminated; then the
        // next generation of the token launches a new one.
        let token = |generation: u32| {
            use sha2::Digest;
            let seed = format!(
                "{}\n{a}\n{user_data}\n{subnet_id}\n{group}",
                self.inputs.lab
            );
            let digest: String = sha2::Sha256::digest(seed.as_bytes())
                .iter()
                .take(20)
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("labctl-{digest}-{generation}")
        };
        for generation in 0..4 {
            let out = self
                .launch(
                    a,
                    name,
                    spec,
                    ami,
                    &encoded,
                    &subnet_id,
                    &group,
                    &extra,
                    &token(generation),
                )
                .await?;
            let instance = out
                .instances()
                .first()
                .context("RunInstances returned no instance")?;
            let gone = instance.state().and_then(|s| s.name()).is_some_and(|s| {
                matches!(
                    s,
                    InstanceStateName::Terminated | InstanceStateName::ShuttingDown
                )
            });
            if gone {
                continue;
            }
            let id = instance
                .instance_id()
                .context("RunInstances returned no id")?
                .to_owned();
            let facts = InstanceFacts {
                private_ip: instance.private_ip_address().map(str::to_owned),
                ..InstanceFacts::default()
            };
            self.remember(a, &id, Observation::Instance(facts));
            return Ok(id);
        }
        bail!("{a}: every launch token so far names a terminated instance")
    }

    /// One RunInstances call with `token`.
    #[allow(clippy::too_many_arguments)]
    async fn launch(
        &self,
        a: &Address,
        name: &str,
        spec: &Spec,
        ami: &crate::aws::images::Ami,
        encoded: &str,
        subnet_id: &str,
        group: &str,
        extra: &[Tag],
        token: &str,
    ) -> anyhow::Result<aws_sdk_ec2::operation::run_instances::RunInstancesOutput> {
        let Spec::Instance {
            instance_type,
            profile,
            ..
        } = spec
        else {
            bail!("{a} is not an instance");
        };
        let ec2 = &self.c.ec2;
        let launch = || async {
            ec2.run_instances()
                .client_token(token)
                .image_id(&ami.id)
                .instance_type(InstanceType::from(instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .subnet_id(subnet_id)
                .security_group_ids(group)
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
                .user_data(encoded)
                .instance_initiated_shutdown_behavior(ShutdownBehavior::Stop)
                .tag_specifications(self.tag_spec(ResourceType::Instance, a, name, extra.to_vec()))
                .tag_specifications(self.tag_spec(ResourceType::Volume, a, name, vec![]))
                .send()
                .await
                .map_err(aws("EC2 RunInstances"))
        };
        // A fresh instance profile takes a while to become visible to EC2.
        Ok(wait::retry_if(Backoff::CONSISTENCY, profile_not_visible, launch).await?)
    }

    pub(in crate::aws) async fn update_instance(
        &self,
        id: &str,
        want: &Spec,
        have: &Spec,
    ) -> anyhow::Result<()> {
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
            let current = associations
                .iam_instance_profile_associations()
                .iter()
                .find(|x| {
                    x.state().is_some_and(|s| {
                        matches!(
                            s,
                            IamInstanceProfileAssociationState::Associated
                                | IamInstanceProfileAssociationState::Associating
                        )
                    })
                })
                .and_then(|x| x.association_id());
            // The instance moves in one call and is never without a role; a profile
            // made moments ago may not be visible to EC2 yet.
            wait::retry_if(Backoff::CONSISTENCY, profile_not_visible, || async {
                match current {
                    Some(assoc) => ec2
                        .replace_iam_instance_profile_association()
                        .association_id(assoc)
                        .iam_instance_profile(spec.clone())
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(aws("EC2 ReplaceIamInstanceProfileAssociation")),
                    None => ec2
                        .associate_iam_instance_profile()
                        .instance_id(id)
                        .iam_instance_profile(spec.clone())
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(aws("EC2 AssociateIamInstanceProfile")),
                }
            })
            .await?;
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

    pub(in crate::aws) async fn wait_state(
        &self,
        id: &str,
        states: &[InstanceStateName],
    ) -> anyhow::Result<()> {
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

    /// Terminates it and waits until it is gone: its network interface holds the
    /// subnet and groups until then.
    pub(in crate::aws) async fn delete_instance(&self, id: &str) -> anyhow::Result<()> {
        gone(
            self.c
                .ec2
                .terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(aws("EC2 TerminateInstances")),
        )?;
        self.wait_state(id, &[InstanceStateName::Terminated]).await
    }
}
