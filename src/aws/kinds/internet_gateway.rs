//! The internet gateway of a lab with public subnets, attached to its VPC.

use aws_sdk_ec2::types::{InternetGateway, ResourceType};
use labctl_core::plan::{Found, Observation};
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::{Applier, gone, once};
use crate::aws::aws;
use crate::aws::observe::{address_of, found, tag};
use crate::aws::wait::Backoff;

/// A gateway as found; `vpc` is the lab's VPC, if it has one.
pub fn observe(g: &InternetGateway, vpc: Option<&str>) -> Found {
    let id = g.internet_gateway_id().unwrap_or_default();
    let attached = g.attachments().iter().any(|a| a.vpc_id() == vpc);
    let mut f = found(
        address_of(g.tags(), Kind::InternetGateway),
        id,
        tag(g.tags(), "Name").unwrap_or(id),
        Spec::InternetGateway { attached },
    );
    // Every attachment: a duplicate is detached from wherever it is before it goes.
    f.observation = Observation::InternetGateway {
        attached_to: g
            .attachments()
            .iter()
            .filter_map(|a| a.vpc_id())
            .map(str::to_owned)
            .collect(),
    };
    f
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_internet_gateway(
        &self,
        a: &Address,
        name: &str,
    ) -> anyhow::Result<String> {
        let ec2 = &self.c.ec2;
        let id = self
            .create_once(
                || async {
                    let out = ec2
                        .create_internet_gateway()
                        .tag_specifications(self.tag_spec(
                            ResourceType::InternetGateway,
                            a,
                            name,
                            vec![],
                        ))
                        .customize()
                        .config_override(once())
                        .send()
                        .await
                        .map_err(aws("EC2 CreateInternetGateway"))?;
                    let gateway = out.internet_gateway().and_then(|g| g.internet_gateway_id());
                    Ok(gateway.unwrap_or_default().to_owned())
                },
                || async {
                    let found = ec2
                        .describe_internet_gateways()
                        .set_filters(Some(self.marked(a)))
                        .send()
                        .await
                        .map_err(aws("EC2 DescribeInternetGateways"))?;
                    let gateway = found.internet_gateways().first();
                    Ok(gateway
                        .and_then(|g| g.internet_gateway_id())
                        .map(str::to_owned))
                },
            )
            .await?;
        anyhow::ensure!(!id.is_empty(), "CreateInternetGateway returned no id");
        self.attach_internet_gateway(&id).await?;
        Ok(id)
    }

    /// Attaches the gateway to the lab's VPC.
    pub(in crate::aws) async fn attach_internet_gateway(&self, id: &str) -> anyhow::Result<()> {
        let vpc = self.id(&Address::single(Kind::Vpc))?;
        let attached = self
            .c
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(aws("EC2 AttachInternetGateway"));
        match attached {
            // A retried attach whose first answer was lost.
            Err(e) if e.is(&["Resource.AlreadyAssociated"]) => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Detaches it from every VPC it was found attached to, then deletes it.
    pub(in crate::aws) async fn delete_internet_gateway(
        &self,
        id: &str,
        observation: &Observation,
    ) -> anyhow::Result<()> {
        let ec2 = &self.c.ec2;
        for vpc in observation.attached_to() {
            // Refused while instances still hold public addresses in the VPC.
            self.delete_when_free(Backoff::DEPENDENCIES, &["DependencyViolation"], || async {
                ec2.detach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(vpc)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(aws("EC2 DetachInternetGateway"))
            })
            .await?;
        }
        gone(
            ec2.delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .map_err(aws("EC2 DeleteInternetGateway")),
        )?;
        Ok(())
    }
}
