//! The private hosted zone and the instances' A records.

use anyhow::Context as _;
use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use labctl_core::{Address, Kind};

use super::Applier;
use crate::aws::aws;
use crate::aws::observe::caller_reference_prefix;

impl Applier<'_> {
    pub(super) async fn create_zone(&self, a: &Address, zone: &str) -> anyhow::Result<String> {
        use aws_sdk_route53::types::{
            HostedZoneConfig, Tag as R53Tag, TagResourceType, Vpc, VpcRegion,
        };
        let vpc = self.id(&Address::single(Kind::Vpc))?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        // The caller reference marks the zone as the lab's from the create call on.
        let reference = format!("{}{millis}", caller_reference_prefix(self.inputs.lab));
        let out = self
            .c
            .route53
            .create_hosted_zone()
            .name(zone)
            .caller_reference(reference)
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
            .map_err(aws("Route53 CreateHostedZone"))?;
        let id = out
            .hosted_zone()
            .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
            .context("CreateHostedZone returned no zone")?;
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

    pub(super) async fn upsert_record(
        &self,
        fqdn: &str,
        ttl: u32,
        target: &str,
    ) -> anyhow::Result<()> {
        let instance = Address::parse(target).filter(|t| t.kind == Kind::Instance);
        let ip = instance
            .as_ref()
            .and_then(|i| self.known(i))
            .and_then(|k| k.observation.instance().and_then(|f| f.private_ip.clone()))
            .with_context(|| format!("{target} has no private address yet"))?;
        let zone = self.id(&Address::single(Kind::HostedZone))?;
        self.record_change(
            &zone,
            aws_sdk_route53::types::ChangeAction::Upsert,
            fqdn,
            ttl,
            &[ip],
        )
        .await
    }

    /// One change to the A record `fqdn` in `zone`, holding `values`.
    pub(super) async fn record_change(
        &self,
        zone: &str,
        action: aws_sdk_route53::types::ChangeAction,
        fqdn: &str,
        ttl: u32,
        values: &[String],
    ) -> anyhow::Result<()> {
        use aws_sdk_route53::types::{
            Change as R53Change, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
        };
        let deleting = action == aws_sdk_route53::types::ChangeAction::Delete;
        let records = values
            .iter()
            .map(|v| ResourceRecord::builder().value(v).build())
            .collect::<Result<Vec<_>, _>>()?;
        let set = ResourceRecordSet::builder()
            .name(fqdn)
            .r#type(RrType::A)
            .ttl(i64::from(ttl))
            .set_resource_records(Some(records))
            .build()?;
        let batch = ChangeBatch::builder()
            .changes(
                R53Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()?,
            )
            .build()?;
        let result = self
            .c
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(aws("Route53 ChangeResourceRecordSets"));
        match result {
            // Deleting a record that is already gone.
            Err(e) if e.is(&["InvalidChangeBatch"]) && e.message.contains("not found") => Ok(()),
            Err(e) if deleting && e.is(&["NoSuchHostedZone"]) => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }
}
