//! Semantic validation: the checks that relate values to each other and to AWS's rules.
//!
//! Runs before any API call. Every check reports into the same [`Diagnostics`] and none
//! stops the others, so a user fixes a file in one round trip. Checks that follow a
//! reference (a rule naming a role, an instance naming a subnet) are skipped when the
//! referenced part failed to decode, so one typo is reported once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::address;
use crate::decode::{Decoder, Located};
use crate::diag::{Diagnostics, Pos};
use crate::topology::{
    ArtifactSource, BucketName, Image, Instance, Lifetime, Peer, Rule, Topology, decode,
};
use crate::yaml;

/// The outcome of reading a topology file.
#[derive(Debug)]
pub struct Checked {
    /// The topology, when it has no errors (warnings allowed).
    pub topology: Option<Topology>,
    /// Everything found, in file order.
    pub diagnostics: Diagnostics,
}

/// Longest lab name: the capture bucket `<lab>-captures-<account>-<region>` must fit in
/// S3's 63 characters with a 12-digit account and a 14-character region.
pub const MAX_LAB_NAME: usize = 24;
/// Most instances one entry may expand to.
pub const MAX_COUNT: u32 = 20;

/// Parses and validates a topology document.
pub fn check(text: &str) -> Checked {
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(syntax) => {
            let mut diagnostics = Diagnostics::default();
            let d = diagnostics.error(syntax.pos, syntax.message);
            d.hint = syntax.hint;
            return Checked {
                topology: None,
                diagnostics,
            };
        }
    };
    let mut decoder = Decoder::new();
    let topology = decode(&root, &mut decoder);
    if let Some(t) = &topology {
        validate(t, decoder.complete, &mut decoder.diags);
    }
    let diagnostics = decoder.diags.sorted();
    Checked {
        topology: topology.filter(|_| !diagnostics.has_errors()),
        diagnostics,
    }
}

/// Runs every semantic check on a decoded topology.
pub fn validate(t: &Topology, complete: bool, d: &mut Diagnostics) {
    check_lab_name(&t.name, d);
    if let Some(region) = &t.region {
        if !is_region(region) {
            d.error(
                region.pos,
                format!("`{}` is not an AWS region name", region.value),
            )
            .hint("such as `eu-north-1` or `us-east-1`");
        } else if let Err(why) = supported_region(region) {
            d.error(region.pos, why);
        }
    }
    let subnets = check_network(t, d);
    if let Some(dns) = &t.dns {
        check_zone_name(&dns.zone, d);
        if !(1..=604_800).contains(&dns.ttl.value) {
            d.error(
                dns.ttl.pos,
                format!("TTL {} is out of range (1-604800 seconds)", dns.ttl.value),
            );
        }
    }
    let roles = check_roles(t, complete, d);
    check_iam(t, d);
    if let BucketName::Named(name) = &t.captures.bucket.value
        && let Err(why) = check_bucket_name(name)
    {
        d.error(t.captures.bucket.pos, format!("bucket name `{name}` {why}"))
            .hint("or write `bucket: auto` for `<lab>-captures-<account>-<region>`");
    }
    check_instances(t, &roles, complete.then_some(&subnets), d);
    if complete && t.instances.is_empty() {
        d.warning(t.name.pos, "the lab has no instances");
    }
    check_artifacts(t, d);
    if let Some(lifetime) = &t.lifetime {
        check_lifetime(lifetime, d);
    }
}

/// The lifetime becomes a tag and a systemd timer, both in whole minutes, so it is
/// refused rather than rounded when it is not whole minutes.
fn check_lifetime(lifetime: &Located<Lifetime>, d: &mut Diagnostics) {
    let span = lifetime.value.0;
    let shown = &lifetime.value;
    let range = format!("{} to {}", Lifetime(Lifetime::MIN), Lifetime(Lifetime::MAX));
    if span.is_zero() {
        d.error(
            lifetime.pos,
            "a zero lifetime would stop every instance as soon as it boots",
        )
        .hint(format!(
            "give the instances time to work, such as `4h` ({range})"
        ));
    } else if !(Lifetime::MIN..=Lifetime::MAX).contains(&span) {
        d.error(
            lifetime.pos,
            format!("lifetime {shown} is out of range ({range})"),
        );
    } else if !span.as_secs().is_multiple_of(60) {
        let down = Lifetime(Duration::from_secs(span.as_secs() / 60 * 60));
        let up = Lifetime(down.0 + Duration::from_secs(60));
        d.error(
            lifetime.pos,
            format!(
                "lifetime {shown} is not a whole number of minutes (the guard's timer and tag \
                 count minutes)"
            ),
        )
        .hint(format!("write `{down}` or `{up}`"));
    }
}

fn check_lab_name(name: &Located<String>, d: &mut Diagnostics) {
    let n = &name.value;
    if n.len() < 2 || n.len() > MAX_LAB_NAME || !is_dns_label(n) {
        d.error(
            name.pos,
            format!("lab name `{n}` is not usable in AWS names"),
        )
        .hint(format!(
            "use 2-{MAX_LAB_NAME} lowercase letters, digits and hyphens, starting with a letter"
        ));
    }
}

/// `[a-z][a-z0-9-]*`, not ending in a hyphen.
fn is_dns_label(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The partition a region belongs to: `aws`, or another one labctl does not serve.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso") || region.starts_with("eu-iso") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// Whether labctl serves `region`. Every ARN, endpoint, service principal, price and
/// image it knows is the standard `aws` partition's, so other partitions are refused
/// before anything is made there.
pub fn supported_region(region: &str) -> Result<(), String> {
    if !is_region(region) {
        return Err(format!(
            "`{region}` is not an AWS region name (such as `eu-north-1` or `us-east-1`)"
        ));
    }
    match partition(region) {
        "aws" => Ok(()),
        other => Err(format!(
            "region `{region}` is in the {other} partition; labctl builds labs in the \
             standard aws partition's regions only"
        )),
    }
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks the VPC and subnets; returns the subnet names.
fn check_network(t: &Topology, d: &mut Diagnostics) -> BTreeSet<String> {
    let vpc = &t.network.cidr;
    check_block_size(vpc, "VPC", d);
    if !is_private(&vpc.value) {
        d.warning(
            vpc.pos,
            format!("VPC block {} is not a private range", vpc.value),
        )
        .hint("10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 avoid clashing with public addresses");
    }
    let mut names: BTreeMap<&str, Pos> = BTreeMap::new();
    for (i, s) in t.network.subnets.iter().enumerate() {
        check_name(&s.name, "subnet", &mut names, d);
        check_block_size(&s.cidr, "subnet", d);
        if !vpc.value.contains(&s.cidr.value) {
            d.error(
                s.cidr.pos,
                format!(
                    "subnet `{}` ({}) is outside the VPC block {}",
                    s.name.value, s.cidr.value, vpc.value
                ),
            );
        }
        for other in &t.network.subnets[..i] {
            if overlaps(&s.cidr.value, &other.cidr.value) {
                d.error(
                    s.cidr.pos,
                    format!(
                        "subnet `{}` ({}) overlaps subnet `{}` ({}, line {})",
                        s.name.value,
                        s.cidr.value,
                        other.name.value,
                        other.cidr.value,
                        other.cidr.pos.line
                    ),
                );
            }
        }
    }
    names.into_keys().map(str::to_owned).collect()
}

fn check_block_size(net: &Located<Ipv4Net>, what: &str, d: &mut Diagnostics) {
    if !(16..=28).contains(&net.value.prefix_len()) {
        d.error(
            net.pos,
            format!("{what} block {} must be between /16 and /28", net.value),
        );
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

fn is_private(net: &Ipv4Net) -> bool {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
    ]
    .iter()
    .filter_map(|s| s.parse::<Ipv4Net>().ok())
    .any(|private| private.contains(net))
}

/// Checks a logical name's syntax and uniqueness among its kind.
fn check_name<'a>(
    name: &'a Located<String>,
    kind: &str,
    seen: &mut BTreeMap<&'a str, Pos>,
    d: &mut Diagnostics,
) {
    if !is_dns_label(&name.value) || name.value.len() > 40 {
        d.error(
            name.pos,
            format!("{kind} name `{}` is not valid", name.value),
        )
        .hint("use up to 40 lowercase letters, digits and hyphens, starting with a letter");
    }
    if let Some(first) = seen.insert(&name.value, name.pos) {
        d.error(
            name.pos,
            format!(
                "duplicate {kind} name `{}` (first at line {})",
                name.value, first.line
            ),
        );
        seen.insert(&name.value, first);
    }
}

fn check_zone_name(zone: &Located<String>, d: &mut Diagnostics) {
    let z = zone.value.trim_end_matches('.');
    let ok = !z.is_empty()
        && z.len() <= 253
        && z.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        d.error(zone.pos, format!("`{}` is not a DNS zone name", zone.value))
            .hint("such as `lab.internal`");
    }
}

/// Checks roles and their rules; returns the role names.
fn check_roles(t: &Topology, complete: bool, d: &mut Diagnostics) -> BTreeSet<String> {
    let mut names = BTreeMap::new();
    for role in &t.roles {
        check_name(&role.name, "role", &mut names, d);
    }
    let known: BTreeSet<String> = names.into_keys().map(str::to_owned).collect();
    for role in &t.roles {
        for rule in &role.ingress {
            check_rule(rule, "from", &known, d);
        }
        for rule in role.egress.iter().flatten() {
            check_rule(rule, "to", &known, d);
        }
        if role.egress.as_ref().is_some_and(Vec::is_empty) {
            d.warning(
                role.name.pos,
                format!(
                    "role `{}` allows no outbound traffic: its instances cannot bootstrap",
                    role.name.value
                ),
            );
        }
        let used = t.instances.iter().any(|i| i.role.value == role.name.value);
        if complete && !used {
            d.warning(
                role.name.pos,
                format!("no instance has role `{}`", role.name.value),
            );
        }
    }
    known
}

fn check_rule(rule: &Rule, peers_key: &str, roles: &BTreeSet<String>, d: &mut Diagnostics) {
    let proto = rule.proto.value;
    match (&rule.ports, proto.has_ports()) {
        (None, true) => {
            d.error(rule.proto.pos, format!("a {proto} rule needs `ports`"))
                .hint("a port (`8080`) or a range (`12000-12001`; `0-65535` for all)");
        }
        (Some(ports), false) => {
            d.error(ports.pos, format!("{proto} has no ports; remove `ports`"));
        }
        _ => {}
    }
    if rule.peers.is_empty() {
        d.error(
            rule.pos,
            format!("the rule lists no one under `{peers_key}`"),
        );
    }
    for peer in &rule.peers {
        if let Peer::Role(name) = &peer.value
            && !roles.contains(name)
        {
            d.error(peer.pos, format!("unknown role `{name}`"))
                .did_you_mean(name, roles.iter().map(String::as_str));
        }
    }
    if let Some(description) = &rule.description {
        check_description(description, d);
    }
    // Outbound to anywhere is the AWS default, not a risk.
    if peers_key == "to" {
        return;
    }
    check_world(rule, d);
}

/// A rule whose address sources together cover more than a /8 of public address
/// space opens its ports to the world as surely as `0.0.0.0/0` does, so it needs
/// `allow_world: true` too.
fn check_world(rule: &Rule, d: &mut Diagnostics) {
    let wide: Vec<&Located<Peer>> = rule
        .peers
        .iter()
        .filter(|p| matches!(&p.value, Peer::Cidr(net) if net.prefix_len() <= 8))
        .collect();
    let blocks: Vec<ipnet::Ipv4Net> = rule
        .peers
        .iter()
        .filter_map(|p| match &p.value {
            Peer::Cidr(net) => Some(*net),
            Peer::Role(_) | Peer::MyIp => None,
        })
        .collect();
    let covered = address::public_addresses(&blocks);
    let Some(first) = wide.first().copied().or(rule.peers.first()) else {
        return;
    };
    if covered <= WORLD_THRESHOLD {
        if rule.allow_world {
            d.warning(
                rule.pos,
                "`allow_world` has no effect: the rule's sources cover no more than a /8 of public addresses",
            );
        }
        return;
    }
    let proto = rule.proto.value;
    let what = match &rule.ports {
        Some(ports) => format!("{proto} port {}", ports.value),
        None => format!("{proto} traffic"),
    };
    let whom = if covered == address::all_public() {
        "the whole internet".to_owned()
    } else {
        format!(
            "{:.1} million public addresses ({:.1}% of the internet)",
            covered as f64 / 1e6,
            covered as f64 * 100.0 / address::all_public() as f64
        )
    };
    let sources: Vec<String> = rule
        .peers
        .iter()
        .filter_map(|p| match &p.value {
            Peer::Cidr(net) => Some(net.to_string()),
            Peer::Role(_) | Peer::MyIp => None,
        })
        .collect();
    if rule.allow_world {
        d.warning(first.pos, format!("{what} is open to {whom}"));
    } else {
        d.error(
            first.pos,
            format!("{} would open {what} to {whom}", sources.join(", ")),
        )
        .hint("name roles or addresses (`my-ip`), or add `allow_world: true` to the rule if you mean it");
    }
}

/// More public addresses than this (a /8) is the world.
const WORLD_THRESHOLD: u64 = 1 << 24;

/// EC2's rule descriptions: at most 255 characters from a documented set.
fn check_description(description: &Located<String>, d: &mut Diagnostics) {
    const ALLOWED: &str = " ._-:/()#,@[]+=&;{}!$*";
    let text = &description.value;
    if text.chars().count() > 255 {
        d.error(
            description.pos,
            format!(
                "the description is {} characters; EC2 takes at most 255",
                text.chars().count()
            ),
        );
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ALLOWED.contains(*c)))
    {
        let shown = if bad.is_control() {
            format!("{bad:?}")
        } else {
            format!("`{bad}`")
        };
        d.error(
            description.pos,
            format!("the description holds {shown}, which EC2 refuses in a rule description"),
        )
        .hint(format!("letters, digits, spaces and {}", ALLOWED.trim()));
    }
}

fn check_iam(t: &Topology, d: &mut Diagnostics) {
    let role = &t.iam.instance_role;
    let name = &role.name.value;
    let full = format!("{}-{name}", t.name.value);
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    {
        d.error(
            role.name.pos,
            format!("`{name}` is not a valid IAM role name"),
        )
        .hint("letters, digits and + = , . @ _ -");
    } else if full.len() > 64 {
        d.error(
            role.name.pos,
            format!("IAM role name `{full}` is longer than 64 characters"),
        );
    }
    let mut seen = BTreeSet::new();
    for policy in &role.managed_policies {
        let p = &policy.value;
        let valid = if p.starts_with("arn:") {
            p.split(':').count() == 6 && p.contains(":policy/")
        } else {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
        };
        if !valid {
            d.error(
                policy.pos,
                format!("`{p}` is neither a managed policy name nor a policy ARN"),
            );
        }
        if !seen.insert(p.as_str()) {
            d.error(policy.pos, format!("policy `{p}` is listed twice"));
        }
    }
    for policy in &role.managed_policies {
        check_power(policy, role.dynamodb.is_some(), d);
    }
    if let Some(dynamodb) = &role.dynamodb {
        check_tables(dynamodb, d);
    }
    if !seen
        .iter()
        .any(|p| p.ends_with("AmazonSSMManagedInstanceCore"))
    {
        d.warning(
            role.name.pos,
            "without AmazonSSMManagedInstanceCore, `labctl ssm-shell` cannot reach the instances",
        );
    }
}

/// What the instances need from IAM: their bucket (labctl's own policy), SSM, and
/// DynamoDB for the labs that use it. Anything broader is named, since every process
/// on every instance, a student's included, holds it.
fn check_power(policy: &Located<String>, scoped_tables: bool, d: &mut Diagnostics) {
    let name = policy.value.rsplit('/').next().unwrap_or(&policy.value);
    match name {
        "AmazonDynamoDBFullAccess" if scoped_tables => {
            d.error(
                policy.pos,
                "AmazonDynamoDBFullAccess grants every table in the account, which \
                 `dynamodb: { tables: [...] }` scopes down; list one or the other",
            );
        }
        "AmazonDynamoDBFullAccess" => {
            d.note(
                policy.pos,
                "AmazonDynamoDBFullAccess covers every DynamoDB table in the account",
            )
            .hint(
                "`dynamodb: { tables: [...] }` under `instance_role` grants only the lab's tables",
            );
        }
        "AdministratorAccess" => {
            d.warning(
                policy.pos,
                "AdministratorAccess lets every process on every instance do anything in the account",
            );
        }
        "PowerUserAccess" => {
            d.warning(
                policy.pos,
                "PowerUserAccess lets every process on every instance do anything in the account but manage IAM",
            );
        }
        "IAMFullAccess" => {
            d.warning(
                policy.pos,
                "IAMFullAccess lets every process on every instance grant itself anything",
            );
        }
        other if other.ends_with("FullAccess") => {
            d.warning(
                policy.pos,
                format!("{other} grants every instance full control of a whole service, beyond what the lab needs"),
            );
        }
        _ => {}
    }
}

/// DynamoDB's table names: 3 to 255 of `a-z A-Z 0-9 _ - .`, each once.
fn check_tables(dynamodb: &crate::topology::DynamoDb, d: &mut Diagnostics) {
    if dynamodb.tables.is_empty() {
        d.error(dynamodb.pos, "`dynamodb.tables` names no table");
    }
    let mut seen = BTreeSet::new();
    for table in &dynamodb.tables {
        let name = &table.value;
        let valid = (3..=255).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid {
            d.error(table.pos, format!("`{name}` is not a DynamoDB table name"))
                .hint("3 to 255 letters, digits, `_`, `-` and `.`");
        }
        if !seen.insert(name.as_str()) {
            d.error(table.pos, format!("table `{name}` is listed twice"));
        }
    }
}

/// S3's naming rules for general purpose buckets.
fn check_bucket_name(name: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3-63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("may hold only lowercase letters, digits, hyphens and dots");
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Err("must start and end with a letter or digit");
    }
    if name.contains("..") || name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not look like an IP address or hold `..`");
    }
    Ok(())
}

/// An instance needs a way out: apt, labnet's download, SSM and its report all go to
/// the internet, and labctl makes no NAT gateway or VPC endpoints. A private subnet
/// gives it none, and it would never report.
fn check_way_out(t: &Topology, inst: &Instance, d: &mut Diagnostics) {
    let subnet = match &inst.subnet {
        Some(name) => t
            .network
            .subnets
            .iter()
            .find(|s| s.name.value == name.value),
        None => t.network.subnets.first(),
    };
    if let Some(subnet) = subnet
        && !subnet.public
    {
        let pos = inst.subnet.as_ref().map_or(inst.name.pos, |s| s.pos);
        d.error(
            pos,
            format!(
                "instance `{}` is in subnet `{}`, which has no route out: it could not \
                 install packages, fetch labnet, reach SSM or report",
                inst.name.value, subnet.name.value
            ),
        )
        .hint(format!(
            "set `public: true` on subnet `{}` (labctl makes no NAT gateway or VPC endpoints)",
            subnet.name.value
        ));
    }
}

fn check_instances(
    t: &Topology,
    roles: &BTreeSet<String>,
    subnets: Option<&BTreeSet<String>>,
    d: &mut Diagnostics,
) {
    let mut entry_names = BTreeMap::new();
    // Expanded names (`client-1`) must be unique too: DNS records and tags use them.
    let mut expanded: BTreeMap<String, &Instance> = BTreeMap::new();
    for inst in &t.instances {
        check_name(&inst.name, "instance", &mut entry_names, d);
        if !roles.contains(&inst.role.value) {
            d.error(inst.role.pos, format!("unknown role `{}`", inst.role.value))
                .did_you_mean(&inst.role.value, roles.iter().map(String::as_str));
        }
        check_instance_type(&inst.instance_type, d);
        if let Image::Parameter(path) = &inst.image.value
            && (path.contains("arm64") || path.contains("aarch64"))
        {
            d.error(
                inst.image.pos,
                format!("parameter `{path}` names an arm64 image; labnet is built for x86_64"),
            );
        }
        let count = inst.count.value;
        if count < 1 {
            d.error(inst.count.pos, "count must be at least 1");
        } else if count > MAX_COUNT {
            d.error(
                inst.count.pos,
                format!("count {count} is more than {MAX_COUNT}"),
            )
            .hint("a lab this large is likely a mistake; write several entries if you mean it");
        }
        let mut services = BTreeSet::new();
        for svc in &inst.services {
            if !services.insert(svc.value) {
                d.error(svc.pos, format!("service `{}` is listed twice", svc.value));
            }
        }
        if let (Some(subnet), Some(known)) = (&inst.subnet, subnets)
            && !known.contains(&subnet.value)
        {
            d.error(subnet.pos, format!("unknown subnet `{}`", subnet.value))
                .did_you_mean(&subnet.value, known.iter().map(String::as_str));
        }
        check_way_out(t, inst, d);
        if (1..=MAX_COUNT).contains(&count) {
            for name in inst.expanded_names() {
                if let Some(first) = expanded.get(&name)
                    && first.name.value != inst.name.value
                {
                    d.error(
                        inst.name.pos,
                        format!(
                            "instance name `{name}` clashes with `{}` (line {}) after count expansion",
                            first.name.value, first.name.pos.line
                        ),
                    );
                }
                expanded.entry(name).or_insert(inst);
            }
        }
    }
}

fn check_instance_type(ty: &Located<String>, d: &mut Diagnostics) {
    let Some((family, size)) = ty.value.split_once('.') else {
        d.error(ty.pos, format!("`{}` is not an instance type", ty.value))
            .hint("such as `t3.micro`");
        return;
    };
    let well_formed = family.starts_with(|c: char| c.is_ascii_lowercase())
        && family
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !size.is_empty()
        && size
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !well_formed {
        d.error(ty.pos, format!("`{}` is not an instance type", ty.value))
            .hint("such as `t3.micro`");
    } else if is_arm_family(family) {
        d.error(
            ty.pos,
            format!(
                "`{}` is an Arm (Graviton) type; labnet is built for x86_64",
                ty.value
            ),
        )
        .hint("use an x86_64 type such as `t3.micro`");
    }
}

/// Graviton families carry a `g` after the generation digit (`t4g`, `m7gd`, `c6gn`),
/// `a1` is the first Graviton, and `mac2*` are Apple silicon.
pub fn is_arm_family(family: &str) -> bool {
    if family == "a1" || family.starts_with("mac2") {
        return true;
    }
    let base = family.split('-').next().unwrap_or(family);
    match base.find(|c: char| c.is_ascii_digit()) {
        Some(i) => base[i..]
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .contains('g'),
        None => false,
    }
}

fn check_artifacts(t: &Topology, d: &mut Diagnostics) {
    let labnet = &t.artifacts.labnet;
    match &labnet.value {
        ArtifactSource::Build => {}
        ArtifactSource::Path(p) if p.trim().is_empty() => {
            d.error(labnet.pos, "`labnet.path` is empty");
        }
        ArtifactSource::Path(_) => {}
        ArtifactSource::Url { url, sha256 } => {
            if !url.starts_with("https://") {
                d.error(labnet.pos, format!("labnet URL `{url}` must use https"));
            }
            if sha256.len() != 64
                || !sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                d.error(labnet.pos, "`sha256` must be 64 lowercase hex digits");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_families_are_recognised() {
        for arm in [
            "t4g",
            "m6g",
            "m7gd",
            "c6gn",
            "x2gd",
            "im4gn",
            "is4gen",
            "a1",
            "mac2-m2pro",
            "hpc7g",
            "g5g",
        ] {
            assert!(is_arm_family(arm), "{arm}");
        }
        for x86 in [
            "t3", "t3a", "m5", "c5n", "g4dn", "g4ad", "m7i-flex", "r7iz", "mac1", "p5", "inf2",
        ] {
            assert!(!is_arm_family(x86), "{x86}");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        assert!(check_bucket_name("netlab-captures").is_ok());
        assert!(check_bucket_name("Netlab").is_err());
        assert!(check_bucket_name("ab").is_err());
        assert!(check_bucket_name("-lab").is_err());
        assert!(check_bucket_name("192.168.0.1").is_err());
    }

    #[test]
    fn regions_are_shaped_like_regions() {
        assert!(is_region("eu-north-1"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("europe"));
        assert!(!is_region("eu-north"));
    }
}
