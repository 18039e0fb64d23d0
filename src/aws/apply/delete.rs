//! Deleting resources, tolerating what is already gone and retrying dependencies that detach.

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_ec2::types::InstanceStateName;
use labctl_core::desired::Permission;
use labctl_core::plan::Change;
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
        // Only revocations here: authorizations may name groups created later.
        let keep_in: Vec<Permission> = hi.iter().filter(|p| ingress.contains(p)).cloned().collect();
        let keep_out: Vec<Permission> = he.iter().filter(|p| egress.contains(p)).cloned().collect();
        self.set_rules(&id, hi, &keep_in, he, &keep_out).await
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
            Kind::Artifact => self.delete_artifact(id).await?,
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
}
