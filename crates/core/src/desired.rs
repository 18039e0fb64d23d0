//! Desired state: the concrete AWS resources a validated topology needs.
//!
//! This is the list `plan` compares with what AWS has. Each resource has a logical
//! address (`instance/client-2`) that is stored in its tags, the AWS name derived from
//! the lab name (so two labs never collide on account- or world-wide names), the
//! attributes that matter for drift, and the addresses it depends on. The list is in
//! dependency order: creating front to back and deleting back to front is always safe.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::topology::{BucketName, Image, Peer, PortRange, Proto, Service, Topology};

/// Tag holding the lab name on every resource the lab owns.
pub const TAG_LAB: &str = "labctl:lab";
/// Tag holding the resource's logical address.
pub const TAG_ADDRESS: &str = "labctl:address";

/// What kind of AWS resource an address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// EC2 VPC.
    Vpc,
    /// EC2 subnet.
    Subnet,
    /// EC2 internet gateway.
    InternetGateway,
    /// EC2 route table for the public subnets.
    RouteTable,
    /// EC2 security group (one per role).
    SecurityGroup,
    /// The rules of one security group (after every group they name exists).
    SecurityGroupRules,
    /// IAM role for the instances.
    IamRole,
    /// IAM instance profile wrapping the role.
    InstanceProfile,
    /// S3 bucket for captures and artifacts.
    Bucket,
    /// Route 53 private hosted zone.
    HostedZone,
    /// EC2 instance.
    Instance,
    /// Route 53 A record.
    DnsRecord,
}

impl Kind {
    /// The address prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::InternetGateway => "igw",
            Kind::RouteTable => "route-table",
            Kind::SecurityGroup => "sg",
            Kind::SecurityGroupRules => "sg-rules",
            Kind::IamRole => "iam-role",
            Kind::InstanceProfile => "instance-profile",
            Kind::Bucket => "bucket",
            Kind::HostedZone => "dns-zone",
            Kind::Instance => "instance",
            Kind::DnsRecord => "dns-record",
        }
    }
}

/// A logical address: kind plus a name unique within the kind, such as `sg/server`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// Resource kind.
    pub kind: Kind,
    /// Name within the kind (may be empty for singletons such as the VPC).
    pub name: String,
}

impl Address {
    /// An address of `kind` named `name`.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }

    /// The address of a singleton (`vpc`, `igw`).
    pub fn single(kind: Kind) -> Self {
        Self::new(kind, "")
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            f.write_str(self.kind.as_str())
        } else {
            write!(f, "{}/{}", self.kind.as_str(), self.name)
        }
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One desired resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    /// Logical address, stored in the `labctl:address` tag.
    pub address: Address,
    /// The name in AWS (Name tag, group name, IAM name, bucket name, zone or record name).
    pub name: String,
    /// What it should look like.
    pub spec: Spec,
    /// Addresses that must exist first.
    pub depends_on: Vec<Address>,
}

/// One flattened security group permission: a protocol, a port range and one peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Permission {
    /// Protocol.
    #[serde(serialize_with = "display")]
    pub proto: Proto,
    /// Ports (TCP and UDP only).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_opt"
    )]
    pub ports: Option<PortRange>,
    /// Source (ingress) or destination (egress).
    pub peer: PermissionPeer,
    /// Rule description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A permission's peer once `my-ip` is known (or still pending).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "value")]
pub enum PermissionPeer {
    /// Another role's security group.
    Role(String),
    /// An IPv4 block.
    Cidr(#[serde(serialize_with = "display")] Ipv4Net),
    /// The caller's address, not yet resolved.
    MyIp,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.proto)?;
        if let Some(p) = self.ports {
            write!(f, "/{p}")?;
        }
        match &self.peer {
            PermissionPeer::Role(r) => write!(f, " role:{r}"),
            PermissionPeer::Cidr(c) => write!(f, " {c}"),
            PermissionPeer::MyIp => write!(f, " my-ip"),
        }
    }
}

/// The attributes of a desired resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Spec {
    /// VPC with DNS support and hostnames (the private zone needs both).
    Vpc {
        /// CIDR block.
        #[serde(serialize_with = "display")]
        cidr: Ipv4Net,
    },
    /// Subnet.
    Subnet {
        /// CIDR block.
        #[serde(serialize_with = "display")]
        cidr: Ipv4Net,
        /// Public IPv4 on launch and a route to the internet gateway.
        public: bool,
    },
    /// Internet gateway attached to the VPC.
    InternetGateway,
    /// Route table with `0.0.0.0/0` to the internet gateway.
    RouteTable {
        /// Subnets associated with it.
        subnets: Vec<String>,
    },
    /// Security group (its rules are a separate resource).
    SecurityGroup {
        /// The role it stands for.
        role: String,
    },
    /// The rules of a role's security group.
    SecurityGroupRules {
        /// The role.
        role: String,
        /// Inbound permissions, sorted.
        ingress: Vec<Permission>,
        /// Outbound permissions, sorted; `None` keeps AWS's allow-all default.
        egress: Option<Vec<Permission>>,
    },
    /// IAM role assumed by EC2.
    IamRole {
        /// Managed policy ARNs, sorted.
        managed_policies: Vec<String>,
        /// Bucket the inline policy grants read/write on (captures/ and artifacts/).
        bucket: String,
    },
    /// Instance profile holding the role.
    InstanceProfile {
        /// IAM role name.
        role: String,
    },
    /// Private, encrypted bucket.
    Bucket,
    /// Private hosted zone associated with the VPC.
    HostedZone {
        /// Zone name.
        zone: String,
    },
    /// EC2 instance.
    Instance {
        /// Role (security group).
        role: String,
        /// Subnet name.
        subnet: String,
        /// Instance type.
        instance_type: String,
        /// Image reference, resolved to an AMI at plan time.
        image: String,
        /// Services to run.
        services: Vec<String>,
        /// Whether it gets a public IPv4 address.
        public_ip: bool,
        /// Minutes until it stops itself.
        #[serde(skip_serializing_if = "Option::is_none")]
        lifetime_minutes: Option<u64>,
    },
    /// A record pointing at an instance's private IPv4 address.
    DnsRecord {
        /// Fully qualified name.
        fqdn: String,
        /// TTL in seconds.
        ttl: u32,
        /// Instance name.
        instance: String,
    },
}

impl Spec {
    /// The attributes worth showing, as `(name, value)` pairs.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        match self {
            Spec::Vpc { cidr } => vec![("cidr", cidr.to_string())],
            Spec::Subnet { cidr, public } => {
                vec![("cidr", cidr.to_string()), ("public", public.to_string())]
            }
            Spec::InternetGateway => vec![],
            Spec::RouteTable { subnets } => vec![
                ("route", "0.0.0.0/0 via igw".into()),
                ("subnets", subnets.join(", ")),
            ],
            Spec::SecurityGroup { role } => vec![("role", role.clone())],
            Spec::SecurityGroupRules {
                ingress, egress, ..
            } => {
                let list = |p: &[Permission]| {
                    if p.is_empty() {
                        "none".to_owned()
                    } else {
                        p.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                vec![
                    ("ingress", list(ingress)),
                    ("egress", egress.as_deref().map_or("all".to_owned(), list)),
                ]
            }
            Spec::IamRole {
                managed_policies,
                bucket,
            } => vec![
                ("managed_policies", managed_policies.join(", ")),
                ("inline_policy", format!("s3 read/write on {bucket}")),
            ],
            Spec::InstanceProfile { role } => vec![("role", role.clone())],
            Spec::Bucket => vec![(
                "settings",
                "public access blocked, SSE-S3 encryption, TLS only".into(),
            )],
            Spec::HostedZone { zone } => vec![("zone", zone.clone()), ("private", "true".into())],
            Spec::Instance {
                role,
                subnet,
                instance_type,
                image,
                services,
                public_ip,
                lifetime_minutes,
            } => {
                let mut v = vec![
                    ("type", instance_type.clone()),
                    ("image", image.clone()),
                    ("role", role.clone()),
                    ("subnet", subnet.clone()),
                    ("public_ip", public_ip.to_string()),
                ];
                if !services.is_empty() {
                    v.push(("services", services.join(", ")));
                }
                if let Some(m) = lifetime_minutes {
                    v.push((
                        "lifetime",
                        crate::topology::Lifetime(std::time::Duration::from_secs(m * 60))
                            .to_string(),
                    ));
                }
                v
            }
            Spec::DnsRecord {
                fqdn,
                ttl,
                instance,
            } => vec![
                ("record", format!("{fqdn} A")),
                ("ttl", ttl.to_string()),
                ("target", format!("instance/{instance} private IPv4")),
            ],
        }
    }
}

/// Facts from outside the file that some names and rules need.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// AWS account id (for the capture bucket's name).
    pub account: Option<String>,
    /// Effective region.
    pub region: Option<String>,
    /// The caller's public IPv4 address (for `my-ip`).
    pub my_ip: Option<Ipv4Addr>,
}

/// The resources a lab needs, in dependency order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Desired {
    /// Lab name.
    pub lab: String,
    /// Resources, each after everything it depends on.
    pub resources: Vec<Resource>,
}

impl Desired {
    /// The resource at `address`.
    pub fn get(&self, address: &Address) -> Option<&Resource> {
        self.resources.iter().find(|r| &r.address == address)
    }

    /// Groups resources into waves: every resource's dependencies are in earlier waves,
    /// so the resources of one wave can be created concurrently.
    pub fn waves(&self) -> Vec<Vec<&Resource>> {
        let mut level: Vec<usize> = Vec::with_capacity(self.resources.len());
        for (i, r) in self.resources.iter().enumerate() {
            let l = r
                .depends_on
                .iter()
                .filter_map(|dep| self.resources[..i].iter().position(|x| &x.address == dep))
                .map(|j| level[j] + 1)
                .max()
                .unwrap_or(0);
            level.push(l);
        }
        let depth = level.iter().max().map_or(0, |m| m + 1);
        let mut waves = vec![Vec::new(); depth];
        for (r, l) in self.resources.iter().zip(level) {
            waves[l].push(r);
        }
        waves
    }
}

/// The capture bucket's name.
pub fn bucket_name(t: &Topology, ctx: &Context) -> String {
    match &t.captures.bucket.value {
        BucketName::Named(name) => name.clone(),
        BucketName::Auto => format!(
            "{}-captures-{}-{}",
            t.name.value,
            ctx.account.as_deref().unwrap_or("{account}"),
            ctx.region.as_deref().unwrap_or("{region}")
        ),
    }
}

/// The AWS name of the instance role and profile.
pub fn iam_role_name(t: &Topology) -> String {
    format!("{}-{}", t.name.value, t.iam.instance_role.name.value)
}

/// A managed policy's ARN from its name (ARNs pass through).
pub fn managed_policy_arn(name: &str) -> String {
    if name.starts_with("arn:") {
        name.to_owned()
    } else {
        format!("arn:aws:iam::aws:policy/{name}")
    }
}

/// Expands a validated topology into its resources.
pub fn expand(t: &Topology, ctx: &Context) -> Desired {
    let lab = t.name.value.clone();
    let named = |suffix: &str| format!("{lab}-{suffix}");
    let vpc = Address::single(Kind::Vpc);
    let mut out: Vec<Resource> = Vec::new();
    let mut push = |address: Address, name: String, spec: Spec, depends_on: Vec<Address>| {
        out.push(Resource {
            address,
            name,
            spec,
            depends_on,
        });
    };

    push(
        vpc.clone(),
        lab.clone(),
        Spec::Vpc {
            cidr: t.network.cidr.value,
        },
        vec![],
    );
    for s in &t.network.subnets {
        push(
            Address::new(Kind::Subnet, &s.name.value),
            named(&s.name.value),
            Spec::Subnet {
                cidr: s.cidr.value,
                public: s.public,
            },
            vec![vpc.clone()],
        );
    }
    let public: Vec<String> = t
        .network
        .subnets
        .iter()
        .filter(|s| s.public)
        .map(|s| s.name.value.clone())
        .collect();
    let route_table = Address::new(Kind::RouteTable, "public");
    if !public.is_empty() {
        let igw = Address::single(Kind::InternetGateway);
        push(
            igw.clone(),
            lab.clone(),
            Spec::InternetGateway,
            vec![vpc.clone()],
        );
        let mut deps = vec![vpc.clone(), igw];
        deps.extend(public.iter().map(|s| Address::new(Kind::Subnet, s)));
        push(
            route_table.clone(),
            named("public"),
            Spec::RouteTable {
                subnets: public.clone(),
            },
            deps,
        );
    }
    for role in &t.roles {
        push(
            Address::new(Kind::SecurityGroup, &role.name.value),
            named(&role.name.value),
            Spec::SecurityGroup {
                role: role.name.value.clone(),
            },
            vec![vpc.clone()],
        );
    }
    for role in &t.roles {
        let ingress = permissions(&role.ingress, ctx);
        let egress = role.egress.as_ref().map(|rules| permissions(rules, ctx));
        let mut deps: BTreeSet<Address> = BTreeSet::new();
        deps.insert(Address::new(Kind::SecurityGroup, &role.name.value));
        for p in ingress.iter().chain(egress.iter().flatten()) {
            if let PermissionPeer::Role(r) = &p.peer {
                deps.insert(Address::new(Kind::SecurityGroup, r));
            }
        }
        push(
            Address::new(Kind::SecurityGroupRules, &role.name.value),
            named(&role.name.value),
            Spec::SecurityGroupRules {
                role: role.name.value.clone(),
                ingress,
                egress,
            },
            deps.into_iter().collect(),
        );
    }
    let bucket = bucket_name(t, ctx);
    let role_name = iam_role_name(t);
    let iam_role = Address::single(Kind::IamRole);
    let mut policies: Vec<String> = t
        .iam
        .instance_role
        .managed_policies
        .iter()
        .map(|p| managed_policy_arn(&p.value))
        .collect();
    policies.sort();
    push(
        iam_role.clone(),
        role_name.clone(),
        Spec::IamRole {
            managed_policies: policies,
            bucket: bucket.clone(),
        },
        vec![],
    );
    let profile = Address::single(Kind::InstanceProfile);
    push(
        profile.clone(),
        role_name.clone(),
        Spec::InstanceProfile { role: role_name },
        vec![iam_role],
    );
    let bucket_addr = Address::new(Kind::Bucket, "captures");
    push(bucket_addr.clone(), bucket, Spec::Bucket, vec![]);
    let zone = t.dns.as_ref().map(|dns| {
        let addr = Address::single(Kind::HostedZone);
        push(
            addr.clone(),
            dns.zone.value.clone(),
            Spec::HostedZone {
                zone: dns.zone.value.clone(),
            },
            vec![vpc.clone()],
        );
        (addr, dns)
    });
    let first_subnet = t.network.subnets.first().map(|s| &s.name.value);
    for inst in &t.instances {
        let subnet = inst
            .subnet
            .as_ref()
            .map(|s| &s.value)
            .or(first_subnet)
            .cloned()
            .unwrap_or_default();
        let public_ip = public.contains(&subnet);
        let mut services: Vec<Service> = inst.services.iter().map(|s| s.value).collect();
        services.sort();
        for name in inst.expanded_names() {
            let addr = Address::new(Kind::Instance, &name);
            let mut deps = vec![
                Address::new(Kind::Subnet, &subnet),
                Address::new(Kind::SecurityGroup, &inst.role.value),
                Address::new(Kind::SecurityGroupRules, &inst.role.value),
                profile.clone(),
                bucket_addr.clone(),
            ];
            if public_ip {
                deps.push(route_table.clone());
            }
            push(
                addr.clone(),
                named(&name),
                Spec::Instance {
                    role: inst.role.value.clone(),
                    subnet: subnet.clone(),
                    instance_type: inst.instance_type.value.clone(),
                    image: image_ref(&inst.image.value),
                    services: services.iter().map(|s| s.as_str().to_owned()).collect(),
                    public_ip,
                    lifetime_minutes: t.lifetime.as_ref().map(|l| l.value.0.as_secs() / 60),
                },
                deps,
            );
            if let Some((zone_addr, dns)) = &zone {
                let fqdn = format!("{name}.{}", dns.zone.value.trim_end_matches('.'));
                push(
                    Address::new(Kind::DnsRecord, &name),
                    fqdn.clone(),
                    Spec::DnsRecord {
                        fqdn,
                        ttl: dns.ttl.value,
                        instance: name.clone(),
                    },
                    vec![zone_addr.clone(), addr],
                );
            }
        }
    }
    Desired {
        lab,
        resources: out,
    }
}

fn image_ref(image: &Image) -> String {
    image.to_string()
}

/// Flattens rules into sorted, de-duplicated permissions.
fn permissions(rules: &[crate::topology::Rule], ctx: &Context) -> Vec<Permission> {
    let mut set = BTreeSet::new();
    for rule in rules {
        for peer in &rule.peers {
            let peer = match &peer.value {
                Peer::Role(r) => PermissionPeer::Role(r.clone()),
                Peer::Cidr(c) => PermissionPeer::Cidr(*c),
                Peer::MyIp => match ctx.my_ip {
                    Some(ip) => PermissionPeer::Cidr(Ipv4Net::from(ip)),
                    None => PermissionPeer::MyIp,
                },
            };
            set.insert(Permission {
                proto: rule.proto.value,
                ports: rule.ports.as_ref().map(|p| p.value),
                peer,
                description: rule.description.as_ref().map(|d| d.value.clone()),
            });
        }
    }
    set.into_iter().collect()
}

fn display<T: fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<T: fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_lab() -> Desired {
        let text = include_str!("../../../topology.yaml");
        let checked = crate::check(text);
        let t = checked.topology.expect("default topology is valid");
        let ctx = Context {
            account: Some("123456789012".into()),
            region: Some("eu-north-1".into()),
            my_ip: None,
        };
        expand(&t, &ctx)
    }

    #[test]
    fn every_dependency_comes_first_and_exists() {
        let d = default_lab();
        for (i, r) in d.resources.iter().enumerate() {
            for dep in &r.depends_on {
                let j = d.resources.iter().position(|x| &x.address == dep);
                assert!(j.is_some_and(|j| j < i), "{} depends on {dep}", r.address);
            }
        }
        for wave in d.waves() {
            for r in &wave {
                for dep in &r.depends_on {
                    assert!(
                        !wave.iter().any(|x| &x.address == dep),
                        "{dep} in the same wave as {}",
                        r.address
                    );
                }
            }
        }
    }

    #[test]
    fn addresses_are_unique_and_names_carry_the_lab_name() {
        let d = default_lab();
        let mut seen = BTreeSet::new();
        for r in &d.resources {
            assert!(
                seen.insert(r.address.to_string()),
                "duplicate {}",
                r.address
            );
            let zone_scoped = matches!(r.address.kind, Kind::HostedZone | Kind::DnsRecord);
            assert!(
                zone_scoped || r.name.starts_with("netlab"),
                "{} is named {}",
                r.address,
                r.name
            );
        }
        let bucket = d
            .get(&Address::new(Kind::Bucket, "captures"))
            .expect("bucket");
        assert_eq!(bucket.name, "netlab-captures-123456789012-eu-north-1");
        assert!(bucket.name.len() <= 63);
    }

    #[test]
    fn count_expands_and_role_rules_follow_both_groups() {
        let d = default_lab();
        for name in ["server", "client-1", "client-2"] {
            assert!(
                d.get(&Address::new(Kind::Instance, name)).is_some(),
                "instance/{name}"
            );
            let record = d.get(&Address::new(Kind::DnsRecord, name)).expect("record");
            assert_eq!(record.name, format!("{name}.lab.internal"));
        }
        let rules = d
            .get(&Address::new(Kind::SecurityGroupRules, "server"))
            .expect("rules");
        assert!(
            rules
                .depends_on
                .contains(&Address::new(Kind::SecurityGroup, "client"))
        );
        let Spec::SecurityGroupRules {
            ingress, egress, ..
        } = &rules.spec
        else {
            panic!("wrong spec")
        };
        assert_eq!(ingress.len(), 5);
        assert!(
            ingress
                .iter()
                .all(|p| p.peer == PermissionPeer::Role("client".into()))
        );
        assert_eq!(egress, &None);
    }

    #[test]
    fn the_longest_lab_name_still_fits_a_bucket_name() {
        let name = "a".repeat(crate::validate::MAX_LAB_NAME);
        let text = include_str!("../../../topology.yaml")
            .replace("name: netlab", &format!("name: {name}"));
        let t = crate::check(&text).topology.expect("valid");
        let ctx = Context {
            account: Some("123456789012".into()),
            region: Some("ap-southeast-3".into()),
            my_ip: None,
        };
        assert!(bucket_name(&t, &ctx).len() <= 63);
    }
}
