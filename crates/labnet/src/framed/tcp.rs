//! `tcp-server` and `tcp-client`: the lab's framed text exchange over TCP.
//!
//! The server runs one task per connection (the Python original, one thread per client),
//! so a slow or broken client only ever costs its own connection.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use super::{Kind, ReadError, Session, client_name, encode, pause, read_frame, resolve, seconds};
use crate::common::{Listen, log, shutdown};

/// Options of `tcp-server`.
#[derive(Debug, Args)]
pub struct TcpServerArgs {
    #[command(flatten)]
    listen: Listen,
    /// Port to listen on (0: any free port; the first line printed names it).
    #[arg(long, default_value_t = 1234)]
    port: u16,
    /// Seconds to wait before each response (the lab's response delay).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    delay: f64,
    /// Close a connection that sends no complete message within this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    read_timeout: f64,
}

/// Runs `tcp-server` until SIGTERM or Ctrl-C.
pub async fn run_tcp_server(args: TcpServerArgs) -> anyhow::Result<()> {
    let delay = seconds(args.delay, "--delay")?;
    let read_timeout = seconds(args.read_timeout, "--read-timeout")?;
    let listener = args
        .listen
        .tcp(args.port)
        .with_context(|| format!("cannot listen on {}", args.listen.addr(args.port)))?;
    let stop = shutdown();
    tokio::pin!(stop);
    log(format_args!("listening on {}", listener.local_addr()?));
    loop {
        tokio::select! {
            () = &mut stop => {
                log("shutting down");
                return Ok(());
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(stream, peer, delay, read_timeout));
                }
                Err(e) => crate::common::accept_failed(e).await,
            },
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    delay: Duration,
    read_timeout: Duration,
) {
    log(format_args!("{peer} connected"));
    let reason = loop {
        let (kind, text) = match read_frame(&mut stream, read_timeout).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break "peer closed the connection".to_owned(),
            Err(e @ ReadError::Timeout(_)) => break format!("{e} (idle client)"),
            Err(e) => break e.to_string(),
        };
        log(format_args!("{peer} -> {kind} {text:?}"));
        if kind != Kind::Text {
            // Only TEXT messages are answered; a JSON one is logged and skipped.
            continue;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let reply = format!("Response to message: {text}");
        let frame = match encode(Kind::Text, &reply) {
            Ok(frame) => frame,
            Err(e) => break format!("cannot answer: {e}"),
        };
        if let Err(e) = stream.write_all(&frame).await {
            break format!("write failed: {e}");
        }
    };
    log(format_args!("{peer} closed: {reason}"));
}

/// Options of `tcp-client`.
#[derive(Debug, Args)]
pub struct TcpClientArgs {
    #[command(flatten)]
    session: Session,
    /// Give up connecting after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    connect_timeout: f64,
    /// Give up waiting for a response after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    read_timeout: f64,
}

/// Runs `tcp-client`: sends `Message #<i> from client <name>`, prints each response.
pub async fn run_tcp_client(args: TcpClientArgs) -> anyhow::Result<()> {
    let connect_timeout = seconds(args.connect_timeout, "--connect-timeout")?;
    let read_timeout = seconds(args.read_timeout, "--read-timeout")?;
    pause(args.session.pause_min, args.session.pause_max)?; // validate the range before connecting
    let name = client_name(args.session.name);
    let mut stream = connect(&args.session.host, args.session.port, connect_timeout, None).await?;
    log(format_args!(
        "connected to {} as client {name}",
        stream.peer_addr()?
    ));
    for i in 1..=args.session.count {
        let message = format!("Message #{i} from client {name}");
        stream
            .write_all(&encode(Kind::Text, &message)?)
            .await
            .with_context(|| format!("cannot send message #{i}"))?;
        log(format_args!("sent: {message}"));
        match read_frame(&mut stream, read_timeout).await {
            Ok(Some((kind, reply))) => log(format_args!("received {kind}: {reply}")),
            Ok(None) => anyhow::bail!("server closed the connection before answering #{i}"),
            Err(e) => anyhow::bail!("no valid response to message #{i}: {e}"),
        }
        if i < args.session.count {
            tokio::time::sleep(pause(args.session.pause_min, args.session.pause_max)?).await;
        }
    }
    Ok(())
}

/// Connects to the first address of `host` that answers, each try bounded by `timeout`;
/// `send_buffer` sets SO_SNDBUF before connecting (the eager client's small buffer).
pub(super) async fn connect(
    host: &str,
    port: u16,
    timeout: Duration,
    send_buffer: Option<u32>,
) -> anyhow::Result<TcpStream> {
    let mut last = String::new();
    for addr in resolve(host, port).await? {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }?;
        if let Some(size) = send_buffer {
            socket.set_send_buffer_size(size)?;
        }
        match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out after {}s", timeout.as_secs_f64()),
        }
    }
    anyhow::bail!(
        "cannot connect to {}: {last}",
        crate::common::host_port(host, port)
    )
}
