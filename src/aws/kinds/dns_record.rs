//! An instance's A record in the lab's zone, pointing at its private IPv4 address.
//! Route 53 deletes a record only when told exactly what it holds.

use std::collections::BTreeMap;

use anyhow::Context as _;
use labctl_core::plan::{Found, Observation};
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::Applier;
use crate::aws::observe::found;
use crate::aws::{Clients, aws};

/// The A records of zone `zone_id`, each with the instance it points at when its
/// value is one of `private_ips`.
pub async fn observe(
    c: &Clients,
    zone_id: &str,
    zone: &str,
    private_ips: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut start: Option<(String, aws_sdk_route53::types::RrType)> = None;
    loop {
        let mut req = c
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id);
        if let Some((name, ty)) = &start {
            req = req.start_record_name(name).start_record_type(ty.clone());
        }
        let page = req
            .send()
            .await
            .map_err(aws(format!("Route53 ListResourceRecordSets {zone_id}")))?;
        for r in page.resource_record_sets() {
            if r.r#type().as_str() != "A" {
                continue;
            }
            let fqdn = r.name().trim_end_matches('.');
            let Some(host) = fqdn.strip_suffix(&format!(".{zone}")) else {
                continue;
            };
            let values: Vec<String> = r
                .resource_records()
                .iter()
                .map(|v| v.value().to_owned())
                .collect();
            let target = match values.as_slice() {
                [one] => match private_ips.get(one) {
                    Some(instance) => format!("instance/{instance}"),
                    None => one.clone(),
                },
                many => many.join(","),
            };
            let mut f = found(
                Address::new(Kind::DnsRecord, host),
                fqdn,
                fqdn,
                Spec::DnsRecord {
                    fqdn: fqdn.to_owned(),
                    ttl: r.ttl().and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
                    target,
                },
            );
            f.observation = Observation::DnsRecord {
                zone_id: zone_id.to_owned(),
                values,
            };
            out.push(f);
        }
        match (
            page.is_truncated(),
            page.next_record_name(),
            page.next_record_type(),
        ) {
            (true, Some(name), Some(ty)) => start = Some((name.to_owned(), ty.clone())),
            _ => break,
        }
    }
    Ok(out)
}

impl Applier<'_> {
    pub(in crate::aws) async fn upsert_record(
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
    pub(in crate::aws) async fn record_change(
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

    /// This copy's own zone, TTL and values, as found.
    pub(in crate::aws) async fn delete_record(
        &self,
        observed: Option<&Spec>,
        observation: &Observation,
    ) -> anyhow::Result<()> {
        if let (
            Some(Spec::DnsRecord { fqdn, ttl, .. }),
            Observation::DnsRecord { zone_id, values },
        ) = (observed, observation)
        {
            self.record_change(
                zone_id,
                aws_sdk_route53::types::ChangeAction::Delete,
                fqdn,
                *ttl,
                values,
            )
            .await?;
        }
        Ok(())
    }
}
