//! Comparing what a lab should be with what AWS has, and the plan that closes the gap.
//!
//! `diff(desired, observed)` is pure: the AWS layer describes what it found as
//! [`Observed`] (in the same [`Spec`] terms as the desired state), and this module
//! decides, by comparing typed attribute values, whether each resource is created,
//! updated in place, replaced or deleted. Renewals travel along the one dependency
//! graph ([`Spec::edges`]) as each edge's label says. The plan carries both sides, so
//! applying it needs nothing but the plan; the reasons are for people only.
//! [`schedule`] orders the plan into stages whose steps may run concurrently: the
//! deletions that come first, in reverse dependency order, then creations and updates
//! in dependency order, then the originals of replacements created first.

#![warn(clippy::wildcard_enum_match_arm)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use crate::attr::{Attr, Cascade, Value};
use crate::desired::{Address, Desired, Kind, Spec, levels};

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
    /// What else was read that the plan does not compare but applying and the
    /// outputs need (associations, addresses, the zone a record lives in).
    pub observation: Observation,
}

impl Found {
    /// Its attributes (see [`Spec::attributes`]).
    pub fn attributes(&self) -> Vec<Attr> {
        self.spec.attributes(&self.name)
    }
}

/// What was read about a resource beyond its spec, typed per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Observation {
    /// Nothing beyond the spec.
    #[default]
    Plain,
    /// An internet gateway's attachments.
    InternetGateway {
        /// VPC ids it is attached to (a duplicate may be attached to any).
        attached_to: Vec<String>,
    },
    /// A route table's associations and routes.
    RouteTable {
        /// Explicit subnet associations.
        associations: Vec<Association>,
        /// A `0.0.0.0/0` route exists (to whatever target).
        default_route: bool,
    },
    /// An instance's state and addresses.
    Instance(InstanceFacts),
    /// Where a record lives and what it holds: deleting it needs both.
    DnsRecord {
        /// The hosted zone's id.
        zone_id: String,
        /// The record's values (IPv4 addresses).
        values: Vec<String>,
    },
    /// A record set in the lab's zone that labctl did not make, or cannot tell it
    /// made (an A record at a name no instance of the lab has). Unless the topology
    /// claims its address, no plan deletes it: only `down --force` does.
    ForeignRecord(RecordSet),
}

/// A Route 53 record set as listed: what finds it again, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordSet {
    /// The hosted zone's id.
    pub zone_id: String,
    /// Its name as listed (ending in a dot).
    pub name: String,
    /// `A`, `CNAME`, `TXT`, …
    pub record_type: String,
    /// What tells records of one name and type apart under a routing policy.
    pub set_identifier: Option<String>,
    /// TTL in seconds (an alias has none).
    pub ttl: Option<u64>,
    /// Its values, or where an alias points.
    pub values: Vec<String>,
}

/// A route table's association with a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Association {
    /// The subnet's id.
    pub subnet_id: String,
    /// The association's id (rtbassoc-…).
    pub id: String,
}

/// An instance's state and addresses, as EC2 reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceFacts {
    /// `pending`, `running`, `stopping`, `stopped`.
    pub state: String,
    /// The AMI it runs.
    pub ami: String,
    /// Private IPv4 address.
    pub private_ip: Option<String>,
    /// Public IPv4 address.
    pub public_ip: Option<String>,
    /// Its latest start, in seconds since the epoch.
    pub launch_time: Option<u64>,
}

impl Observation {
    /// An instance's facts, if this is an instance.
    pub fn instance(&self) -> Option<&InstanceFacts> {
        match self {
            Observation::Instance(facts) => Some(facts),
            Observation::Plain
            | Observation::InternetGateway { .. }
            | Observation::RouteTable { .. }
            | Observation::DnsRecord { .. }
            | Observation::ForeignRecord(_) => None,
        }
    }

    /// A route table's subnet associations (none for anything else).
    pub fn associations(&self) -> &[Association] {
        match self {
            Observation::RouteTable { associations, .. } => associations,
            Observation::Plain
            | Observation::InternetGateway { .. }
            | Observation::Instance(_)
            | Observation::DnsRecord { .. }
            | Observation::ForeignRecord(_) => &[],
        }
    }

    /// Whether a route table has a `0.0.0.0/0` route, to any target.
    pub fn default_route(&self) -> bool {
        match self {
            Observation::RouteTable { default_route, .. } => *default_route,
            Observation::Plain
            | Observation::InternetGateway { .. }
            | Observation::Instance(_)
            | Observation::DnsRecord { .. }
            | Observation::ForeignRecord(_) => false,
        }
    }

    /// A record set labctl did not make, as listed (none for anything else).
    pub fn foreign_record(&self) -> Option<&RecordSet> {
        match self {
            Observation::ForeignRecord(set) => Some(set),
            Observation::Plain
            | Observation::InternetGateway { .. }
            | Observation::RouteTable { .. }
            | Observation::Instance(_)
            | Observation::DnsRecord { .. } => None,
        }
    }

    /// The VPCs an internet gateway is attached to (none for anything else).
    pub fn attached_to(&self) -> &[String] {
        match self {
            Observation::InternetGateway { attached_to } => attached_to,
            Observation::Plain
            | Observation::RouteTable { .. }
            | Observation::Instance(_)
            | Observation::DnsRecord { .. }
            | Observation::ForeignRecord(_) => &[],
        }
    }
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
    pub from: Option<Value>,
    /// Value wanted (`None` when the resource goes away).
    pub to: Option<Value>,
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
    /// Its AWS name (the wanted one, or the found one for a deletion).
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
    /// What else was read about the existing resource: a deletion uses its own.
    #[serde(skip)]
    pub observation: Observation,
}

impl Change {
    /// A replacement whose new resource is created before the old one is deleted
    /// (see [`Kind::create_before_destroy`]).
    pub fn creates_first(&self) -> bool {
        self.action == Action::Replace && self.address.kind.create_before_destroy().is_some()
    }

    /// Whether the existing resource goes only after every creation and update: the
    /// original of a replacement created first, or an extra copy of such a kind
    /// beside the one kept (a run that stopped between the two halves of a rename).
    /// Until then, whatever still uses it keeps working.
    pub fn goes_last(&self, desired: &Desired) -> bool {
        self.creates_first()
            || (self.action == Action::Delete
                && self.address.kind.create_before_destroy().is_some()
                && desired.get(&self.address).is_some())
    }
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

/// Compares the desired resources with what was found.
pub fn diff(desired: &Desired, observed: &Observed) -> Plan {
    let mut changes: Vec<Change> = Vec::new();
    let mut unchanged = 0;
    let mut claimed: BTreeSet<usize> = BTreeSet::new();
    // Which found resource stands for each wanted one.
    let mut kept: BTreeMap<&Address, &Found> = BTreeMap::new();
    for want in &desired.resources {
        // Of several at one address (a crash between a replacement's create and its
        // delete, a lost response), the one with the wanted name is kept.
        let candidates = || {
            observed
                .resources
                .iter()
                .enumerate()
                .filter(|(i, f)| f.address == want.address && !claimed.contains(i))
        };
        let found = candidates()
            .find(|(_, f)| f.name == want.name)
            .or_else(|| candidates().next());
        let Some((i, have)) = found else {
            let attributes = want
                .attributes()
                .into_iter()
                .map(|a| AttrChange {
                    name: a.name,
                    from: None,
                    to: Some(a.value),
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
                observation: Observation::Plain,
            });
            continue;
        };
        claimed.insert(i);
        kept.insert(&want.address, have);
        let attributes = compare(&want.attributes(), &have.attributes());
        if attributes.is_empty() {
            unchanged += 1;
            continue;
        }
        let action = if attributes.iter().any(|a| a.forces_replacement) {
            Action::Replace
        } else {
            Action::Update
        };
        changes.push(existing(want, have, action, attributes, None));
    }
    cascade(desired, &kept, &mut changes, &mut unchanged);
    // Whatever the lab owns that the topology does not want: removed resources, and
    // duplicates left by an interrupted run. A record labctl did not make is not the
    // lab's to delete.
    let mut deletions: Vec<Change> = observed
        .resources
        .iter()
        .enumerate()
        .filter(|(i, have)| !claimed.contains(i) && have.observation.foreign_record().is_none())
        .map(|(_, have)| Change {
            address: have.address.clone(),
            action: Action::Delete,
            name: have.name.clone(),
            id: Some(have.id.clone()),
            attributes: have
                .attributes()
                .into_iter()
                .map(|a| AttrChange {
                    name: a.name,
                    from: Some(a.value),
                    to: None,
                    forces_replacement: false,
                })
                .collect(),
            reason: desired
                .get(&have.address)
                .map(|_| "duplicate of a resource the lab already has".to_owned()),
            desired: None,
            observed: Some(have.spec.clone()),
            observation: have.observation.clone(),
        })
        .collect();
    // Shown in the order they go: dependents first.
    let order = teardown_levels(deletions.iter());
    deletions.sort_by(|a, b| {
        order[&a.address]
            .cmp(&order[&b.address])
            .then_with(|| b.address.kind.cmp(&a.address.kind))
            .then_with(|| a.address.name.cmp(&b.address.name))
    });
    changes.extend(deletions);
    Plan {
        lab: desired.lab.clone(),
        changes,
        unchanged,
    }
}

/// A change to a resource that exists.
fn existing(
    want: &crate::Resource,
    have: &Found,
    action: Action,
    attributes: Vec<AttrChange>,
    reason: Option<String>,
) -> Change {
    Change {
        address: want.address.clone(),
        action,
        name: want.name.clone(),
        id: Some(have.id.clone()),
        attributes,
        reason,
        desired: Some(want.spec.clone()),
        observed: Some(have.spec.clone()),
        observation: have.observation.clone(),
    }
}

fn compare(want: &[Attr], have: &[Attr]) -> Vec<AttrChange> {
    want.iter()
        .filter_map(|w| {
            let from = have.iter().find(|h| h.name == w.name).map(|h| &h.value);
            (from != Some(&w.value)).then(|| AttrChange {
                name: w.name,
                forces_replacement: w.replaces,
                from: from.cloned(),
                to: Some(w.value.clone()),
            })
        })
        .collect()
}

/// Carries renewals along the graph's edges, as each edge's label says: a replaced
/// parent replaces what lives inside it; a created or replaced parent updates what
/// refers to it (a record's address, an instance's groups, a route table's
/// associations).
fn cascade(
    desired: &Desired,
    kept: &BTreeMap<&Address, &Found>,
    changes: &mut Vec<Change>,
    unchanged: &mut usize,
) {
    loop {
        let renewed: BTreeMap<Address, Action> = changes
            .iter()
            .filter(|c| matches!(c.action, Action::Replace | Action::Create))
            .map(|c| (c.address.clone(), c.action))
            .collect();
        let mut changed = false;
        for want in &desired.resources {
            let Some(have) = kept.get(&want.address) else {
                continue; // created anyway
            };
            // The strongest consequence over every renewed dependency.
            let mut consequence: Option<(Action, String)> = None;
            for edge in want.spec.edges() {
                let Some(parent) = renewed.get(&edge.to) else {
                    continue;
                };
                let action = match (edge.cascade, parent) {
                    (Cascade::Inside, Action::Replace) => Action::Replace,
                    (Cascade::Refers, _) => Action::Update,
                    (Cascade::Inside | Cascade::Order, _) => continue,
                };
                if consequence.as_ref().is_none_or(|(a, _)| action > *a) {
                    let how = match parent {
                        Action::Replace => "replaced",
                        Action::Create | Action::Update | Action::Delete => "created",
                    };
                    consequence = Some((action, format!("{} is {how}", edge.to)));
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
                    changes.push(existing(want, have, action, Vec::new(), Some(reason)));
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

/// For resources that go away, how many of them depend on each, transitively: the
/// creation graph reversed, read from what was found (its own edges), so a resource is
/// deleted only after everything that needs it.
fn teardown_levels<'a>(doomed: impl Iterator<Item = &'a Change>) -> BTreeMap<Address, usize> {
    let doomed: Vec<&Change> = doomed.collect();
    let mut dependents: BTreeMap<Address, Vec<Address>> = doomed
        .iter()
        .map(|c| (c.address.clone(), Vec::new()))
        .collect();
    for c in &doomed {
        let edges = c.observed.as_ref().or(c.desired.as_ref()).map(Spec::edges);
        for edge in edges.unwrap_or_default() {
            if let Some(list) = dependents.get_mut(&edge.to) {
                list.push(c.address.clone());
            }
        }
    }
    levels(dependents)
}

/// One unit of work for the AWS layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "step", content = "address", rename_all = "lowercase")]
pub enum Step {
    /// Delete what exists at the address and goes before the creations: a deletion,
    /// a duplicate, or the first half of a replacement that deletes first.
    Delete(Address),
    /// Remove security group permissions that are no longer wanted, before any group
    /// they name is deleted.
    Revoke(Address),
    /// Create the resource (a creation, or the new half of a replacement).
    Create(Address),
    /// Change the existing resource in place.
    Update(Address),
    /// Delete the original of a replacement created first, once its successor has
    /// taken over (see [`Kind::create_before_destroy`]).
    Retire(Address),
}

impl Step {
    /// The address it acts on.
    pub fn address(&self) -> &Address {
        match self {
            Step::Delete(a)
            | Step::Revoke(a)
            | Step::Create(a)
            | Step::Update(a)
            | Step::Retire(a) => a,
        }
    }
}

/// Orders a plan into stages; the steps of one stage are independent of each other.
///
/// Three phases walk the one dependency graph: deletions that must come first, in
/// reverse (dependents before what they need); creations and updates in the desired
/// state's waves; then the originals of replacements that were created first, in
/// reverse again.
pub fn schedule(plan: &Plan, desired: &Desired) -> Vec<Vec<Step>> {
    let mut stages: Vec<Vec<Step>> = Vec::new();
    let teardown = |stages: &mut Vec<Vec<Step>>, doomed: Vec<(&Change, Step)>| {
        let heights = teardown_levels(doomed.iter().map(|(c, _)| *c));
        let top = heights.values().max().copied();
        for h in 0..=top.unwrap_or(0) {
            let mut stage: Vec<Step> = Vec::new();
            for (c, step) in &doomed {
                // One step per address: it removes every copy (duplicates too).
                if heights.get(&c.address) == Some(&h) && !stage.contains(step) {
                    stage.push(step.clone());
                }
            }
            if !stage.is_empty() {
                stages.push(stage);
            }
        }
    };
    let first: Vec<(&Change, Step)> = plan
        .changes
        .iter()
        .filter(|c| !c.goes_last(desired))
        .filter_map(|c| match c.action {
            Action::Delete | Action::Replace => Some((c, Step::Delete(c.address.clone()))),
            Action::Update if c.address.kind == Kind::SecurityGroupRules => {
                Some((c, Step::Revoke(c.address.clone())))
            }
            Action::Update | Action::Create => None,
        })
        .collect();
    teardown(&mut stages, first);
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
                    Action::Update | Action::Delete => Step::Update(c.address.clone()),
                })
            })
            .collect();
        if !stage.is_empty() {
            stages.push(stage);
        }
    }
    let last: Vec<(&Change, Step)> = plan
        .changes
        .iter()
        .filter(|c| c.goes_last(desired))
        .map(|c| (c, Step::Retire(c.address.clone())))
        .collect();
    teardown(&mut stages, last);
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
        if let Some(how) = c
            .address
            .kind
            .create_before_destroy()
            .filter(|_| c.creates_first())
        {
            let _ = writeln!(out, "      created first: {how}");
        }
        for a in &c.attributes {
            let line = match (&a.from, &a.to) {
                (None, Some(to)) => format!("{}: {to}", a.name),
                (Some(from), None) => format!("{}: {from}", a.name),
                // Sets show what leaves and what joins, not both whole lists.
                (Some(Value::Rules(from)), Some(Value::Rules(to))) => {
                    let gone = from
                        .iter()
                        .filter(|p| !to.contains(p))
                        .map(|p| format!("-{p}"));
                    let new = to
                        .iter()
                        .filter(|p| !from.contains(p))
                        .map(|p| format!("+{p}"));
                    format!(
                        "{}: {}",
                        a.name,
                        gone.chain(new).collect::<Vec<_>>().join(", ")
                    )
                }
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
