//! Placeholder: the intro family is being written.

use clap::Args;

/// Options of `intro-server`.
#[derive(Debug, Args)]
pub struct IntroServerArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `intro-server`.
pub async fn run_intro_server(_args: IntroServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

/// Options of `load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Port.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `load`.
pub async fn run_load(_args: LoadArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
