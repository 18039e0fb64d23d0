//! Typed attributes: what a plan compares, and how a change is shown.
//!
//! Each kind lists its attributes once ([`crate::Spec::attributes`]), each with a typed
//! [`Value`] and whether a change to it replaces the resource. The diff compares values,
//! never their renderings, so two values that print alike (a rule whose description
//! changed) still differ; the rendering is derived from the value.

#![warn(clippy::wildcard_enum_match_arm)]

use std::fmt;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::desired::Permission;

/// One attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A name, an id or a reference.
    Text(String),
    /// On or off.
    Flag(bool),
    /// A count or a number of seconds.
    Number(u64),
    /// An IPv4 block.
    Cidr(Ipv4Net),
    /// A set of names, sorted.
    List(Vec<String>),
    /// Security group permissions, sorted (descriptions included).
    Rules(Vec<Permission>),
    /// A span of minutes (the instances' lifetime).
    Minutes(u64),
    /// Nothing set.
    Unset,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Flag(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Cidr(c) => write!(f, "{c}"),
            Value::List(items) if items.is_empty() => f.write_str("none"),
            Value::List(items) => f.write_str(&items.join(", ")),
            Value::Rules(rules) if rules.is_empty() => f.write_str("none"),
            Value::Rules(rules) => {
                let shown: Vec<String> = rules.iter().map(ToString::to_string).collect();
                f.write_str(&shown.join(", "))
            }
            Value::Minutes(m) => f.write_str(&crate::duration::format(
                std::time::Duration::from_secs(m.saturating_mul(60)),
            )),
            Value::Unset => f.write_str("none"),
        }
    }
}

/// Values travel as their rendering in `--json` plans: stable text a script can show.
impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One attribute of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Its name, as shown in plans.
    pub name: &'static str,
    /// Its value.
    pub value: Value,
    /// A change to it cannot be made in place: the resource is replaced.
    pub replaces: bool,
}

impl Attr {
    /// An attribute that changes in place.
    pub fn updates(name: &'static str, value: Value) -> Self {
        Self {
            name,
            value,
            replaces: false,
        }
    }

    /// An attribute whose change replaces the resource.
    pub fn replaces(name: &'static str, value: Value) -> Self {
        Self {
            name,
            value,
            replaces: true,
        }
    }
}

/// How a change to a resource reaches a resource that depends on it: the label on a
/// dependency edge, set where the edge is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cascade {
    /// The dependent lives inside the dependency (a subnet in its VPC): replacing the
    /// dependency replaces it.
    Inside,
    /// The dependent holds the dependency's id or address (a record's IP, a route
    /// table's associations): a new dependency means an update.
    Refers,
    /// Only the order matters (a policy names a bucket that must exist first).
    Order,
}

/// One dependency edge: `to` exists before the resource that holds the edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Edge {
    /// The dependency.
    pub to: crate::Address,
    /// What a renewed dependency does to the dependent.
    pub cascade: Cascade,
}
