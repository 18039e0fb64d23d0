//! Integration tests: the real `labctl` binary, each test in a fresh temporary directory,
//! AWS calls against one shared LocalStack (started by `scripts/localstack.sh`).
//!
//! One test binary on purpose: it links the AWS SDK once.

mod bootstrap;
mod capture;
mod captures;
mod cli;
mod cloudinit;
mod double;
mod drift;
mod edits;
mod evidence;
mod exec;
mod faults;
mod first_run;
mod harness;
mod localstack;
mod myip;
mod ownership;
mod preflight;
mod pty;
mod pty_selftest;
mod real_captures;
mod reconcile;
mod sigv4;
mod ssm;
mod ssm_bounds;
mod surface;
mod zone_records;
