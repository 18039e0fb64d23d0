//! Desired state: the concrete AWS resources a validated topology needs.
//!
//! This is the list `plan` compares with what AWS has. Each resource has a logical
//! address (`instance/client-2`) that is stored in its tags, the AWS name derived from
//! the lab name (so two labs never collide on account- or world-wide names), the
//! attributes that matter for drift, and the addresses it depends on. The list is in
//! dependency order: creating front to back and deleting back to front is always safe.

#![warn(clippy::wildcard_enum_match_arm)]

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::attr::{Attr, Cascade, Edge, Value};
use crate::topology::{ArtifactSource, BucketName, Peer, PortRange, Proto, Topology};
use crate::userdata::{Artifact, UserDataInput};

pub use crate::marks::{LABNET_KEY_PREFIX, TAG_ADDRESS, TAG_LAB, labnet_key};

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
    /// The labnet binary, an object in the bucket under a content-addressed key.
    Artifact,
    /// Route 53 private hosted zone.
    HostedZone,
    /// EC2 instance.
    Instance,
    /// Route 53 A record.
    DnsRecord,
}

impl Kind {
    /// Every kind, in creation order.
    pub const ALL: [Kind; 13] = [
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
            Kind::Artifact => "artifact",
            Kind::HostedZone => "dns-zone",
            Kind::Instance => "instance",
            Kind::DnsRecord => "dns-record",
        }
    }

    /// Kinds whose replacement is created before the original goes, with what moves
    /// across in between. Their AWS names differ (a rename is what replaces them), so
    /// both exist at once, and nothing that uses them is ever left pointing at nothing.
    /// Every other kind is deleted first, then created.
    pub fn create_before_destroy(self) -> Option<&'static str> {
        match self {
            Kind::IamRole => {
                Some("the new role takes over the profile before the old one is deleted")
            }
            Kind::InstanceProfile => Some(
                "instances move to the new profile (ReplaceIamInstanceProfileAssociation) before the old one is deleted",
            ),
            Kind::Bucket => Some(
                "captures/, reports/ and instances/ are copied to the new bucket, every version, and verified (checksums) before the old one is deleted",
            ),
            Kind::Vpc
            | Kind::Subnet
            | Kind::InternetGateway
            | Kind::RouteTable
            | Kind::SecurityGroup
            | Kind::SecurityGroupRules
            | Kind::Artifact
            | Kind::HostedZone
            | Kind::Instance
            | Kind::DnsRecord => None,
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

    /// Reads an address back from its tag (`instance/client-2`, `vpc`).
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once('/').unwrap_or((s, ""));
        let kind = Kind::ALL.into_iter().find(|k| k.as_str() == kind)?;
        Some(Self::new(kind, name))
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
}

impl Resource {
    /// Its attributes (see [`Spec::attributes`]).
    pub fn attributes(&self) -> Vec<Attr> {
        self.spec.attributes(&self.name)
    }

    /// The addresses that must exist first.
    pub fn depends_on(&self) -> Vec<Address> {
        self.spec.edges().into_iter().map(|e| e.to).collect()
    }
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
    /// An IPv6 block (found in AWS only: a file cannot say it).
    Cidr6(String),
    /// A managed prefix list (found in AWS only).
    PrefixList(String),
    /// The caller's address, not yet resolved.
    MyIp,
    /// A security group that is not one of the lab's roles (found in AWS only).
    Group(String),
}

impl Permission {
    /// What AWS knows a rule by: protocol, ports and peer. The description is a
    /// property of the rule that changes in place.
    pub fn key(&self) -> (Proto, Option<PortRange>, &PermissionPeer) {
        (self.proto, self.ports, &self.peer)
    }

    /// AWS's default egress rule: every protocol to 0.0.0.0/0.
    pub fn all_outbound() -> Self {
        Permission {
            proto: Proto::All,
            ports: None,
            peer: PermissionPeer::Cidr(Ipv4Net::default()),
            description: None,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.proto)?;
        if let Some(p) = self.ports {
            write!(f, "/{p}")?;
        }
        match &self.peer {
            PermissionPeer::Role(r) => write!(f, " role:{r}")?,
            PermissionPeer::Cidr(c) => write!(f, " {c}")?,
            PermissionPeer::MyIp => write!(f, " my-ip")?,
            PermissionPeer::Group(id) => write!(f, " group:{id}")?,
            PermissionPeer::Cidr6(c) => write!(f, " {c}")?,
            PermissionPeer::PrefixList(id) => write!(f, " prefix-list:{id}")?,
        }
        match &self.description {
            Some(d) => write!(f, " {d:?}"),
            None => Ok(()),
        }
    }
}

/// The attributes of a resource, desired or observed: the AWS layer describes what
/// it finds in these same terms, so comparing the two is comparing values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Spec {
    /// VPC.
    Vpc {
        /// CIDR block.
        #[serde(serialize_with = "display")]
        cidr: Ipv4Net,
        /// DNS support and DNS hostnames (the private zone needs both).
        dns: bool,
    },
    /// Subnet.
    Subnet {
        /// CIDR block.
        #[serde(serialize_with = "display")]
        cidr: Ipv4Net,
        /// Public IPv4 on launch (and a route to the internet gateway).
        public: bool,
        /// The availability zone's id (`eun1-az1`), one that offers every instance
        /// type of the subnet; `None` where no AWS call was made to choose it.
        zone: Option<String>,
    },
    /// Internet gateway.
    InternetGateway {
        /// Attached to the lab's VPC.
        attached: bool,
    },
    /// Route table for the public subnets.
    RouteTable {
        /// `0.0.0.0/0` goes to the internet gateway.
        internet_route: bool,
        /// Subnets associated with it, sorted.
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
        /// Outbound permissions, sorted (AWS's default is all traffic to 0.0.0.0/0).
        egress: Vec<Permission>,
    },
    /// IAM role assumed by EC2.
    IamRole {
        /// Managed policy ARNs, sorted.
        managed_policies: Vec<String>,
        /// The bucket the inline policy grants access to (`None`: no or another policy).
        inline_policy_bucket: Option<String>,
        /// The trust policy is exactly "EC2 may assume it", compared as a document.
        trust_ec2_only: bool,
        /// Inline policies besides labctl's own, sorted (drift: none is wanted).
        other_inline_policies: Vec<String>,
        /// A permissions boundary's ARN (drift: none is wanted).
        permissions_boundary: Option<String>,
        /// The DynamoDB tables (ARNs, sorted) labctl's second inline policy grants.
        dynamodb_tables: Vec<String>,
    },
    /// Instance profile holding the role.
    InstanceProfile {
        /// IAM role name (empty when it holds none).
        role: String,
    },
    /// Capture bucket.
    Bucket {
        /// Carries the lab's tags (a crash right after creation can leave it untagged).
        tagged: bool,
        /// Public access blocked.
        private: bool,
        /// Default encryption on.
        encrypted: bool,
        /// Policy denying requests without TLS.
        tls_only: bool,
        /// Versioning enabled, so no overwrite or delete loses a capture.
        versioned: bool,
    },
    /// An uploaded artifact (its name is the object key, which holds the digest).
    Artifact {
        /// The bucket it is in.
        bucket: String,
        /// Lowercase hex SHA-256 of the content.
        sha256: String,
    },
    /// Private hosted zone.
    HostedZone {
        /// Zone name.
        zone: String,
        /// Associated with the lab's VPC.
        vpc_associated: bool,
    },
    /// EC2 instance.
    Instance {
        /// Instance type.
        instance_type: String,
        /// Image reference (`ubuntu-24.04`, `ami-…`, or a parameter path).
        image: String,
        /// Role (security group).
        role: String,
        /// Subnet name.
        subnet: String,
        /// Public IPv4 address on launch.
        public_ip: bool,
        /// Instance profile name.
        profile: String,
        /// IMDSv2 required.
        imdsv2: bool,
        /// Running (a stopped instance is started again, not replaced).
        running: bool,
        /// Services in the user-data, sorted.
        services: Vec<String>,
        /// Minutes until it stops itself.
        lifetime_minutes: Option<u64>,
        /// SHA-256 of the user-data (first 16 hex digits).
        user_data: String,
    },
    /// A record pointing at an instance's private IPv4 address.
    DnsRecord {
        /// Fully qualified name.
        fqdn: String,
        /// TTL in seconds.
        ttl: u32,
        /// `instance/<name>`, or the address when it matches no instance.
        target: String,
    },
}

impl Spec {
    /// The attributes `plan` compares and shows, each with its typed value and whether
    /// changing it replaces the resource. `name` is the resource's AWS name: where AWS
    /// cannot rename (roles, profiles, buckets, groups), it is an attribute too.
    pub fn attributes(&self, name: &str) -> Vec<Attr> {
        use Value::{Cidr, Flag, List, Number, Rules, Text};
        let aws_name = || Attr::replaces("name", Text(name.to_owned()));
        match self {
            Spec::Vpc { cidr, dns } => vec![
                Attr::replaces("cidr", Cidr(*cidr)),
                Attr::updates("dns", Flag(*dns)),
            ],
            Spec::Subnet { cidr, public, zone } => {
                let mut attrs = vec![
                    Attr::replaces("cidr", Cidr(*cidr)),
                    Attr::updates("public", Flag(*public)),
                ];
                // Offline (`graph`), the zone is not chosen and not compared.
                if let Some(zone) = zone {
                    attrs.push(Attr::replaces("zone", Text(zone.clone())));
                }
                attrs
            }
            Spec::InternetGateway { attached } => vec![Attr::updates("attached", Flag(*attached))],
            Spec::RouteTable {
                internet_route,
                subnets,
            } => vec![
                Attr::updates("internet_route", Flag(*internet_route)),
                Attr::updates("subnets", List(subnets.clone())),
            ],
            Spec::SecurityGroup { role } => {
                vec![aws_name(), Attr::updates("role", Text(role.clone()))]
            }
            Spec::SecurityGroupRules {
                ingress, egress, ..
            } => vec![
                Attr::updates("ingress", Rules(ingress.clone())),
                Attr::updates("egress", Rules(egress.clone())),
            ],
            Spec::IamRole {
                managed_policies,
                inline_policy_bucket,
                trust_ec2_only,
                other_inline_policies,
                permissions_boundary,
                dynamodb_tables,
            } => vec![
                aws_name(),
                Attr::updates("trust_ec2_only", Flag(*trust_ec2_only)),
                Attr::updates("other_inline_policies", List(other_inline_policies.clone())),
                Attr::updates(
                    "permissions_boundary",
                    permissions_boundary.clone().map_or(Value::Unset, Text),
                ),
                Attr::updates("managed_policies", List(managed_policies.clone())),
                Attr::updates("dynamodb_tables", List(dynamodb_tables.clone())),
                Attr::updates(
                    "inline_policy",
                    inline_policy_bucket.as_ref().map_or(Value::Unset, |b| {
                        Text(format!(
                            "{b}: get artifacts/labnet, put its own report and captures"
                        ))
                    }),
                ),
            ],
            Spec::InstanceProfile { role } => {
                vec![aws_name(), Attr::updates("role", Text(role.clone()))]
            }
            Spec::Bucket {
                tagged,
                private,
                encrypted,
                tls_only,
                versioned,
            } => vec![
                aws_name(),
                Attr::updates("tagged", Flag(*tagged)),
                Attr::updates("private", Flag(*private)),
                Attr::updates("encrypted", Flag(*encrypted)),
                Attr::updates("tls_only", Flag(*tls_only)),
                Attr::updates("versioned", Flag(*versioned)),
            ],
            Spec::Artifact { bucket, sha256 } => vec![
                Attr::replaces("bucket", Text(bucket.clone())),
                Attr::replaces("sha256", Text(sha256.clone())),
            ],
            Spec::HostedZone {
                zone,
                vpc_associated,
            } => vec![
                Attr::replaces("zone", Text(zone.clone())),
                Attr::updates("vpc_associated", Flag(*vpc_associated)),
            ],
            Spec::Instance {
                instance_type,
                image,
                role,
                subnet,
                public_ip,
                profile,
                imdsv2,
                running,
                services,
                lifetime_minutes,
                user_data,
            } => vec![
                Attr::updates("type", Text(instance_type.clone())),
                Attr::replaces("image", Text(image.clone())),
                Attr::updates("role", Text(role.clone())),
                Attr::replaces("subnet", Text(subnet.clone())),
                Attr::replaces("public_ip", Flag(*public_ip)),
                Attr::updates("profile", Text(profile.clone())),
                Attr::updates("imdsv2", Flag(*imdsv2)),
                Attr::updates("running", Flag(*running)),
                Attr::replaces("services", List(services.clone())),
                Attr::replaces(
                    "lifetime",
                    lifetime_minutes.map_or(Value::Unset, Value::Minutes),
                ),
                Attr::replaces("user_data", Text(user_data.clone())),
            ],
            Spec::DnsRecord { fqdn, ttl, target } => vec![
                Attr::replaces("record", Text(format!("{fqdn} A"))),
                Attr::updates("ttl", Number(u64::from(*ttl))),
                Attr::updates("target", Text(target.clone())),
            ],
        }
    }

    /// What must exist before this resource, read from its own fields, with what a
    /// renewed dependency does to it. The same function gives the edges of what is
    /// wanted and of what was found, so creation and deletion walk one graph.
    pub fn edges(&self) -> Vec<Edge> {
        use Cascade::{Inside, Order, Refers};
        let edge = |kind, name: &str, cascade| Edge {
            to: Address::new(kind, name),
            cascade,
        };
        let vpc = || edge(Kind::Vpc, "", Inside);
        match self {
            Spec::Vpc { .. } | Spec::Bucket { .. } => vec![],
            Spec::Subnet { .. } | Spec::SecurityGroup { .. } | Spec::HostedZone { .. } => {
                vec![vpc()]
            }
            // A gateway can be detached, but one per VPC is simplest to reason about.
            Spec::InternetGateway { .. } => vec![vpc()],
            Spec::RouteTable { subnets, .. } => {
                let mut out = vec![vpc(), edge(Kind::InternetGateway, "", Refers)];
                out.extend(subnets.iter().map(|s| edge(Kind::Subnet, s, Refers)));
                out
            }
            Spec::SecurityGroupRules {
                role,
                ingress,
                egress,
            } => {
                let mut out = vec![edge(Kind::SecurityGroup, role, Inside)];
                let mut peers: Vec<&String> = ingress
                    .iter()
                    .chain(egress)
                    .filter_map(|p| match &p.peer {
                        PermissionPeer::Role(r) if r != role => Some(r),
                        PermissionPeer::Role(_)
                        | PermissionPeer::Cidr(_)
                        | PermissionPeer::Cidr6(_)
                        | PermissionPeer::PrefixList(_)
                        | PermissionPeer::MyIp
                        | PermissionPeer::Group(_) => None,
                    })
                    .collect();
                peers.sort();
                peers.dedup();
                out.extend(
                    peers
                        .into_iter()
                        .map(|r| edge(Kind::SecurityGroup, r, Refers)),
                );
                out
            }
            // The inline policy names the bucket: it exists first, and goes last.
            Spec::IamRole {
                inline_policy_bucket,
                ..
            } => inline_policy_bucket
                .iter()
                .map(|_| edge(Kind::Bucket, BUCKET, Order))
                .collect(),
            Spec::InstanceProfile { .. } => vec![edge(Kind::IamRole, "", Refers)],
            Spec::Artifact { .. } => vec![edge(Kind::Bucket, BUCKET, Inside)],
            Spec::Instance {
                role,
                subnet,
                public_ip,
                ..
            } => {
                let mut out = vec![
                    edge(Kind::Subnet, subnet, Inside),
                    edge(Kind::SecurityGroup, role, Refers),
                    edge(Kind::SecurityGroupRules, role, Order),
                    edge(Kind::InstanceProfile, "", Refers),
                    // The user-data names the bucket and the binary in it.
                    edge(Kind::Bucket, BUCKET, Order),
                    edge(Kind::Artifact, LABNET_ARTIFACT, Order),
                ];
                if *public_ip {
                    out.push(edge(Kind::RouteTable, PUBLIC_ROUTE_TABLE, Order));
                }
                out
            }
            Spec::DnsRecord { target, .. } => {
                let mut out = vec![edge(Kind::HostedZone, "", Inside)];
                out.extend(
                    Address::parse(target)
                        .filter(|a| a.kind == Kind::Instance)
                        .map(|to| Edge {
                            to,
                            cascade: Refers,
                        }),
                );
                out
            }
        }
    }
}

/// The capture bucket's address name (`bucket/captures`).
pub const BUCKET: &str = "captures";

/// The public subnets' route table's address name (`route-table/public`).
pub const PUBLIC_ROUTE_TABLE: &str = "public";

/// Name of the labnet artifact's address (`artifact/labnet`).
pub const LABNET_ARTIFACT: &str = "labnet";

/// Facts from outside the file that some names and rules need.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// AWS account id (for the capture bucket's name).
    pub account: Option<String>,
    /// Effective region.
    pub region: Option<String>,
    /// The caller's public IPv4 address (for `my-ip`).
    pub my_ip: Option<Ipv4Addr>,
    /// Managed policies' real ARNs by the name the topology gives, paths included
    /// (`service-role/…`), as IAM resolved them; a name not here is taken to be at
    /// AWS's root path.
    pub policy_arns: std::collections::BTreeMap<String, String>,
    /// The availability zone id chosen for each subnet, by name (see [`Spec::Subnet`]).
    pub zones: std::collections::BTreeMap<String, String>,
    /// SHA-256 of the labnet binary labctl uploads (`artifacts.labnet` is `build` or
    /// `path`); unknown offline, and then no artifact is part of the desired state.
    pub labnet_sha256: Option<String>,
}

/// The resources a lab needs, in dependency order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Desired {
    /// Lab name.
    pub lab: String,
    /// Resources, each after everything it depends on.
    pub resources: Vec<Resource>,
    /// Each instance's rendered user-data (its digest is in the instance's spec).
    #[serde(skip)]
    pub user_data: std::collections::BTreeMap<String, String>,
}

impl Desired {
    /// The resource at `address`.
    pub fn get(&self, address: &Address) -> Option<&Resource> {
        self.resources.iter().find(|r| &r.address == address)
    }

    /// Groups resources into waves: every resource's dependencies are in earlier waves,
    /// so the resources of one wave can be created concurrently. Edges to addresses
    /// the lab does not have (no artifact when labnet comes from a URL) impose nothing.
    pub fn waves(&self) -> Vec<Vec<&Resource>> {
        let levels = levels(
            self.resources
                .iter()
                .map(|r| (r.address.clone(), r.depends_on())),
        );
        let depth = levels.values().max().map_or(0, |m| m + 1);
        let mut waves = vec![Vec::new(); depth];
        for r in &self.resources {
            waves[levels[&r.address]].push(r);
        }
        waves
    }
}

/// Each node's level in a dependency graph: 0 for a node with no dependency among the
/// nodes, else one more than its deepest dependency. The graph is acyclic by
/// construction (edges point from a kind to kinds created before it).
pub fn levels(
    nodes: impl IntoIterator<Item = (Address, Vec<Address>)>,
) -> std::collections::BTreeMap<Address, usize> {
    use std::collections::BTreeMap;
    let graph: BTreeMap<Address, Vec<Address>> = nodes.into_iter().fold(
        BTreeMap::new(),
        |mut g: BTreeMap<Address, Vec<Address>>, (a, deps)| {
            g.entry(a).or_default().extend(deps);
            g
        },
    );
    fn level(
        a: &Address,
        graph: &BTreeMap<Address, Vec<Address>>,
        memo: &mut BTreeMap<Address, usize>,
    ) -> usize {
        if let Some(l) = memo.get(a) {
            return *l;
        }
        let deps = graph.get(a).map(Vec::as_slice).unwrap_or_default();
        let l = deps
            .iter()
            .filter(|d| *d != a && graph.contains_key(*d))
            .map(|d| level(d, graph, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(a.clone(), l);
        l
    }
    let mut memo = BTreeMap::new();
    for a in graph.keys() {
        level(a, &graph, &mut memo);
    }
    memo
}

/// The capture bucket's name.
pub fn bucket_name(t: &Topology, ctx: &Context) -> String {
    match &t.captures.bucket.value {
        BucketName::Named(name) => name.clone(),
        BucketName::Auto => crate::marks::auto_bucket_name(
            &t.name.value,
            ctx.account.as_deref().unwrap_or("{account}"),
            ctx.region.as_deref().unwrap_or("{region}"),
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

/// Expands a validated topology into its resources, each after everything it
/// depends on (its edges come from its spec: see [`Spec::edges`]).
pub fn expand(t: &Topology, ctx: &Context) -> Desired {
    let lab = t.name.value.clone();
    let named = |suffix: &str| format!("{lab}-{suffix}");
    let mut out: Vec<Resource> = Vec::new();
    let mut user_data_of = std::collections::BTreeMap::new();
    let mut push = |address: Address, name: String, spec: Spec| {
        out.push(Resource {
            address,
            name,
            spec,
        });
    };

    let cidr = t.network.cidr.value;
    push(
        Address::single(Kind::Vpc),
        lab.clone(),
        Spec::Vpc { cidr, dns: true },
    );
    for s in &t.network.subnets {
        let spec = Spec::Subnet {
            cidr: s.cidr.value,
            public: s.public,
            zone: ctx.zones.get(&s.name.value).cloned(),
        };
        let address = Address::new(Kind::Subnet, &s.name.value);
        push(address, named(&s.name.value), spec);
    }
    let mut public: Vec<String> = t
        .network
        .subnets
        .iter()
        .filter(|s| s.public)
        .map(|s| s.name.value.clone())
        .collect();
    public.sort();
    if !public.is_empty() {
        let spec = Spec::InternetGateway { attached: true };
        push(Address::single(Kind::InternetGateway), lab.clone(), spec);
        let spec = Spec::RouteTable {
            internet_route: true,
            subnets: public.clone(),
        };
        let address = Address::new(Kind::RouteTable, PUBLIC_ROUTE_TABLE);
        push(address, named(PUBLIC_ROUTE_TABLE), spec);
    }
    for role in &t.roles {
        let spec = Spec::SecurityGroup {
            role: role.name.value.clone(),
        };
        let address = Address::new(Kind::SecurityGroup, &role.name.value);
        push(address, named(&role.name.value), spec);
    }
    for role in &t.roles {
        let ingress = permissions(&role.ingress, ctx);
        // No `egress` in the file keeps AWS's default: everything, anywhere.
        let egress = match &role.egress {
            Some(rules) => permissions(rules, ctx),
            None => vec![Permission::all_outbound()],
        };
        let spec = Spec::SecurityGroupRules {
            role: role.name.value.clone(),
            ingress,
            egress,
        };
        let address = Address::new(Kind::SecurityGroupRules, &role.name.value);
        push(address, named(&role.name.value), spec);
    }
    let bucket = bucket_name(t, ctx);
    let spec = Spec::Bucket {
        tagged: true,
        private: true,
        encrypted: true,
        tls_only: true,
        versioned: true,
    };
    push(Address::new(Kind::Bucket, BUCKET), bucket.clone(), spec);
    let role_name = iam_role_name(t);
    let mut policies: Vec<String> = t
        .iam
        .instance_role
        .managed_policies
        .iter()
        .map(|p| {
            ctx.policy_arns
                .get(&p.value)
                .cloned()
                .unwrap_or_else(|| managed_policy_arn(&p.value))
        })
        .collect();
    policies.sort();
    let mut dynamodb_tables: Vec<String> = t
        .iam
        .instance_role
        .dynamodb
        .iter()
        .flat_map(|d| &d.tables)
        .map(|table| {
            format!(
                "arn:aws:dynamodb:{}:{}:table/{}",
                ctx.region.as_deref().unwrap_or("{region}"),
                ctx.account.as_deref().unwrap_or("{account}"),
                table.value
            )
        })
        .collect();
    dynamodb_tables.sort();
    dynamodb_tables.dedup();
    let spec = Spec::IamRole {
        managed_policies: policies,
        inline_policy_bucket: Some(bucket.clone()),
        trust_ec2_only: true,
        other_inline_policies: Vec::new(),
        permissions_boundary: None,
        dynamodb_tables,
    };
    push(Address::single(Kind::IamRole), role_name.clone(), spec);
    let spec = Spec::InstanceProfile {
        role: role_name.clone(),
    };
    push(
        Address::single(Kind::InstanceProfile),
        role_name.clone(),
        spec,
    );
    let labnet = match &t.artifacts.labnet.value {
        ArtifactSource::Url { url, sha256 } => Some(Artifact::Url {
            url: url.clone(),
            sha256: sha256.clone(),
        }),
        ArtifactSource::Build | ArtifactSource::Path(_) => {
            ctx.labnet_sha256.as_ref().map(|sha256| Artifact::S3 {
                bucket: bucket.clone(),
                key: labnet_key(sha256),
                sha256: sha256.clone(),
            })
        }
    };
    if let Some(Artifact::S3 { key, sha256, .. }) = &labnet {
        let spec = Spec::Artifact {
            bucket: bucket.clone(),
            sha256: sha256.clone(),
        };
        push(
            Address::new(Kind::Artifact, LABNET_ARTIFACT),
            key.clone(),
            spec,
        );
    }
    let zone = t.dns.as_ref().map(|dns| {
        let zone = dns.zone.value.trim_end_matches('.').to_owned();
        let spec = Spec::HostedZone {
            zone: zone.clone(),
            vpc_associated: true,
        };
        push(Address::single(Kind::HostedZone), zone.clone(), spec);
        (zone, dns.ttl.value)
    });
    let first_subnet = t.network.subnets.first().map(|s| &s.name.value);
    let lifetime = t.lifetime.as_ref().map(|l| l.value.0.as_secs() / 60);
    for inst in &t.instances {
        let subnet = inst
            .subnet
            .as_ref()
            .map(|s| &s.value)
            .or(first_subnet)
            .cloned()
            .unwrap_or_default();
        let public_ip = public.contains(&subnet);
        // Sorted as text: that is how they read back from the instance's tag.
        let mut services: Vec<String> = inst
            .services
            .iter()
            .map(|s| s.value.as_str().to_owned())
            .collect();
        services.sort();
        // The reference, not the AMI it resolves to today: a new Ubuntu build must
        // not replace running instances; changing the reference does.
        let image = inst.image.value.to_string();
        for name in inst.expanded_names() {
            let user_data = crate::userdata::render(&UserDataInput {
                lab: &lab,
                instance: &name,
                role: &inst.role.value,
                zone: zone.as_ref().map(|(z, _)| z.as_str()),
                region: ctx.region.as_deref(),
                bucket: &bucket,
                services: &services,
                lifetime_minutes: lifetime,
                labnet: labnet.as_ref(),
            });
            let spec = Spec::Instance {
                instance_type: inst.instance_type.value.clone(),
                image: image.clone(),
                role: inst.role.value.clone(),
                subnet: subnet.clone(),
                public_ip,
                profile: role_name.clone(),
                imdsv2: true,
                running: true,
                services: services.clone(),
                lifetime_minutes: lifetime,
                user_data: crate::userdata::digest(&user_data),
            };
            user_data_of.insert(name.clone(), user_data);
            let address = Address::new(Kind::Instance, &name);
            push(address.clone(), named(&name), spec);
            if let Some((zone, ttl)) = &zone {
                let fqdn = format!("{name}.{zone}");
                let spec = Spec::DnsRecord {
                    fqdn: fqdn.clone(),
                    ttl: *ttl,
                    target: address.to_string(),
                };
                push(Address::new(Kind::DnsRecord, &name), fqdn, spec);
            }
        }
    }
    Desired {
        lab,
        resources: out,
        user_data: user_data_of,
    }
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
            labnet_sha256: None,
            policy_arns: Default::default(),
            zones: Default::default(),
        };
        expand(&t, &ctx)
    }

    #[test]
    fn addresses_round_trip_through_their_tag() {
        for a in [
            Address::single(Kind::Vpc),
            Address::new(Kind::Instance, "client-2"),
        ] {
            assert_eq!(Address::parse(&a.to_string()), Some(a));
        }
        assert_eq!(Address::parse("nonsense/x"), None);
    }

    #[test]
    fn every_dependency_comes_first_and_exists() {
        let d = default_lab();
        for (i, r) in d.resources.iter().enumerate() {
            for dep in r.depends_on() {
                let j = d.resources.iter().position(|x| x.address == dep);
                // Without a labnet build there is no artifact to wait for.
                if dep.kind == Kind::Artifact && j.is_none() {
                    continue;
                }
                assert!(j.is_some_and(|j| j < i), "{} depends on {dep}", r.address);
            }
        }
        for wave in d.waves() {
            for r in &wave {
                for dep in r.depends_on() {
                    assert!(
                        !wave.iter().any(|x| x.address == dep),
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
                .depends_on()
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
        assert_eq!(egress, &[Permission::all_outbound()]);
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
            labnet_sha256: None,
            policy_arns: Default::default(),
            zones: Default::default(),
        };
        assert!(bucket_name(&t, &ctx).len() <= 63);
    }
}
