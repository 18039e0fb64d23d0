//! `aws-faults`: run the fault-injecting endpoint in front of LocalStack.
//!
//! ```sh
//! aws-faults --upstream http://127.0.0.1:4566 --rule '!=throttle@0.2' --rule 'ec2:RunInstances=lost#1'
//! AWS_ENDPOINT_URL=http://127.0.0.1:4567 labctl up --yes
//! curl http://127.0.0.1:4567/_faults/stats
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use std::time::Duration;

use aws_faults::consistency::Windows;
use aws_faults::rules::Rule;
use aws_faults::standins::{Offering, Quota};
use aws_faults::{Config, serve};
use clap::Parser;

/// An AWS endpoint that forwards to LocalStack and fails on demand, as AWS fails.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:4567")]
    listen: SocketAddr,
    /// Where requests go.
    #[arg(long, default_value = "http://127.0.0.1:4566")]
    upstream: String,
    /// Seed of every probabilistic decision.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A rule: `[service[:Operation]][!]=FAULT@SHARE` or `…=FAULT#COUNT`, `!` for
    /// mutating calls only. FAULT is throttle, server-error, reset, lost, slow or
    /// stall. Repeatable; the first that fires decides.
    #[arg(long = "rule")]
    rules: Vec<String>,
    /// Rules as a JSON list of {service, operation, mutating, fault, probability |
    /// count, delay_ms}, tried after the --rule ones.
    #[arg(long)]
    rules_file: Option<PathBuf>,
    /// Throttle EC2 as its per-action token buckets do (sizes and refill rates as
    /// AWS publishes them).
    #[arg(long)]
    ec2_buckets: bool,
    /// A new instance answers InvalidInstanceID.NotFound for this long.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    instance_invisible_ms: u64,
    /// A new instance profile is refused by EC2 for this long.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    profile_invisible_ms: u64,
    /// A new security group answers InvalidGroup.NotFound for this long.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    group_invisible_ms: u64,
    /// A Service Quotas value, `SERVICE/CODE=VALUE` (`ec2/L-1216C47A=32`); repeatable.
    #[arg(long = "quota")]
    quotas: Vec<String>,
    /// Instance types a zone offers, `ZONE=TYPE[,TYPE…]`; repeatable. With any set,
    /// DescribeInstanceTypeOfferings answers from these.
    #[arg(long = "offering")]
    offerings: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut rules = args
        .rules
        .iter()
        .map(|r| Rule::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    if let Some(path) = &args.rules_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let more: Vec<Rule> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a list of rules", path.display()))?;
        rules.extend(more);
    }
    let quotas = args
        .quotas
        .iter()
        .map(|q| Quota::parse(q))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut offerings = Vec::new();
    for o in &args.offerings {
        offerings.extend(Offering::parse(o).map_err(anyhow::Error::msg)?);
    }
    let endpoint = serve(
        args.listen,
        Config {
            upstream: args.upstream,
            seed: args.seed,
            rules,
            ec2_buckets: args.ec2_buckets,
            consistency: Windows {
                instance: Duration::from_millis(args.instance_invisible_ms),
                profile: Duration::from_millis(args.profile_invisible_ms),
                group: Duration::from_millis(args.group_invisible_ms),
            },
            quotas,
            offerings,
        },
    )
    .await?;
    println!("listening on {}", endpoint.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
