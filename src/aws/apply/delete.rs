//! Deleting resources, tolerating what is already gone and retrying dependencies that detach.

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_ec2::types::InstanceStateName;
use labctl_core::desired::Permission;
use labctl_core::plan::{Change, Observation};
use labctl_core::{Address, Kind, Spec};

use super::{Applier, gone};
use crate::aws::aws;
use crate::aws::wait::{self, Backoff};

impl Applier<'_> {
    pub(super) async fn revoke_stale(&self, a: &Address, change: &Change) -> anyhow::Result<()> {
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
        // Only revocations here: authorizations may name groups created later, and
        // a rule whose description changes stays (it is described again later).
        let kept = |have: &[Permission], want: &[Permission]| -> Vec<Permission> {
            have.iter()
                .filter(|h| want.iter().any(|w| w.key() == h.key()))
                .cloned()
                .collect()
        };
        self.set_rules(&id, hi, &kept(hi, ingress), he, &kept(he, egress))
            .await
    }

    pub(super) async fn delete(
        &self,
        a: &Address,
        id: &str,
        change: &Change,
    ) -> anyhow::Result<()> {
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
                // Route 53 deletes a record only when told exactly what it holds, in
                // the zone it is in: this copy's own zone, TTL and values.
                if let (
                    Some(Spec::DnsRecord { fqdn, ttl, .. }),
                    Observation::DnsRecord { zone_id, values },
                ) = (&change.observed, &change.observation)
                {
                    self.record_change(
                        zone_id,
                        aws_sdk_route53::types::ChangeAction::Delete,
                        fqdn,
                        *ttl,
                        values,
                    )
                    .await?;
                }
            }
            Kind::SecurityGroupRules => {
                if let Some(Spec::SecurityGroupRules {
                    ingress, egress, ..
                }) = &change.observed
                {
                    // Everything, egress too: a rule naming another group would
                    // keep that group from being deleted.
                    self.set_rules(id, ingress, &[], egress, &[]).await?;
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
                for assoc in change.observation.associations() {
                    gone(
                        ec2.disassociate_route_table()
                            .association_id(&assoc.id)
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
                for vpc in change.observation.attached_to() {
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
            Kind::Bucket => {
                // The original of a renamed bucket: what instances wrote moves to
                // the new one, checked, before anything is deleted.
                if change.goes_last(self.inputs.desired)
                    && let Some(new) = self.inputs.desired.get(a)
                    && new.name != id
                {
                    self.carry_over(id, &new.name).await?;
                }
                self.delete_bucket(id).await?;
            }
            Kind::Artifact => {
                if let Some(Spec::Artifact { bucket, .. }) = &change.observed {
                    self.delete_artifact(bucket, id).await?;
                }
            }
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
        // Forget it, unless what stands at the address now is its successor.
        let mut known = self.known.lock().expect("known lock");
        if known.get(a).is_some_and(|k| k.id == id) {
            known.remove(a);
        }
        Ok(())
    }
}
