//! VPC attributes, routes and security group permissions, shared by creation and updates.

use anyhow::{Context as _, bail};
use aws_sdk_ec2::types::{AttributeBooleanValue, IpPermission, IpRange, UserIdGroupPair};
use labctl_core::desired::{Permission, PermissionPeer};
use labctl_core::topology::Proto;
use labctl_core::{Address, Kind};

use super::{Applier, gone};
use crate::aws::aws;
use crate::aws::wait::{self, Backoff};

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

    /// Makes a group's permissions `want` from `have`, in both directions: revokes
    /// the rules no longer wanted, rewrites the descriptions that changed, and
    /// authorizes the new rules. AWS knows a rule by protocol, ports and peer.
    pub(super) async fn set_rules(
        &self,
        group: &str,
        have_in: &[Permission],
        want_in: &[Permission],
        have_out: &[Permission],
        want_out: &[Permission],
    ) -> anyhow::Result<()> {
        for (direction, have, want) in [
            (Direction::Ingress, have_in, want_in),
            (Direction::Egress, have_out, want_out),
        ] {
            let delta = RuleDelta::new(have, want);
            // A description is rewritten by taking the rule out and putting it back
            // at once: UpdateSecurityGroupRuleDescriptions* would do it in place on
            // AWS, but the emulator the tests use ignores it for rules naming groups.
            let (out, back) = delta.described;
            let stale: Vec<Permission> = delta.stale.into_iter().chain(out).collect();
            let new: Vec<Permission> = back.into_iter().chain(delta.new).collect();
            if !stale.is_empty() {
                self.revoke(group, direction, &stale).await?;
            }
            if !new.is_empty() {
                self.authorize(group, direction, &new).await?;
            }
        }
        Ok(())
    }

    async fn revoke(
        &self,
        group: &str,
        direction: Direction,
        perms: &[Permission],
    ) -> anyhow::Result<()> {
        let ec2 = &self.c.ec2;
        let perms = Some(self.ip_permissions(perms)?);
        gone(match direction {
            Direction::Ingress => ec2
                .revoke_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(perms)
                .send()
                .await
                .map(|_| ())
                .map_err(aws("EC2 RevokeSecurityGroupIngress")),
            Direction::Egress => ec2
                .revoke_security_group_egress()
                .group_id(group)
                .set_ip_permissions(perms)
                .send()
                .await
                .map(|_| ())
                .map_err(aws("EC2 RevokeSecurityGroupEgress")),
        })?;
        Ok(())
    }

    async fn authorize(
        &self,
        group: &str,
        direction: Direction,
        perms: &[Permission],
    ) -> anyhow::Result<()> {
        let ec2 = &self.c.ec2;
        let perms = self.ip_permissions(perms)?;
        // A group named by a rule may be moments old.
        let result = wait::retry(Backoff::CONSISTENCY, &["InvalidGroup.NotFound"], || async {
            match direction {
                Direction::Ingress => ec2
                    .authorize_security_group_ingress()
                    .group_id(group)
                    .set_ip_permissions(Some(perms.clone()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(aws("EC2 AuthorizeSecurityGroupIngress")),
                Direction::Egress => ec2
                    .authorize_security_group_egress()
                    .group_id(group)
                    .set_ip_permissions(Some(perms.clone()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(aws("EC2 AuthorizeSecurityGroupEgress")),
            }
        })
        .await;
        match result {
            // Already there: a retried or interrupted run authorized it.
            Err(e) if e.is(&["InvalidPermission.Duplicate"]) => Ok(()),
            other => other.map_err(Into::into),
        }
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

/// Which of a group's two rule lists.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Ingress,
    Egress,
}

/// What turns one rule list into another, rules matched by what AWS knows them by
/// (protocol, ports, peer).
#[derive(Debug, Default, PartialEq)]
pub(super) struct RuleDelta {
    /// Found but not wanted: revoked.
    pub stale: Vec<Permission>,
    /// Wanted and found with another description: (as found, as wanted).
    pub described: (Vec<Permission>, Vec<Permission>),
    /// Wanted but not found: authorized.
    pub new: Vec<Permission>,
}

impl RuleDelta {
    pub(super) fn new(have: &[Permission], want: &[Permission]) -> Self {
        let find = |list: &[Permission], p: &Permission| -> Option<Permission> {
            list.iter().find(|x| x.key() == p.key()).cloned()
        };
        let mut delta = RuleDelta::default();
        for h in have {
            if find(want, h).is_none() {
                delta.stale.push(h.clone());
            }
        }
        for w in want {
            match find(have, w) {
                None => delta.new.push(w.clone()),
                Some(h) if h.description != w.description => {
                    delta.described.0.push(h);
                    delta.described.1.push(w.clone());
                }
                Some(_) => {}
            }
        }
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv4Net;

    fn rule(port: u16, description: Option<&str>) -> Permission {
        Permission {
            proto: Proto::Tcp,
            ports: Some(labctl_core::topology::PortRange {
                from: port,
                to: port,
            }),
            peer: PermissionPeer::Cidr("203.0.113.7/32".parse::<Ipv4Net>().expect("cidr")),
            description: description.map(str::to_owned),
        }
    }

    #[test]
    fn a_new_description_rewrites_the_rule_in_place() {
        let have = [rule(80, Some("old")), rule(22, None)];
        let want = [rule(80, Some("new")), rule(443, None)];
        let delta = RuleDelta::new(&have, &want);
        assert_eq!(delta.stale, [rule(22, None)]);
        assert_eq!(
            delta.described,
            (vec![rule(80, Some("old"))], vec![rule(80, Some("new"))])
        );
        assert_eq!(delta.new, [rule(443, None)]);
        assert_eq!(RuleDelta::new(&want, &want), RuleDelta::default());
    }
}
