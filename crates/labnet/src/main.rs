//! labnet: the lab programs labctl deploys to the instances.
//!
//! One binary holds every server and client of the labs, so an instance downloads and
//! verifies a single file. The programs speak exactly the bytes of the labs' Python
//! originals (so either side can be swapped), and then measure what the labs ask
//! students to observe. Servers log one line per connection and message to stdout,
//! stop cleanly on SIGTERM, and close a misbehaving connection without disturbing the
//! others.

mod common;
mod console;
mod framed;
mod intro;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The lab programs: TCP/UDP servers and clients, RTT and load tools.
#[derive(Debug, Parser)]
#[command(
    name = "labnet",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LABNET_GIT_COMMIT"), ")"),
    after_help = "Exit status: 0 on success, 1 on any error (usage errors included)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Framed TCP text server (port 1234): answers `Response to message: …`.
    TcpServer(framed::TcpServerArgs),
    /// Framed TCP text client.
    TcpClient(framed::TcpClientArgs),
    /// Framed UDP server (port 1234), 4096-byte NUL-padded datagrams.
    UdpServer(framed::UdpServerArgs),
    /// Framed UDP client.
    UdpClient(framed::UdpClientArgs),
    /// Accepts one connection and does not read until told: the zero-window demo.
    HesitantServer(framed::HesitantServerArgs),
    /// Sends JSON messages as fast as the receiver allows; reports write timeouts.
    EagerClient(framed::EagerClientArgs),
    /// Alphanumeric check server (port 12000).
    AlnumServer(console::AlnumServerArgs),
    /// Alphanumeric check client.
    AlnumClient(console::AlnumClientArgs),
    /// Echo server for the RTT exercise (port 12001).
    EchoServer(console::EchoServerArgs),
    /// Round trips of `42` over one connection: average, min, median, p99, max.
    Rtt(console::RttArgs),
    /// Intro line + length-prefixed long message server (port 8080).
    IntroServer(intro::IntroServerArgs),
    /// N concurrent clients against intro-server; `--sweep` runs the lab's series.
    Load(intro::LoadArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    common::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("labnet: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::TcpServer(a) => framed::run_tcp_server(a).await,
            Command::TcpClient(a) => framed::run_tcp_client(a).await,
            Command::UdpServer(a) => framed::run_udp_server(a).await,
            Command::UdpClient(a) => framed::run_udp_client(a).await,
            Command::HesitantServer(a) => framed::run_hesitant_server(a).await,
            Command::EagerClient(a) => framed::run_eager_client(a).await,
            Command::AlnumServer(a) => console::run_alnum_server(a).await,
            Command::AlnumClient(a) => console::run_alnum_client(a).await,
            Command::EchoServer(a) => console::run_echo_server(a).await,
            Command::Rtt(a) => console::run_rtt(a).await,
            Command::IntroServer(a) => intro::run_intro_server(a).await,
            Command::Load(a) => intro::run_load(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("labnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` print to stdout and succeed; every usage error goes to stderr
/// and exits 1 (clap's own default is 2), as every other error of labnet and labctl does.
fn usage(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
