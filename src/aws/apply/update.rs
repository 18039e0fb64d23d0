//! Changing resources in place, including an instance's type (stop, modify, start).

use anyhow::{Context as _, bail};
use aws_sdk_ec2::types::{
    AttributeValue, Filter, HttpTokensState, IamInstanceProfileAssociationState,
    IamInstanceProfileSpecification, InstanceMetadataEndpointState, InstanceStateName,
};
use labctl_core::plan::Change;
use labctl_core::{Address, Kind, Spec};

use super::{Applier, gone, profile_not_visible};
use crate::aws::aws;
use crate::aws::wait::{self, Backoff};

impl Applier<'_> {
    pub(super) async fn update(&self, a: &Address, change: &Change) -> anyhow::Result<()> {
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
                    ..
                },
            ) => {
                if *internet_route && !had_route {
                    self.default_route(&id, change.observation.default_route())
                        .await?;
                }
                // Associations are kept by subnet id: a replaced subnet is a new one,
                // and an association with a subnet that is gone or unwanted goes.
                let want = subnets
                    .iter()
                    .map(|s| self.id(&Address::new(Kind::Subnet, s)))
                    .collect::<anyhow::Result<Vec<String>>>()?;
                let have = change.observation.associations();
                for stale in have.iter().filter(|x| !want.contains(&x.subnet_id)) {
                    gone(
                        self.c
                            .ec2
                            .disassociate_route_table()
                            .association_id(&stale.id)
                            .send()
                            .await
                            .map_err(aws("EC2 DisassociateRouteTable")),
                    )?;
                }
                for (name, subnet_id) in subnets.iter().zip(&want) {
                    if !have.iter().any(|x| &x.subnet_id == subnet_id) {
                        self.associate(&id, name).await?;
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

    pub(super) async fn update_instance(
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

    pub(super) async fn wait_state(
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
}
