//! The command-line schema. Doc comments here are the `--help` text.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A complete AWS networking lab from one topology file, and gone again in one command.
///
/// Exit status: 0 on success, 1 on any error (usage errors included); with
/// `plan --detailed-exitcode`, 2 when changes are pending.
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

    /// Print how many AWS API requests the command sent (to stderr, at the end).
    #[arg(long, global = true)]
    pub api_stats: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a topology file and report every problem with its line and column.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the topology file (for editors' YAML language servers).
    Schema,
    /// Show the AWS resources a topology creates, in order, with their dependencies.
    Graph(GraphArgs),
    /// Show what `up` would change: + create, ~ update in place, -/+ replace, - delete.
    Plan(PlanArgs),
    /// Make AWS match the topology, then print the lab's instances and addresses.
    Up(UpArgs),
    /// Delete everything the lab owns, in reverse dependency order.
    Down(DownArgs),
    /// What the lab has now: instances, states, addresses, DNS names.
    Status(StatusArgs),
    /// Print the user-data an instance boots with (the account id left as `{account}`).
    UserData(UserDataArgs),
    /// Check that AWS (or LocalStack) is reachable with the current credentials and region.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct UserDataArgs {
    /// Instance name, as in `labctl status` (`server`, `client-2`).
    pub instance: String,
    /// Make no AWS call: the account id in the bucket's name shows as `{account}`.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when changes are pending, 0 when there are none, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Apply without asking, even when the plan replaces or deletes resources.
    #[arg(short, long)]
    pub yes: bool,
    /// Allow deleting a capture bucket that still holds captures.
    #[arg(long)]
    pub delete_captures: bool,
    /// Print the outputs as JSON.
    #[arg(long)]
    pub json: bool,
    /// Wait until every instance's bootstrap reports ready (or failed), at most this
    /// long (`10m`, `1h`; default 15m). Instances report a few minutes after launch.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "15m",
          value_parser = parse_wait)]
    pub wait: Option<std::time::Duration>,
}

/// `90s`, or a duration as `lifetime` takes it (`10m`, `1h30m`).
fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    if let Some(secs) = text.strip_suffix('s').and_then(|n| n.parse().ok()) {
        return Ok(std::time::Duration::from_secs(secs));
    }
    text.parse::<labctl_core::topology::Lifetime>()
        .map(|l| l.0)
        .map_err(|e| format!("{e}; or seconds, such as `90s`"))
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Delete without asking.
    #[arg(short, long)]
    pub yes: bool,
    /// Also delete the captures in the lab's bucket (refused otherwise while any exist).
    #[arg(long)]
    pub delete_captures: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
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
