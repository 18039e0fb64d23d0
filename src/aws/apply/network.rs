//! VPC attributes, routes and security group permissions, shared by creation and updates.

use anyhow::{Context as _, bail};
use aws_sdk_ec2::types::{AttributeBooleanValue, IpPermission, IpRange, UserIdGroupPair};
use labctl_core::desired::{Permission, PermissionPeer};
use labctl_core::topology::Proto;
use labctl_core::{Address, Kind};

use super::{Applier, gone};
use crate::aws::wait::{self, Backoff};
use crate::aws::{AwsError, aws};

impl Applier<'_> {
    pub(super) async fn vpc_dns(&self, vpc: &str) -> anyhow::Result<()> {
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

    pub(super) async fn subnet_public(&self, subnet: &str, public: bool) -> anyhow::Result<()> {
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

    pub(super) async fn default_route(&self, table: &str, replace: bool) -> anyhow::Result<()> {
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

    pub(super) async fn associate(&self, table: &str, subnet: &str) -> anyhow::Result<()> {
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
    pub(super) async fn set_rules(
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

    pub(super) fn ip_permissions(&self, perms: &[Permission]) -> anyhow::Result<Vec<IpPermission>> {
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
}
