//! Placeholder: the console family is being written.

use clap::Args;

/// Options of `alnum-server`.
#[derive(Debug, Args)]
pub struct AlnumServerArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `alnum-server`.
pub async fn run_alnum_server(_args: AlnumServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `alnum-client`.
#[derive(Debug, Args)]
pub struct AlnumClientArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `alnum-client`.
pub async fn run_alnum_client(_args: AlnumClientArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `echo-server`.
#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `echo-server`.
pub async fn run_echo_server(_args: EchoServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `rtt`.
#[derive(Debug, Args)]
pub struct RttArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `rtt`.
pub async fn run_rtt(_args: RttArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
