//! `diff`, `schedule` and `render` against hand-built observations.
//!
//! The desired state comes from the repository's `topology.yaml` (or a small inline
//! topology); the observed state starts as an exact copy of it, "AWS matches", and each
//! test then breaks AWS in one specific way and checks the plan that repairs it: the
//! action per address, the attribute that drives it, the cascade to dependents, and the
//! order in which `schedule` would run the steps.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use labctl_core::desired::{Permission, PermissionPeer};
use labctl_core::plan::{Action, Found, Observation, Observed, Plan, Step, diff, render, schedule};
use labctl_core::topology::{PortRange, Proto};
use labctl_core::{Address, Context, Desired, Kind, Spec, check, expand};

// ---------------------------------------------------------------------------------
// Helpers

/// The default lab's image reference: the plan compares references, not the AMI they
/// resolve to today.
const IMAGE: &str = "ubuntu-24.04";

const KINDS: [Kind; 13] = [
    Kind::Vpc,
    Kind::Subnet,
    Kind::InternetGateway,
    Kind::RouteTable,
    Kind::SecurityGroup,
    Kind::SecurityGroupRules,
    Kind::IamRole,
    Kind::InstanceProfile,
    Kind::Bucket,
    Kind::Artifact,
    Kind::HostedZone,
    Kind::Instance,
    Kind::DnsRecord,
];

/// Two subnets, a zone, two roles and one instance per subnet.
const TINY: &str = "\
name: tiny
network:
  cidr: 10.1.0.0/16
  subnets:
    - { name: pub, cidr: 10.1.1.0/24, public: true }
    - { name: back, cidr: 10.1.2.0/24, public: true }
dns:
  zone: tiny.test
roles:
  web:
    ingress:
      - { proto: tcp, ports: 80, from: [role:db] }
  db:
    ingress:
      - { proto: tcp, ports: 5432, from: [role:web] }
instances:
  - { name: web, role: web, type: t3.micro, image: ubuntu-24.04 }
  - { name: db, role: db, type: t3.small, image: ami-0fedcba9876543210, subnet: back }
";

/// One public subnet, no DNS: a small lab for whole-plan snapshots.
const NO_DNS: &str = "\
name: nodns
network:
  cidr: 10.2.0.0/16
  subnets:
    - { name: lab, cidr: 10.2.1.0/24, public: true }
roles:
  box: {}
instances:
  - { name: box, role: box, type: t3.micro, image: ubuntu-24.04 }
";

fn ctx() -> Context {
    Context {
        account: Some("123456789012".into()),
        region: Some("eu-north-1".into()),
        labnet_sha256: Some(LABNET_SHA.into()),
        ..Context::default()
    }
}

/// The labnet binary's digest the plan is made with.
const LABNET_SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn default_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../topology.yaml");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn desired_from(text: &str) -> Desired {
    let checked = check(text);
    let Some(t) = checked.topology else {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.pos, d.message))
            .collect();
        panic!("topology is invalid:\n{}", errors.join("\n"));
    };
    expand(&t, &ctx())
}

fn default_lab() -> Desired {
    desired_from(&default_text())
}

/// `text` with `from` replaced by `to`; `from` must occur.
fn edit_text(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "topology text lacks {from:?}");
    text.replacen(from, to, 1)
}

/// The default lab as a previous `up` left it: a third client and a role `old` that the
/// server admitted ssh from. Diffing it against the default lab removes exactly
/// `instance/client-3`, `dns-record/client-3`, `sg/old` and `sg-rules/old`, and drops
/// one ingress rule from `sg-rules/server`.
fn bigger_lab() -> Desired {
    let text = default_text();
    let text = edit_text(&text, "count: 2", "count: 3");
    let text = edit_text(
        &text,
        "roles:\n  server:\n    ingress:\n",
        "roles:\n  server:\n    ingress:\n      - { proto: tcp, ports: 22, from: [role:old], description: ssh }\n",
    );
    let text = edit_text(
        &text,
        "\niam:\n",
        "  old:\n    ingress:\n      - { proto: tcp, ports: 22, from: [role:server] }\n\niam:\n",
    );
    desired_from(&text)
}

fn addr(s: &str) -> Address {
    let (kind, name) = s.split_once('/').unwrap_or((s, ""));
    let kind = KINDS
        .into_iter()
        .find(|k| k.as_str() == kind)
        .unwrap_or_else(|| panic!("unknown kind in {s}"));
    Address::new(kind, name)
}

/// A made-up AWS id in the style of the resource's kind.
fn made_up_id(kind: Kind, i: usize) -> String {
    let prefix = match kind {
        Kind::Vpc => "vpc",
        Kind::Subnet => "subnet",
        Kind::InternetGateway => "igw",
        Kind::RouteTable => "rtb",
        Kind::SecurityGroup | Kind::SecurityGroupRules => "sg",
        Kind::IamRole => "role",
        Kind::InstanceProfile => "profile",
        Kind::Bucket => "bucket",
        Kind::HostedZone => "Z",
        Kind::Instance => "i",
        Kind::DnsRecord => "rec",
        Kind::Artifact => "artifacts/labnet/sha",
    };
    format!("{prefix}-{:04x}", 0xa00 + i)
}

/// What AWS would report if it matched `desired` exactly.
fn matching(desired: &Desired) -> Observed {
    let id = |i: usize, a: &Address| {
        // A group's rules are found on the group itself.
        let group = Address::new(Kind::SecurityGroup, &a.name);
        match desired.resources.iter().position(|r| r.address == group) {
            Some(g) if a.kind == Kind::SecurityGroupRules => made_up_id(Kind::SecurityGroup, g),
            _ => made_up_id(a.kind, i),
        }
    };
    Observed {
        resources: desired
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| Found {
                address: r.address.clone(),
                id: id(i, &r.address),
                name: r.name.clone(),
                spec: r.spec.clone(),
                observation: Observation::default(),
            })
            .collect(),
    }
}

fn found_mut<'a>(o: &'a mut Observed, a: &str) -> &'a mut Found {
    let a = addr(a);
    o.resources
        .iter_mut()
        .find(|f| f.address == a)
        .unwrap_or_else(|| panic!("{a} not observed"))
}

fn edit(o: &mut Observed, a: &str, f: impl FnOnce(&mut Spec)) {
    f(&mut found_mut(o, a).spec);
}

fn remove(o: &mut Observed, a: &str) {
    let a = addr(a);
    let before = o.resources.len();
    o.resources.retain(|f| f.address != a);
    assert_eq!(o.resources.len(), before - 1, "{a} observed once");
}

/// The plan as `(address, action)` pairs, in plan order.
fn summary(plan: &Plan) -> Vec<(String, Action)> {
    plan.changes
        .iter()
        .map(|c| (c.address.to_string(), c.action))
        .collect()
}

fn expect(list: &[(&str, Action)]) -> Vec<(String, Action)> {
    list.iter().map(|(a, x)| ((*a).to_owned(), *x)).collect()
}

fn attr_names(plan: &Plan, a: &str) -> Vec<&'static str> {
    change(plan, a).attributes.iter().map(|x| x.name).collect()
}

fn change<'a>(plan: &'a Plan, a: &str) -> &'a labctl_core::plan::Change {
    plan.get(&addr(a))
        .unwrap_or_else(|| panic!("no change for {a} in\n{}", render(plan)))
}

fn step_address(step: &Step) -> &Address {
    step.address()
}

fn is_teardown(step: &Step) -> bool {
    matches!(step, Step::Delete(_) | Step::Revoke(_))
}

fn stage_of(stages: &[Vec<Step>], step: &Step) -> usize {
    stages
        .iter()
        .position(|s| s.contains(step))
        .unwrap_or_else(|| panic!("{step:?} not scheduled in {stages:#?}"))
}

fn depends(graphs: &[&Desired], child: &Address, parent: &Address) -> bool {
    graphs.iter().any(|g| {
        g.get(child)
            .is_some_and(|r| r.depends_on().contains(parent))
    })
}

/// The properties every schedule must have. `graphs` are the dependency graphs that
/// explain the deletions (the desired state, and the state AWS was built from); the
/// last one is the desired state.
fn check_schedule(plan: &Plan, stages: &[Vec<Step>], graphs: &[&Desired]) {
    let desired = graphs.last().expect("a desired state");
    assert!(stages.iter().all(|s| !s.is_empty()), "empty stage");

    // Exactly the steps the plan calls for, each once.
    let mut expected: Vec<Step> = Vec::new();
    for c in &plan.changes {
        let a = c.address.clone();
        if c.goes_last(desired) {
            expected.push(Step::Retire(a.clone()));
            if c.action == Action::Replace {
                expected.push(Step::Create(a));
            }
            continue;
        }
        match c.action {
            Action::Create => expected.push(Step::Create(a)),
            Action::Update if a.kind == Kind::SecurityGroupRules => {
                expected.push(Step::Revoke(a.clone()));
                expected.push(Step::Update(a));
            }
            Action::Update => expected.push(Step::Update(a)),
            Action::Replace => {
                expected.push(Step::Delete(a.clone()));
                expected.push(Step::Create(a));
            }
            Action::Delete => expected.push(Step::Delete(a)),
        }
    }
    let all: Vec<&Step> = stages.iter().flatten().collect();
    let unique: HashSet<&Step> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a step appears twice: {stages:#?}");
    let expected: HashSet<&Step> = expected.iter().collect();
    assert_eq!(unique, expected, "scheduled steps differ from the plan's");

    // Every teardown stage comes before every build stage; no stage mixes them.
    let phases: Vec<bool> = stages
        .iter()
        .map(|s| {
            let teardown = s.iter().all(is_teardown);
            assert!(
                teardown || !s.iter().any(is_teardown),
                "stage mixes deletions and creations: {s:?}"
            );
            teardown
        })
        .collect();
    let first_build = phases.iter().position(|t| !t).unwrap_or(phases.len());
    // Originals of replacements created first go after every creation.
    let retiring = |s: &Vec<Step>| s.iter().all(|x| matches!(x, Step::Retire(_)));
    let first_retire = stages
        .iter()
        .position(retiring)
        .unwrap_or(stages.len())
        .max(first_build);
    assert!(
        stages[first_retire..].iter().all(retiring),
        "a creation after a retirement: {stages:#?}"
    );
    assert!(
        phases[first_build..first_retire].iter().all(|t| !t),
        "a deletion after a creation: {stages:#?}"
    );

    // Teardown: a thing is gone (or no longer referenced) before what it depends on
    // is deleted; so nothing is deleted while a later stage still removes a dependent.
    for (i, stage) in stages[..first_build].iter().enumerate() {
        for parent in stage.iter().filter(|s| matches!(s, Step::Delete(_))) {
            for later in stages[i..first_build].iter().flatten() {
                assert!(
                    !depends(graphs, step_address(later), step_address(parent)),
                    "{later:?} runs at or after {parent:?}, which it depends on"
                );
            }
        }
    }

    // Build: stages follow the desired state's waves, so every dependency that is
    // created or updated is in an earlier stage.
    let wave_of: BTreeMap<&Address, usize> = desired
        .waves()
        .iter()
        .enumerate()
        .flat_map(|(w, rs)| rs.iter().map(move |r| (&r.address, w)))
        .collect();
    let mut last_wave = None;
    for (i, stage) in stages
        .iter()
        .enumerate()
        .take(first_retire)
        .skip(first_build)
    {
        let waves: BTreeSet<usize> = stage.iter().map(|s| wave_of[step_address(s)]).collect();
        assert_eq!(waves.len(), 1, "stage {i} spans waves: {stage:?}");
        let wave = waves.first().copied();
        assert!(wave > last_wave, "stage {i} goes back to wave {wave:?}");
        last_wave = wave;
        for step in stage {
            let r = desired
                .get(step_address(step))
                .expect("built steps are desired");
            for dep in &r.depends_on() {
                for later in stages[i..first_retire]
                    .iter()
                    .flatten()
                    .filter(|s| !is_teardown(s))
                {
                    assert_ne!(
                        step_address(later),
                        dep,
                        "{step:?} is scheduled no later than its dependency {dep}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// 1. Nothing exists

#[test]
fn empty_observed_creates_everything_in_dependency_order() {
    let d = default_lab();
    let plan = diff(&d, &Observed::default());
    let order: Vec<String> = plan.changes.iter().map(|c| c.address.to_string()).collect();
    assert_eq!(
        order,
        [
            "vpc",
            "subnet/lab",
            "igw",
            "route-table/public",
            "sg/server",
            "sg/client",
            "sg-rules/server",
            "sg-rules/client",
            "bucket/captures",
            "iam-role",
            "instance-profile",
            "artifact/labnet",
            "dns-zone",
            "instance/server",
            "dns-record/server",
            "instance/client-1",
            "dns-record/client-1",
            "instance/client-2",
            "dns-record/client-2",
        ]
    );
    assert_eq!(plan.count(Action::Create), d.resources.len());
    assert_eq!(plan.unchanged, 0);
    assert!(!plan.is_destructive());
    for (i, c) in plan.changes.iter().enumerate() {
        assert_eq!(c.action, Action::Create, "{}", c.address);
        assert_eq!(c.id, None, "{}", c.address);
        assert!(c.observed.is_none() && c.desired.is_some(), "{}", c.address);
        assert!(
            c.attributes
                .iter()
                .all(|a| a.from.is_none() && a.to.is_some())
        );
        let r = d.get(&c.address).expect("desired");
        for dep in &r.depends_on() {
            let j = plan.changes.iter().position(|x| &x.address == dep);
            assert!(
                j.is_some_and(|j| j < i),
                "{} before its dependency {dep}",
                c.address
            );
        }
    }
    let server = change(&plan, "instance/server");
    let image = server
        .attributes
        .iter()
        .find(|a| a.name == "image")
        .expect("image");
    assert_eq!(
        image.to.as_ref().map(ToString::to_string).as_deref(),
        Some(IMAGE)
    );
    let bucket = change(&plan, "bucket/captures");
    assert_eq!(bucket.name, "netlab-captures-123456789012-eu-north-1");

    let stages = schedule(&plan, &d);
    assert_eq!(stages.len(), d.waves().len());
    assert!(
        stages
            .iter()
            .flatten()
            .all(|s| matches!(s, Step::Create(_)))
    );
    check_schedule(&plan, &stages, &[&d]);

    insta::assert_snapshot!("create_all", render(&plan));
}

// ---------------------------------------------------------------------------------
// 2. AWS matches

#[test]
fn observed_equal_to_desired_is_an_empty_plan() {
    for d in [default_lab(), desired_from(TINY)] {
        let mut observed = matching(&d);
        // The order AWS lists things in does not matter.
        observed.resources.reverse();
        let plan = diff(&d, &observed);
        assert!(plan.is_empty(), "{}", render(&plan));
        assert_eq!(plan.unchanged, d.resources.len());
        assert!(!plan.is_destructive());
        assert!(schedule(&plan, &d).is_empty());
        assert_eq!(
            render(&plan),
            format!(
                "No changes: lab `{}` matches the topology ({} resources).\n",
                d.lab,
                d.resources.len()
            )
        );
    }
    assert_eq!(default_lab().resources.len(), 19);
}

// ---------------------------------------------------------------------------------
// 3. Drift

#[test]
fn missing_ingress_rule_updates_the_rules_in_place() {
    let d = default_lab();
    let mut observed = matching(&d);
    edit(&mut observed, "sg-rules/server", |spec| {
        let Spec::SecurityGroupRules { ingress, .. } = spec else {
            panic!("not rules")
        };
        let before = ingress.len();
        ingress.retain(|p| {
            p.ports
                != Some(PortRange {
                    from: 8080,
                    to: 8080,
                })
        });
        assert_eq!(ingress.len(), before - 1);
    });
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[("sg-rules/server", Action::Update)])
    );
    assert_eq!(attr_names(&plan, "sg-rules/server"), ["ingress"]);
    let c = change(&plan, "sg-rules/server");
    let ingress = &c.attributes[0];
    assert!(!ingress.forces_replacement);
    assert!(
        !ingress
            .from
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            .unwrap()
            .contains("tcp/8080 role:client")
    );
    assert!(
        ingress
            .to
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            .unwrap()
            .contains("tcp/8080 role:client")
    );
    assert_eq!(
        c.id,
        Some(found_mut(&mut observed, "sg-rules/server").id.clone())
    );
    assert_eq!(plan.unchanged, d.resources.len() - 1);
    assert!(!plan.is_destructive());
    insta::assert_snapshot!("drift_missing_rule", render(&plan));
}

#[test]
fn extra_ingress_rule_updates_the_rules_in_place() {
    let d = default_lab();
    let mut observed = matching(&d);
    edit(&mut observed, "sg-rules/client", |spec| {
        let Spec::SecurityGroupRules { ingress, .. } = spec else {
            panic!("not rules")
        };
        ingress.push(Permission {
            proto: Proto::Tcp,
            ports: Some(PortRange { from: 22, to: 22 }),
            peer: PermissionPeer::Cidr("203.0.113.7/32".parse().unwrap()),
            description: None,
        });
        ingress.sort();
    });
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[("sg-rules/client", Action::Update)])
    );
    assert_eq!(attr_names(&plan, "sg-rules/client"), ["ingress"]);
    let ingress = &change(&plan, "sg-rules/client").attributes[0];
    assert!(
        ingress
            .from
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            .unwrap()
            .contains("tcp/22 203.0.113.7/32")
    );
    assert_eq!(
        ingress.to.as_ref().map(ToString::to_string).as_deref(),
        Some("icmp role:server \"ping\"")
    );
    assert!(!plan.is_destructive());

    // The unwanted permission is revoked before anything else runs, then the rules
    // are brought up to date.
    let stages = schedule(&plan, &d);
    assert_eq!(
        stages,
        [
            vec![Step::Revoke(addr("sg-rules/client"))],
            vec![Step::Update(addr("sg-rules/client"))],
        ]
    );
    insta::assert_snapshot!("drift_extra_rule", render(&plan));
}

#[test]
fn deleted_dns_record_is_created_and_nothing_else_changes() {
    let d = default_lab();
    let mut observed = matching(&d);
    remove(&mut observed, "dns-record/client-1");
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[("dns-record/client-1", Action::Create)])
    );
    assert_eq!(
        attr_names(&plan, "dns-record/client-1"),
        ["record", "ttl", "target"]
    );
    assert_eq!(plan.unchanged, d.resources.len() - 1);
    assert!(!plan.is_destructive());
    insta::assert_snapshot!("drift_missing_record", render(&plan));
}

#[test]
fn missing_instance_is_created_and_its_record_updated() {
    let d = default_lab();
    let mut observed = matching(&d);
    remove(&mut observed, "instance/client-2");
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("instance/client-2", Action::Create),
            ("dns-record/client-2", Action::Update),
        ])
    );
    let record = change(&plan, "dns-record/client-2");
    assert!(record.attributes.is_empty());
    assert!(record.id.is_some());
    let reason = record.reason.as_deref().expect("a reason");
    assert!(reason.contains("instance/client-2"), "{reason}");
    assert!(reason.contains("created"), "{reason}");
    assert_eq!(change(&plan, "instance/client-2").reason, None);
    assert_eq!(plan.unchanged, d.resources.len() - 2);
    assert!(!plan.is_destructive());
    let stages = schedule(&plan, &d);
    assert_eq!(
        stages,
        [
            vec![Step::Create(addr("instance/client-2"))],
            vec![Step::Update(addr("dns-record/client-2"))],
        ]
    );
    insta::assert_snapshot!("drift_missing_instance", render(&plan));
}

// ---------------------------------------------------------------------------------
// 4. Instances

fn instance_field(
    o: &mut Observed,
    a: &str,
    f: impl FnOnce(&mut String, &mut String, &mut String, &mut bool),
) {
    edit(o, a, |spec| {
        let Spec::Instance {
            instance_type,
            image,
            user_data,
            running,
            ..
        } = spec
        else {
            panic!("not an instance")
        };
        f(instance_type, image, user_data, running);
    });
}

#[test]
fn instance_type_change_updates_in_place() {
    let d = default_lab();
    let mut observed = matching(&d);
    instance_field(&mut observed, "instance/client-1", |ty, _, _, _| {
        *ty = "t3.small".into()
    });
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[("instance/client-1", Action::Update)])
    );
    let a = &change(&plan, "instance/client-1").attributes;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].name, "type");
    assert_eq!(
        a[0].from.as_ref().map(ToString::to_string).as_deref(),
        Some("t3.small")
    );
    assert_eq!(
        a[0].to.as_ref().map(ToString::to_string).as_deref(),
        Some("t3.micro")
    );
    assert!(!a[0].forces_replacement);
    assert!(!plan.is_destructive());
}

#[test]
fn image_change_replaces_the_instance_and_updates_its_record() {
    let d = default_lab();
    let mut observed = matching(&d);
    instance_field(&mut observed, "instance/server", |_, image, _, _| {
        *image = "ami-0aaaaaaaaaaaaaaaa".into();
    });
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("instance/server", Action::Replace),
            ("dns-record/server", Action::Update),
        ])
    );
    let a = &change(&plan, "instance/server").attributes;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].name, "image");
    assert!(a[0].forces_replacement);
    assert_eq!(
        a[0].from.as_ref().map(ToString::to_string).as_deref(),
        Some("ami-0aaaaaaaaaaaaaaaa")
    );
    assert_eq!(
        a[0].to.as_ref().map(ToString::to_string).as_deref(),
        Some(IMAGE)
    );
    let reason = change(&plan, "dns-record/server")
        .reason
        .as_deref()
        .expect("reason");
    assert!(
        reason.contains("instance/server") && reason.contains("replaced"),
        "{reason}"
    );
    assert!(plan.is_destructive());
    assert_eq!(plan.unchanged, d.resources.len() - 2);

    let stages = schedule(&plan, &d);
    assert_eq!(
        stages,
        [
            vec![Step::Delete(addr("instance/server"))],
            vec![Step::Create(addr("instance/server"))],
            vec![Step::Update(addr("dns-record/server"))],
        ]
    );
    check_schedule(&plan, &stages, &[&d]);
    insta::assert_snapshot!("replace_image", render(&plan));
}

#[test]
fn user_data_change_replaces_the_instance() {
    let d = default_lab();
    let mut observed = matching(&d);
    instance_field(&mut observed, "instance/client-2", |_, _, user_data, _| {
        *user_data = "0000000000000000".into();
    });
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("instance/client-2", Action::Replace),
            ("dns-record/client-2", Action::Update),
        ])
    );
    let a = &change(&plan, "instance/client-2").attributes;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].name, "user_data");
    assert!(a[0].forces_replacement);
    assert_eq!(
        a[0].from.as_ref().map(ToString::to_string).as_deref(),
        Some("0000000000000000")
    );
    assert!(plan.is_destructive());
}

#[test]
fn a_new_labnet_build_uploads_it_replaces_every_instance_and_deletes_the_old_one() {
    let before = default_lab();
    let mut observed = matching(&before);
    // What the bucket holds: the binary the lab was built with, and an older one.
    let old = observed
        .resources
        .iter()
        .position(|f| f.address == addr("artifact/labnet"))
        .expect("artifact observed");
    observed.resources[old].address = addr(&format!("artifact/labnet-{}", &LABNET_SHA[..12]));
    let stale = Found {
        address: addr("artifact/labnet-ffffffffffff"),
        id: "artifacts/labnet/ffff".into(),
        name: "artifacts/labnet/ffff".into(),
        spec: Spec::Artifact {
            bucket: "netlab-captures-123456789012-eu-north-1".into(),
            sha256: "f".repeat(64),
        },
        observation: Observation::default(),
    };
    observed.resources.push(stale);
    let after = expand(
        &check(&default_text()).topology.expect("valid"),
        &Context {
            labnet_sha256: Some("9".repeat(64)),
            ..ctx()
        },
    );
    let artifact = after
        .resources
        .iter()
        .find(|r| r.address == addr("artifact/labnet"))
        .expect("artifact desired");
    assert_eq!(
        artifact.name,
        format!("artifacts/labnet/{}", "9".repeat(64))
    );
    let plan = diff(&after, &observed);
    let s = summary(&plan);
    assert!(
        s.contains(&("artifact/labnet".into(), Action::Create)),
        "{s:?}"
    );
    for gone in [
        "artifact/labnet-0123456789ab",
        "artifact/labnet-ffffffffffff",
    ] {
        assert!(s.contains(&(gone.into(), Action::Delete)), "{s:?}");
    }
    let instances: Vec<_> = after
        .resources
        .iter()
        .filter(|r| r.address.kind == Kind::Instance)
        .collect();
    assert!(!instances.is_empty());
    for inst in instances {
        let c = change(&plan, &inst.address.to_string());
        assert_eq!(c.action, Action::Replace, "{}", inst.address);
        assert!(inst.depends_on().contains(&addr("artifact/labnet")));
        let user_data = &after.user_data[&inst.address.name];
        assert!(user_data.contains(&format!("LABNET_SHA256=\"{}\"", "9".repeat(64))));
    }
    let stages = schedule(&plan, &after);
    check_schedule(&plan, &stages, &[&before, &after]);
}

#[test]
fn stopped_instance_is_started_not_replaced() {
    let d = default_lab();
    let mut observed = matching(&d);
    instance_field(&mut observed, "instance/client-1", |_, _, _, running| {
        *running = false
    });
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[("instance/client-1", Action::Update)])
    );
    let a = &change(&plan, "instance/client-1").attributes;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].name, "running");
    assert_eq!(
        a[0].from.as_ref().map(ToString::to_string).as_deref(),
        Some("false")
    );
    assert_eq!(
        a[0].to.as_ref().map(ToString::to_string).as_deref(),
        Some("true")
    );
    assert!(!a[0].forces_replacement);
    assert!(!plan.is_destructive());
    assert_eq!(
        schedule(&plan, &d),
        [vec![Step::Update(addr("instance/client-1"))]]
    );
}

// ---------------------------------------------------------------------------------
// 5. Network replacement

fn set_cidr(o: &mut Observed, a: &str, to: &str) {
    edit(o, a, |spec| match spec {
        Spec::Vpc { cidr, .. } | Spec::Subnet { cidr, .. } => *cidr = to.parse().expect("a CIDR"),
        other => panic!("no cidr on {other:?}"),
    });
}

#[test]
fn vpc_cidr_change_replaces_everything_inside_the_vpc() {
    let d = default_lab();
    let mut observed = matching(&d);
    set_cidr(&mut observed, "vpc", "10.9.0.0/16");
    let plan = diff(&d, &observed);

    let vpc = change(&plan, "vpc");
    assert_eq!(vpc.action, Action::Replace);
    assert_eq!(vpc.attributes.len(), 1);
    assert_eq!(vpc.attributes[0].name, "cidr");
    assert!(vpc.attributes[0].forces_replacement);
    assert_eq!(vpc.reason, None);

    // (replaced, the parent named in the reason)
    for (a, parent) in [
        ("subnet/lab", "vpc"),
        ("igw", "vpc"),
        ("route-table/public", "vpc"),
        ("sg/server", "vpc"),
        ("sg/client", "vpc"),
        ("sg-rules/server", "sg/"),
        ("sg-rules/client", "sg/"),
        ("dns-zone", "vpc"),
        ("instance/server", "subnet/lab"),
        ("instance/client-1", "subnet/lab"),
        ("instance/client-2", "subnet/lab"),
        ("dns-record/server", "dns-zone"),
        ("dns-record/client-1", "dns-zone"),
        ("dns-record/client-2", "dns-zone"),
    ] {
        let c = change(&plan, a);
        assert_eq!(c.action, Action::Replace, "{a}");
        assert!(c.attributes.is_empty(), "{a}: its own attributes match");
        let reason = c
            .reason
            .as_deref()
            .unwrap_or_else(|| panic!("{a}: no reason"));
        assert!(
            reason.starts_with(parent) && reason.ends_with("is replaced"),
            "{a}: {reason}"
        );
    }
    for a in ["iam-role", "instance-profile", "bucket/captures"] {
        assert!(plan.get(&addr(a)).is_none(), "{a} lives outside the VPC");
    }
    assert_eq!(plan.count(Action::Replace), 15);
    assert_eq!(plan.count(Action::Create), 0);
    assert_eq!(plan.count(Action::Delete), 0);
    assert!(plan.is_destructive());

    // Changes stay in dependency order.
    for (i, c) in plan.changes.iter().enumerate() {
        for dep in &d.get(&c.address).expect("desired").depends_on() {
            if let Some(j) = plan.changes.iter().position(|x| &x.address == dep) {
                assert!(j < i, "{} listed before {dep}", c.address);
            }
        }
    }

    let stages = schedule(&plan, &d);
    check_schedule(&plan, &stages, &[&d]);
    let at = |s: Step| stage_of(&stages, &s);
    assert!(at(Step::Delete(addr("instance/server"))) < at(Step::Delete(addr("sg-rules/server"))));
    assert!(at(Step::Delete(addr("sg-rules/server"))) < at(Step::Delete(addr("sg/server"))));
    assert!(at(Step::Delete(addr("sg-rules/client"))) < at(Step::Delete(addr("sg/server"))));
    assert!(at(Step::Delete(addr("sg/client"))) < at(Step::Delete(addr("vpc"))));
    assert!(at(Step::Delete(addr("vpc"))) < at(Step::Create(addr("vpc"))));
    assert_eq!(
        at(Step::Create(addr("vpc"))),
        at(Step::Delete(addr("vpc"))) + 1
    );
}

/// Regression: the cascade once followed only a resource's first renewed dependency,
/// leaving records out of the plan when both their zone and instance were replaced.
/// A replaced zone must be emptied before it can be deleted, so its records are
/// replaced too (deleted from the old zone, created in the new one).
#[test]
fn vpc_cidr_change_replaces_the_dns_records_with_their_zone() {
    let d = default_lab();
    let mut observed = matching(&d);
    set_cidr(&mut observed, "vpc", "10.9.0.0/16");
    let plan = diff(&d, &observed);
    for name in ["server", "client-1", "client-2"] {
        let a = format!("dns-record/{name}");
        let c = plan
            .get(&addr(&a))
            .unwrap_or_else(|| panic!("{a} is not in the plan:\n{}", render(&plan)));
        assert_eq!(c.action, Action::Replace, "{a}");
        assert!(c.reason.is_some(), "{a}");
    }
    // Only the IAM role, the instance profile, the bucket and the binary in it are
    // untouched.
    assert_eq!(plan.unchanged, 4);
    let stages = schedule(&plan, &d);
    let records = stage_of(&stages, &Step::Create(addr("dns-record/server")));
    assert!(stage_of(&stages, &Step::Create(addr("instance/server"))) < records);
    assert!(stage_of(&stages, &Step::Create(addr("dns-zone"))) < records);
    let old_records = stage_of(&stages, &Step::Delete(addr("dns-record/server")));
    assert!(
        old_records < stage_of(&stages, &Step::Delete(addr("dns-zone"))),
        "records leave the old zone first"
    );
}

#[test]
fn vpc_replacement_renders_every_cascade() {
    let d = desired_from(NO_DNS);
    let mut observed = matching(&d);
    set_cidr(&mut observed, "vpc", "10.3.0.0/16");
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("vpc", Action::Replace),
            ("subnet/lab", Action::Replace),
            ("igw", Action::Replace),
            ("route-table/public", Action::Replace),
            ("sg/box", Action::Replace),
            ("sg-rules/box", Action::Replace),
            ("instance/box", Action::Replace),
        ])
    );
    assert_eq!(plan.unchanged, 4, "role, profile, bucket, binary");
    let stages = schedule(&plan, &d);
    check_schedule(&plan, &stages, &[&d]);
    insta::assert_snapshot!("replace_vpc", render(&plan));
}

#[test]
fn subnet_cidr_change_replaces_its_instances_only() {
    let d = desired_from(TINY);

    let mut observed = matching(&d);
    set_cidr(&mut observed, "subnet/back", "10.1.3.0/24");
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("subnet/back", Action::Replace),
            ("route-table/public", Action::Update),
            ("instance/db", Action::Replace),
            ("dns-record/db", Action::Update),
        ])
    );
    assert_eq!(attr_names(&plan, "subnet/back"), ["cidr"]);
    check_schedule(&plan, &schedule(&plan, &d), &[&d]);

    // The public subnet is also in the route table, which re-associates in place.
    let mut observed = matching(&d);
    set_cidr(&mut observed, "subnet/pub", "10.1.3.0/24");
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("subnet/pub", Action::Replace),
            ("route-table/public", Action::Update),
            ("instance/web", Action::Replace),
            ("dns-record/web", Action::Update),
        ])
    );
    let reason = change(&plan, "route-table/public")
        .reason
        .as_deref()
        .expect("reason");
    assert!(reason.contains("subnet/pub"), "{reason}");
    let stages = schedule(&plan, &d);
    check_schedule(&plan, &stages, &[&d]);
    assert_eq!(
        stages,
        [
            vec![Step::Delete(addr("instance/web"))],
            vec![Step::Delete(addr("subnet/pub"))],
            vec![Step::Create(addr("subnet/pub"))],
            vec![Step::Update(addr("route-table/public"))],
            vec![Step::Create(addr("instance/web"))],
            vec![Step::Update(addr("dns-record/web"))],
        ]
    );
}

#[test]
fn drift_and_a_replaced_parent_make_one_replacement() {
    let d = desired_from(TINY);
    let mut observed = matching(&d);
    set_cidr(&mut observed, "subnet/back", "10.1.3.0/24");
    instance_field(&mut observed, "instance/db", |ty, _, _, _| {
        *ty = "t3.nano".into()
    });
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("subnet/back", Action::Replace),
            ("route-table/public", Action::Update),
            ("instance/db", Action::Replace),
            ("dns-record/db", Action::Update),
        ])
    );
    // The instance keeps its own difference, which alone would not replace it.
    let db = change(&plan, "instance/db");
    assert_eq!(attr_names(&plan, "instance/db"), ["type"]);
    assert!(!db.attributes[0].forces_replacement);
    assert_eq!(db.reason.as_deref(), Some("subnet/back is replaced"));
    let text = render(&plan);
    assert!(text.contains("      type: t3.nano -> t3.small\n"), "{text}");
    assert!(!text.contains("t3.small  # forces replacement"), "{text}");
}

// ---------------------------------------------------------------------------------
// 6. Removed from the topology, and duplicates

#[test]
fn resources_removed_from_the_topology_are_deleted_last_in_reverse_order() {
    let before = bigger_lab();
    let d = default_lab();
    let mut observed = matching(&before);
    // Something to create as well, so the deletions have something to come after.
    remove(&mut observed, "instance/client-1");
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("sg-rules/server", Action::Update),
            ("instance/client-1", Action::Create),
            ("dns-record/client-1", Action::Update),
            ("dns-record/client-3", Action::Delete),
            ("sg-rules/old", Action::Delete),
            ("instance/client-3", Action::Delete),
            ("sg/old", Action::Delete),
        ])
    );
    for a in [
        "dns-record/client-3",
        "instance/client-3",
        "sg-rules/old",
        "sg/old",
    ] {
        let c = change(&plan, a);
        assert_eq!(c.reason, None, "{a}");
        assert!(
            c.id.is_some() && c.desired.is_none() && c.observed.is_some(),
            "{a}"
        );
        assert!(!c.attributes.is_empty(), "{a}");
        assert!(
            c.attributes
                .iter()
                .all(|x| x.from.is_some() && x.to.is_none()),
            "{a}"
        );
    }
    let rules = change(&plan, "sg-rules/server");
    assert_eq!(attr_names(&plan, "sg-rules/server"), ["ingress"]);
    assert!(
        rules.attributes[0]
            .from
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            .unwrap()
            .contains("tcp/22 role:old")
    );
    assert!(plan.is_destructive());
    assert_eq!(plan.unchanged, d.resources.len() - 3);
    insta::assert_snapshot!("delete_removed", render(&plan));
}

#[test]
fn duplicate_at_an_existing_address_is_deleted_once() {
    let d = default_lab();
    let mut observed = matching(&d);
    let mut twin = found_mut(&mut observed, "instance/server").clone();
    twin.id = "i-0duplicate".into();
    observed.resources.push(twin);
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[("instance/server", Action::Delete)])
    );
    let c = change(&plan, "instance/server");
    assert_eq!(c.id.as_deref(), Some("i-0duplicate"));
    let reason = c.reason.as_deref().expect("reason");
    assert!(reason.contains("duplicate"), "{reason}");
    assert_eq!(plan.unchanged, d.resources.len());
    assert!(plan.is_destructive());
    assert_eq!(
        schedule(&plan, &d),
        [vec![Step::Delete(addr("instance/server"))]]
    );
    insta::assert_snapshot!("delete_duplicate", render(&plan));
}

// ---------------------------------------------------------------------------------
// 7. Scheduling

#[test]
fn schedule_tears_down_in_reverse_then_builds_in_waves() {
    let before = bigger_lab();
    let d = default_lab();
    let mut observed = matching(&before);
    remove(&mut observed, "instance/client-1");
    instance_field(&mut observed, "instance/server", |_, image, _, _| {
        *image = "ami-0aaaaaaaaaaaaaaaa".into();
    });
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("sg-rules/server", Action::Update),
            ("instance/server", Action::Replace),
            ("dns-record/server", Action::Update),
            ("instance/client-1", Action::Create),
            ("dns-record/client-1", Action::Update),
            ("dns-record/client-3", Action::Delete),
            ("sg-rules/old", Action::Delete),
            ("instance/client-3", Action::Delete),
            ("sg/old", Action::Delete),
        ])
    );
    let stages = schedule(&plan, &d);
    check_schedule(&plan, &stages, &[&before, &d]);
    let s = |a: &str| addr(a);
    assert_eq!(
        stages,
        [
            vec![
                Step::Delete(s("instance/server")),
                Step::Delete(s("dns-record/client-3")),
                Step::Delete(s("sg-rules/old"))
            ],
            vec![
                Step::Revoke(s("sg-rules/server")),
                Step::Delete(s("instance/client-3"))
            ],
            vec![Step::Delete(s("sg/old"))],
            vec![Step::Update(s("sg-rules/server"))],
            vec![
                Step::Create(s("instance/server")),
                Step::Create(s("instance/client-1"))
            ],
            vec![
                Step::Update(s("dns-record/server")),
                Step::Update(s("dns-record/client-1"))
            ],
        ]
    );
    let at = |step: Step| stage_of(&stages, &step);
    // Instances go strictly before groups; rules referencing a group are revoked first.
    assert!(at(Step::Delete(s("instance/client-3"))) < at(Step::Delete(s("sg/old"))));
    assert!(at(Step::Revoke(s("sg-rules/server"))) < at(Step::Delete(s("sg/old"))));
    assert!(at(Step::Delete(s("sg-rules/old"))) < at(Step::Delete(s("sg/old"))));
    assert!(at(Step::Delete(s("dns-record/client-3"))) < at(Step::Delete(s("instance/client-3"))));
    // A replacement is torn down early and built late.
    assert!(at(Step::Delete(s("instance/server"))) < at(Step::Delete(s("sg/old"))));
    assert!(at(Step::Create(s("instance/server"))) > at(Step::Delete(s("sg/old"))));
    assert!(at(Step::Create(s("instance/server"))) > at(Step::Update(s("sg-rules/server"))));
}

#[test]
fn schedule_of_a_fresh_lab_is_its_waves() {
    let d = desired_from(TINY);
    let plan = diff(&d, &Observed::default());
    let stages = schedule(&plan, &d);
    check_schedule(&plan, &stages, &[&d]);
    let waves: Vec<Vec<Step>> = d
        .waves()
        .iter()
        .map(|w| w.iter().map(|r| Step::Create(r.address.clone())).collect())
        .collect();
    assert_eq!(stages, waves);
    // Instances wait for the route table that gives them their way out.
    let at = |a: &str| stage_of(&stages, &Step::Create(addr(a)));
    assert!(at("route-table/public") < at("instance/web"));
    assert!(at("route-table/public") < at("instance/db"));
    assert!(at("sg-rules/web") < at("instance/web"));
    assert!(at("instance/db") < at("dns-record/db"));
    assert!(at("dns-zone") < at("dns-record/db"));
}

#[test]
fn replace_with_a_duplicate_deletes_the_address_once() {
    let d = default_lab();
    let mut observed = matching(&d);
    instance_field(&mut observed, "instance/server", |_, image, _, _| {
        *image = "ami-0aaaaaaaaaaaaaaaa".into();
    });
    let mut twin = found_mut(&mut observed, "instance/server").clone();
    twin.id = "i-0duplicate".into();
    observed.resources.push(twin);
    let plan = diff(&d, &observed);
    assert_eq!(
        summary(&plan),
        expect(&[
            ("instance/server", Action::Replace),
            ("dns-record/server", Action::Update),
            ("instance/server", Action::Delete),
        ])
    );
    let stages = schedule(&plan, &d);
    check_schedule(&plan, &stages, &[&d]);
    assert_eq!(
        stages,
        [
            vec![Step::Delete(addr("instance/server"))],
            vec![Step::Create(addr("instance/server"))],
            vec![Step::Update(addr("dns-record/server"))],
        ]
    );
}

// ---------------------------------------------------------------------------------
// 8. Destructiveness and JSON

#[test]
fn only_replacements_and_deletions_are_destructive() {
    let d = default_lab();
    assert!(!diff(&d, &matching(&d)).is_destructive());
    assert!(!diff(&d, &Observed::default()).is_destructive());

    let mut observed = matching(&d);
    remove(&mut observed, "instance/client-2");
    instance_field(&mut observed, "instance/server", |ty, _, _, _| {
        *ty = "t3.nano".into()
    });
    let plan = diff(&d, &observed);
    assert_eq!(plan.count(Action::Create), 1);
    assert_eq!(plan.count(Action::Update), 2);
    assert!(!plan.is_destructive());

    let mut observed = matching(&d);
    instance_field(&mut observed, "instance/server", |_, image, _, _| {
        *image = "ami-0aaaaaaaaaaaaaaaa".into();
    });
    let plan = diff(&d, &observed);
    assert_eq!(plan.count(Action::Replace), 1);
    assert_eq!(plan.count(Action::Delete), 0);
    assert!(plan.is_destructive());

    let plan = diff(&d, &matching(&bigger_lab()));
    assert_eq!(plan.count(Action::Replace), 0);
    assert_eq!(plan.count(Action::Delete), 4);
    assert!(plan.is_destructive());
}

#[test]
fn plan_serializes_actions_and_addresses_as_strings() {
    let d = default_lab();
    let mut observed = matching(&bigger_lab());
    remove(&mut observed, "instance/client-2");
    instance_field(&mut observed, "instance/server", |_, image, _, _| {
        *image = "ami-0aaaaaaaaaaaaaaaa".into();
    });
    let plan = diff(&d, &observed);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["lab"], "netlab");
    assert_eq!(json["unchanged"], plan.unchanged);
    let changes = json["changes"].as_array().expect("changes array");
    assert_eq!(changes.len(), plan.changes.len());
    let got: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["address"].as_str().expect("address is a string"),
                c["action"].as_str().expect("action is a string"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("sg-rules/server", "update"),
            ("instance/server", "replace"),
            ("dns-record/server", "update"),
            ("instance/client-2", "create"),
            ("dns-record/client-2", "update"),
            ("dns-record/client-3", "delete"),
            ("sg-rules/old", "delete"),
            ("instance/client-3", "delete"),
            ("sg/old", "delete"),
        ]
    );
    let by_address = |a: &str| {
        changes
            .iter()
            .find(|c| c["address"] == a)
            .unwrap_or_else(|| panic!("{a} missing"))
    };
    let server = by_address("instance/server");
    assert_eq!(server["attributes"][0]["name"], "image");
    assert_eq!(server["attributes"][0]["forces_replacement"], true);
    assert_eq!(server["attributes"][0]["to"], IMAGE);
    assert!(
        server.get("reason").is_none(),
        "no reason without a cascade"
    );
    assert!(server.get("desired").is_none() && server.get("observed").is_none());
    let create = by_address("instance/client-2");
    assert!(create["id"].is_null());
    assert!(create["attributes"][0]["from"].is_null());
    let record = by_address("dns-record/client-2");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("instance/client-2")
    );

    // Singletons serialize without a trailing slash.
    let fresh = serde_json::to_value(diff(&d, &Observed::default())).unwrap();
    assert_eq!(fresh["changes"][0]["address"], "vpc");
    assert_eq!(fresh["changes"][0]["action"], "create");

    let step = serde_json::to_value(Step::Revoke(addr("sg-rules/server"))).unwrap();
    assert_eq!(
        step,
        serde_json::json!({"step": "revoke", "address": "sg-rules/server"})
    );
}
