//! Placeholder: the framed family is being written.

use clap::Args;

/// Options of `tcp-server`.
#[derive(Debug, Args)]
pub struct TcpServerArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `tcp-server`.
pub async fn run_tcp_server(_args: TcpServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `tcp-client`.
#[derive(Debug, Args)]
pub struct TcpClientArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `tcp-client`.
pub async fn run_tcp_client(_args: TcpClientArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `udp-server`.
#[derive(Debug, Args)]
pub struct UdpServerArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `udp-server`.
pub async fn run_udp_server(_args: UdpServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `udp-client`.
#[derive(Debug, Args)]
pub struct UdpClientArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `udp-client`.
pub async fn run_udp_client(_args: UdpClientArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `hesitant-server`.
#[derive(Debug, Args)]
pub struct HesitantServerArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `hesitant-server`.
pub async fn run_hesitant_server(_args: HesitantServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `eager-client`.
#[derive(Debug, Args)]
pub struct EagerClientArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `eager-client`.
pub async fn run_eager_client(_args: EagerClientArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
