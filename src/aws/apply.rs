//! Carrying out a plan: one function per kind and step, run stage by stage.
//!
//! The applier never decides what to change; it gets the plan's steps (ordered by the
//! core's `schedule`) and the specs each change carries. Every resource is created with
//! the lab's tags in the create call where the API takes them. Deletions tolerate what
//! is already gone; eventual consistency (a fresh instance profile EC2 cannot see yet, a
//! group still held by a terminating instance) is retried with backoff and a deadline.
//!
//! This file is the engine (stages, steps, what the applier knows); the kinds' calls
//! live beside it by phase (`create`, `update`, `delete`) and by family (`network`,
//! `iam`, `storage`, `dns`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use labctl_core::desired::{LABNET_KEY_PREFIX, TAG_ADDRESS, TAG_LAB};
use labctl_core::plan::{Action, Change, Found, Observation, Observed, Plan, Step};
use labctl_core::{Address, Desired};
use serde_json::json;

use super::images::Ami;
use super::{AwsError, Clients};

mod create;
mod delete;
mod dns;
mod iam;
mod network;
mod storage;

pub(crate) use storage::hex_bytes;
mod update;

/// Error codes that mean "already gone": success for a deletion.
const GONE: &[&str] = &[
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidAssociationID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidPermission.NotFound",
    "Gateway.NotAttached",
    "NoSuchEntity",
    "NoSuchBucket",
    "NoSuchHostedZone",
];

fn gone<T>(result: Result<T, AwsError>) -> Result<(), AwsError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is(GONE) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What the applier needs besides the plan.
pub struct Inputs<'a> {
    pub lab: &'a str,
    pub plan: &'a Plan,
    pub desired: &'a Desired,
    pub observed: &'a Observed,
    /// Image references resolved to AMIs (for instances to create).
    pub images: &'a BTreeMap<String, Ami>,
    /// The local labnet binary, for an artifact to upload.
    pub labnet: Option<&'a std::path::Path>,
}

/// Receives progress as steps start and finish.
pub trait Progress: Sync {
    /// A step started.
    fn started(&self, step: &Step);
    /// A step ended, with a short outcome (an id) or an error.
    fn finished(&self, step: &Step, outcome: &Result<String, String>, elapsed: std::time::Duration);
}

/// Runs the stages in order, the steps of a stage concurrently. Stops after the first
/// stage with a failure (later stages depend on it) and reports every failure of it.
pub async fn apply(
    c: &Clients,
    inputs: &Inputs<'_>,
    stages: &[Vec<Step>],
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let applier = Applier::new(c, inputs);
    for stage in stages {
        let results = futures::future::join_all(stage.iter().map(|step| async {
            progress.started(step);
            let start = Instant::now();
            let result = applier.run(step).await.map_err(|e| format!("{e:#}"));
            progress.finished(step, &result, start.elapsed());
            result.map_err(|e| format!("{}: {e}", step_label(step)))
        }))
        .await;
        let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if !failures.is_empty() {
            bail!("{}", failures.join("\n"));
        }
    }
    Ok(())
}

/// `create instance/server`.
pub fn step_label(step: &Step) -> String {
    match step {
        Step::Delete(a) => format!("delete {a}"),
        Step::Revoke(a) => format!("revoke stale rules of {a}"),
        Step::Create(a) => format!("create {a}"),
        Step::Update(a) => format!("update {a}"),
        Step::Retire(a) => format!("delete the replaced {a}"),
    }
}

/// What the applier knows of a resource that exists: found, or just created.
#[derive(Debug, Clone)]
struct Known {
    id: String,
    observation: Observation,
}

struct Applier<'a> {
    c: &'a Clients,
    inputs: &'a Inputs<'a>,
    /// The resource that stands at each address: the one the plan kept, then the one
    /// created in its place.
    known: Mutex<BTreeMap<Address, Known>>,
}

impl<'a> Applier<'a> {
    fn new(c: &'a Clients, inputs: &'a Inputs<'a>) -> Self {
        // Where several stand at one address, the one the plan keeps is what others
        // refer to; an extra copy the plan deletes is known only if it is alone.
        let deleted = |f: &Found| {
            inputs.plan.changes.iter().any(|c| {
                c.action == Action::Delete
                    && c.address == f.address
                    && c.id.as_deref() == Some(f.id.as_str())
            })
        };
        let (kept, extra): (Vec<&Found>, Vec<&Found>) =
            inputs.observed.resources.iter().partition(|f| !deleted(f));
        // Kept ones last, so they win.
        let known = extra
            .into_iter()
            .chain(kept)
            .map(|f| {
                let entry = Known {
                    id: f.id.clone(),
                    observation: f.observation.clone(),
                };
                (f.address.clone(), entry)
            })
            .collect();
        Self {
            c,
            inputs,
            known: Mutex::new(known),
        }
    }

    fn remember(&self, address: &Address, id: &str, observation: Observation) {
        let known = Known {
            id: id.to_owned(),
            observation,
        };
        self.known
            .lock()
            .expect("known lock")
            .insert(address.clone(), known);
    }

    fn known(&self, address: &Address) -> Option<Known> {
        self.known.lock().expect("known lock").get(address).cloned()
    }

    fn id(&self, address: &Address) -> anyhow::Result<String> {
        self.known(address)
            .map(|k| k.id)
            .ok_or_else(|| anyhow!("{address} does not exist (it should have been created first)"))
    }

    fn change(&self, address: &Address, want_delete: bool) -> anyhow::Result<&'a Change> {
        let plan = self.inputs.plan;
        plan.changes
            .iter()
            .find(|c| &c.address == address && (c.action == Action::Delete) == want_delete)
            .or_else(|| plan.changes.iter().find(|c| &c.address == address))
            .ok_or_else(|| anyhow!("{address} is not in the plan"))
    }

    fn tags(&self, address: &Address, name: &str) -> Vec<Tag> {
        vec![
            Tag::builder().key("Name").value(name).build(),
            Tag::builder().key(TAG_LAB).value(self.inputs.lab).build(),
            Tag::builder()
                .key(TAG_ADDRESS)
                .value(address.to_string())
                .build(),
        ]
    }

    fn tag_spec(
        &self,
        ty: ResourceType,
        address: &Address,
        name: &str,
        extra: Vec<Tag>,
    ) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(ty)
            .set_tags(Some(
                self.tags(address, name).into_iter().chain(extra).collect(),
            ))
            .build()
    }

    async fn run(&self, step: &Step) -> anyhow::Result<String> {
        match step {
            Step::Delete(a) | Step::Retire(a) => {
                // Every existing resource at the address that goes in this phase: a
                // replacement's original, or duplicates left by an interrupted run.
                let late = matches!(step, Step::Retire(_));
                let doomed: Vec<&Change> = self
                    .inputs
                    .plan
                    .changes
                    .iter()
                    .filter(|c| {
                        &c.address == a
                            && matches!(c.action, Action::Delete | Action::Replace)
                            && c.goes_last(self.inputs.desired) == late
                    })
                    .collect();
                let mut ids = Vec::new();
                for change in doomed {
                    let id = change
                        .id
                        .clone()
                        .ok_or_else(|| anyhow!("{a} has no id to delete"))?;
                    self.delete(a, &id, change).await?;
                    ids.push(id);
                }
                Ok(ids.join(", "))
            }
            Step::Revoke(a) => {
                let change = self.change(a, false)?;
                self.revoke_stale(a, change).await?;
                Ok(String::new())
            }
            Step::Create(a) => {
                let change = self.change(a, false)?;
                let spec = change
                    .desired
                    .as_ref()
                    .ok_or_else(|| anyhow!("{a} has no desired state"))?;
                self.create(a, &change.name, spec).await
            }
            Step::Update(a) => {
                let change = self.change(a, false)?;
                self.update(a, change).await?;
                self.id(a).or_else(|_| Ok(String::new()))
            }
        }
    }
}

/// EC2 refusing an instance profile IAM has just made: it is not visible to EC2 yet.
fn profile_not_visible(e: &AwsError) -> bool {
    e.is(&["InvalidParameterValue"]) && e.message.to_ascii_lowercase().contains("profile")
}

fn iam_tag(key: &str, value: &str) -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value are set")
}

/// Treats "already exists" as success: a retried or crashed run created it.
fn gone_or_exists<T>(result: Result<T, AwsError>) -> Result<(), AwsError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is(&["EntityAlreadyExists"]) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The inline policy: exactly what the bootstrap and the capture helper do with the
/// lab's bucket. Read the labnet binaries; write readiness reports and captures.
/// Nothing else: no listing, no reading another instance's captures, no deleting.
pub fn bucket_policy(bucket: &str) -> serde_json::Value {
    let arn = |prefix: &str| format!("arn:aws:s3:::{bucket}/{prefix}*");
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadLabnet",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": arn(LABNET_KEY_PREFIX)
            },
            {
                "Sid": "WriteReportsAndCaptures",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": [arn("reports/"), arn("captures/")]
            }
        ]
    })
}

/// The bucket an inline policy document grants, if it is exactly labctl's policy.
/// IAM returns documents URL-encoded.
pub fn bucket_of_policy(document: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(document)
        .decode_utf8()
        .ok()?;
    let doc: serde_json::Value = serde_json::from_str(&decoded).ok()?;
    let resource = doc["Statement"][0]["Resource"].as_str()?;
    let bucket = resource
        .strip_prefix("arn:aws:s3:::")?
        .strip_suffix(&format!("/{LABNET_KEY_PREFIX}*"))?;
    (doc == bucket_policy(bucket)).then(|| bucket.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_policy_round_trips_through_iams_encoding() {
        let doc = bucket_policy("netlab-captures-1-eu-north-1").to_string();
        let encoded =
            percent_encoding::utf8_percent_encode(&doc, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            bucket_of_policy(&encoded).as_deref(),
            Some("netlab-captures-1-eu-north-1")
        );
        assert_eq!(
            bucket_of_policy(&doc).as_deref(),
            Some("netlab-captures-1-eu-north-1")
        );
        let widened = doc.replace("s3:PutObject", "s3:*");
        assert_eq!(
            bucket_of_policy(&widened),
            None,
            "a changed policy is not ours"
        );
    }
}
