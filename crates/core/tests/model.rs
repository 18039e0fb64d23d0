//! The plan carried out against an in-memory model of AWS, for random pairs of labs.
//!
//! The model is a test double of AWS (no AWS runs here at property-test speed): it
//! keeps ids, names and references the way AWS does, and it refuses what AWS refuses
//! (a profile holding a missing role, a subnet deleted under an instance, a zone
//! deleted with records in it, ...). Each refusal has a named test of its own below.
//! Its steps do what the AWS layer's applier does with each step of a schedule,
//! resolving references through the same "what stands at this address now" view.
//!
//! The property: from lab A, the plan to lab B, applied step by step, reaches B
//! (the next plan is empty), and no step ever leaves a running instance whose
//! profile is missing or holds no role, or a policy or user-data naming a bucket
//! that does not exist. Captures survive a bucket rename.

use std::collections::BTreeMap;

use labctl_core::desired::{Permission, PermissionPeer};
use labctl_core::plan::{
    Action, Change, Found, InstanceFacts, Observation, Observed, Plan, Step, diff, render, schedule,
};
use labctl_core::{Address, Context, Desired, Kind, Spec, check, expand};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------
// The model

/// One object in the model's account.
#[derive(Debug, Clone)]
struct Obj {
    id: String,
    address: Address,
    name: String,
    /// The spec as created or last updated; fields that AWS keeps as references
    /// (subnet, group, profile, associations, record value) are in `refs`.
    spec: Spec,
    refs: Refs,
}

/// What AWS holds by id or by name.
#[derive(Debug, Clone, Default)]
struct Refs {
    /// VPC id (subnets, groups, gateways, route tables, zones).
    vpc: Option<String>,
    /// Subnet id (instances).
    subnet: Option<String>,
    /// Security group id (instances).
    group: Option<String>,
    /// Instance profile name (instances).
    profile: Option<String>,
    /// Bucket an instance's user-data names, or an artifact lives in.
    bucket: Option<String>,
    /// Internet gateway id a route table's default route targets.
    gateway: Option<String>,
    /// Subnet ids a route table is associated with.
    associations: Vec<String>,
    /// Hosted zone id (records).
    zone: Option<String>,
    /// Private IPv4 (instances), or a record's value.
    ip: Option<String>,
    /// A group's rules, as (ingress, egress), peers by role.
    rules: Option<(Vec<Permission>, Vec<Permission>)>,
    /// Capture files in a bucket.
    captures: usize,
}

#[derive(Debug, Default, Clone)]
struct Aws {
    objs: Vec<Obj>,
    next: usize,
}

type Refusal = String;

impl Aws {
    fn fresh_id(&mut self, kind: Kind) -> String {
        self.next += 1;
        format!("{}-{:04}", kind.as_str(), self.next)
    }

    fn by_id(&self, id: &str) -> Option<&Obj> {
        self.objs.iter().find(|o| o.id == id)
    }

    fn by_id_mut(&mut self, id: &str) -> Option<&mut Obj> {
        self.objs.iter_mut().find(|o| o.id == id)
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Obj> {
        self.objs.iter().filter(move |o| o.address.kind == kind)
    }

    fn exists(&self, kind: Kind, name: &str) -> bool {
        self.of_kind(kind).any(|o| o.name == name)
    }

    fn remove(&mut self, id: &str) {
        self.objs.retain(|o| o.id != id);
    }

    fn insert(&mut self, address: &Address, name: &str, spec: Spec, refs: Refs) -> String {
        let id = match address.kind {
            // IAM and S3 know these by name; an object by its bucket and key.
            Kind::IamRole | Kind::InstanceProfile | Kind::Bucket => {
                internal_id(address.kind, name, None)
            }
            Kind::Artifact => internal_id(address.kind, name, refs.bucket.as_deref()),
            Kind::Vpc
            | Kind::Subnet
            | Kind::InternetGateway
            | Kind::RouteTable
            | Kind::SecurityGroup
            | Kind::SecurityGroupRules
            | Kind::HostedZone
            | Kind::Instance
            | Kind::DnsRecord => self.fresh_id(address.kind),
        };
        self.objs.push(Obj {
            id: id.clone(),
            address: address.clone(),
            name: name.to_owned(),
            spec,
            refs,
        });
        id
    }

    // --- AWS's refusals, each a rule with a named test ---

    /// A profile can hold only a role that exists.
    fn check_profile_role(&self, role: &str) -> Result<(), Refusal> {
        if self.exists(Kind::IamRole, role) {
            Ok(())
        } else {
            Err(format!("NoSuchEntity: role {role} not found"))
        }
    }

    /// An instance needs its subnet, its group and its profile.
    fn check_launch(&self, subnet: &str, group: &str, profile: &str) -> Result<(), Refusal> {
        if self.by_id(subnet).is_none() {
            return Err(format!("InvalidSubnetID.NotFound: {subnet}"));
        }
        if self.by_id(group).is_none() {
            return Err(format!("InvalidGroup.NotFound: {group}"));
        }
        if !self.exists(Kind::InstanceProfile, profile) {
            return Err(format!("InvalidParameterValue: profile {profile}"));
        }
        Ok(())
    }

    /// A rule may name only groups that exist.
    fn check_rule_peers(&self, known: &Known, rules: &[Permission]) -> Result<(), Refusal> {
        for p in rules {
            if let PermissionPeer::Role(r) = &p.peer {
                let id = known.id(&Address::new(Kind::SecurityGroup, r));
                if id.as_deref().and_then(|id| self.by_id(id)).is_none() {
                    return Err(format!("InvalidGroup.NotFound: role {r}"));
                }
            }
        }
        Ok(())
    }

    /// What may not be deleted while something depends on it.
    fn check_delete(&self, obj: &Obj) -> Result<(), Refusal> {
        let busy = |why: &str| Err(format!("DependencyViolation: {} {why}", obj.id));
        match obj.address.kind {
            Kind::Vpc => {
                if self
                    .objs
                    .iter()
                    .any(|o| o.refs.vpc.as_deref() == Some(&obj.id))
                {
                    return busy("has dependencies");
                }
            }
            Kind::Subnet => {
                if self
                    .objs
                    .iter()
                    .any(|o| o.refs.subnet.as_deref() == Some(&obj.id))
                {
                    return busy("has instances");
                }
            }
            Kind::SecurityGroup => {
                let role = &obj.address.name;
                let named = self.objs.iter().any(|o| {
                    o.id != obj.id
                        && o.refs.rules.as_ref().is_some_and(|(i, e)| {
                            i.iter()
                                .chain(e)
                                .any(|p| p.peer == PermissionPeer::Role(role.clone()))
                        })
                });
                let used = self
                    .objs
                    .iter()
                    .any(|o| o.refs.group.as_deref() == Some(&obj.id));
                if named || used {
                    return busy("is in use");
                }
            }
            Kind::HostedZone => {
                if self
                    .objs
                    .iter()
                    .any(|o| o.refs.zone.as_deref() == Some(&obj.id))
                {
                    return Err(format!("HostedZoneNotEmpty: {}", obj.id));
                }
            }
            Kind::Bucket => {
                let objects = self.objs.iter().any(|o| {
                    o.address.kind == Kind::Artifact && o.refs.bucket.as_deref() == Some(&obj.name)
                });
                if objects || obj.refs.captures > 0 {
                    return Err(format!("BucketNotEmpty: {}", obj.name));
                }
            }
            Kind::IamRole => {
                let held = self.of_kind(Kind::InstanceProfile).any(
                    |p| matches!(&p.spec, Spec::InstanceProfile { role } if role == &obj.name),
                );
                if held {
                    return Err(format!("DeleteConflict: role {} is in a profile", obj.name));
                }
            }
            Kind::InstanceProfile => {
                let used = self
                    .objs
                    .iter()
                    .any(|o| o.refs.profile.as_deref() == Some(&obj.name));
                if used {
                    return Err(format!("DeleteConflict: profile {} is in use", obj.name));
                }
            }
            Kind::InternetGateway
            | Kind::RouteTable
            | Kind::SecurityGroupRules
            | Kind::Artifact
            | Kind::Instance
            | Kind::DnsRecord => {}
        }
        Ok(())
    }

    /// What must hold after every step: no running instance without a usable
    /// profile, and nothing naming a bucket that does not exist.
    fn check_invariants(&self) -> Result<(), Refusal> {
        for i in self.of_kind(Kind::Instance) {
            let profile = i.refs.profile.as_deref().unwrap_or_default();
            let Some(p) = self
                .of_kind(Kind::InstanceProfile)
                .find(|p| p.name == profile)
            else {
                return Err(format!(
                    "{} runs with a missing profile {profile}",
                    i.address
                ));
            };
            let Spec::InstanceProfile { role } = &p.spec else {
                unreachable!("profiles hold profile specs")
            };
            if !self.exists(Kind::IamRole, role) {
                return Err(format!(
                    "{} runs with profile {profile} holding no role",
                    i.address
                ));
            }
            let bucket = i.refs.bucket.as_deref().unwrap_or_default();
            if !self.exists(Kind::Bucket, bucket) {
                return Err(format!(
                    "{}'s user-data names a missing bucket {bucket}",
                    i.address
                ));
            }
        }
        for r in self.of_kind(Kind::IamRole) {
            if let Spec::IamRole {
                inline_policy_bucket: Some(b),
                ..
            } = &r.spec
                && !self.exists(Kind::Bucket, b)
            {
                return Err(format!(
                    "role {}'s policy names a missing bucket {b}",
                    r.name
                ));
            }
        }
        Ok(())
    }

    /// What the AWS layer's observe would report, in the core's terms.
    fn observe(&self, wanted_labnet_key: Option<&str>) -> Observed {
        let name_of = |id: &Option<String>| -> String {
            match id.as_deref().and_then(|id| self.by_id(id)) {
                Some(o) => o.address.name.clone(),
                None => id.clone().unwrap_or_default(),
            }
        };
        let mut resources = Vec::new();
        for o in &self.objs {
            let mut address = o.address.clone();
            let mut observation = Observation::Plain;
            let spec = match &o.spec {
                Spec::RouteTable { .. } => {
                    let mut subnets: Vec<String> = o
                        .refs
                        .associations
                        .iter()
                        .map(|s| name_of(&Some(s.clone())))
                        .collect();
                    subnets.sort();
                    let gateway = o.refs.gateway.as_deref().and_then(|g| self.by_id(g));
                    Spec::RouteTable {
                        internet_route: gateway.is_some(),
                        subnets,
                    }
                }
                Spec::InternetGateway { .. } => Spec::InternetGateway {
                    attached: o.refs.vpc.as_deref().and_then(|v| self.by_id(v)).is_some(),
                },
                Spec::HostedZone { zone, .. } => Spec::HostedZone {
                    zone: zone.clone(),
                    vpc_associated: o.refs.vpc.as_deref().and_then(|v| self.by_id(v)).is_some(),
                },
                Spec::Instance {
                    instance_type,
                    image,
                    public_ip,
                    imdsv2,
                    running,
                    services,
                    lifetime_minutes,
                    user_data,
                    ..
                } => {
                    observation = Observation::Instance(InstanceFacts {
                        private_ip: o.refs.ip.clone(),
                        ..InstanceFacts::default()
                    });
                    Spec::Instance {
                        instance_type: instance_type.clone(),
                        image: image.clone(),
                        role: name_of(&o.refs.group),
                        subnet: name_of(&o.refs.subnet),
                        public_ip: *public_ip,
                        profile: o.refs.profile.clone().unwrap_or_default(),
                        imdsv2: *imdsv2,
                        running: *running,
                        services: services.clone(),
                        lifetime_minutes: *lifetime_minutes,
                        user_data: user_data.clone(),
                    }
                }
                Spec::DnsRecord { fqdn, ttl, .. } => {
                    let ip = o.refs.ip.clone().unwrap_or_default();
                    let target = self
                        .of_kind(Kind::Instance)
                        .find(|i| i.refs.ip.as_deref() == Some(&ip))
                        .map_or(ip.clone(), |i| i.address.to_string());
                    observation = Observation::DnsRecord {
                        zone_id: o.refs.zone.clone().unwrap_or_default(),
                        values: vec![ip],
                    };
                    Spec::DnsRecord {
                        fqdn: fqdn.clone(),
                        ttl: *ttl,
                        target,
                    }
                }
                Spec::Artifact { sha256, .. } => {
                    if Some(o.name.as_str()) != wanted_labnet_key {
                        let short: String = sha256.chars().take(12).collect();
                        address = Address::new(Kind::Artifact, format!("labnet-{short}"));
                    }
                    o.spec.clone()
                }
                Spec::Vpc { .. }
                | Spec::Subnet { .. }
                | Spec::SecurityGroup { .. }
                | Spec::SecurityGroupRules { .. }
                | Spec::IamRole { .. }
                | Spec::InstanceProfile { .. }
                | Spec::Bucket { .. } => o.spec.clone(),
            };
            // What AWS knows by name is listed by its name.
            let by_name = matches!(
                o.address.kind,
                Kind::IamRole | Kind::InstanceProfile | Kind::Bucket | Kind::Artifact
            );
            let id = if by_name { &o.name } else { &o.id };
            resources.push(Found {
                address,
                id: id.clone(),
                name: o.name.clone(),
                spec,
                observation,
            });
            // A group's rules are found on the group.
            if let (Spec::SecurityGroup { role }, Some((ingress, egress))) =
                (&o.spec, &o.refs.rules)
            {
                let mut ingress = ingress.clone();
                let mut egress = egress.clone();
                ingress.sort();
                egress.sort();
                resources.push(Found {
                    address: Address::new(Kind::SecurityGroupRules, role),
                    id: o.id.clone(),
                    name: o.name.clone(),
                    spec: Spec::SecurityGroupRules {
                        role: role.clone(),
                        ingress,
                        egress,
                    },
                    observation: Observation::Plain,
                });
            }
        }
        Observed { resources }
    }
}

/// The model's own id for what AWS knows by name (a role and its profile share one).
fn internal_id(kind: Kind, id: &str, bucket: Option<&str>) -> String {
    match kind {
        Kind::IamRole | Kind::InstanceProfile | Kind::Bucket => format!("{}:{id}", kind.as_str()),
        Kind::Artifact => format!("{}/{id}", bucket.unwrap_or_default()),
        Kind::Vpc
        | Kind::Subnet
        | Kind::InternetGateway
        | Kind::RouteTable
        | Kind::SecurityGroup
        | Kind::SecurityGroupRules
        | Kind::HostedZone
        | Kind::Instance
        | Kind::DnsRecord => id.to_owned(),
    }
}

/// What stands at each address now, as the applier tracks it: the resources the plan
/// keeps, then each one created in their place.
#[derive(Debug, Default)]
struct Known(BTreeMap<Address, String>);

impl Known {
    fn seed(plan: &Plan, observed: &Observed) -> Self {
        let deleted = |f: &Found| {
            plan.changes.iter().any(|c| {
                c.action == Action::Delete
                    && c.address == f.address
                    && c.id.as_deref() == Some(&f.id)
            })
        };
        let (kept, extra): (Vec<&Found>, Vec<&Found>) =
            observed.resources.iter().partition(|f| !deleted(f));
        Known(
            extra
                .into_iter()
                .chain(kept)
                .map(|f| (f.address.clone(), f.id.clone()))
                .collect(),
        )
    }

    fn id(&self, a: &Address) -> Option<String> {
        self.0.get(a).cloned()
    }

    fn need(&self, a: &Address) -> Result<String, Refusal> {
        self.id(a).ok_or_else(|| format!("{a} does not exist"))
    }
}

/// Everything a run needs besides the model.
struct Run<'a> {
    plan: &'a Plan,
    desired: &'a Desired,
}

impl Run<'_> {
    fn change(&self, a: &Address) -> Result<&Change, Refusal> {
        self.plan
            .changes
            .iter()
            .find(|c| &c.address == a && c.action != Action::Delete)
            .ok_or_else(|| format!("{a} is not in the plan"))
    }

    fn bucket(&self) -> String {
        self.desired
            .get(&Address::new(Kind::Bucket, "captures"))
            .map(|r| r.name.clone())
            .unwrap_or_default()
    }

    fn step(&self, aws: &mut Aws, known: &mut Known, step: &Step) -> Result<(), Refusal> {
        match step {
            Step::Delete(a) | Step::Retire(a) => {
                let late = matches!(step, Step::Retire(_));
                let doomed: Vec<&Change> = self
                    .plan
                    .changes
                    .iter()
                    .filter(|c| {
                        &c.address == a
                            && matches!(c.action, Action::Delete | Action::Replace)
                            && c.goes_last(self.desired) == late
                    })
                    .collect();
                for c in doomed {
                    let id = c.id.clone().ok_or("a deletion without an id")?;
                    self.delete(aws, c, &id)?;
                    if known.id(a).as_deref() == Some(&id) {
                        known.0.remove(a);
                    }
                }
                Ok(())
            }
            Step::Revoke(a) => {
                let c = self.change(a)?;
                let (
                    Some(Spec::SecurityGroupRules {
                        ingress, egress, ..
                    }),
                    Some(id),
                ) = (&c.desired, &c.id)
                else {
                    return Err("revoke without rules".into());
                };
                let group = aws.by_id_mut(id).ok_or("revoke on a missing group")?;
                if let Some((i, e)) = &mut group.refs.rules {
                    i.retain(|p| ingress.iter().any(|w| w.key() == p.key()));
                    e.retain(|p| egress.iter().any(|w| w.key() == p.key()));
                }
                Ok(())
            }
            Step::Create(a) => {
                let c = self.change(a)?;
                let spec = c.desired.clone().ok_or("create without a spec")?;
                let id = self.create(aws, known, a, &c.name, spec)?;
                known.0.insert(a.clone(), id);
                Ok(())
            }
            Step::Update(a) => {
                let c = self.change(a)?;
                let spec = c.desired.clone().ok_or("update without a spec")?;
                let id = c.id.clone().ok_or("update without an id")?;
                self.update(aws, known, &internal_id(a.kind, &id, None), spec)
            }
        }
    }

    fn delete(&self, aws: &mut Aws, c: &Change, id: &str) -> Result<(), Refusal> {
        // An object is deleted from the bucket it was found in.
        let bucket = match &c.observed {
            Some(Spec::Artifact { bucket, .. }) => Some(bucket.as_str()),
            _ => None,
        };
        let id = internal_id(c.address.kind, id, bucket);
        let id = id.as_str();
        let Some(obj) = aws.by_id(id).cloned() else {
            return Ok(()); // already gone
        };
        match c.address.kind {
            // Revoking every rule; the group goes in a step of its own.
            Kind::SecurityGroupRules => {
                let group = aws.by_id_mut(id).ok_or("rules without a group")?;
                if let Some((i, e)) = &mut group.refs.rules {
                    i.clear();
                    e.clear();
                }
                return Ok(());
            }
            // Carried over when renamed, then emptied, as the applier does.
            Kind::Bucket => {
                if c.goes_last(self.desired) {
                    let to = self.bucket();
                    let target = aws
                        .of_kind(Kind::Bucket)
                        .find(|b| b.name == to)
                        .map(|b| b.id.clone())
                        .ok_or_else(|| format!("carry-over to a missing bucket {to}"))?;
                    let captures = obj.refs.captures;
                    aws.by_id_mut(&target).ok_or("target")?.refs.captures += captures;
                }
                let name = obj.name.clone();
                aws.objs.retain(|o| {
                    !(o.address.kind == Kind::Artifact && o.refs.bucket.as_deref() == Some(&name))
                });
                aws.by_id_mut(id).ok_or("bucket")?.refs.captures = 0;
            }
            // A role's policies are detached, a profile's role removed, first.
            Kind::InstanceProfile => {
                if let Some(p) = aws.by_id_mut(id) {
                    p.spec = Spec::InstanceProfile {
                        role: String::new(),
                    };
                }
            }
            Kind::Vpc
            | Kind::Subnet
            | Kind::InternetGateway
            | Kind::RouteTable
            | Kind::SecurityGroup
            | Kind::IamRole
            | Kind::Artifact
            | Kind::HostedZone
            | Kind::Instance
            | Kind::DnsRecord => {}
        }
        // A gateway is detached, a route table disassociated, by their delete.
        let obj = aws.by_id(id).cloned().ok_or("vanished")?;
        aws.check_delete(&obj)?;
        aws.remove(id);
        Ok(())
    }

    fn create(
        &self,
        aws: &mut Aws,
        known: &Known,
        a: &Address,
        name: &str,
        spec: Spec,
    ) -> Result<String, Refusal> {
        let vpc = || known.need(&Address::single(Kind::Vpc));
        let mut refs = Refs::default();
        match &spec {
            Spec::Vpc { .. } | Spec::IamRole { .. } | Spec::Bucket { .. } => {}
            Spec::Subnet { .. } | Spec::InternetGateway { .. } | Spec::HostedZone { .. } => {
                refs.vpc = Some(vpc()?);
            }
            Spec::SecurityGroup { .. } => {
                refs.vpc = Some(vpc()?);
                refs.rules = Some((vec![], vec![Permission::all_outbound()]));
            }
            Spec::RouteTable { subnets, .. } => {
                refs.vpc = Some(vpc()?);
                refs.gateway = Some(known.need(&Address::single(Kind::InternetGateway))?);
                for s in subnets {
                    refs.associations
                        .push(known.need(&Address::new(Kind::Subnet, s))?);
                }
            }
            Spec::SecurityGroupRules { role, .. } => {
                let group = known.need(&Address::new(Kind::SecurityGroup, role))?;
                self.update(aws, known, &group, spec.clone())?;
                return Ok(group);
            }
            Spec::InstanceProfile { role } => aws.check_profile_role(role)?,
            Spec::Artifact { bucket, .. } => {
                if !aws.exists(Kind::Bucket, bucket) {
                    return Err(format!("NoSuchBucket: {bucket}"));
                }
                refs.bucket = Some(bucket.clone());
            }
            Spec::Instance {
                role,
                subnet,
                profile,
                ..
            } => {
                let subnet = known.need(&Address::new(Kind::Subnet, subnet))?;
                let group = known.need(&Address::new(Kind::SecurityGroup, role))?;
                aws.check_launch(&subnet, &group, profile)?;
                refs.subnet = Some(subnet);
                refs.group = Some(group);
                refs.profile = Some(profile.clone());
                refs.bucket = Some(self.bucket());
                aws.next += 1;
                refs.ip = Some(format!("10.9.{}.{}", aws.next / 250, aws.next % 250));
            }
            Spec::DnsRecord { target, .. } => {
                refs.zone = Some(known.need(&Address::single(Kind::HostedZone))?);
                refs.ip = Some(self.instance_ip(aws, known, target)?);
            }
        }
        if matches!(a.kind, Kind::IamRole | Kind::InstanceProfile | Kind::Bucket)
            && aws.exists(a.kind, name)
        {
            return Err(format!("EntityAlreadyExists: {name}"));
        }
        Ok(aws.insert(a, name, spec, refs))
    }

    fn instance_ip(&self, aws: &Aws, known: &Known, target: &str) -> Result<String, Refusal> {
        let instance = Address::parse(target).ok_or("a record without an instance")?;
        let id = known.need(&instance)?;
        aws.by_id(&id)
            .and_then(|i| i.refs.ip.clone())
            .ok_or_else(|| format!("{target} has no address"))
    }

    fn update(&self, aws: &mut Aws, known: &Known, id: &str, spec: Spec) -> Result<(), Refusal> {
        let mut refs = aws
            .by_id(id)
            .ok_or("update on a missing resource")?
            .refs
            .clone();
        let mut keep_spec = true;
        match &spec {
            Spec::SecurityGroupRules {
                ingress, egress, ..
            } => {
                aws.check_rule_peers(known, ingress)?;
                aws.check_rule_peers(known, egress)?;
                refs.rules = Some((ingress.clone(), egress.clone()));
                keep_spec = false; // the group keeps its own spec
            }
            Spec::RouteTable { subnets, .. } => {
                refs.gateway = Some(known.need(&Address::single(Kind::InternetGateway))?);
                let want: Vec<String> = subnets
                    .iter()
                    .map(|s| known.need(&Address::new(Kind::Subnet, s)))
                    .collect::<Result<_, _>>()?;
                refs.associations = want;
            }
            Spec::InternetGateway { .. } | Spec::HostedZone { .. } => {
                refs.vpc = Some(known.need(&Address::single(Kind::Vpc))?);
            }
            Spec::InstanceProfile { role } => aws.check_profile_role(role)?,
            Spec::Instance { role, profile, .. } => {
                refs.group = Some(known.need(&Address::new(Kind::SecurityGroup, role))?);
                if !aws.exists(Kind::InstanceProfile, profile) {
                    return Err(format!("InvalidParameterValue: profile {profile}"));
                }
                refs.profile = Some(profile.clone());
            }
            Spec::DnsRecord { target, .. } => {
                refs.ip = Some(self.instance_ip(aws, known, target)?);
            }
            Spec::Vpc { .. }
            | Spec::Subnet { .. }
            | Spec::SecurityGroup { .. }
            | Spec::IamRole { .. }
            | Spec::Bucket { .. }
            | Spec::Artifact { .. } => {}
        }
        let obj = aws.by_id_mut(id).ok_or("vanished")?;
        obj.refs = refs;
        if keep_spec {
            obj.spec = spec;
        }
        Ok(())
    }
}

/// Plans `desired` against the model and carries the plan out, stage by stage,
/// checking the invariants after every step. Returns the plan.
fn converge(aws: &mut Aws, desired: &Desired, reverse: bool) -> Result<Plan, Refusal> {
    let key = labnet_key(desired);
    let observed = aws.observe(key.as_deref());
    let plan = diff(desired, &observed);
    let stages = schedule(&plan, desired);
    let mut known = Known::seed(&plan, &observed);
    let run = Run {
        plan: &plan,
        desired,
    };
    for stage in &stages {
        let mut steps: Vec<&Step> = stage.iter().collect();
        if reverse {
            steps.reverse();
        }
        for step in steps {
            run.step(aws, &mut known, step)
                .and_then(|()| aws.check_invariants())
                .map_err(|e| format!("{step:?}: {e}\nplan:\n{}", render(&plan)))?;
        }
    }
    Ok(plan)
}

fn labnet_key(desired: &Desired) -> Option<String> {
    desired
        .get(&Address::new(Kind::Artifact, "labnet"))
        .map(|r| r.name.clone())
}

/// Brings the model to `desired`, then proves it is there: the next plan is empty,
/// and every wanted address holds exactly one resource.
fn reach(aws: &mut Aws, desired: &Desired, reverse: bool) -> Result<(), Refusal> {
    converge(aws, desired, reverse)?;
    let again = diff(desired, &aws.observe(labnet_key(desired).as_deref()));
    if !again.is_empty() {
        return Err(format!("not converged:\n{}", render(&again)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Random labs

/// The knobs of a random lab; every combination is a valid topology.
#[derive(Debug, Clone)]
struct Knobs {
    vpc: u8,
    subnets: Vec<(u8, bool)>,
    dns: Option<(&'static str, u32)>,
    rules: Vec<(u16, &'static str, Option<&'static str>)>,
    egress: bool,
    role_name: &'static str,
    policies: Vec<&'static str>,
    bucket: Option<&'static str>,
    clients: u8,
    client_subnet: usize,
    server_type: &'static str,
    image: &'static str,
    services: Vec<&'static str>,
    lifetime: Option<&'static str>,
    labnet: u8,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    let subnet = (1u8..4, any::<bool>());
    let rule = (
        prop::sample::select(vec![22u16, 80, 1234, 8080]),
        prop::sample::select(vec!["tcp", "udp"]),
        prop::option::of(prop::sample::select(vec!["a", "b"])),
    );
    (
        (
            0u8..2,
            prop::collection::vec(subnet, 1..3),
            prop::option::of((
                prop::sample::select(vec!["lab.internal", "lab.test"]),
                prop::sample::select(vec![60u32, 300]),
            )),
            prop::collection::vec(rule, 0..4),
            any::<bool>(),
            prop::sample::select(vec!["RoleA", "RoleB"]),
            prop::sample::subsequence(
                vec!["AmazonDynamoDBFullAccess", "AmazonSSMManagedInstanceCore"],
                0..=2,
            ),
        ),
        (
            prop::option::of(prop::sample::select(vec!["prop-bucket-x", "prop-bucket-y"])),
            1u8..3,
            0usize..2,
            prop::sample::select(vec!["t3.micro", "t3.small"]),
            prop::sample::select(vec!["ubuntu-24.04", "ami-0123456789abcdef0"]),
            prop::sample::subsequence(vec!["tcp-server", "udp-server", "echo-server"], 0..=3),
            prop::option::of(prop::sample::select(vec!["2h", "4h"])),
            0u8..2,
        ),
    )
        .prop_map(
            |(
                (vpc, subnets, dns, rules, egress, role_name, policies),
                (bucket, clients, client_subnet, server_type, image, services, lifetime, labnet),
            )| Knobs {
                vpc,
                subnets,
                dns,
                rules,
                egress,
                role_name,
                policies,
                bucket,
                clients,
                client_subnet,
                server_type,
                image,
                services,
                lifetime,
                labnet,
            },
        )
}

impl Knobs {
    fn text(&self) -> String {
        let mut subnets: Vec<(u8, bool)> = Vec::new();
        for s in &self.subnets {
            if !subnets.iter().any(|x| x.0 == s.0) {
                subnets.push(*s);
            }
        }
        let client_subnet = self.client_subnet.min(subnets.len() - 1);
        let mut t = String::from("name: prop\nnetwork:\n");
        t += &format!("  cidr: 10.{}.0.0/16\n  subnets:\n", self.vpc);
        for (i, (octet, public)) in subnets.iter().enumerate() {
            // A subnet with instances needs its way out (validation says so); the
            // others may be private.
            let public = *public || i == 0 || i == client_subnet;
            t += &format!(
                "    - {{ name: s{i}, cidr: 10.{}.{octet}.0/24, public: {public} }}\n",
                self.vpc
            );
        }
        if let Some((zone, ttl)) = self.dns {
            t += &format!("dns:\n  zone: {zone}\n  ttl: {ttl}\n");
        }
        t += "roles:\n  server:\n    ingress:\n";
        t += "      - { proto: icmp, from: [role:client] }\n";
        let mut seen = Vec::new();
        for (port, proto, description) in &self.rules {
            if seen.contains(&(port, proto)) {
                continue;
            }
            seen.push((port, proto));
            let d = description.map_or(String::new(), |d| format!(", description: {d}"));
            t += &format!("      - {{ proto: {proto}, ports: {port}, from: [role:client]{d} }}\n");
        }
        if self.egress {
            t += "    egress:\n      - { proto: tcp, ports: 443, to: [0.0.0.0/0], allow_world: true }\n";
        }
        t += "  client:\n    ingress:\n      - { proto: icmp, from: [role:server] }\n";
        t += &format!("iam:\n  instance_role:\n    name: {}\n", self.role_name);
        t += &format!("    managed_policies: [{}]\n", self.policies.join(", "));
        t += &format!("captures:\n  bucket: {}\n", self.bucket.unwrap_or("auto"));
        t += "instances:\n";
        t += &format!(
            "  - {{ name: server, role: server, type: {}, image: {}, services: [{}] }}\n",
            self.server_type,
            self.image,
            self.services.join(", ")
        );
        t += &format!(
            "  - {{ name: client, role: client, count: {}, type: t3.micro, image: ubuntu-24.04, subnet: s{client_subnet} }}\n",
            self.clients
        );
        if let Some(l) = self.lifetime {
            t += &format!("lifetime: {l}\n");
        }
        t
    }

    fn desired(&self) -> Desired {
        let text = self.text();
        let checked = check(&text);
        let Some(t) = checked.topology else {
            let errors: Vec<String> = checked
                .diagnostics
                .iter()
                .map(|d| d.message.clone())
                .collect();
            panic!("generated an invalid lab:\n{text}\n{}", errors.join("\n"));
        };
        let ctx = Context {
            account: Some("123456789012".into()),
            region: Some("eu-north-1".into()),
            labnet_sha256: Some(format!("{:064x}", self.labnet + 1)),
            ..Context::default()
        };
        expand(&t, &ctx)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_plan_from_one_lab_to_another_reaches_it_safely(
        a in knobs(),
        b in knobs(),
        reverse in any::<bool>(),
        captures in 0usize..3,
    ) {
        let (a, b) = (a.desired(), b.desired());
        let mut aws = Aws::default();
        reach(&mut aws, &a, reverse).map_err(TestCaseError::fail)?;
        // Instances have written captures to the lab's bucket.
        for bucket in aws.objs.iter_mut().filter(|o| o.address.kind == Kind::Bucket) {
            bucket.refs.captures = captures;
        }
        reach(&mut aws, &b, reverse).map_err(TestCaseError::fail)?;
        let held: usize = aws.of_kind(Kind::Bucket).map(|o| o.refs.captures).sum();
        prop_assert_eq!(held, captures, "captures survive");
        // And back, and then nothing.
        reach(&mut aws, &a, !reverse).map_err(TestCaseError::fail)?;
        let nothing = Desired { lab: a.lab.clone(), resources: vec![], user_data: BTreeMap::new() };
        for bucket in aws.objs.iter_mut().filter(|o| o.address.kind == Kind::Bucket) {
            bucket.refs.captures = 0;
        }
        reach(&mut aws, &nothing, reverse).map_err(TestCaseError::fail)?;
        prop_assert!(aws.objs.is_empty(), "left after down: {:?}", aws.objs);
    }
}

// ---------------------------------------------------------------------------------
// The model's rules, each refused on its own

fn default_lab() -> Desired {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../topology.yaml");
    let text = std::fs::read_to_string(path).expect("topology.yaml");
    let t = check(&text).topology.expect("valid");
    let ctx = Context {
        account: Some("123456789012".into()),
        region: Some("eu-north-1".into()),
        labnet_sha256: Some("ab".repeat(32)),
        ..Context::default()
    };
    expand(&t, &ctx)
}

/// The default lab, up in the model.
fn up() -> (Aws, Desired) {
    let d = default_lab();
    let mut aws = Aws::default();
    reach(&mut aws, &d, false).expect("the default lab comes up");
    (aws, d)
}

fn obj(aws: &Aws, kind: Kind) -> Obj {
    aws.of_kind(kind).next().cloned().expect("present")
}

#[test]
fn a_profile_can_hold_only_an_existing_role() {
    let (aws, _) = up();
    assert!(aws.check_profile_role("netlab-DynamoDBAccessEC2").is_ok());
    let refused = aws.check_profile_role("netlab-Nobody").unwrap_err();
    assert!(refused.contains("NoSuchEntity"), "{refused}");
}

#[test]
fn an_instance_needs_an_existing_subnet_group_and_profile() {
    let (aws, _) = up();
    let (subnet, group) = (
        obj(&aws, Kind::Subnet).id,
        obj(&aws, Kind::SecurityGroup).id,
    );
    let profile = "netlab-DynamoDBAccessEC2";
    assert!(aws.check_launch(&subnet, &group, profile).is_ok());
    assert!(aws.check_launch("subnet-gone", &group, profile).is_err());
    assert!(aws.check_launch(&subnet, "sg-gone", profile).is_err());
    assert!(aws.check_launch(&subnet, &group, "netlab-Nobody").is_err());
}

#[test]
fn a_group_named_by_a_rule_must_exist() {
    let (aws, d) = up();
    let plan = diff(&d, &aws.observe(labnet_key(&d).as_deref()));
    let known = Known::seed(&plan, &aws.observe(labnet_key(&d).as_deref()));
    let naming = |role: &str| Permission {
        peer: PermissionPeer::Role(role.into()),
        ..Permission::all_outbound()
    };
    assert!(aws.check_rule_peers(&known, &[naming("client")]).is_ok());
    assert!(aws.check_rule_peers(&known, &[naming("ghost")]).is_err());
    // Nor can a group be deleted while another's rule names it.
    let client = aws
        .of_kind(Kind::SecurityGroup)
        .find(|g| g.address.name == "client")
        .cloned()
        .expect("client group");
    assert!(aws.check_delete(&client).is_err());
}

#[test]
fn a_subnet_or_vpc_with_dependents_cannot_be_deleted() {
    let (aws, _) = up();
    let refused = aws.check_delete(&obj(&aws, Kind::Subnet)).unwrap_err();
    assert!(refused.contains("DependencyViolation"), "{refused}");
    let refused = aws.check_delete(&obj(&aws, Kind::Vpc)).unwrap_err();
    assert!(refused.contains("DependencyViolation"), "{refused}");
}

#[test]
fn a_zone_with_records_cannot_be_deleted() {
    let (aws, _) = up();
    let refused = aws.check_delete(&obj(&aws, Kind::HostedZone)).unwrap_err();
    assert!(refused.contains("HostedZoneNotEmpty"), "{refused}");
}

#[test]
fn a_non_empty_bucket_cannot_be_deleted() {
    let (mut aws, _) = up();
    // It holds the labnet binary.
    let refused = aws.check_delete(&obj(&aws, Kind::Bucket)).unwrap_err();
    assert!(refused.contains("BucketNotEmpty"), "{refused}");
    aws.objs.retain(|o| o.address.kind != Kind::Artifact);
    assert!(aws.check_delete(&obj(&aws, Kind::Bucket)).is_ok());
    aws.objs
        .iter_mut()
        .filter(|o| o.address.kind == Kind::Bucket)
        .for_each(|b| b.refs.captures = 1);
    assert!(aws.check_delete(&obj(&aws, Kind::Bucket)).is_err());
}

#[test]
fn a_running_instance_never_loses_its_role_or_its_bucket() {
    let (mut aws, _) = up();
    assert!(aws.check_invariants().is_ok());
    let mut broken = aws.clone();
    broken.objs.retain(|o| o.address.kind != Kind::IamRole);
    assert!(
        broken
            .check_invariants()
            .unwrap_err()
            .contains("holding no role")
    );
    aws.objs.retain(|o| o.address.kind != Kind::Bucket);
    assert!(
        aws.check_invariants()
            .unwrap_err()
            .contains("missing bucket")
    );
}

/// The renames that once broke `up`, each as one plan against the model.
#[test]
fn renames_of_role_bucket_and_subnet_converge_in_one_run() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../topology.yaml"))
        .expect("topology.yaml");
    for (from, to) in [
        ("name: DynamoDBAccessEC2", "name: DynamoDBAccessEC3"),
        ("bucket: auto", "bucket: netlab-renamed"),
        ("cidr: 10.0.1.0/24", "cidr: 10.0.2.0/24"),
        ("description: ping }", "description: echo }"),
    ] {
        let (mut aws, _) = up();
        let edited = text.replace(from, to);
        assert_ne!(edited, text, "{from} is in the default lab");
        let t = check(&edited).topology.expect("valid");
        let ctx = Context {
            account: Some("123456789012".into()),
            region: Some("eu-north-1".into()),
            labnet_sha256: Some("ab".repeat(32)),
            ..Context::default()
        };
        let d = expand(&t, &ctx);
        reach(&mut aws, &d, false).unwrap_or_else(|e| panic!("{to}: {e}"));
    }
}
