//! `ssm-double`: a test double of the AWS Systems Manager API, for labctl's tests and
//! benchmarks. It is not SSM and must never stand in for it outside tests.
//!
//! LocalStack does not run commands (it records SendCommand and reports success with no
//! output) and has no agent status, so tests point labctl's SSM client at this double
//! with `AWS_ENDPOINT_URL_SSM`, while EC2, STS and S3 stay on LocalStack. The double
//! imitates, on one HTTP/1.1 port:
//!
//! - the awsJson1.1 protocol: `POST /` with `X-Amz-Target: AmazonSSM.<Operation>`,
//!   answers in `application/x-amz-json-1.1`, errors as HTTP 400
//!   `{"__type": "<Code>", "message": "..."}`; signatures are not checked;
//! - `DescribeInstanceInformation`: every instance asked for is Online, except those
//!   given with `--offline-instance` (ConnectionLost) or `--unregistered-instance`
//!   (not listed, as an agent that never registered); instances not asked for are not
//!   listed;
//! - Run Command (`SendCommand` with `AWS-RunShellScript`, `GetCommandInvocation`,
//!   `ListCommands`, `ListCommandInvocations`): the `commands` lines really run, as one
//!   `bash` script per instance on this host, with `executionTimeout`; invocations are
//!   InProgress, then Success, Failed (with the exit code) or TimedOut; stdout is kept
//!   to its first 24,000 characters and stderr to 8,000, as SSM keeps them; with
//!   `--invocation-delay`, a new command's invocations are unknown
//!   (`InvocationDoesNotExist`) for that long, as they briefly are in SSM;
//! - Session Manager (`StartSession`, `ResumeSession`, `TerminateSession`) and the data
//!   channel websocket behind `StreamUrl` (`/v1/data-channel/<id>`), served as the agent
//!   would: a real shell in a pseudo-terminal (the standard session, or
//!   `AWS-StartInteractiveCommand`'s `sh -c <command>`), with no ExitCode message when
//!   it ends, or port forwarding over smux to real loopback ports ([`session`]); with
//!   fault flags it withholds acknowledgements, reorders, duplicates, pauses the client,
//!   drops the websocket, numbers its messages far ahead of what the client expects or
//!   cuts the shell's output where a test chooses (`--chunk`, `--split-after`), and
//!   `GET /_double/sessions` shows each session's counters, so tests can tell it did.
//!
//! It prints one line, `endpoint http://127.0.0.1:PORT`, on stdout, logs to stderr, and
//! exits on SIGTERM, SIGINT, or when its stdin reaches EOF, so a test that dies never
//! leaves it behind (start it with a pipe on stdin, not `/dev/null`).

mod api;
mod pty;
mod run_command;
mod session;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// A test double of the AWS Systems Manager API (not SSM: for tests only).
#[derive(Debug, Parser)]
#[command(name = "ssm-double", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free one. The endpoint is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// An instance whose agent has lost its connection (PingStatus ConnectionLost).
    #[arg(long = "offline-instance", value_name = "ID")]
    offline_instances: Vec<String>,
    /// An instance whose agent has never registered: not listed, and SendCommand
    /// refuses it (InvalidInstanceId).
    #[arg(long = "unregistered-instance", value_name = "ID")]
    unregistered_instances: Vec<String>,
    /// For how long a new command's invocations are unknown (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    invocation_delay: u64,
    /// The shell a standard shell session runs, in place of the agent's `sh` (program
    /// and arguments, split on spaces); an interactive command runs as `sh -c <command>`.
    #[arg(long, default_value = "bash --norc --noprofile -i")]
    shell: String,
    /// Largest output payload the agent sends in one message.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    chunk: usize,
    /// Withhold the acknowledgement of every N-th message the client sends.
    #[arg(long, value_name = "N")]
    drop_ack_every: Option<u64>,
    /// Send output messages in swapped pairs.
    #[arg(long)]
    reorder: bool,
    /// Send every output message twice.
    #[arg(long)]
    duplicate: bool,
    /// After N output messages, pause the client (pause_publication) for --pause-ms.
    #[arg(long, value_name = "N")]
    pause_after: Option<u64>,
    /// How long a pause lasts.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pause_ms: u64,
    /// After N output messages, close the websocket once (the client must resume).
    #[arg(long, value_name = "N")]
    close_after: Option<u64>,
    /// After N output messages, number the following ones --skip-by further ahead,
    /// leaving a gap that never fills (the client must refuse to buffer them).
    #[arg(long, value_name = "N")]
    skip_ahead: Option<u64>,
    /// How far ahead --skip-ahead jumps, in sequence numbers.
    #[arg(
        long,
        value_name = "COUNT",
        default_value_t = 1_000_000,
        value_parser = clap::value_parser!(i64).range(1..=1 << 40)
    )]
    skip_by: i64,
    /// Shell sessions ask for KMS encryption (the account preference), and start no shell.
    #[arg(long)]
    kms: bool,
    /// End a shell's output message right after each occurrence of TEXT (within what
    /// one read of the terminal gave), so that a client must join what follows.
    #[arg(long = "split-after", value_name = "TEXT")]
    split_after: Vec<String>,
}

/// What the double was told to imitate; fixed at start.
#[derive(Debug)]
pub struct Config {
    /// `http://<address>` the double answers on.
    pub endpoint: String,
    /// Instances reported as ConnectionLost.
    pub offline: BTreeSet<String>,
    /// Instances unknown to Systems Manager.
    pub unregistered: BTreeSet<String>,
    /// How long a new command's invocations are unknown.
    pub invocation_delay: Duration,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct State {
    /// The start-up configuration.
    pub config: Config,
    /// Run Command's commands and invocations.
    pub commands: run_command::Store,
    /// Session Manager's sessions.
    pub sessions: Arc<session::Sessions>,
}

/// The body of every response.
pub type Body = Full<Bytes>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSM_DOUBLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let state = Arc::new(State {
        config: Config {
            endpoint: endpoint.clone(),
            offline: cli.offline_instances.into_iter().collect(),
            unregistered: cli.unregistered_instances.into_iter().collect(),
            invocation_delay: Duration::from_millis(cli.invocation_delay),
        },
        commands: run_command::Store::default(),
        sessions: Arc::new(session::Sessions::new(session::SessionConfig {
            base: endpoint.replacen("http://", "ws://", 1),
            shell: cli.shell.split_whitespace().map(str::to_owned).collect(),
            chunk: cli.chunk,
            kms: cli.kms,
            split_after: cli
                .split_after
                .into_iter()
                .map(String::into_bytes)
                .collect(),
            faults: labctl_ssm::channel::Faults {
                drop_ack_every: cli.drop_ack_every,
                reorder: cli.reorder,
                duplicate: cli.duplicate,
                pause_after: cli
                    .pause_after
                    .map(|n| (n, Duration::from_millis(cli.pause_ms))),
                close_after: cli.close_after,
                skip_ahead: cli.skip_ahead.map(|n| (n, cli.skip_by)),
            },
        })),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "endpoint {endpoint}")?;
        out.flush()?;
    }
    tracing::info!(%endpoint, "listening");
    tokio::select! {
        result = serve(listener, state) => result,
        why = shutdown() => {
            tracing::info!("{why}; exiting");
            Ok(())
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        // As the service does for interactive sessions: small messages go out at once.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| route(state.clone(), req));
            // Upgrades: the data channel is a websocket.
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

/// The one routing decision: the JSON API, or the session data channel.
async fn route(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let response = if req.method() == Method::POST && path == "/" {
        api::handle(&state, req).await
    } else if req.method() == Method::GET && path.starts_with("/v1/data-channel/") {
        state.sessions.data_channel(req)
    } else if req.method() == Method::GET && path == "/_double/sessions" {
        let mut r = Response::new(Full::new(Bytes::from(state.sessions.stats().to_string())));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    } else {
        plain(
            StatusCode::NOT_FOUND,
            format!("ssm-double: nothing at {} {path}\n", req.method()),
        )
    };
    Ok(response)
}

/// A plain-text response.
pub fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(text.into()));
    *response.status_mut() = status;
    response
}

/// Resolves on SIGTERM, SIGINT, or EOF on stdin, with the reason.
async fn shutdown() -> &'static str {
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
    // A plain thread: a blocked read must not keep the runtime from shutting down.
    std::thread::spawn(move || {
        let mut sink = [0u8; 1024];
        let mut stdin = std::io::stdin().lock();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        let _ = eof_tx.send(());
    });
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = eof_rx => "stdin closed",
        () = term => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
