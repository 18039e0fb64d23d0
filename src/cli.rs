//! The command-line schema. Doc comments here are the `--help` text.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A complete AWS networking lab from one topology file, and gone again in one command.
///
/// Exit status: 0 on success, 1 on any error (usage errors included).
#[derive(Debug, Parser)]
#[command(
    name = "labctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The topology file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        env = "LABCTL_TOPOLOGY",
        default_value = "topology.yaml"
    )]
    pub file: PathBuf,

    /// AWS region; must agree with the topology's `region:` when it has one.
    #[arg(long, global = true, env = "LABCTL_REGION")]
    pub region: Option<String>,

    /// AWS profile from ~/.aws/config (default: the standard credential chain).
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// Your public IPv4 address, for rules with `my-ip` (default: looked up when needed).
    #[arg(long, global = true, env = "LABCTL_MY_IP", value_name = "IPV4")]
    pub my_ip: Option<Ipv4Addr>,

    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log what labctl does (-v: info, -vv: debug, -vvv: trace, AWS SDK included).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a topology file and report every problem with its line and column.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the topology file (for editors' YAML language servers).
    Schema,
    /// Show the AWS resources a topology creates, in order, with their dependencies.
    Graph(GraphArgs),
    /// Check that AWS (or LocalStack) is reachable with the current credentials and region.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the diagnostics as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Print the resources as JSON.
    #[arg(long, conflicts_with = "dot")]
    pub json: bool,
    /// Print a Graphviz graph (`labctl graph --dot | dot -Tsvg > lab.svg`).
    #[arg(long)]
    pub dot: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}
