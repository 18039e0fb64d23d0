//! Which instance id had which name: labctl's own record, kept in the lab's bucket.
//!
//! Instances write under their writer (`<role id>:<instance id>`), the one name AWS
//! vouches for, so no instance can write another's evidence. People think in names
//! (`server`, `client-2`), and EC2 forgets a terminated instance within the hour. So
//! `up`, and `down` before it terminates anything, record each instance under
//! `instances/<id>.json`, where no instance may write, and `pcap-fetch` names its
//! folders from that record: a replaced or deleted instance's captures keep its name.

use std::collections::BTreeMap;

use labctl_core::marks::{self, INSTANCES_PREFIX};
use serde::{Deserialize, Serialize};

use crate::aws::{Absent, Clients, aws};

/// A record is a few hundred bytes; a larger object is not one.
const MAX_RECORD_BYTES: u64 = 4096;

/// One instance, as `up` saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub instance_id: String,
    /// The instance's name in the topology (`client-2`).
    pub name: String,
    pub lab: String,
    /// When labctl wrote the record (UTC, RFC 3339).
    pub recorded_at: String,
}

/// Every record in the bucket, by instance id. A record that is not one labctl wrote
/// (malformed, too large, or disagreeing with its key) is left out.
pub async fn load(c: &Clients, bucket: &str) -> anyhow::Result<BTreeMap<String, Record>> {
    let mut out = BTreeMap::new();
    let keys: Vec<String> = crate::aws::listing(c, bucket, INSTANCES_PREFIX)
        .await?
        .into_iter()
        .filter(|l| l.size <= MAX_RECORD_BYTES)
        .map(|l| l.key)
        .collect();
    let reads = keys.iter().map(|key| async move {
        let object =
            c.s3.get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(aws(format!("S3 GetObject {key}")))
                .absent_if(&["NoSuchKey"])?;
        let Some(object) = object else {
            return anyhow::Ok(None);
        };
        let bytes = object.body.collect().await?.into_bytes();
        Ok(serde_json::from_slice::<Record>(&bytes).ok().filter(|r| {
            marks::is_instance_id(&r.instance_id)
                && *key == marks::instance_record_key(&r.instance_id)
                && crate::untrusted::line(&r.name) == r.name
                && !r.name.is_empty()
                && !r.name.contains('/')
        }))
    });
    for record in futures::future::join_all(reads).await {
        if let Some(r) = record? {
            out.insert(r.instance_id.clone(), r);
        }
    }
    Ok(out)
}

/// Records `instances` (name, id) that the bucket does not hold yet. Returns how
/// many it wrote.
pub async fn record(
    c: &Clients,
    bucket: &str,
    lab: &str,
    instances: &[(String, String)],
) -> anyhow::Result<usize> {
    // An id's name never changes, so a record once written is kept: listing the keys
    // is enough, without reading every record on every `up`.
    let known: std::collections::BTreeSet<String> =
        crate::aws::listing(c, bucket, INSTANCES_PREFIX)
            .await?
            .into_iter()
            .map(|l| l.key)
            .collect();
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    let mut written = 0;
    for (name, id) in instances {
        if known.contains(&marks::instance_record_key(id)) || !marks::is_instance_id(id) {
            continue;
        }
        let record = Record {
            instance_id: id.clone(),
            name: name.clone(),
            lab: lab.to_owned(),
            recorded_at: now.clone(),
        };
        let key = marks::instance_record_key(id);
        c.s3.put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("application/json")
            .body(serde_json::to_vec(&record)?.into())
            .send()
            .await
            .map_err(aws(format!("S3 PutObject {key}")))?;
        written += 1;
    }
    Ok(written)
}
