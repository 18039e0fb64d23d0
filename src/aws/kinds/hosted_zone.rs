//! The lab's private hosted zone, associated with its VPC. It is marked as the lab's
//! by its caller reference from the create call on, and by tags right after. Its
//! records are read by `super::dns_record`.

use anyhow::{Context as _, bail};
use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use labctl_core::marks::{caller_reference_prefix, zone_is_labs};
use labctl_core::plan::Found;
use labctl_core::{Address, Kind, Spec};
use std::collections::BTreeMap;

use crate::aws::apply::{Applier, gone};
use crate::aws::observe::found;
use crate::aws::{Clients, aws};

/// The lab's zones, each with its records. `vpc_id` is the lab's VPC; `private_ips`
/// maps instance addresses to instance names, to read records back.
pub async fn observe(
    c: &Clients,
    lab: &str,
    vpc_id: &Option<String>,
    private_ips: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Found>> {
    // Any zone of this lab, in any region; which are its own here is decided below.
    let prefix = format!("labctl:{lab}:");
    let mut zones = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c
            .route53
            .list_hosted_zones()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(aws("Route53 ListHostedZones"))?;
        zones.extend(
            page.hosted_zones()
                .iter()
                .filter(|z| z.caller_reference().starts_with(&prefix))
                .cloned(),
        );
        match page.next_marker() {
            Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    let mut out = Vec::new();
    for z in zones {
        let id = z.id().trim_start_matches("/hostedzone/").to_owned();
        let zone = z.name().trim_end_matches('.').to_owned();
        let detail = c
            .route53
            .get_hosted_zone()
            .id(&id)
            .send()
            .await
            .map_err(aws(format!("Route53 GetHostedZone {id}")))?;
        let regions: Vec<&str> = detail
            .vpcs()
            .iter()
            .filter_map(|v| v.vpc_region())
            .map(|r| r.as_str())
            .collect();
        if !zone_is_labs(z.caller_reference(), lab, &c.region, &regions) {
            continue;
        }
        let vpc_associated = vpc_id
            .as_deref()
            .is_some_and(|v| detail.vpcs().iter().any(|x| x.vpc_id() == Some(v)));
        out.push(found(
            Address::single(Kind::HostedZone),
            &id,
            &zone,
            Spec::HostedZone {
                zone: zone.clone(),
                vpc_associated,
            },
        ));
        out.extend(super::dns_record::observe(c, &id, &zone, private_ips).await?);
    }
    Ok(out)
}

impl Applier<'_> {
    pub(in crate::aws) async fn create_zone(
        &self,
        a: &Address,
        zone: &str,
    ) -> anyhow::Result<String> {
        use aws_sdk_route53::types::{
            HostedZoneConfig, Tag as R53Tag, TagResourceType, Vpc, VpcRegion,
        };
        let vpc = self.id(&Address::single(Kind::Vpc))?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        // The caller reference marks the zone as the lab's from the create call on.
        let reference = format!(
            "{}{millis}",
            caller_reference_prefix(self.inputs.lab, &self.c.region)
        );
        let made = self
            .c
            .route53
            .create_hosted_zone()
            .name(zone)
            .caller_reference(&reference)
            .vpc(
                Vpc::builder()
                    .vpc_id(vpc)
                    .vpc_region(VpcRegion::from(self.c.region.as_str()))
                    .build(),
            )
            .hosted_zone_config(
                HostedZoneConfig::builder()
                    .comment(format!("labctl lab {}", self.inputs.lab))
                    .private_zone(true)
                    .build(),
            )
            .send()
            .await
            .map_err(aws("Route53 CreateHostedZone"));
        let id = match made {
            Ok(out) => out
                .hosted_zone()
                .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
                .context("CreateHostedZone returned no zone")?,
            // The SDK's retry of a create whose answer was lost: Route 53 made it,
            // under this very reference.
            Err(e) if e.is(&["HostedZoneAlreadyExists"]) => self
                .zone_by_reference(&reference)
                .await?
                .with_context(|| format!("{e}, but no zone has caller reference {reference}"))?,
            Err(e) => return Err(e.into()),
        };
        self.c
            .route53
            .change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(&id)
            .add_tags(
                R53Tag::builder()
                    .key(TAG_LAB)
                    .value(self.inputs.lab)
                    .build(),
            )
            .add_tags(
                R53Tag::builder()
                    .key(TAG_ADDRESS)
                    .value(a.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(aws("Route53 ChangeTagsForResource"))?;
        Ok(id)
    }

    /// The id of the zone made with caller reference `reference`.
    async fn zone_by_reference(&self, reference: &str) -> anyhow::Result<Option<String>> {
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .c
                .route53
                .list_hosted_zones()
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(aws("Route53 ListHostedZones"))?;
            if let Some(z) = page
                .hosted_zones()
                .iter()
                .find(|z| z.caller_reference() == reference)
            {
                return Ok(Some(z.id().trim_start_matches("/hostedzone/").to_owned()));
            }
            match page.next_marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    /// Associates the zone with the lab's VPC.
    pub(in crate::aws) async fn associate_zone(&self, id: &str) -> anyhow::Result<()> {
        use aws_sdk_route53::types::{Vpc, VpcRegion};
        let vpc = self.id(&Address::single(Kind::Vpc))?;
        self.c
            .route53
            .associate_vpc_with_hosted_zone()
            .hosted_zone_id(id)
            .vpc(
                Vpc::builder()
                    .vpc_id(vpc)
                    .vpc_region(VpcRegion::from(self.c.region.as_str()))
                    .build(),
            )
            .send()
            .await
            .map_err(aws("Route53 AssociateVPCWithHostedZone"))?;
        Ok(())
    }

    /// Deletes the zone, which Route 53 allows only once it holds nothing but its own
    /// SOA and NS: the lab's records go before it, and anyone else's stop it.
    pub(in crate::aws) async fn delete_zone(&self, id: &str) -> anyhow::Result<()> {
        let result = gone(
            self.c
                .route53
                .delete_hosted_zone()
                .id(id)
                .send()
                .await
                .map_err(aws("Route53 DeleteHostedZone")),
        );
        match result {
            Err(e) if e.is(&["HostedZoneNotEmpty"]) => bail!(
                "{e}; it still holds records labctl did not make (`labctl down` names them): \
                 delete them by hand, or take the lab down with `labctl down --force`, which \
                 deletes them too"
            ),
            other => Ok(other?),
        }
    }
}
