//! labctl's pure core: the topology model, its validation, and the desired state it
//! expands to.
//!
//! Nothing here performs I/O, spawns tasks or knows the AWS SDK: every function takes
//! data and returns data, so the rules that decide what a lab is can be tested in
//! milliseconds and reused by every command. The CLI reads files and talks to AWS; this
//! crate decides.

pub mod address;
pub mod attr;
pub mod cost;
pub mod decode;
pub mod desired;
pub mod diag;
pub mod duration;
pub mod graph;
pub mod marks;
pub mod plan;
pub mod policy;
pub mod schema;
pub mod topology;
pub mod userdata;
pub mod validate;
pub mod yaml;

pub use decode::Located;
pub use desired::{Address, Context, Desired, Kind, Resource, Spec, expand};
pub use diag::{Diagnostic, Diagnostics, Pos, Severity};
pub use topology::Topology;
pub use validate::{Checked, check};
