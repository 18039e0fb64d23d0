//! The public subnets' route table: a default route to the internet gateway, and an
//! association with each public subnet, kept by subnet id.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{ResourceType, RouteTable};
use labctl_core::plan::{Association, Found, Observation};
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::{Applier, gone, once};
use crate::aws::aws;
use crate::aws::observe::{address_of, found, tag};
use crate::aws::wait::Backoff;

/// A route table as found. `gateways` are the lab's internet gateway ids;
/// `subnet_names` maps the lab's subnet ids to their names (others stay ids).
pub fn observe(
    t: &RouteTable,
    gateways: &[String],
    subnet_names: &BTreeMap<String, String>,
) -> Found {
    let id = t.route_table_id().unwrap_or_default();
    let default = |r: &&aws_sdk_ec2::types::Route| r.destination_cidr_block() == Some("0.0.0.0/0");
    let internet_route = t.routes().iter().filter(default).any(|r| {
        r.gateway_id()
            .is_some_and(|g| gateways.iter().any(|i| i == g))
    });
    let mut names = Vec::new();
    let mut associations = Vec::new();
    for a in t.associations() {
        if let (Some(subnet), Some(assoc)) = (a.subnet_id(), a.route_table_association_id()) {
            names.push(
                subnet_names
                    .get(subnet)
                    .cloned()
                    .unwrap_or_else(|| subnet.to_owned()),
            );
            associations.push(Association {
                subnet_id: subnet.to_owned(),
                id: assoc.to_owned(),
            });
        }
    }
    names.sort();
    let spec = Spec::RouteTable {
        internet_route,
        subnets: names,
    };
    let mut f = found(
        address_of(t.tags(), Kind::RouteTable),
        id,
        tag(t.tags(), "Name").unwrap_or(id),
        spec,
    );
    f.observation = Observation::RouteTable {
        associations,
        default_route: t.routes().iter().any(|r| default(&r)),
    };
    f
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_route_table(
        &self,
        a: &Address,
        name: &str,
        subnets: &[String],
    ) -> anyhow::Result<String> {
        let vpc = self.id(&Address::single(Kind::Vpc))?;
        let ec2 = &self.c.ec2;
        let id = self
            .create_once(
                || async {
                    let out = ec2
                        .create_route_table()
                        .vpc_id(&vpc)
                        .tag_specifications(self.tag_spec(
                            ResourceType::RouteTable,
                            a,
                            name,
                            vec![],
                        ))
                        .customize()
                        .config_override(once())
                        .send()
                        .await
                        .map_err(aws("EC2 CreateRouteTable"))?;
                    let table = out.route_table().and_then(|t| t.route_table_id());
                    Ok(table.unwrap_or_default().to_owned())
                },
                || async {
                    let found = ec2
                        .describe_route_tables()
                        .set_filters(Some(self.marked(a)))
                        .send()
                        .await
                        .map_err(aws("EC2 DescribeRouteTables"))?;
                    let table = found.route_tables().first();
                    Ok(table.and_then(|t| t.route_table_id()).map(str::to_owned))
                },
            )
            .await?;
        anyhow::ensure!(!id.is_empty(), "CreateRouteTable returned no id");
        self.default_route(&id, false).await?;
        for s in subnets {
            self.associate(&id, s).await?;
        }
        Ok(id)
    }

    /// The default route to the lab's gateway, and exactly the wanted subnets, by id:
    /// a replaced subnet is a new one, and an association with a subnet that is gone
    /// or unwanted goes.
    pub(in crate::aws) async fn update_route_table(
        &self,
        id: &str,
        internet_route: bool,
        had_route: bool,
        subnets: &[String],
        observation: &Observation,
    ) -> anyhow::Result<()> {
        if internet_route && !had_route {
            self.default_route(id, observation.default_route()).await?;
        }
        let want = subnets
            .iter()
            .map(|s| self.id(&Address::new(Kind::Subnet, s)))
            .collect::<anyhow::Result<Vec<String>>>()?;
        let have = observation.associations();
        for stale in have.iter().filter(|x| !want.contains(&x.subnet_id)) {
            self.disassociate(&stale.id).await?;
        }
        for (name, subnet_id) in subnets.iter().zip(&want) {
            if !have.iter().any(|x| &x.subnet_id == subnet_id) {
                self.associate(id, name).await?;
            }
        }
        Ok(())
    }

    async fn default_route(&self, table: &str, replace: bool) -> anyhow::Result<()> {
        let igw = self.id(&Address::single(Kind::InternetGateway))?;
        let ec2 = &self.c.ec2;
        let made = if replace {
            ec2.replace_route()
                .route_table_id(table)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(igw)
                .send()
                .await
                .map(|_| ())
                .map_err(aws("EC2 ReplaceRoute"))
        } else {
            ec2.create_route()
                .route_table_id(table)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(igw)
                .send()
                .await
                .map(|_| ())
                .map_err(aws("EC2 CreateRoute"))
        };
        match made {
            // A retried call whose first answer was lost.
            Err(e) if e.is(&["RouteAlreadyExists"]) => Ok(()),
            other => other.map_err(Into::into),
        }
    }

    async fn associate(&self, table: &str, subnet: &str) -> anyhow::Result<()> {
        let subnet_id = self.id(&Address::new(Kind::Subnet, subnet))?;
        let associated = self
            .c
            .ec2
            .associate_route_table()
            .route_table_id(table)
            .subnet_id(subnet_id)
            .send()
            .await
            .map_err(aws("EC2 AssociateRouteTable"));
        match associated {
            // A retried call whose first answer was lost.
            Err(e) if e.is(&["Resource.AlreadyAssociated"]) => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn disassociate(&self, association: &str) -> anyhow::Result<()> {
        gone(
            self.c
                .ec2
                .disassociate_route_table()
                .association_id(association)
                .send()
                .await
                .map_err(aws("EC2 DisassociateRouteTable")),
        )?;
        Ok(())
    }

    /// Its own associations first (as found), then the table.
    pub(in crate::aws) async fn delete_route_table(
        &self,
        id: &str,
        observation: &Observation,
    ) -> anyhow::Result<()> {
        for assoc in observation.associations() {
            self.disassociate(&assoc.id).await?;
        }
        self.delete_when_free(Backoff::DEPENDENCIES, &["DependencyViolation"], || async {
            self.c
                .ec2
                .delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .map(|_| ())
                .map_err(aws("EC2 DeleteRouteTable"))
        })
        .await
    }
}
