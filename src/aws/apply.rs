//! Carrying out a plan: the engine that runs the core's schedule, stage by stage.
//!
//! The applier never decides what to change; it gets the plan's steps (ordered by the
//! core's `schedule`) and the specs each change carries, and hands each step to its
//! kind's module (`super::kinds`) through exhaustive matches. Every resource is
//! created with the lab's tags in the create call where the API takes them. Deletions
//! tolerate what is already gone, and each uses what was found of that very resource
//! (its attachments, its zone, its values). Eventual consistency (a fresh instance
//! profile EC2 cannot see yet, a group still held by a terminating instance) is
//! retried with backoff and a deadline.

#![warn(clippy::wildcard_enum_match_arm)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use labctl_core::desired::{TAG_ADDRESS, TAG_LAB};
use labctl_core::plan::{Action, Change, Found, Observation, Observed, Plan, Step};
use labctl_core::{Address, Desired, Kind, Spec};

use super::images::Ami;
use super::wait::{self, Backoff};
use super::{AwsError, Clients};

pub(crate) use super::kinds::artifact::hex_bytes;

/// Error codes that mean "already gone": success for a deletion.
pub(in crate::aws) const GONE: &[&str] = &[
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
    "NoSuchKey",
    "NoSuchVersion",
];

pub(in crate::aws) fn gone<T>(result: Result<T, AwsError>) -> Result<(), AwsError> {
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
    let lanes = Lanes::new();
    for stage in stages {
        let results = futures::future::join_all(stage.iter().map(|step| async {
            let _turn = lanes.turn(step.address().kind).await;
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

/// How many steps may talk to one service at once. The steps of a stage are
/// independent, but a stage of twenty instances should not meet EC2's request
/// buckets all in the same second, and Route 53 takes five requests a second per
/// account.
struct Lanes {
    ec2: tokio::sync::Semaphore,
    iam: tokio::sync::Semaphore,
    s3: tokio::sync::Semaphore,
    route53: tokio::sync::Semaphore,
}

impl Lanes {
    fn new() -> Self {
        Self {
            ec2: tokio::sync::Semaphore::new(8),
            iam: tokio::sync::Semaphore::new(4),
            s3: tokio::sync::Semaphore::new(8),
            route53: tokio::sync::Semaphore::new(2),
        }
    }

    /// Waits for a place in the lane of the service that `kind` lives in.
    async fn turn(&self, kind: Kind) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let lane = match kind {
            Kind::Vpc
            | Kind::Subnet
            | Kind::InternetGateway
            | Kind::RouteTable
            | Kind::SecurityGroup
            | Kind::SecurityGroupRules
            | Kind::Instance => &self.ec2,
            Kind::IamRole | Kind::InstanceProfile => &self.iam,
            Kind::Bucket | Kind::Artifact => &self.s3,
            Kind::HostedZone | Kind::DnsRecord => &self.route53,
        };
        lane.acquire().await.ok()
    }
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
pub(in crate::aws) struct Known {
    pub(in crate::aws) id: String,
    pub(in crate::aws) observation: Observation,
}

pub(in crate::aws) struct Applier<'a> {
    pub(in crate::aws) c: &'a Clients,
    pub(in crate::aws) inputs: &'a Inputs<'a>,
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

    pub(in crate::aws) fn remember(&self, address: &Address, id: &str, observation: Observation) {
        let known = Known {
            id: id.to_owned(),
            observation,
        };
        self.known
            .lock()
            .expect("known lock")
            .insert(address.clone(), known);
    }

    pub(in crate::aws) fn known(&self, address: &Address) -> Option<Known> {
        self.known.lock().expect("known lock").get(address).cloned()
    }

    pub(in crate::aws) fn id(&self, address: &Address) -> anyhow::Result<String> {
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

    /// Filters for what carries this lab's mark at `address`.
    pub(in crate::aws) fn marked(&self, address: &Address) -> Vec<aws_sdk_ec2::types::Filter> {
        use aws_sdk_ec2::types::Filter;
        vec![
            Filter::builder()
                .name(format!("tag:{TAG_LAB}"))
                .values(self.inputs.lab)
                .build(),
            Filter::builder()
                .name(format!("tag:{TAG_ADDRESS}"))
                .values(address.to_string())
                .build(),
        ]
    }

    pub(in crate::aws) fn tags(&self, address: &Address, name: &str) -> Vec<Tag> {
        vec![
            Tag::builder().key("Name").value(name).build(),
            Tag::builder().key(TAG_LAB).value(self.inputs.lab).build(),
            Tag::builder()
                .key(TAG_ADDRESS)
                .value(address.to_string())
                .build(),
        ]
    }

    pub(in crate::aws) fn tag_spec(
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

/// An EC2 call the SDK must not retry by itself: a create without a token, which
/// `Applier::create_once` tries again only after looking for what it made.
pub(in crate::aws) fn once() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(aws_config::retry::RetryConfig::disabled())
}

/// EC2 refusing an instance profile IAM has just made: it is not visible to EC2 yet.
pub(in crate::aws) fn profile_not_visible(e: &AwsError) -> bool {
    e.is(&["InvalidParameterValue"]) && e.message.to_ascii_lowercase().contains("profile")
}

pub(in crate::aws) fn iam_tag(key: &str, value: &str) -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value are set")
}

/// The kinds' calls, one arm per kind: a kind without its arm does not compile.
impl Applier<'_> {
    async fn create(&self, a: &Address, name: &str, spec: &Spec) -> anyhow::Result<String> {
        let id = match spec {
            Spec::Vpc { cidr, .. } => self.create_vpc(a, name, *cidr).await?,
            Spec::Subnet { cidr, public, zone } => {
                self.create_subnet(a, name, *cidr, *public, zone.as_deref())
                    .await?
            }
            Spec::InternetGateway { .. } => self.create_internet_gateway(a, name).await?,
            Spec::RouteTable { subnets, .. } => self.create_route_table(a, name, subnets).await?,
            Spec::SecurityGroup { role } => self.create_group(a, name, role).await?,
            Spec::SecurityGroupRules {
                role,
                ingress,
                egress,
            } => self.create_rules(role, ingress, egress).await?,
            Spec::IamRole {
                managed_policies,
                inline_policy_bucket,
                dynamodb_tables,
                ..
            } => {
                self.create_role(
                    a,
                    name,
                    managed_policies,
                    inline_policy_bucket.as_deref(),
                    dynamodb_tables,
                )
                .await?;
                name.to_owned()
            }
            Spec::InstanceProfile { role } => self.create_profile(a, name, role).await?,
            Spec::Bucket { .. } => {
                self.create_bucket(name).await?;
                self.bucket_settings(a, name).await?;
                name.to_owned()
            }
            Spec::Artifact { bucket, sha256 } => {
                self.upload_artifact(a, bucket, name, sha256).await?;
                name.to_owned()
            }
            Spec::HostedZone { zone, .. } => self.create_zone(a, zone).await?,
            // It remembers its own address.
            Spec::Instance { .. } => return self.create_instance(a, name, spec).await,
            Spec::DnsRecord { fqdn, ttl, target } => {
                self.upsert_record(fqdn, *ttl, target).await?;
                fqdn.clone()
            }
        };
        self.remember(a, &id, Observation::Plain);
        Ok(id)
    }

    async fn update(&self, a: &Address, change: &Change) -> anyhow::Result<()> {
        let want = change
            .desired
            .as_ref()
            .context("update without desired state")?;
        let have = change
            .observed
            .as_ref()
            .context("update without observed state")?;
        let id = change.id.clone().unwrap_or_default();
        match (want, have) {
            (Spec::Vpc { .. }, Spec::Vpc { .. }) => self.vpc_dns(&id).await,
            (Spec::Subnet { public, .. }, Spec::Subnet { .. }) => {
                self.subnet_public(&id, *public).await
            }
            (Spec::InternetGateway { .. }, Spec::InternetGateway { .. }) => {
                self.attach_internet_gateway(&id).await
            }
            (
                Spec::RouteTable {
                    internet_route,
                    subnets,
                },
                Spec::RouteTable {
                    internet_route: had_route,
                    ..
                },
            ) => {
                self.update_route_table(
                    &id,
                    *internet_route,
                    *had_route,
                    subnets,
                    &change.observation,
                )
                .await
            }
            // A group has nothing to change in place (its name replaces it).
            (Spec::SecurityGroup { .. }, Spec::SecurityGroup { .. }) => Ok(()),
            (
                Spec::SecurityGroupRules {
                    ingress, egress, ..
                },
                Spec::SecurityGroupRules {
                    ingress: hi,
                    egress: he,
                    ..
                },
            ) => self.set_rules(&id, hi, ingress, he, egress).await,
            (Spec::IamRole { .. }, Spec::IamRole { .. }) => self.update_role(&id, want, have).await,
            (Spec::InstanceProfile { role }, Spec::InstanceProfile { role: had }) => {
                self.profile_role(&id, Some(had), role).await
            }
            (Spec::Bucket { .. }, Spec::Bucket { .. }) => self.bucket_settings(a, &id).await,
            // An artifact's every attribute replaces it.
            (Spec::Artifact { .. }, Spec::Artifact { .. }) => Ok(()),
            (Spec::HostedZone { .. }, Spec::HostedZone { .. }) => self.associate_zone(&id).await,
            (Spec::Instance { .. }, Spec::Instance { .. }) => {
                self.update_instance(&id, want, have).await
            }
            (Spec::DnsRecord { fqdn, ttl, target }, Spec::DnsRecord { .. }) => {
                self.upsert_record(fqdn, *ttl, target).await
            }
            (
                Spec::Vpc { .. }
                | Spec::Subnet { .. }
                | Spec::InternetGateway { .. }
                | Spec::RouteTable { .. }
                | Spec::SecurityGroup { .. }
                | Spec::SecurityGroupRules { .. }
                | Spec::IamRole { .. }
                | Spec::InstanceProfile { .. }
                | Spec::Bucket { .. }
                | Spec::Artifact { .. }
                | Spec::HostedZone { .. }
                | Spec::Instance { .. }
                | Spec::DnsRecord { .. },
                _,
            ) => bail!("{a}: observed state is of another kind"),
        }
    }

    async fn delete(&self, a: &Address, id: &str, change: &Change) -> anyhow::Result<()> {
        let observed = change.observed.as_ref();
        match a.kind {
            Kind::Vpc => self.delete_vpc(id).await?,
            Kind::Subnet => self.delete_subnet(id).await?,
            Kind::InternetGateway => {
                self.delete_internet_gateway(id, &change.observation)
                    .await?;
            }
            Kind::RouteTable => self.delete_route_table(id, &change.observation).await?,
            Kind::SecurityGroup => self.delete_group(id).await?,
            Kind::SecurityGroupRules => self.delete_rules(id, change).await?,
            Kind::IamRole => self.delete_role(id, change).await?,
            Kind::InstanceProfile => {
                let role = if let Some(Spec::InstanceProfile { role }) = observed {
                    role.as_str()
                } else {
                    ""
                };
                self.delete_profile(id, role).await?;
            }
            Kind::Bucket => {
                // The original of a renamed bucket: what instances wrote moves to
                // the new one, checked, before anything is deleted.
                if change.goes_last(self.inputs.desired)
                    && let Some(new) = self.inputs.desired.get(a)
                    && new.name != id
                {
                    self.carry_over(id, &new.name).await?;
                }
                self.delete_bucket(id).await?;
            }
            Kind::Artifact => {
                if let Some(Spec::Artifact { bucket, .. }) = observed {
                    self.delete_artifact(bucket, id).await?;
                }
            }
            Kind::HostedZone => self.delete_zone(id).await?,
            Kind::Instance => self.delete_instance(id).await?,
            Kind::DnsRecord => self.delete_record(observed, &change.observation).await?,
        }
        // Forget it, unless what stands at the address now is its successor.
        let mut known = self.known.lock().expect("known lock");
        if known.get(a).is_some_and(|k| k.id == id) {
            known.remove(a);
        }
        Ok(())
    }

    /// Creates what takes no idempotency token, so that a lost answer never makes a
    /// second one. The SDK must not retry `create` by itself (callers turn its retries
    /// off); here a throttled call is tried again, and a call whose outcome is unknown
    /// (no answer, a 5xx) is first looked for with `existing`, by its tags, and
    /// adopted if it took effect after all.
    pub(in crate::aws) async fn create_once<C, CFut, L, LFut>(
        &self,
        mut create: C,
        mut existing: L,
    ) -> anyhow::Result<String>
    where
        C: FnMut() -> CFut,
        CFut: Future<Output = Result<String, AwsError>>,
        L: FnMut() -> LFut,
        LFut: Future<Output = Result<Option<String>, AwsError>>,
    {
        let policy = Backoff::BUSY;
        let start = std::time::Instant::now();
        let mut delays = policy.delays();
        loop {
            let err = match create().await {
                Ok(id) => return Ok(id),
                Err(e) if e.ambiguous => match existing().await? {
                    Some(id) => return Ok(id),
                    None => e,
                },
                Err(e) => e,
            };
            let delay = delays.next().unwrap_or(policy.max);
            let again = err.ambiguous || err.is(super::THROTTLING);
            if !again || start.elapsed() + delay > policy.deadline {
                return Err(err.into());
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Runs a delete call until it no longer fails with one of `busy` (dependents
    /// still detaching) or the policy's deadline passes; "already gone" is success.
    pub(in crate::aws) async fn delete_when_free<F, Fut>(
        &self,
        policy: Backoff,
        busy: &[&str],
        call: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), AwsError>>,
    {
        gone(wait::retry(policy, busy, call).await)?;
        Ok(())
    }
}
