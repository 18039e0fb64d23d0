//! The records of the lab's zone. Each instance has an A record at `<name>.<zone>`,
//! pointing at its private IPv4 address. Route 53 deletes a record only when told
//! exactly what it holds, and a zone only when nothing but its own SOA and NS is left.
//!
//! Records carry no tags, so what labctl made is told by shape and name: a plain A
//! record (no alias, no routing policy) at the name of an instance the lab has. Every
//! other record set, bar the zone's own SOA and NS at its apex, was made by someone
//! else ([`Observation::ForeignRecord`]). Plain A records are observed either way, so
//! the topology can claim its own names (a record whose instance is gone is still
//! followed to the new one); the plan never deletes a foreign one it does not claim. The other
//! shapes are not observed at all: only `down` lists them ([`unobserved`]), since
//! they keep the zone from going. It deletes them only with `--force`, each as Route
//! 53 lists it at that moment (aliases and routing policies carry fields of their own).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, bail};
use aws_sdk_route53::types::{ResourceRecordSet, RrType};
use labctl_core::attr::Value;
use labctl_core::plan::{Action, AttrChange, Change, Found, Observation, Observed, RecordSet};
use labctl_core::{Address, Kind, Spec};

use crate::aws::apply::Applier;
use crate::aws::observe::found;
use crate::aws::{Absent as _, AwsError, Clients, aws};

/// The plain A records of zone `zone_id`, each with the instance it points at when
/// its value is one of `private_ips`. Those at a name no instance has are observed as
/// foreign.
pub async fn observe(
    c: &Clients,
    zone_id: &str,
    zone: &str,
    private_ips: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Found>> {
    let instances: BTreeSet<&str> = private_ips.values().map(String::as_str).collect();
    let mut out = Vec::new();
    for r in list(c, zone_id).await? {
        let Some(host) = plain_a_host(&r, zone) else {
            continue;
        };
        let fqdn = r.name().trim_end_matches('.');
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
        f.observation = if instances.contains(host) {
            Observation::DnsRecord {
                zone_id: zone_id.to_owned(),
                values,
            }
        } else {
            Observation::ForeignRecord(record_set(zone_id, &r))
        };
        out.push(f);
    }
    Ok(out)
}

/// The record sets of the lab's zones that [`observe`] leaves out: every one but the
/// plain A records and the zones' own SOA and NS. None of them is labctl's.
pub async fn unobserved(c: &Clients, observed: &Observed) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    for z in observed
        .resources
        .iter()
        .filter(|f| f.address.kind == Kind::HostedZone)
    {
        let zone = z.name.as_str();
        for r in list(c, &z.id).await? {
            if plain_a_host(&r, zone).is_some() || zones_own(&r, zone) {
                continue;
            }
            let set = record_set(&z.id, &r);
            let shown = shown_name(r.name());
            let fqdn = shown.as_str();
            let relative = match fqdn.strip_suffix(&format!(".{zone}")) {
                Some(host) => host,
                None if fqdn == zone => "@",
                None => fqdn,
            };
            let mut label = format!("{relative} {}", set.record_type);
            if let Some(id) = &set.set_identifier {
                label = format!("{label} {id}");
            }
            let mut f = found(
                Address::new(Kind::DnsRecord, label),
                fqdn,
                fqdn,
                Spec::DnsRecord {
                    fqdn: fqdn.to_owned(),
                    ttl: set.ttl.and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
                    target: set.values.join(", "),
                },
            );
            f.observation = Observation::ForeignRecord(set);
            out.push(f);
        }
    }
    Ok(out)
}

/// A record set as a person names it: `www.lab.internal CNAME server.lab.internal`.
pub fn describe(set: &RecordSet) -> String {
    let mut out = format!("{} {}", shown_name(&set.name), set.record_type);
    if let Some(id) = &set.set_identifier {
        out.push_str(&format!(" (set {id})"));
    }
    if !set.values.is_empty() {
        out.push(' ');
        out.push_str(&set.values.join(", "));
    }
    out
}

/// The deletion of a record the plan leaves to `down`, with what it holds as its
/// attributes.
pub fn deletion(f: &Found, reason: Option<String>) -> Change {
    let gone = |name, value| AttrChange {
        name,
        from: Some(value),
        to: None,
        forces_replacement: false,
    };
    let attributes = match f.observation.foreign_record() {
        Some(set) => {
            let mut record = format!("{} {}", shown_name(&set.name), set.record_type);
            if let Some(id) = &set.set_identifier {
                record.push_str(&format!(" (set {id})"));
            }
            let mut out = vec![gone("record", Value::Text(record))];
            out.extend(set.ttl.map(|t| gone("ttl", Value::Number(t))));
            out.push(gone("values", Value::List(set.values.clone())));
            out
        }
        None => f
            .attributes()
            .into_iter()
            .map(|a| gone(a.name, a.value))
            .collect(),
    };
    Change {
        address: f.address.clone(),
        action: Action::Delete,
        name: f.name.clone(),
        id: Some(f.id.clone()),
        attributes,
        reason,
        desired: None,
        observed: Some(f.spec.clone()),
        observation: f.observation.clone(),
    }
}

/// Every record set of zone `zone_id`, every page.
async fn list(c: &Clients, zone_id: &str) -> Result<Vec<ResourceRecordSet>, AwsError> {
    let mut out = Vec::new();
    let mut start: Option<(String, RrType, Option<String>)> = None;
    loop {
        let mut req = c
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id);
        if let Some((name, ty, id)) = &start {
            req = req
                .start_record_name(name)
                .start_record_type(ty.clone())
                .set_start_record_identifier(id.clone());
        }
        let page = req
            .send()
            .await
            .map_err(aws(format!("Route53 ListResourceRecordSets {zone_id}")))?;
        out.extend(page.resource_record_sets().iter().cloned());
        let next = match (
            page.is_truncated(),
            page.next_record_name(),
            page.next_record_type(),
        ) {
            (true, Some(name), Some(ty)) => (
                name.to_owned(),
                ty.clone(),
                page.next_record_identifier().map(str::to_owned),
            ),
            _ => break,
        };
        // A listing that does not move on would never end.
        if start.as_ref() == Some(&next) {
            return Err(AwsError {
                context: format!("Route53 ListResourceRecordSets {zone_id}"),
                code: None,
                message: format!("the listing does not move past {} {}", next.0, next.1),
                ambiguous: false,
            });
        }
        start = Some(next);
    }
    Ok(out)
}

/// The host of a plain A record at `<host>.<zone>`: the only shape labctl makes.
fn plain_a_host<'a>(r: &'a ResourceRecordSet, zone: &str) -> Option<&'a str> {
    let plain = *r.r#type() == RrType::A
        && r.set_identifier().is_none()
        && r.alias_target().is_none()
        && r.traffic_policy_instance_id().is_none();
    plain
        .then(|| r.name().trim_end_matches('.'))
        .and_then(|fqdn| fqdn.strip_suffix(zone))
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|host| !host.is_empty())
}

/// The zone's own SOA and NS at its apex, which go with it.
fn zones_own(r: &ResourceRecordSet, zone: &str) -> bool {
    matches!(r.r#type(), RrType::Soa | RrType::Ns)
        && r.name().trim_end_matches('.').eq_ignore_ascii_case(zone)
}

/// What is kept of a listed record set.
fn record_set(zone_id: &str, r: &ResourceRecordSet) -> RecordSet {
    let values = match r.alias_target() {
        Some(alias) => vec![format!("alias to {}", alias.dns_name())],
        None => r
            .resource_records()
            .iter()
            .map(|v| v.value().to_owned())
            .collect(),
    };
    RecordSet {
        zone_id: zone_id.to_owned(),
        name: r.name().to_owned(),
        record_type: r.r#type().as_str().to_owned(),
        set_identifier: r.set_identifier().map(str::to_owned),
        ttl: r.ttl().and_then(|t| u64::try_from(t).ok()),
        values,
    }
}

/// A listed name as people write it: no final dot, and a wildcard as `*` (Route 53
/// lists it as `\052`).
fn shown_name(name: &str) -> String {
    name.trim_end_matches('.').replace("\\052", "*")
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
        use aws_sdk_route53::types::ResourceRecord;
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
        self.change_set(zone, action, set).await
    }

    /// One change to a whole record set.
    async fn change_set(
        &self,
        zone: &str,
        action: aws_sdk_route53::types::ChangeAction,
        set: ResourceRecordSet,
    ) -> anyhow::Result<()> {
        use aws_sdk_route53::types::{Change as R53Change, ChangeBatch};
        let deleting = action == aws_sdk_route53::types::ChangeAction::Delete;
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

    /// This copy's own zone, TTL and values, as found; a record labctl did not make,
    /// as Route 53 lists it now.
    pub(in crate::aws) async fn delete_record(
        &self,
        observed: Option<&Spec>,
        observation: &Observation,
    ) -> anyhow::Result<()> {
        match (observed, observation) {
            (
                Some(Spec::DnsRecord { fqdn, ttl, .. }),
                Observation::DnsRecord { zone_id, values },
            ) => {
                self.record_change(
                    zone_id,
                    aws_sdk_route53::types::ChangeAction::Delete,
                    fqdn,
                    *ttl,
                    values,
                )
                .await
            }
            (_, Observation::ForeignRecord(set)) => self.delete_listed(set).await,
            (
                _,
                Observation::Plain
                | Observation::InternetGateway { .. }
                | Observation::RouteTable { .. }
                | Observation::Instance(_)
                | Observation::DnsRecord { .. },
            ) => Ok(()),
        }
    }

    /// Deletes `want` exactly as listed, provided it still holds what was shown.
    async fn delete_listed(&self, want: &RecordSet) -> anyhow::Result<()> {
        let listed = list(self.c, &want.zone_id)
            .await
            .absent_if(&["NoSuchHostedZone"])?
            .unwrap_or_default();
        let Some(set) = listed.into_iter().find(|r| {
            r.name() == want.name
                && r.r#type().as_str() == want.record_type
                && r.set_identifier() == want.set_identifier.as_deref()
        }) else {
            return Ok(()); // already gone
        };
        let now = record_set(&want.zone_id, &set);
        if now != *want {
            bail!(
                "{} changed since it was listed (it is now {}); nothing was deleted for it, \
                 and the next `labctl down` shows it as it is",
                describe(want),
                describe(&now)
            );
        }
        self.change_set(
            &want.zone_id,
            aws_sdk_route53::types::ChangeAction::Delete,
            set,
        )
        .await
    }
}
