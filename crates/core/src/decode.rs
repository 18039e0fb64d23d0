//! Turning a [`Node`] tree into typed values while collecting every problem.
//!
//! Each decoder returns `None` when its node is unusable and records why; the caller
//! carries on with the rest of the file. A [`MapReader`] learns the keys a mapping may
//! have from the keys the decoder asks for, so unknown keys are found without a second
//! list of field names that could drift from the first.

use std::fmt;

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::yaml::{Node, Value};

/// A value together with the position it was written at.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub pos: Pos,
}

impl<T> Located<T> {
    /// Wraps `value` found at `pos`.
    pub const fn new(value: T, pos: Pos) -> Self {
        Self { value, pos }
    }
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Located<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} @{}", self.value, self.pos)
    }
}

impl<T: fmt::Display> fmt::Display for Located<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: serde::Serialize> serde::Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// Collects diagnostics while decoding, and whether everything decoded.
#[derive(Debug, Default)]
pub struct Decoder {
    /// What was found so far.
    pub diags: Diagnostics,
    /// False once any node failed to decode: checks that relate several parts of the
    /// file are then skipped, so one typo does not cascade into false reports.
    pub complete: bool,
}

impl Decoder {
    /// A decoder with nothing reported.
    pub fn new() -> Self {
        Self {
            diags: Diagnostics::default(),
            complete: true,
        }
    }

    /// Records a decoding error (which makes the result incomplete).
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.complete = false;
        self.diags.error(pos, message)
    }

    /// Records "expected X, found Y" for `node`.
    pub fn expected(&mut self, node: &Node, what: &str) -> &mut Diagnostic {
        let found = match &node.value {
            Value::Str(s) => format!("the string `{s}`"),
            Value::Int(i) => format!("the integer {i}"),
            Value::Bool(b) => format!("`{b}`"),
            other => other.kind().to_owned(),
        };
        self.error(node.pos, format!("expected {what}, found {found}"))
    }

    /// Opens `node` as a mapping whose keys the caller will read.
    pub fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<MapReader<'n>> {
        match &node.value {
            Value::Map(entries) => Some(MapReader {
                pos: node.pos,
                entries,
                known: Vec::new(),
                what: what.to_owned(),
                failed: false,
            }),
            _ => {
                self.expected(node, &format!("a mapping for {what}"));
                None
            }
        }
    }

    /// Decodes a list of `T`, dropping the items that fail (they are reported).
    pub fn list<T>(
        &mut self,
        node: &Node,
        what: &str,
        mut item: impl FnMut(&mut Self, &Node) -> Option<T>,
    ) -> Option<Vec<T>> {
        match &node.value {
            Value::Seq(items) => Some(items.iter().filter_map(|n| item(self, n)).collect()),
            _ => {
                self.expected(node, &format!("a list of {what}"));
                None
            }
        }
    }
}

/// Types that decode from a single node.
pub trait FromNode: Sized {
    /// Decodes `node`, or records why it cannot and returns `None`.
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self>;
}

impl FromNode for String {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                d.expected(node, "a string");
                None
            }
        }
    }
}

/// YAML 1.1's other spellings of true and false. YAML 1.2, the JSON Schema and editors
/// read them as strings, so a file that used them would mean different things to
/// different readers.
const YAML_11_BOOLEANS: [&str; 6] = ["y", "n", "yes", "no", "on", "off"];

impl FromNode for bool {
    /// `true` or `false` (`True`, `TRUE`, `False`, `FALSE` too), as YAML 1.2 has them.
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if YAML_11_BOOLEANS.contains(&s.to_ascii_lowercase().as_str()) => {
                d.error(
                    node.pos,
                    format!("`{s}` is not a boolean in YAML 1.2, which labctl and editors follow"),
                )
                .hint("write true or false");
                None
            }
            _ => {
                d.expected(node, "`true` or `false`");
                None
            }
        }
    }
}

impl FromNode for u32 {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        match node.value {
            Value::Int(i) if i >= 0 => match u32::try_from(i) {
                Ok(v) => Some(v),
                Err(_) => {
                    d.error(node.pos, format!("{i} is too large"));
                    None
                }
            },
            _ => {
                d.expected(node, "a whole number, 0 or more");
                None
            }
        }
    }
}

impl<T: FromNode> FromNode for Located<T> {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        T::from_node(node, d).map(|v| Located::new(v, node.pos))
    }
}

impl<T: FromNode> FromNode for Vec<T> {
    fn from_node(node: &Node, d: &mut Decoder) -> Option<Self> {
        d.list(node, "items", |d, n| T::from_node(n, d))
    }
}

/// Reads the entries of one mapping, remembering which keys were asked for.
pub struct MapReader<'n> {
    pos: Pos,
    entries: &'n [(Node, Node)],
    known: Vec<&'static str>,
    what: String,
    failed: bool,
}

impl<'n> MapReader<'n> {
    /// Where the mapping starts.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The value under `key`, if present and not null; marks `key` as known.
    pub fn get(&mut self, key: &'static str) -> Option<&'n Node> {
        self.known.push(key);
        self.entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(_, v)| v)
            .filter(|v| v.value != Value::Null)
    }

    /// Decodes an optional key. A present value that fails to decode marks the whole
    /// mapping as failed (see [`MapReader::finish`]) rather than silently defaulting.
    pub fn opt<T: FromNode>(&mut self, d: &mut Decoder, key: &'static str) -> Option<T> {
        let node = self.get(key)?;
        let value = T::from_node(node, d);
        self.failed |= value.is_none();
        value
    }

    /// Decodes an optional key with a custom decoder; a present value that fails marks
    /// the mapping as failed, as [`MapReader::opt`] does.
    pub fn opt_with<T>(
        &mut self,
        d: &mut Decoder,
        key: &'static str,
        decode: impl FnOnce(&mut Decoder, &'n Node) -> Option<T>,
    ) -> Option<T> {
        let node = self.get(key)?;
        let value = decode(d, node);
        self.failed |= value.is_none();
        value
    }

    /// Decodes a required key, reporting its absence at the mapping.
    pub fn req<T: FromNode>(&mut self, d: &mut Decoder, key: &'static str) -> Option<T> {
        self.req_with(d, key, |d, n| T::from_node(n, d))
    }

    /// Decodes a required key with a custom decoder.
    pub fn req_with<T>(
        &mut self,
        d: &mut Decoder,
        key: &'static str,
        decode: impl FnOnce(&mut Decoder, &'n Node) -> Option<T>,
    ) -> Option<T> {
        let value = match self.get(key) {
            Some(node) => decode(d, node),
            None => {
                d.error(self.pos, format!("{} is missing `{key}`", self.what));
                None
            }
        };
        self.failed |= value.is_none();
        value
    }

    /// Reports every key that was never asked for, with the closest known key as a hint.
    /// Returns `None` when any key failed to decode, so the caller drops the whole item
    /// instead of keeping a half-read one that would trigger follow-on reports.
    pub fn finish(self, d: &mut Decoder) -> Option<()> {
        for (key, _) in self.entries {
            match &key.value {
                Value::Str(k) if self.known.contains(&k.as_str()) => {}
                Value::Str(k) => {
                    let known = self.known.iter().copied();
                    // An unknown key leaves the rest usable: later checks still run.
                    let message = format!("unknown key `{k}` in {}", self.what);
                    let diag = d.diags.error(key.pos, message);
                    diag.did_you_mean(k, known);
                    if diag.hint.is_none() {
                        let list = self.known.join("`, `");
                        diag.hint(format!("expected one of `{list}`"));
                    }
                }
                _ => {
                    d.expected(key, "a string key");
                }
            }
        }
        (!self.failed).then_some(())
    }
}
