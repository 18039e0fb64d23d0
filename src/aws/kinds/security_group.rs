//! A role's security group. Its rules are a resource of their own
//! (`security_group_rules`), created once every group they name exists.

use anyhow::{Context as _, bail};
use aws_sdk_ec2::types::{Filter, ResourceType, SecurityGroup};
use labctl_core::desired::TAG_LAB;
use labctl_core::plan::Found;
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::Applier;
use crate::aws::aws;
use crate::aws::observe::{address_of, found, tag};
use crate::aws::wait::Backoff;

/// A group as found, at `sg/<role>` (the role is read from its address tag).
pub fn observe(g: &SecurityGroup) -> Found {
    let id = g.group_id().unwrap_or_default();
    let address = address_of(g.tags(), Kind::SecurityGroup);
    let spec = Spec::SecurityGroup {
        role: address.name.clone(),
    };
    found(address, id, g.group_name().unwrap_or(id), spec)
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_group(
        &self,
        a: &Address,
        name: &str,
        role: &str,
    ) -> anyhow::Result<String> {
        let vpc = self.id(&Address::single(Kind::Vpc))?;
        let ec2 = &self.c.ec2;
        let made = ec2
            .create_security_group()
            .group_name(name)
            .description(format!("labctl lab {} role {role}", self.inputs.lab))
            .vpc_id(&vpc)
            .tag_specifications(self.tag_spec(ResourceType::SecurityGroup, a, name, vec![]))
            .send()
            .await
            .map_err(aws("EC2 CreateSecurityGroup"));
        match made {
            Ok(out) => Ok(out
                .group_id()
                .context("CreateSecurityGroup returned no id")?
                .to_owned()),
            // A retried create whose first answer was lost: adopted if it carries the
            // lab's mark, a clash otherwise.
            Err(e) if e.is(&["InvalidGroup.Duplicate"]) => {
                let found = ec2
                    .describe_security_groups()
                    .filters(Filter::builder().name("vpc-id").values(&vpc).build())
                    .filters(Filter::builder().name("group-name").values(name).build())
                    .send()
                    .await
                    .map_err(aws("EC2 DescribeSecurityGroups"))?;
                let group = found.security_groups().first();
                let ours = group.is_some_and(|g| {
                    address_of(g.tags(), Kind::SecurityGroup) == *a
                        && tag(g.tags(), TAG_LAB) == Some(self.inputs.lab)
                });
                match group.and_then(|g| g.group_id()) {
                    Some(id) if ours => Ok(id.to_owned()),
                    _ => bail!(
                        "security group {name} already exists in {vpc} but is not lab `{}`'s \
                         {a}; labctl never adopts it",
                        self.inputs.lab
                    ),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits out instances that still hold it while they terminate.
    pub(in crate::aws) async fn delete_group(&self, id: &str) -> anyhow::Result<()> {
        self.delete_when_free(
            Backoff::DEPENDENCIES,
            &["DependencyViolation", "InvalidGroup.InUse"],
            || async {
                self.c
                    .ec2
                    .delete_security_group()
                    .group_id(id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(aws("EC2 DeleteSecurityGroup"))
            },
        )
        .await
    }
}
