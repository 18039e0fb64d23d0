//! A YAML document as a tree of nodes that remember where they came from.
//!
//! serde-saphyr parses the text (with positions, duplicate-key rejection and a budget
//! that stops alias bombs); we keep the result as a generic tree instead of
//! deserializing straight into the model, because a serde derive stops at the first
//! wrong type or unknown key, and validation must report all of them in one run.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, Pos, Severity};

/// A YAML value with the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts (for an alias: where the alias is used).
    pub pos: Pos,
    /// The value.
    pub value: Value,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// A float, or an integer too large for `i64`.
    Float(f64),
    /// Any string scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping in document order (keys are unique: the parser rejects duplicates).
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How a user would call this kind of value in a message.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Limits that keep a hostile file from exhausting memory. A topology is a few
/// hundred nodes in a few kilobytes; these leave two orders of magnitude of room.
const MAX_NODES: usize = 100_000;
const MAX_REPLAYED_EVENTS: usize = 100_000;
/// A topology nests six levels (`roles` → role → `ingress` → rule → `from` → source).
/// Each level is a recursive call of the parser, so this also bounds its stack: an
/// unoptimised build on a 2 MiB thread overflows past about 50.
pub const MAX_DEPTH: usize = 24;
/// The largest file read at all: the default lab is under 3 KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// The error for a file of `bytes` bytes, when that is over [`MAX_FILE_BYTES`]; a
/// reader can ask before reading the file at all.
pub fn too_large(bytes: u64) -> Option<Diagnostic> {
    (bytes > MAX_FILE_BYTES as u64).then(|| Diagnostic {
        severity: Severity::Error,
        pos: Pos::new(1, 1),
        message: format!(
            "the file is too large: {} ({bytes} bytes), over the {} limit for a topology",
            size(bytes as usize),
            size(MAX_FILE_BYTES)
        ),
        hint: Some("a topology is a few kilobytes; is this the right file?".to_owned()),
    })
}

/// Parses `text` into a tree. A syntax error stops parsing and is returned as the one
/// diagnostic it produces.
///
/// Booleans are YAML 1.2's (`true`, `false` and their capitalised forms): `yes`, `no`,
/// `on` and `off` stay strings, as they are to the JSON Schema and to editors.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    if let Some(too_large) = too_large(text.len() as u64) {
        return Err(too_large);
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_NODES,
            max_depth: MAX_DEPTH,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
        },
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options) {
        Ok(root) => Ok(node_from(root)),
        Err(err) => Err(syntax_diagnostic(&err)),
    }
}

/// `1 MiB`, `12.0 MiB`, `300 KiB`: sizes in the units the limit is set in.
fn size(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    match bytes {
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= MIB => format!("{:.1} MiB", b as f64 / MIB as f64),
        b => format!("{} KiB", b.div_ceil(1024)),
    }
}

fn syntax_diagnostic(err: &serde_saphyr::Error) -> Diagnostic {
    let err = err.without_snippet();
    let pos = err
        .location()
        .map(|l| Pos::new(saturate(l.line()), saturate(l.column())))
        .unwrap_or(Pos::new(1, 1));
    let (message, hint) = match breach(err) {
        Some(Breach::Aliases) => (
            format!("YAML anchors and aliases expand beyond {MAX_REPLAYED_EVENTS} nodes"),
            Some("a topology never needs this much; the file looks like an alias bomb".to_owned()),
        ),
        Some(Breach::Nodes) => (
            format!("the file holds more than {MAX_NODES} YAML nodes"),
            Some("a topology has a few hundred; is this the right file?".to_owned()),
        ),
        Some(Breach::Depth) => (
            format!("the file nests more than {MAX_DEPTH} levels deep"),
            Some("a topology nests five or six levels".to_owned()),
        ),
        None => {
            let message = strip_position(&err.to_string());
            let hint = message
                .contains("tab")
                .then(|| "indent with spaces: YAML does not allow tabs for indentation".to_owned());
            (message, hint)
        }
    };
    Diagnostic {
        severity: Severity::Error,
        pos,
        message,
        hint,
    }
}

/// Which of the parser's limits a file ran into.
enum Breach {
    /// Aliases replayed too much: an alias bomb.
    Aliases,
    /// Too many nodes written out in the file itself.
    Nodes,
    /// Collections nested too deeply.
    Depth,
}

fn breach(err: &serde_saphyr::Error) -> Option<Breach> {
    use serde_saphyr::budget::BudgetBreach;
    match err.without_snippet() {
        serde_saphyr::Error::Budget { breach, .. } => Some(match breach {
            BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => Breach::Nodes,
            BudgetBreach::Depth { .. } => Breach::Depth,
            _ => Breach::Aliases,
        }),
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
        | serde_saphyr::Error::AliasReplayCounterOverflow { .. } => Some(Breach::Aliases),
        serde_saphyr::Error::AliasError { error, .. } => breach(error),
        // The scanner's own guard, reached before the budget by thousands of levels.
        other if other.to_string().starts_with("recursion limit exceeded") => Some(Breach::Depth),
        _ => None,
    }
}

/// serde-saphyr appends " at line L, column C"; we print the position ourselves.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only reached through `Spanned<Node>`, which supplies the position.
        let value = Value::deserialize(deserializer)?;
        Ok(Node {
            pos: Pos::default(),
            value,
        })
    }
}

fn node_from(spanned: Spanned<Node>) -> Node {
    let loc = spanned.referenced;
    Node {
        pos: Pos::new(saturate(loc.line()), saturate(loc.column())),
        value: spanned.value.value,
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(node_from(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Spanned<Node>, Spanned<Node>>()? {
            entries.push((node_from(k), node_from(v)));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let root = parse("a: 1\nb:\n  - x\n  - {c: true}\n").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(entries[1].0.pos, Pos::new(2, 1));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].pos, Pos::new(4, 5));
        assert_eq!(items[0].value, Value::Str("x".into()));
    }

    #[test]
    fn syntax_error_has_position_and_no_duplicate_suffix() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(!err.message.contains("at line"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.pos, Pos::new(2, 1));
        assert!(err.message.contains("duplicate"), "{}", err.message);
    }
}
