//! labnet: the lab programs labctl deploys to the instances.
//!
//! One binary holds every server and client of the labs, so an instance downloads and
//! verifies a single file. It carries its version and the git commit it was built from,
//! which the instance bootstrap reports back.

use clap::Parser;

/// The lab programs: TCP/UDP servers and clients, RTT and load tools.
#[derive(Debug, Parser)]
#[command(
    name = "labnet",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LABNET_GIT_COMMIT"), ")")
)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("labnet: no program given; see `labnet --help`");
    std::process::exit(1);
}
