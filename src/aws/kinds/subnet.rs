//! A subnet: its CIDR, its availability zone, and whether instances launched in it
//! get a public IPv4.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use ipnet::Ipv4Net;
use labctl_core::plan::Found;
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::{Applier, once};
use crate::aws::aws;
use crate::aws::observe::{address_of, found, tag};
use crate::aws::wait::Backoff;

pub fn observe(s: &aws_sdk_ec2::types::Subnet) -> Found {
    let id = s.subnet_id().unwrap_or_default();
    let spec = Spec::Subnet {
        cidr: s
            .cidr_block()
            .unwrap_or("0.0.0.0/0")
            .parse()
            .unwrap_or_default(),
        public: s.map_public_ip_on_launch().unwrap_or(false),
        zone: s.availability_zone_id().map(str::to_owned),
    };
    let name = tag(s.tags(), "Name").unwrap_or(id);
    found(address_of(s.tags(), Kind::Subnet), id, name, spec)
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_subnet(
        &self,
        a: &Address,
        name: &str,
        cidr: Ipv4Net,
        public: bool,
        zone: Option<&str>,
    ) -> anyhow::Result<String> {
        let vpc = self.id(&Address::single(Kind::Vpc))?;
        let ec2 = &self.c.ec2;
        // The zone is chosen and shown by the plan; the tag says so on the subnet too.
        let zone_tag: Vec<aws_sdk_ec2::types::Tag> = zone
            .map(|z| {
                aws_sdk_ec2::types::Tag::builder()
                    .key(labctl_core::marks::TAG_ZONE)
                    .value(z)
                    .build()
            })
            .into_iter()
            .collect();
        let id = self
            .create_once(
                || async {
                    let out = ec2
                        .create_subnet()
                        .vpc_id(&vpc)
                        .cidr_block(cidr.to_string())
                        .set_availability_zone_id(zone.map(str::to_owned))
                        .tag_specifications(self.tag_spec(
                            ResourceType::Subnet,
                            a,
                            name,
                            zone_tag.clone(),
                        ))
                        .customize()
                        .config_override(once())
                        .send()
                        .await
                        .map_err(aws("EC2 CreateSubnet"))?;
                    Ok(out
                        .subnet()
                        .and_then(|s| s.subnet_id())
                        .unwrap_or_default()
                        .to_owned())
                },
                || async {
                    let found = ec2
                        .describe_subnets()
                        .set_filters(Some(self.marked(a)))
                        .send()
                        .await
                        .map_err(aws("EC2 DescribeSubnets"))?;
                    Ok(found
                        .subnets()
                        .first()
                        .and_then(|s| s.subnet_id())
                        .map(str::to_owned))
                },
            )
            .await?;
        anyhow::ensure!(!id.is_empty(), "CreateSubnet returned no id");
        if public {
            self.subnet_public(&id, true).await?;
        }
        Ok(id)
    }

    pub(in crate::aws) async fn subnet_public(
        &self,
        subnet: &str,
        public: bool,
    ) -> anyhow::Result<()> {
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

    /// Waits out network interfaces of terminating instances.
    pub(in crate::aws) async fn delete_subnet(&self, id: &str) -> anyhow::Result<()> {
        self.delete_when_free(Backoff::DEPENDENCIES, &["DependencyViolation"], || async {
            self.c
                .ec2
                .delete_subnet()
                .subnet_id(id)
                .send()
                .await
                .map(|_| ())
                .map_err(aws("EC2 DeleteSubnet"))
        })
        .await
    }
}
