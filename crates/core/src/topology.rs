//! The topology model: what a `topology.yaml` says, as types.
//!
//! Decoding here checks shape, types and the syntax of single values (a CIDR, a port
//! range, a rule source); [`crate::validate`] checks how values relate to each other.
//! Every value keeps its position so both can point at it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::decode::{Decoder, FromNode, Located};
use crate::yaml::{Node, Value};

/// A whole lab.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Lab name: tags every resource and prefixes every AWS name.
    pub name: Located<String>,
    /// Region, if the file pins one.
    pub region: Option<Located<String>>,
    /// The VPC and its subnets.
    pub network: Network,
    /// The private hosted zone, if any.
    pub dns: Option<Dns>,
    /// Security roles, each one security group, in file order.
    pub roles: Vec<Role>,
    /// The instance role.
    pub iam: Iam,
    /// Where captures go.
    pub captures: Captures,
    /// Instances as written (before `count` expansion).
    pub instances: Vec<Instance>,
    /// Where the lab programs come from.
    pub artifacts: Artifacts,
    /// Cost guard: instances stop themselves after this long.
    pub lifetime: Option<Located<Lifetime>>,
}

/// The VPC.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// VPC CIDR block.
    pub cidr: Located<Ipv4Net>,
    /// Subnets inside it.
    pub subnets: Vec<Subnet>,
}

/// One subnet.
#[derive(Debug, Clone, PartialEq)]
pub struct Subnet {
    /// Logical name.
    pub name: Located<String>,
    /// CIDR block, inside the VPC's.
    pub cidr: Located<Ipv4Net>,
    /// Internet gateway route and public IPv4 addresses on launch.
    pub public: bool,
}

/// The Route 53 private hosted zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// Zone name, such as `lab.internal`.
    pub zone: Located<String>,
    /// TTL of the instances' A records, in seconds.
    pub ttl: Located<u32>,
}

/// A role: one security group and the rules that admit traffic to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    /// Role name (the mapping key).
    pub name: Located<String>,
    /// Inbound rules; nothing else is admitted.
    pub ingress: Vec<Rule>,
    /// Outbound rules; `None` leaves outbound traffic open (the AWS default).
    pub egress: Option<Vec<Rule>>,
}

/// One security group rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Where the rule starts in the file.
    pub pos: crate::diag::Pos,
    /// Protocol.
    pub proto: Located<Proto>,
    /// Port range, for TCP and UDP.
    pub ports: Option<Located<PortRange>>,
    /// Who may send (ingress) or receive (egress).
    pub peers: Vec<Located<Peer>>,
    /// Free text, copied to the rule's description.
    pub description: Option<Located<String>>,
    /// Explicit consent to a 0.0.0.0/0 peer.
    pub allow_world: bool,
}

/// A rule's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (all types).
    Icmp,
    /// Every protocol.
    All,
    /// Another IP protocol, by number. A file cannot say it; it is only found in
    /// AWS, on a rule someone else added, which `up` then removes.
    Number(u8),
}

impl Proto {
    const NAMES: [&'static str; 4] = ["tcp", "udp", "icmp", "all"];

    /// The name used in the file (a protocol number has none).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::All => "all",
            Proto::Number(_) => "protocol",
        }
    }

    /// True for protocols that have ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Number(n) => write!(f, "protocol-{n}"),
            Proto::Tcp | Proto::Udp | Proto::Icmp | Proto::All => f.write_str(self.as_str()),
        }
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port (equal to `from` for a single port).
    pub to: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// The other end of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// Every instance of a role (`role:client`).
    Role(String),
    /// An IPv4 block.
    Cidr(Ipv4Net),
    /// The caller's public IPv4 address, resolved at plan time.
    MyIp,
}

impl Peer {
    /// True for 0.0.0.0/0.
    pub fn is_world(&self) -> bool {
        matches!(self, Peer::Cidr(net) if net.prefix_len() == 0)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Role(r) => write!(f, "role:{r}"),
            Peer::Cidr(c) => write!(f, "{c}"),
            Peer::MyIp => f.write_str("my-ip"),
        }
    }
}

/// IAM settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Iam {
    /// The role the instances run as.
    pub instance_role: InstanceRole,
}

/// The instances' IAM role.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRole {
    /// Base name; the AWS name is `<lab>-<name>`.
    pub name: Located<String>,
    /// AWS managed policies by name (`AmazonSSMManagedInstanceCore`) or ARN.
    pub managed_policies: Vec<Located<String>>,
    /// DynamoDB access scoped to these tables, instead of a managed policy.
    pub dynamodb: Option<DynamoDb>,
}

/// DynamoDB tables the instances may use, and nothing else of DynamoDB.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoDb {
    /// Where `dynamodb:` is.
    pub pos: crate::diag::Pos,
    /// Table names, in this account and the lab's region.
    pub tables: Vec<Located<String>>,
}

/// Capture storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Captures {
    /// The bucket.
    pub bucket: Located<BucketName>,
}

/// How the capture bucket is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketName {
    /// `<lab>-captures-<account>-<region>`.
    Auto,
    /// A name of the user's choosing.
    Named(String),
}

/// An instance entry (one entry with `count: 2` becomes `client-1`, `client-2`).
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Name, or prefix when `count` > 1.
    pub name: Located<String>,
    /// Security role.
    pub role: Located<String>,
    /// EC2 instance type.
    pub instance_type: Located<String>,
    /// Machine image.
    pub image: Located<Image>,
    /// How many.
    pub count: Located<u32>,
    /// Lab programs to run as services.
    pub services: Vec<Located<Service>>,
    /// Subnet; the first subnet when absent.
    pub subnet: Option<Located<String>>,
}

impl Instance {
    /// The names this entry expands to: `name` alone, or `name-1` .. `name-N`.
    pub fn expanded_names(&self) -> Vec<String> {
        match self.count.value {
            1 => vec![self.name.value.clone()],
            n => (1..=n)
                .map(|i| format!("{}-{i}", self.name.value))
                .collect(),
        }
    }
}

/// Where an instance's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// Canonical's Ubuntu 24.04 LTS for x86_64, looked up at plan time.
    Ubuntu2404,
    /// An explicit AMI id.
    Ami(String),
    /// An SSM parameter whose value is an AMI id.
    Parameter(String),
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Image::Ubuntu2404 => f.write_str("ubuntu-24.04"),
            Image::Ami(id) => f.write_str(id),
            Image::Parameter(path) => f.write_str(path),
        }
    }
}

/// The lab programs labnet can run as a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Framed TCP text server (port 1234).
    TcpServer,
    /// Framed UDP server (port 1234).
    UdpServer,
    /// Zero-window demonstration server.
    HesitantServer,
    /// Alphanumeric check server (port 12000).
    AlnumServer,
    /// Echo server for the RTT exercise (port 12001).
    EchoServer,
    /// Intro line + length-prefixed message server (port 8080).
    IntroServer,
}

impl Service {
    /// Every service, in documentation order.
    pub const ALL: [Service; 6] = [
        Service::TcpServer,
        Service::UdpServer,
        Service::HesitantServer,
        Service::AlnumServer,
        Service::EchoServer,
        Service::IntroServer,
    ];

    /// The labnet subcommand, which is also the name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::TcpServer => "tcp-server",
            Service::UdpServer => "udp-server",
            Service::HesitantServer => "hesitant-server",
            Service::AlnumServer => "alnum-server",
            Service::EchoServer => "echo-server",
            Service::IntroServer => "intro-server",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where labnet comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifacts {
    /// The labnet binary.
    pub labnet: Located<ArtifactSource>,
}

/// A way to obtain an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactSource {
    /// Build (or find) it from this workspace and upload it to the lab's bucket.
    Build,
    /// A prebuilt local file, uploaded to the lab's bucket.
    Path(String),
    /// A published download checked against its SHA-256.
    Url {
        /// HTTPS URL.
        url: String,
        /// Lowercase hex SHA-256 of the file.
        sha256: String,
    },
}

/// How long instances may run before they stop themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lifetime(pub Duration);

impl Lifetime {
    /// The shortest lifetime a lab may set: the guard warns logged-in users before it
    /// stops an instance, and a shorter life leaves no time to work.
    pub const MIN: Duration = Duration::from_secs(10 * 60);
    /// The longest: a guard that fires after a month guards little.
    pub const MAX: Duration = Duration::from_secs(30 * 86_400);
}

/// Shown as every duration is ([`crate::duration::format`]).
impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::duration::format(self.0))
    }
}

impl FromStr for Lifetime {
    type Err = String;

    /// Reads the duration grammar of [`crate::duration`] (`4h`, `90m`, `1h30m`, `2d`).
    /// Whether the value suits a lifetime is [`crate::validate`]'s to say.
    fn from_str(s: &str) -> Result<Self, String> {
        crate::duration::parse(s).map(Lifetime)
    }
}

// ---------------------------------------------------------------------------------
// Decoding

/// Decodes the document root. Returns `None` only when the root itself is unusable;
/// otherwise every section that decoded is kept and the rest is reported in `d`.
pub fn decode(root: &Node, d: &mut Decoder) -> Option<Topology> {
    let mut m = d.map(root, "the topology")?;
    let name = m.req(d, "name");
    let region = m.opt(d, "region");
    let network = m.req_with(d, "network", decode_network);
    let dns = m.get("dns").and_then(|n| decode_dns(d, n));
    let roles = m.req_with(d, "roles", decode_roles);
    let iam = match m.get("iam") {
        Some(n) => decode_iam(d, n),
        None => Some(Iam::default_at(m.pos())),
    };
    let captures = match m.get("captures") {
        Some(n) => decode_captures(d, n),
        None => Some(Captures {
            bucket: Located::new(BucketName::Auto, m.pos()),
        }),
    };
    let instances = m.req_with(d, "instances", |d, n| {
        d.list(n, "instances", decode_instance)
    });
    let artifacts = match m.get("artifacts") {
        Some(n) => decode_artifacts(d, n),
        None => Some(Artifacts {
            labnet: Located::new(ArtifactSource::Build, m.pos()),
        }),
    };
    let lifetime = m.opt::<Located<Lifetime>>(d, "lifetime");
    if m.get("lifetime").is_none() {
        d.diags
            .warning(
                m.pos(),
                "no `lifetime`: nothing stops the instances, which run (and cost) until \
                 `labctl down`",
            )
            .hint("add `lifetime: 4h` to have each instance stop itself 4 hours after it boots");
    }
    // Sections that failed are reported; keep the rest so later checks still run.
    let _ = m.finish(d);
    Some(Topology {
        name: name?,
        region,
        network: network?,
        dns,
        roles: roles?,
        iam: iam?,
        captures: captures?,
        instances: instances?,
        artifacts: artifacts?,
        lifetime,
    })
}

impl Iam {
    /// The instance role when the file has no `iam` section: SSM access only, which
    /// `ssm-shell` needs; the capture bucket policy is added by labctl either way.
    fn default_at(pos: crate::diag::Pos) -> Self {
        Iam {
            instance_role: InstanceRole {
                name: Located::new("instance".into(), pos),
                managed_policies: vec![Located::new("AmazonSSMManagedInstanceCore".into(), pos)],
                dynamodb: None,
            },
        }
    }
}

fn decode_network(d: &mut Decoder, node: &Node) -> Option<Network> {
    let mut m = d.map(node, "`network`")?;
    let cidr = m.req(d, "cidr");
    let subnets = m.req_with(d, "subnets", |d, n| {
        if n.value == Value::Seq(Vec::new()) {
            d.error(n.pos, "the network has no subnets");
        }
        d.list(n, "subnets", decode_subnet)
    });
    let _ = m.finish(d);
    Some(Network {
        cidr: cidr?,
        subnets: subnets?,
    })
}

fn decode_subnet(d: &mut Decoder, node: &Node) -> Option<Subnet> {
    let mut m = d.map(node, "a subnet")?;
    let name = m.req(d, "name");
    let cidr = m.req(d, "cidr");
    let public = m.opt(d, "public").unwrap_or(false);
    m.finish(d)?;
    Some(Subnet {
        name: name?,
        cidr: cidr?,
        public,
    })
}

fn decode_dns(d: &mut Decoder, node: &Node) -> Option<Dns> {
    let mut m = d.map(node, "`dns`")?;
    let zone = m.req(d, "zone");
    let ttl = m.opt(d, "ttl").unwrap_or_else(|| Located::new(60, m.pos()));
    m.finish(d)?;
    Some(Dns { zone: zone?, ttl })
}

fn decode_roles(d: &mut Decoder, node: &Node) -> Option<Vec<Role>> {
    let Value::Map(entries) = &node.value else {
        d.expected(node, "a mapping of role names to their rules for `roles`");
        return None;
    };
    let mut roles = Vec::new();
    for (key, body) in entries {
        let Some(name) = Located::<String>::from_node(key, d) else {
            continue;
        };
        let what = format!("role `{}`", name.value);
        // `client: {}` or `client:` alone: a role that admits nothing.
        let (ingress, egress) = if body.value == Value::Null {
            (Vec::new(), None)
        } else {
            let Some(mut m) = d.map(body, &what) else {
                continue;
            };
            let ingress = match m.get("ingress") {
                Some(n) => d.list(n, "rules", |d, n| decode_rule(d, n, "from")),
                None => Some(Vec::new()),
            };
            // Outer `None`: egress present but broken; `Some(None)`: absent (open).
            let egress = match m.get("egress") {
                Some(n) => d.list(n, "rules", |d, n| decode_rule(d, n, "to")).map(Some),
                None => Some(None),
            };
            // A role whose body is broken keeps its name, so rules naming it are not
            // reported as unknown on top of the real problem.
            let _ = m.finish(d);
            (ingress.unwrap_or_default(), egress.flatten())
        };
        roles.push(Role {
            name,
            ingress,
            egress,
        });
    }
    Some(roles)
}

fn decode_rule(d: &mut Decoder, node: &Node, peers_key: &'static str) -> Option<Rule> {
    let mut m = d.map(node, "a rule")?;
    let proto = m.req(d, "proto");
    let ports = m.opt(d, "ports");
    let peers = m.req_with(d, peers_key, |d, n| match &n.value {
        // A single source is fine without brackets.
        Value::Str(_) => Located::<Peer>::from_node(n, d).map(|p| vec![p]),
        _ => d.list(n, "sources", |d, n| Located::<Peer>::from_node(n, d)),
    });
    let description = m.opt(d, "description");
    let allow_world = m.opt(d, "allow_world").unwrap_or(false);
    m.finish(d)?;
    Some(Rule {
        pos: node.pos,
        proto: proto?,
        ports,
        peers: peers?,
        description,
        allow_world,
    })
}

fn decode_iam(d: &mut Decoder, node: &Node) -> Option<Iam> {
    let mut m = d.map(node, "`iam`")?;
    let role = m.req_with(d, "instance_role", |d, n| {
        let mut r = d.map(n, "`instance_role`")?;
        let name = r.req(d, "name");
        let managed_policies = r.opt(d, "managed_policies").unwrap_or_default();
        let dynamodb = r.opt_with(d, "dynamodb", decode_dynamodb);
        r.finish(d)?;
        Some(InstanceRole {
            name: name?,
            managed_policies,
            dynamodb,
        })
    });
    m.finish(d)?;
    Some(Iam {
        instance_role: role?,
    })
}

fn decode_dynamodb(d: &mut Decoder, node: &Node) -> Option<DynamoDb> {
    let mut m = d.map(node, "`dynamodb`")?;
    let tables = m.req(d, "tables");
    m.finish(d)?;
    Some(DynamoDb {
        pos: node.pos,
        tables: tables?,
    })
}

fn decode_captures(d: &mut Decoder, node: &Node) -> Option<Captures> {
    let mut m = d.map(node, "`captures`")?;
    let bucket = m
        .opt::<Located<String>>(d, "bucket")
        .map(|b| {
            let name = if b.value == "auto" {
                BucketName::Auto
            } else {
                BucketName::Named(b.value)
            };
            Located::new(name, b.pos)
        })
        .unwrap_or_else(|| Located::new(BucketName::Auto, m.pos()));
    m.finish(d)?;
    Some(Captures { bucket })
}

fn decode_instance(d: &mut Decoder, node: &Node) -> Option<Instance> {
    let mut m = d.map(node, "an instance")?;
    let name = m.req(d, "name");
    let role = m.req(d, "role");
    let instance_type = m.req(d, "type");
    let image = m.req(d, "image");
    let count = m
        .opt(d, "count")
        .unwrap_or_else(|| Located::new(1, m.pos()));
    let services = m.opt(d, "services").unwrap_or_default();
    let subnet = m.opt(d, "subnet");
    m.finish(d)?;
    Some(Instance {
        name: name?,
        role: role?,
        instance_type: instance_type?,
        image: image?,
        count,
        services,
        subnet,
    })
}

fn decode_artifacts(d: &mut Decoder, node: &Node) -> Option<Artifacts> {
    let mut m = d.map(node, "`artifacts`")?;
    let labnet = m.req_with(d, "labnet", |d, n| {
        let source = match &n.value {
            Value::Str(s) if s == "build" => ArtifactSource::Build,
            Value::Map(_) => {
                let mut a = d.map(n, "`labnet`")?;
                let (path, url, sha) = (a.get("path"), a.get("url"), a.get("sha256"));
                a.finish(d)?;
                match (path, url, sha) {
                    (Some(path), None, None) => ArtifactSource::Path(String::from_node(path, d)?),
                    (None, Some(url), Some(sha256)) => {
                        let url = String::from_node(url, d);
                        let sha256 = String::from_node(sha256, d);
                        ArtifactSource::Url {
                            url: url?,
                            sha256: sha256?,
                        }
                    }
                    (None, Some(_), None) => {
                        d.error(n.pos, "`labnet.url` needs `sha256` beside it");
                        return None;
                    }
                    _ => {
                        d.error(
                            n.pos,
                            "`labnet` takes either `path`, or `url` with `sha256`",
                        );
                        return None;
                    }
                }
            }
            _ => {
                d.expected(n, "`build`, `{ path: ... }` or `{ url: ..., sha256: ... }`");
                return None;
            }
        };
        Some(Located::new(source, n.pos))
    });
    m.finish(d)?;
    Some(Artifacts { labnet: labnet? })
}

/// Decodes a scalar string with `parse`, reporting its error at the node.
fn parse_str<T>(
    node: &Node,
    d: &mut Decoder,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let s = String::from_node(node, d)?;
    match parse(&s) {
        Ok(v) => Some(v),
        Err(message) => {
            d.error(node.pos, message);
            None
        }
    }
}

impl FromNode for Ipv4Net {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        parse_str(node, d, parse_cidr)
    }
}

/// Parses an IPv4 CIDR block whose host bits are zero.
fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    if s.contains(':') {
        return Err(format!("`{s}` is IPv6; the lab network is IPv4 only"));
    }
    let net: Ipv4Net = s.parse().map_err(|_| {
        if s.parse::<std::net::Ipv4Addr>().is_ok() {
            format!("`{s}` is an address, not a CIDR block; write `{s}/32` for one host")
        } else {
            format!("`{s}` is not an IPv4 CIDR block such as `10.0.1.0/24`")
        }
    })?;
    if net.network() != net.addr() {
        return Err(format!(
            "`{s}` has host bits set; the block is `{}`",
            net.trunc()
        ));
    }
    Ok(net)
}

impl FromNode for Proto {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        let s = String::from_node(node, d)?;
        let proto = match s.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            "all" | "-1" => Proto::All,
            _ => {
                d.error(node.pos, format!("unknown protocol `{s}`"))
                    .did_you_mean(&s, Proto::NAMES)
                    .hint
                    .get_or_insert_with(|| "use tcp, udp, icmp or all".into());
                return None;
            }
        };
        Some(proto)
    }
}

impl FromNode for PortRange {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        let port = |n: i64| -> Result<u16, String> {
            u16::try_from(n).map_err(|_| format!("port {n} is out of range (0-65535)"))
        };
        let range = match &node.value {
            Value::Int(n) => port(*n).map(|p| PortRange { from: p, to: p }),
            Value::Str(s) => {
                let parse = |part: &str| -> Result<u16, String> {
                    let n: i64 = part.trim().parse().map_err(|_| {
                        format!("`{s}` is not a port or a range such as `12000-12001`")
                    })?;
                    port(n)
                };
                match s.split_once('-') {
                    Some((a, b)) => parse(a)
                        .and_then(|a| Ok((a, parse(b)?)))
                        .and_then(|(a, b)| {
                            if a <= b {
                                Ok(PortRange { from: a, to: b })
                            } else {
                                Err(format!("port range `{s}` runs backwards"))
                            }
                        }),
                    None => parse(s).map(|p| PortRange { from: p, to: p }),
                }
            }
            _ => {
                d.expected(node, "a port (`8080`) or a range (`12000-12001`)");
                return None;
            }
        };
        range.map_err(|e| d.error(node.pos, e)).ok()
    }
}

impl FromNode for Peer {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        parse_str(node, d, |s| {
            if s == "my-ip" {
                Ok(Peer::MyIp)
            } else if let Some(role) = s.strip_prefix("role:") {
                Ok(Peer::Role(role.trim().to_owned()))
            } else if s.starts_with(|c: char| c.is_ascii_digit()) || s.contains(':') {
                parse_cidr(s).map(Peer::Cidr)
            } else {
                Err(format!(
                    "`{s}` is not a source; write `role:{s}`, a CIDR block, or `my-ip`"
                ))
            }
        })
    }
}

impl FromNode for Image {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        parse_str(node, d, |s| {
            if s == "ubuntu-24.04" {
                Ok(Image::Ubuntu2404)
            } else if let Some(hex) = s.strip_prefix("ami-") {
                if (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    Ok(Image::Ami(s.to_owned()))
                } else {
                    Err(format!(
                        "`{s}` is not an AMI id (`ami-` and 8 or 17 hex digits)"
                    ))
                }
            } else if s.starts_with('/') {
                Ok(Image::Parameter(s.to_owned()))
            } else {
                Err(format!(
                    "labnet cannot run on image `{s}`: it is built for Ubuntu 24.04 on x86_64; \
                     use `ubuntu-24.04`, an `ami-...` id, or an SSM parameter path"
                ))
            }
        })
    }
}

impl FromNode for Service {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        let s = String::from_node(node, d)?;
        match Service::ALL.into_iter().find(|svc| svc.as_str() == s) {
            Some(svc) => Some(svc),
            None => {
                let names = Service::ALL.map(Service::as_str);
                let diag = d.error(node.pos, format!("unknown service `{s}`"));
                diag.did_you_mean(&s, names);
                if diag.hint.is_none() {
                    diag.hint(format!("labnet runs `{}`", names.join("`, `")));
                }
                None
            }
        }
    }
}

impl FromNode for Lifetime {
    /// A duration (`4h`), or a bare number of seconds as the grammar allows.
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        match &node.value {
            Value::Int(secs) => match u64::try_from(*secs) {
                Ok(secs) => Some(Lifetime(Duration::from_secs(secs))),
                Err(_) => {
                    d.error(node.pos, format!("lifetime {secs} is negative"));
                    None
                }
            },
            Value::Str(s) => match s.parse::<Lifetime>() {
                Ok(l) => Some(l),
                Err(why) => {
                    d.error(node.pos, format!("`{s}` is not a duration: {why}"))
                        .hint("such as `4h`, `90m` or `1h30m`");
                    None
                }
            },
            _ => {
                d.expected(node, "a duration such as `4h`");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_and_print_as_every_duration_does() {
        for (text, secs, shown) in [
            ("4h", 14_400, "4h"),
            ("90m", 5_400, "1h30m"),
            ("1d2h", 93_600, "1d2h"),
            ("90s", 90, "1m30s"),
            ("0h", 0, "0s"),
            ("600", 600, "10m"),
        ] {
            let l: Lifetime = text.parse().unwrap();
            assert_eq!(l.0.as_secs(), secs);
            assert_eq!(l.to_string(), shown);
        }
        assert!("4x".parse::<Lifetime>().is_err());
        assert!("h".parse::<Lifetime>().is_err());
    }

    #[test]
    fn cidrs_must_be_block_starts() {
        assert!(parse_cidr("10.0.1.0/24").is_ok());
        assert!(
            parse_cidr("10.0.1.5/24")
                .unwrap_err()
                .contains("10.0.1.0/24")
        );
        assert!(parse_cidr("10.0.1.5").unwrap_err().contains("10.0.1.5/32"));
        assert!(parse_cidr("::/0").unwrap_err().contains("IPv6"));
    }

    #[test]
    fn count_expands_names() {
        let inst = |count| Instance {
            name: Located::new("client".into(), Default::default()),
            role: Located::new("client".into(), Default::default()),
            instance_type: Located::new("t3.micro".into(), Default::default()),
            image: Located::new(Image::Ubuntu2404, Default::default()),
            count: Located::new(count, Default::default()),
            services: vec![],
            subnet: None,
        };
        assert_eq!(inst(1).expanded_names(), ["client"]);
        assert_eq!(inst(2).expanded_names(), ["client-1", "client-2"]);
    }
}
