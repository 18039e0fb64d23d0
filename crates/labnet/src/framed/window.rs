//! `hesitant-server` and `eager-client`: the zero-window demonstration.
//!
//! The hesitant server accepts one connection and does not read from it until it is
//! told to, so the kernel's receive buffer fills, TCP advertises a zero window, and the
//! eager client's send buffer fills behind it until its writes stop completing. Students
//! watch this in tcpdump; the programs print the buffer sizes and, on the client side,
//! when a write has been stuck for longer than the write timeout.
//!
//! The Python original waits for Enter; labnet also starts reading after `--wait-seconds`
//! or on SIGUSR1, so the demo runs under systemd and in tests.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use super::tcp::connect;
use super::{Kind, client_name, encode, json_string, pause, read_frame, seconds};
use crate::common::{Listen, log, shutdown};

/// Options of `hesitant-server`.
#[derive(Debug, Args)]
pub struct HesitantServerArgs {
    #[command(flatten)]
    listen: Listen,
    /// Port to listen on (0: any free port; the first line printed names it).
    #[arg(long, default_value_t = 1234)]
    port: u16,
    /// Set SO_RCVBUF to this many bytes (the kernel may round it), so the window fills fast.
    #[arg(long, value_name = "BYTES")]
    recv_buffer: Option<usize>,
    /// Start reading this many seconds after the connection arrives instead of on Enter.
    /// Without it, and without a terminal on stdin, only SIGUSR1 starts the reading.
    #[arg(long, value_name = "SECONDS")]
    wait_seconds: Option<f64>,
    /// Once reading, give up on a client that sends nothing for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    read_timeout: f64,
}

/// Runs `hesitant-server`: one connection, not read until triggered (Enter,
/// `--wait-seconds` or SIGUSR1), then prints each message's `sequence_number`.
pub async fn run_hesitant_server(args: HesitantServerArgs) -> anyhow::Result<()> {
    let wait = args
        .wait_seconds
        .map(|s| seconds(s, "--wait-seconds"))
        .transpose()?;
    let read_timeout = seconds(args.read_timeout, "--read-timeout")?;
    let listener = args
        .listen
        .tcp(args.port)
        .with_context(|| format!("cannot listen on {}", args.listen.addr(args.port)))?;
    if let Some(size) = args.recv_buffer {
        // Accepted sockets inherit the listener's buffer, and the window scale is chosen
        // from it during the handshake, so it must be set before anyone connects.
        SockRef::from(&listener)
            .set_recv_buffer_size(size)
            .context("cannot set SO_RCVBUF")?;
    }
    let mut usr1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
    let stop = shutdown();
    tokio::pin!(stop);
    log(format_args!("listening on {}", listener.local_addr()?));

    let (mut stream, peer) = tokio::select! {
        () = &mut stop => return Ok(()),
        accepted = listener.accept() => accepted.context("accept failed")?,
    };
    drop(listener); // exactly one connection
    log(format_args!("{peer} connected"));
    log(format_args!(
        "SO_RCVBUF: {} bytes",
        SockRef::from(&stream).recv_buffer_size()?
    ));

    let enter = (wait.is_none() && std::io::stdin().is_terminal()).then(wait_for_enter);
    log(match (wait, &enter) {
        (Some(d), _) => format!(
            "not reading for {}s (or until SIGUSR1: kill -USR1 {})",
            d.as_secs_f64(),
            std::process::id()
        ),
        (None, Some(_)) => "not reading until Enter is pressed (or SIGUSR1)".to_owned(),
        (None, None) => format!(
            "not reading until SIGUSR1 (kill -USR1 {})",
            std::process::id()
        ),
    });
    let trigger = tokio::select! {
        () = &mut stop => return Ok(()),
        _ = usr1.recv() => "SIGUSR1",
        () = sleep_or_never(wait) => "wait over",
        _ = async { match enter {
            Some(rx) => rx.await,
            None => std::future::pending().await,
        } } => "Enter pressed",
    };
    log(format_args!("reading now ({trigger})"));

    let reason = loop {
        let frame = tokio::select! {
            () = &mut stop => return Ok(()),
            frame = read_frame(&mut stream, read_timeout) => frame,
        };
        match frame {
            Ok(Some((Kind::Json, text))) => log(sequence_line(peer, &text)),
            Ok(Some((kind, text))) => log(format_args!("{peer} -> {kind} {text:?}")),
            Ok(None) => break "peer closed the connection".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    log(format_args!("{peer} closed: {reason}"));
    Ok(())
}

/// The log line for one JSON message: its `sequence_number`, or why there is none.
fn sequence_line(peer: std::net::SocketAddr, text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => match value.get("sequence_number") {
            Some(n) => format!("{peer} sequence_number {n}"),
            None => format!("{peer} JSON message without sequence_number"),
        },
        Err(e) => format!("{peer} JSON message that does not parse: {e}"),
    }
}

async fn sleep_or_never(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves when a line is read from stdin. A plain thread, not `spawn_blocking`: a
/// blocked stdin read must not keep the runtime from shutting down.
fn wait_for_enter() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_ok() {
            let _ = tx.send(());
        }
    });
    rx
}

/// Options of `eager-client`.
#[derive(Debug, Args)]
pub struct EagerClientArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 1234)]
    port: u16,
    /// Number of messages to send (sequence numbers from 1).
    #[arg(long, default_value_t = 50)]
    count: u32,
    /// Client name in the messages (default: a random UUID4).
    #[arg(long)]
    name: Option<String>,
    /// Shortest random pause between messages, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pause_min: f64,
    /// Longest random pause between messages, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pause_max: f64,
    /// Give up connecting after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    connect_timeout: f64,
    /// A message not fully handed to the kernel within this many seconds means the
    /// receiver's window is full: report it and exit with status 1 (a half-written frame
    /// cannot be followed by another one, so the client does not continue).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    write_timeout: f64,
    /// Set SO_SNDBUF to this many bytes (the kernel may round it) before connecting.
    #[arg(long, value_name = "BYTES")]
    send_buffer: Option<u32>,
}

/// Runs `eager-client`: sends JSON messages, exits non-zero on a write timeout.
pub async fn run_eager_client(args: EagerClientArgs) -> anyhow::Result<()> {
    let connect_timeout = seconds(args.connect_timeout, "--connect-timeout")?;
    let write_timeout = seconds(args.write_timeout, "--write-timeout")?;
    pause(args.pause_min, args.pause_max)?; // validate the range before connecting
    let name = client_name(args.name);
    let mut stream = connect(&args.host, args.port, connect_timeout, args.send_buffer).await?;
    log(format_args!(
        "connected to {} as client {name}",
        stream.peer_addr()?
    ));
    log(format_args!(
        "SO_SNDBUF: {} bytes",
        SockRef::from(&stream).send_buffer_size()?
    ));
    for i in 1..=args.count {
        let frame = encode(Kind::Json, &eager_message(&name, i))?;
        match tokio::time::timeout(write_timeout, stream.write_all(&frame)).await {
            Ok(Ok(())) => log(format_args!("sent #{i} ({} bytes)", frame.len())),
            Ok(Err(e)) => return Err(e).with_context(|| format!("cannot send message #{i}")),
            Err(_) => anyhow::bail!(
                "write timed out after {}s at message #{i}: the receiver's window is full",
                write_timeout.as_secs_f64()
            ),
        }
        if i < args.count {
            tokio::time::sleep(pause(args.pause_min, args.pause_max)?).await;
        }
    }
    stream
        .shutdown()
        .await
        .context("cannot close the connection")?;
    log(format_args!("sent all {} messages", args.count));
    Ok(())
}

#[derive(Serialize)]
struct EagerMessage<'a> {
    client_name: &'a str,
    sequence_number: u32,
    random_numbers: Vec<u32>,
    uuids: Vec<String>,
}

/// One eager message, laid out as Python's `json.dumps` writes it.
fn eager_message(name: &str, sequence_number: u32) -> String {
    let count = rand::random_range(400..=800);
    let message = EagerMessage {
        client_name: name,
        sequence_number,
        random_numbers: (0..count)
            .map(|_| rand::random_range(10_000_000..20_000_000))
            .collect(),
        uuids: (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect(),
    };
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Neither can fail: plain data into a Vec, and serde_json writes UTF-8.
    let _ = message.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

/// serde_json with Python's default separators (`", "`, `": "`) and `ensure_ascii`.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // Fragments hold no quote, backslash or control character; json_string escapes
        // what is left to escape (DEL and non-ASCII) exactly as Python does.
        let quoted = json_string(fragment);
        writer.write_all(&quoted.as_bytes()[1..quoted.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eager_message_shape() {
        let text = eager_message("Zoë", 7);
        assert!(text.starts_with(
            r#"{"client_name": "Zo\u00eb", "sequence_number": 7, "random_numbers": ["#
        ));
        assert!(text.is_ascii());
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["client_name"], "Zoë");
        let numbers = value["random_numbers"].as_array().expect("array");
        assert!((400..=800).contains(&numbers.len()), "{}", numbers.len());
        assert!(numbers.iter().all(|n| {
            n.as_u64()
                .is_some_and(|n| (10_000_000..20_000_000).contains(&n))
        }));
        let uuids = value["uuids"].as_array().expect("array");
        assert_eq!(uuids.len(), 3);
        assert!(
            uuids
                .iter()
                .all(|u| u.as_str().is_some_and(|u| u.len() == 36))
        );
        // Fits a frame's 16-bit length even at 800 numbers.
        assert!(encode(Kind::Json, &text).is_ok());
    }

    #[test]
    fn sequence_line_reports_the_number_or_its_absence() {
        let peer = "127.0.0.1:9".parse().expect("addr");
        assert_eq!(
            sequence_line(peer, r#"{"sequence_number": 3}"#),
            "127.0.0.1:9 sequence_number 3"
        );
        assert!(sequence_line(peer, "{}").contains("without sequence_number"));
        assert!(sequence_line(peer, "{").contains("does not parse"));
    }
}
