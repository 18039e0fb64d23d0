//! A role's rules, on its security group: one permission per protocol, ports and
//! peer, as AWS knows a rule. Another role is named by its group.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use aws_sdk_ec2::types::{
    IpPermission, IpRange, Ipv6Range, PrefixListId, SecurityGroup, UserIdGroupPair,
};
use ipnet::Ipv4Net;
use labctl_core::desired::{Permission, PermissionPeer};
use labctl_core::plan::{Change, Found};
use labctl_core::topology::{PortRange, Proto};
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::{Applier, gone};
use crate::aws::aws;
use crate::aws::observe::found;
use crate::aws::wait::{self, Backoff};

/// The rules found on a group, at `sg-rules/<role>`. `roles` maps the lab's group
/// ids to their roles.
pub fn observe(g: &SecurityGroup, role: &str, roles: &BTreeMap<String, String>) -> Found {
    let id = g.group_id().unwrap_or_default();
    let mut ingress = permissions(g.ip_permissions(), roles);
    let mut egress = permissions(g.ip_permissions_egress(), roles);
    ingress.sort();
    egress.sort();
    let spec = Spec::SecurityGroupRules {
        role: role.to_owned(),
        ingress,
        egress,
    };
    let name = g.group_name().unwrap_or(id);
    found(Address::new(Kind::SecurityGroupRules, role), id, name, spec)
}

/// Flattens AWS permissions into the core's one-peer-per-permission form.
pub fn permissions(perms: &[IpPermission], roles: &BTreeMap<String, String>) -> Vec<Permission> {
    let mut out = Vec::new();
    for p in perms {
        let proto = proto(p.ip_protocol().unwrap_or("-1"));
        let ports = match (proto.has_ports(), p.from_port(), p.to_port()) {
            (true, Some(from), Some(to)) => Some(PortRange {
                from: u16::try_from(from).unwrap_or(0),
                to: u16::try_from(to).unwrap_or(u16::MAX),
            }),
            _ => None,
        };
        let mut push = |peer, description: Option<&str>| {
            out.push(Permission {
                proto,
                ports,
                peer,
                description: description.map(str::to_owned),
            });
        };
        for r in p.ip_ranges() {
            if let Some(cidr) = r.cidr_ip().and_then(|c| c.parse::<Ipv4Net>().ok()) {
                push(PermissionPeer::Cidr(cidr), r.description());
            }
        }
        // Nothing in a topology says these: found, they are drift that `up` removes.
        for r in p.ipv6_ranges() {
            if let Some(cidr) = r.cidr_ipv6() {
                push(PermissionPeer::Cidr6(cidr.to_owned()), r.description());
            }
        }
        for l in p.prefix_list_ids() {
            if let Some(id) = l.prefix_list_id() {
                push(PermissionPeer::PrefixList(id.to_owned()), l.description());
            }
        }
        for g in p.user_id_group_pairs() {
            let id = g.group_id().unwrap_or_default();
            let peer = match roles.get(id) {
                Some(role) => PermissionPeer::Role(role.clone()),
                None => PermissionPeer::Group(id.to_owned()),
            };
            push(peer, g.description());
        }
    }
    out
}

/// A rule's protocol as EC2 writes it: a name or a number, `-1` for all.
fn proto(name: &str) -> Proto {
    match name {
        "tcp" | "6" => Proto::Tcp,
        "udp" | "17" => Proto::Udp,
        "icmp" | "1" => Proto::Icmp,
        "-1" | "all" => Proto::All,
        "icmpv6" => Proto::Number(58),
        other => other.parse().map_or(Proto::All, Proto::Number),
    }
}

impl Applier<'_> {
    /// A new group has no ingress and AWS's default egress rule.
    pub(in crate::aws) async fn create_rules(
        &self,
        role: &str,
        ingress: &[Permission],
        egress: &[Permission],
    ) -> anyhow::Result<String> {
        let group = self.id(&Address::new(Kind::SecurityGroup, role))?;
        let default_egress = [Permission::all_outbound()];
        self.set_rules(&group, &[], ingress, &default_egress, egress)
            .await?;
        Ok(group)
    }

    pub(in crate::aws) async fn revoke_stale(
        &self,
        a: &Address,
        change: &Change,
    ) -> anyhow::Result<()> {
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

    /// Everything, egress too: a rule naming another group would keep that group
    /// from being deleted.
    pub(in crate::aws) async fn delete_rules(
        &self,
        id: &str,
        change: &Change,
    ) -> anyhow::Result<()> {
        if let Some(Spec::SecurityGroupRules {
            ingress, egress, ..
        }) = &change.observed
        {
            self.set_rules(id, ingress, &[], egress, &[]).await?;
        }
        Ok(())
    }

    /// Makes a group's permissions `want` from `have`, in both directions: revokes
    /// the rules no longer wanted, rewrites the descriptions that changed, and
    /// authorizes the new rules. AWS knows a rule by protocol, ports and peer.
    pub(in crate::aws) async fn set_rules(
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

    fn ip_permissions(&self, perms: &[Permission]) -> anyhow::Result<Vec<IpPermission>> {
        perms
            .iter()
            .map(|p| {
                let (proto, ports) = match p.proto {
                    Proto::Tcp | Proto::Udp => {
                        let ports = p.ports.context("a TCP/UDP permission without ports")?;
                        let range = (i32::from(ports.from), i32::from(ports.to));
                        (p.proto.as_str().to_owned(), Some(range))
                    }
                    Proto::Icmp => ("icmp".to_owned(), Some((-1, -1))),
                    Proto::All => ("-1".to_owned(), None),
                    // AWS ignores ports for other protocols; -1 says "all", and
                    // the emulator the tests use needs them said.
                    Proto::Number(n) => (n.to_string(), Some((-1, -1))),
                };
                let mut b = IpPermission::builder().ip_protocol(proto);
                if let Some((from, to)) = ports {
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
                    PermissionPeer::Cidr6(c) => b.ipv6_ranges(
                        Ipv6Range::builder()
                            .cidr_ipv6(c)
                            .set_description(p.description.clone())
                            .build(),
                    ),
                    PermissionPeer::PrefixList(id) => b.prefix_list_ids(
                        PrefixListId::builder()
                            .prefix_list_id(id)
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
struct RuleDelta {
    /// Found but not wanted: revoked.
    stale: Vec<Permission>,
    /// Wanted and found with another description: (as found, as wanted).
    described: (Vec<Permission>, Vec<Permission>),
    /// Wanted but not found: authorized.
    new: Vec<Permission>,
}

impl RuleDelta {
    fn new(have: &[Permission], want: &[Permission]) -> Self {
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
