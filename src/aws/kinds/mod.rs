//! One module per resource kind: how each is read from AWS (`observe`) and how it is
//! created, updated and deleted (methods on the applier). What a kind *is* (its spec,
//! its typed attributes, its edges in the dependency graph, whether its replacement
//! is created first) is pure and lives in the core (`labctl_core::desired`); how its
//! claim on a resource is marked lives in `labctl_core::marks`.
//!
//! The engine (`apply`) and the orchestration of reads (`observe`) dispatch to these
//! with exhaustive matches, so a new kind that is not handled everywhere does not
//! compile.

#![warn(clippy::wildcard_enum_match_arm)]

pub mod artifact;
pub mod bucket;
pub mod dns_record;
pub mod hosted_zone;
pub mod iam_role;
pub mod instance;
pub mod instance_profile;
pub mod internet_gateway;
pub mod route_table;
pub mod security_group;
pub mod security_group_rules;
pub mod subnet;
pub mod vpc;
