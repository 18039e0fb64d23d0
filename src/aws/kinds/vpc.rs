//! The VPC: its CIDR, and DNS support and hostnames (the private zone needs both).

use anyhow::anyhow;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use ipnet::Ipv4Net;
use labctl_core::plan::Found;
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::{Applier, once};
use crate::aws::observe::{address_of, found, tag};
use crate::aws::wait::Backoff;
use crate::aws::{Clients, aws};

/// A VPC the lab owns, as found: whether DNS works in it needs two more reads.
pub async fn observe(c: &Clients, vpc: &aws_sdk_ec2::types::Vpc) -> anyhow::Result<Found> {
    let id = vpc.vpc_id().unwrap_or_default();
    let (support, hostnames) = tokio::try_join!(
        attribute(c, id, VpcAttributeName::EnableDnsSupport),
        attribute(c, id, VpcAttributeName::EnableDnsHostnames),
    )?;
    let cidr: Ipv4Net = vpc
        .cidr_block()
        .unwrap_or("0.0.0.0/0")
        .parse()
        .unwrap_or_default();
    let spec = Spec::Vpc {
        cidr,
        dns: support && hostnames,
    };
    let name = tag(vpc.tags(), "Name").unwrap_or(id);
    Ok(found(address_of(vpc.tags(), Kind::Vpc), id, name, spec))
}

async fn attribute(c: &Clients, vpc: &str, attribute: VpcAttributeName) -> anyhow::Result<bool> {
    let out = c
        .ec2
        .describe_vpc_attribute()
        .vpc_id(vpc)
        .attribute(attribute.clone())
        .send()
        .await
        .map_err(aws(format!("EC2 DescribeVpcAttribute {vpc}")))?;
    let value = if attribute == VpcAttributeName::EnableDnsSupport {
        out.enable_dns_support()
    } else {
        out.enable_dns_hostnames()
    };
    Ok(value.and_then(|v| v.value()).unwrap_or(false))
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_vpc(
        &self,
        a: &Address,
        name: &str,
        cidr: Ipv4Net,
    ) -> anyhow::Result<String> {
        let ec2 = &self.c.ec2;
        let id = self
            .create_once(
                || async {
                    let out = ec2
                        .create_vpc()
                        .cidr_block(cidr.to_string())
                        .tag_specifications(self.tag_spec(ResourceType::Vpc, a, name, vec![]))
                        .customize()
                        .config_override(once())
                        .send()
                        .await
                        .map_err(aws("EC2 CreateVpc"))?;
                    Ok(out
                        .vpc()
                        .and_then(|v| v.vpc_id())
                        .unwrap_or_default()
                        .to_owned())
                },
                || async {
                    let found = ec2
                        .describe_vpcs()
                        .set_filters(Some(self.marked(a)))
                        .send()
                        .await
                        .map_err(aws("EC2 DescribeVpcs"))?;
                    Ok(found
                        .vpcs()
                        .first()
                        .and_then(|v| v.vpc_id())
                        .map(str::to_owned))
                },
            )
            .await?;
        anyhow::ensure!(!id.is_empty(), "CreateVpc returned no id");
        self.vpc_dns(&id).await?;
        Ok(id)
    }

    /// DNS support, then hostnames: one attribute per call, in that order, as AWS
    /// requires.
    pub(in crate::aws) async fn vpc_dns(&self, vpc: &str) -> anyhow::Result<()> {
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

    pub(in crate::aws) async fn delete_vpc(&self, id: &str) -> anyhow::Result<()> {
        self.delete_when_free(Backoff::DEPENDENCIES, &["DependencyViolation"], || async {
            self.c
                .ec2
                .delete_vpc()
                .vpc_id(id)
                .send()
                .await
                .map(|_| ())
                .map_err(aws("EC2 DeleteVpc"))
        })
        .await
        .map_err(|e| anyhow!("{e} (something not owned by the lab may still be in VPC {id})"))
    }
}
