//! Comparing what a lab should be with what AWS has, and the plan that closes the gap.
//!
//! `diff(desired, observed)` is pure: the AWS layer describes what it found as
//! [`Observed`] (in the same [`Spec`] terms as the desired state), and this module
//! decides, attribute by attribute, whether each resource is created, updated in
//! place, replaced or deleted. The plan carries both sides, so applying it needs
//! nothing but the plan; the reasons are for people only. [`schedule`] orders the
//! plan into stages whose steps may run concurrently: deletions first, in reverse
//! dependency order, then creations and updates in dependency order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use crate::desired::{Address, Desired, Kind, Spec};

/// A resource the lab owns, as found in AWS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    /// Logical address from its `labctl:address` tag.
    pub address: Address,
    /// AWS id (vpc-…, sg-…, i-…, zone id, role name, bucket name).
    pub id: String,
    /// Its name in AWS.
    pub name: String,
    /// What it looks like, in the desired state's terms.
    pub spec: Spec,
    /// Facts for outputs (state, addresses), not compared.
    pub facts: BTreeMap<String, String>,
}

/// Everything the lab owns right now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observed {
    /// Found resources, in no particular order.
    pub resources: Vec<Found>,
}

impl Observed {
    /// The first resource found at `address`.
    pub fn get(&self, address: &Address) -> Option<&Found> {
        self.resources.iter().find(|r| &r.address == address)
    }
}

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It does not exist yet.
    Create,
    /// It changes in place.
    Update,
    /// It is deleted and created again.
    Replace,
    /// The topology no longer has it.
    Delete,
}

impl Action {
    /// Terraform's symbols, which are also how a plan is read.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
}

/// One attribute that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttrChange {
    /// Attribute name.
    pub name: &'static str,
    /// Value now (`None` when the resource does not exist).
    pub from: Option<String>,
    /// Value wanted (`None` when the resource goes away).
    pub to: Option<String>,
    /// Whether this difference alone forces a replacement.
    pub forces_replacement: bool,
}

/// One change in a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Logical address.
    pub address: Address,
    /// What happens.
    pub action: Action,
    /// Its AWS name.
    pub name: String,
    /// AWS id of the existing resource (update, replace, delete).
    pub id: Option<String>,
    /// The attributes that drive the change.
    pub attributes: Vec<AttrChange>,
    /// Why, when it is not the resource's own attributes (for display only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The wanted state (create, update, replace).
    #[serde(skip)]
    pub desired: Option<Spec>,
    /// The state found (update, replace, delete).
    #[serde(skip)]
    pub observed: Option<Spec>,
}

/// The changes that make AWS match the topology.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Lab name.
    pub lab: String,
    /// Changes, creations in dependency order then deletions.
    pub changes: Vec<Change>,
    /// How many resources already match.
    pub unchanged: usize,
}

impl Plan {
    /// True when AWS already matches.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// How many changes of `action` the plan holds.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// True when applying would destroy something (and so needs confirmation).
    pub fn is_destructive(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c.action, Action::Replace | Action::Delete))
    }

    /// The change at `address`.
    pub fn get(&self, address: &Address) -> Option<&Change> {
        self.changes.iter().find(|c| &c.address == address)
    }
}

/// Rank in creation order; deletion walks it backwards. Resources of equal rank never
/// depend on each other.
pub fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::Vpc | Kind::IamRole | Kind::Bucket => 0,
        Kind::Subnet
        | Kind::InternetGateway
        | Kind::SecurityGroup
        | Kind::InstanceProfile
        | Kind::Artifact
        | Kind::HostedZone => 1,
        Kind::RouteTable | Kind::SecurityGroupRules => 2,
        Kind::Instance => 3,
        Kind::DnsRecord => 4,
    }
}

/// Kinds whose AWS object lives inside the parent's, so replacing the parent replaces
/// them too (a subnet belongs to one VPC; an instance to one subnet).
fn bound_to(child: Kind, parent: Kind) -> bool {
    matches!(
        (parent, child),
        (
            Kind::Vpc,
            Kind::Subnet
                | Kind::InternetGateway
                | Kind::RouteTable
                | Kind::SecurityGroup
                | Kind::HostedZone
        ) | (Kind::Subnet, Kind::Instance)
            | (Kind::SecurityGroup, Kind::SecurityGroupRules)
            | (Kind::HostedZone, Kind::DnsRecord)
            | (Kind::Bucket, Kind::Artifact)
    )
}

/// Kinds that point at the parent's id or address, so a new parent means an update
/// (a record's address, an instance's groups, a route table's associations).
fn refreshes(child: Kind, parent: Kind) -> bool {
    matches!(
        (parent, child),
        (Kind::Instance, Kind::DnsRecord)
            | (Kind::SecurityGroup, Kind::Instance)
            | (Kind::Subnet | Kind::InternetGateway, Kind::RouteTable)
            | (Kind::InstanceProfile, Kind::Instance)
    )
}

/// Compares the desired resources with what was found.
pub fn diff(desired: &Desired, observed: &Observed) -> Plan {
    let mut changes: Vec<Change> = Vec::new();
    let mut unchanged = 0;
    let mut claimed: BTreeSet<usize> = BTreeSet::new();
    for want in &desired.resources {
        let found = observed
            .resources
            .iter()
            .enumerate()
            .find(|(i, f)| f.address == want.address && !claimed.contains(i));
        let Some((i, have)) = found else {
            let attributes = want
                .spec
                .attributes()
                .into_iter()
                .map(|(name, v)| AttrChange {
                    name,
                    from: None,
                    to: Some(v),
                    forces_replacement: false,
                })
                .collect();
            changes.push(Change {
                address: want.address.clone(),
                action: Action::Create,
                name: want.name.clone(),
                id: None,
                attributes,
                reason: None,
                desired: Some(want.spec.clone()),
                observed: None,
            });
            continue;
        };
        claimed.insert(i);
        let attributes = compare(&want.spec, &have.spec);
        if attributes.is_empty() {
            unchanged += 1;
            continue;
        }
        let action = if attributes.iter().any(|a| a.forces_replacement) {
            Action::Replace
        } else {
            Action::Update
        };
        changes.push(Change {
            address: want.address.clone(),
            action,
            name: want.name.clone(),
            id: Some(have.id.clone()),
            attributes,
            reason: None,
            desired: Some(want.spec.clone()),
            observed: Some(have.spec.clone()),
        });
    }
    cascade(desired, observed, &mut changes, &mut unchanged);
    // Whatever the lab owns that the topology does not want: removed resources, and
    // duplicates left by an interrupted run.
    let mut deletions: Vec<Change> = observed
        .resources
        .iter()
        .enumerate()
        .filter(|(i, _)| !claimed.contains(i))
        .map(|(_, have)| Change {
            address: have.address.clone(),
            action: Action::Delete,
            name: have.name.clone(),
            id: Some(have.id.clone()),
            attributes: have
                .spec
                .attributes()
                .into_iter()
                .map(|(name, v)| AttrChange {
                    name,
                    from: Some(v),
                    to: None,
                    forces_replacement: false,
                })
                .collect(),
            reason: desired
                .get(&have.address)
                .map(|_| "duplicate of a resource the lab already has".to_owned()),
            desired: None,
            observed: Some(have.spec.clone()),
        })
        .collect();
    deletions.sort_by(|a, b| {
        rank(b.address.kind)
            .cmp(&rank(a.address.kind))
            .then_with(|| a.address.cmp(&b.address))
    });
    changes.extend(deletions);
    Plan {
        lab: desired.lab.clone(),
        changes,
        unchanged,
    }
}

fn compare(want: &Spec, have: &Spec) -> Vec<AttrChange> {
    let have: BTreeMap<&str, String> = have.attributes().into_iter().collect();
    want.attributes()
        .into_iter()
        .filter_map(|(name, to)| {
            let from = have.get(name).cloned();
            (from.as_ref() != Some(&to)).then(|| AttrChange {
                name,
                forces_replacement: want.forces_replacement(name),
                from,
                to: Some(to),
            })
        })
        .collect()
}

/// Replacing a parent replaces what lives inside it; replacing or creating an instance
/// moves its DNS record; replacing a group re-attaches the instances that use it.
fn cascade(
    desired: &Desired,
    observed: &Observed,
    changes: &mut Vec<Change>,
    unchanged: &mut usize,
) {
    loop {
        let renewed: Vec<Address> = changes
            .iter()
            .filter(|c| matches!(c.action, Action::Replace | Action::Create))
            .map(|c| c.address.clone())
            .collect();
        let mut changed = false;
        for want in &desired.resources {
            let Some(have) = observed.get(&want.address) else {
                continue; // created anyway
            };
            // The strongest consequence over every renewed dependency.
            let mut consequence: Option<(Action, String)> = None;
            for parent in want.depends_on.iter().filter(|d| renewed.contains(d)) {
                let replaced_parent = changes
                    .iter()
                    .any(|c| &c.address == parent && c.action == Action::Replace);
                let action = if replaced_parent && bound_to(want.address.kind, parent.kind) {
                    Action::Replace
                } else if refreshes(want.address.kind, parent.kind) {
                    Action::Update
                } else {
                    continue;
                };
                if consequence.as_ref().is_none_or(|(a, _)| action > *a) {
                    let how = if replaced_parent {
                        "replaced"
                    } else {
                        "created"
                    };
                    consequence = Some((action, format!("{parent} is {how}")));
                }
            }
            let Some((action, reason)) = consequence else {
                continue;
            };
            match changes.iter_mut().find(|c| c.address == want.address) {
                Some(c) if c.action >= action => {}
                Some(c) => {
                    c.action = action;
                    c.reason = Some(reason);
                    changed = true;
                }
                None => {
                    *unchanged -= 1;
                    changes.push(Change {
                        address: want.address.clone(),
                        action,
                        name: want.name.clone(),
                        id: Some(have.id.clone()),
                        attributes: Vec::new(),
                        reason: Some(reason),
                        desired: Some(want.spec.clone()),
                        observed: Some(have.spec.clone()),
                    });
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    // Keep creations and updates in dependency order.
    let order: BTreeMap<&Address, usize> = desired
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.address, i))
        .collect();
    changes.sort_by_key(|c| order.get(&c.address).copied().unwrap_or(usize::MAX));
}

/// One unit of work for the AWS layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "step", content = "address", rename_all = "lowercase")]
pub enum Step {
    /// Delete the existing resource (a deletion, or the first half of a replacement).
    Delete(Address),
    /// Remove security group permissions that are no longer wanted, before any group
    /// they name is deleted.
    Revoke(Address),
    /// Create the resource (a creation, or the second half of a replacement).
    Create(Address),
    /// Change the existing resource in place.
    Update(Address),
}

/// Orders a plan into stages; the steps of one stage are independent of each other.
pub fn schedule(plan: &Plan, desired: &Desired) -> Vec<Vec<Step>> {
    let mut stages: Vec<Vec<Step>> = Vec::new();
    // Deletions, from the top of the graph down.
    for r in (0..=4).rev() {
        let mut stage: Vec<Step> = Vec::new();
        for c in &plan.changes {
            if rank(c.address.kind) != r {
                continue;
            }
            let step = match c.action {
                Action::Delete | Action::Replace => Step::Delete(c.address.clone()),
                Action::Update if c.address.kind == Kind::SecurityGroupRules => {
                    Step::Revoke(c.address.clone())
                }
                _ => continue,
            };
            // One step per address: deleting it removes every copy (duplicates too).
            if !stage.contains(&step) {
                stage.push(step);
            }
        }
        if !stage.is_empty() {
            stages.push(stage);
        }
    }
    // Creations and updates, in the desired state's waves.
    for wave in desired.waves() {
        let stage: Vec<Step> = wave
            .iter()
            .filter_map(|r| {
                let c = plan
                    .changes
                    .iter()
                    .find(|c| c.address == r.address && c.action != Action::Delete)?;
                Some(match c.action {
                    Action::Create | Action::Replace => Step::Create(c.address.clone()),
                    _ => Step::Update(c.address.clone()),
                })
            })
            .collect();
        if !stage.is_empty() {
            stages.push(stage);
        }
    }
    stages
}

/// The plan as a person reads it: one block per change with the attributes that drive
/// it, then Terraform's summary line.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "No changes: lab `{}` matches the topology ({} resources).",
            plan.lab, plan.unchanged
        );
        return out;
    }
    for c in &plan.changes {
        let id =
            c.id.as_deref()
                .map(|i| format!(" [{i}]"))
                .unwrap_or_default();
        let verb = match c.action {
            Action::Create => "will be created",
            Action::Update => "will be updated in place",
            Action::Replace => "will be replaced",
            Action::Delete => "will be deleted",
        };
        let _ = writeln!(
            out,
            "{:>3} {} ({}){id} {verb}",
            c.action.symbol(),
            c.address,
            c.name
        );
        if let Some(reason) = &c.reason {
            let _ = writeln!(out, "      because {reason}");
        }
        for a in &c.attributes {
            let line = match (&a.from, &a.to) {
                (None, Some(to)) => format!("{}: {to}", a.name),
                (Some(from), None) => format!("{}: {from}", a.name),
                (Some(from), Some(to)) => format!("{}: {from} -> {to}", a.name),
                (None, None) => continue,
            };
            let forces = if a.forces_replacement && c.action == Action::Replace {
                "  # forces replacement"
            } else {
                ""
            };
            let _ = writeln!(out, "      {line}{forces}");
        }
    }
    let _ = writeln!(
        out,
        "Plan: {} to add, {} to change, {} to replace, {} to destroy; {} unchanged.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete),
        plan.unchanged
    );
    out
}
