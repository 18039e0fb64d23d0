//! `udp-server` and `udp-client`: the same exchange in 4096-byte NUL-padded datagrams.
//!
//! UDP has no connection to close, so a malformed datagram is logged and dropped, and a
//! client counts the responses that never came instead of failing at the first one.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::net::UdpSocket;

use super::{
    DATAGRAM_LEN, Kind, Session, client_name, decode, encode_datagram, json_string, pause, resolve,
    seconds,
};
use crate::common::{Listen, log, shutdown};

/// Large enough for any datagram, so an oversized one is seen whole and not truncated.
const RECV_BUF: usize = 65536;

/// Options of `udp-server`.
#[derive(Debug, Args)]
pub struct UdpServerArgs {
    #[command(flatten)]
    listen: Listen,
    /// Port to listen on (0: any free port; the first line printed names it).
    #[arg(long, default_value_t = 1234)]
    port: u16,
    /// Seconds to wait before each response (the lab's response delay).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    delay: f64,
}

/// Runs `udp-server` until SIGTERM or Ctrl-C.
pub async fn run_udp_server(args: UdpServerArgs) -> anyhow::Result<()> {
    let delay = seconds(args.delay, "--delay")?;
    let socket = Arc::new(
        args.listen
            .udp(args.port)
            .with_context(|| format!("cannot bind {}", args.listen.addr(args.port)))?,
    );
    let stop = shutdown();
    tokio::pin!(stop);
    log(format_args!("listening on {}", socket.local_addr()?));
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        tokio::select! {
            () = &mut stop => {
                log("shutting down");
                return Ok(());
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, peer)) => {
                    if let Some(reply) = answer(&buf[..n], peer) {
                        let socket = Arc::clone(&socket);
                        // With a delay, answer from a task so other senders are not held up.
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            if let Err(e) = socket.send_to(&reply, peer).await {
                                log(format_args!("{peer} response not sent: {e}"));
                            }
                        });
                    }
                }
                // E.g. ICMP port unreachable from an earlier response; nothing to close.
                Err(e) => log(format_args!("receive failed: {e}")),
            },
        }
    }
}

/// The response datagram to `datagram` from `peer`, or `None` (logged) if there is none.
fn answer(datagram: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    let (kind, payload) = match decode(datagram) {
        Ok(message) => message,
        Err(e) => {
            log(format_args!(
                "{peer} dropped datagram of {} bytes: {e}",
                datagram.len()
            ));
            return None;
        }
    };
    log(format_args!("{peer} -> {kind} {payload}"));
    if kind != Kind::Text {
        return None;
    }
    // The payload is echoed as received, quotes included, and the whole text is then
    // JSON-encoded like every UDP TEXT payload.
    let reply = json_string(&format!("Response to message: {payload}"));
    match encode_datagram(Kind::Text, &reply) {
        Ok(datagram) => Some(datagram),
        Err(e) => {
            log(format_args!("{peer} not answered: {e}"));
            None
        }
    }
}

/// Options of `udp-client`.
#[derive(Debug, Args)]
pub struct UdpClientArgs {
    #[command(flatten)]
    session: Session,
    /// Count a response as lost when it has not arrived within this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    read_timeout: f64,
}

/// Runs `udp-client`; exits non-zero if any response was lost.
pub async fn run_udp_client(args: UdpClientArgs) -> anyhow::Result<()> {
    let read_timeout = seconds(args.read_timeout, "--read-timeout")?;
    pause(args.session.pause_min, args.session.pause_max)?; // validate the range before sending
    let name = client_name(args.session.name);
    let server = resolve(&args.session.host, args.session.port).await?[0];
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: only the server's datagrams arrive, and ICMP errors are reported.
    socket.connect(server).await?;
    log(format_args!(
        "sending to {server} from {} as client {name}",
        socket.local_addr()?
    ));
    let mut lost = 0u32;
    let mut buf = vec![0u8; RECV_BUF];
    for i in 1..=args.session.count {
        let message = format!("Message #{i} from client {name}");
        let payload = json_string(&message);
        socket
            .send(&encode_datagram(Kind::Text, &payload)?)
            .await
            .with_context(|| format!("cannot send message #{i}"))?;
        log(format_args!("sent: {payload}"));
        let expected = json_string(&format!("Response to message: {payload}"));
        match await_reply(&socket, &mut buf, &expected, read_timeout).await {
            Ok(()) => {
                let text: String = serde_json::from_str(&expected).unwrap_or(expected);
                log(format_args!("received: {text}"));
            }
            Err(why) => {
                lost += 1;
                log(format_args!("response to message #{i} lost: {why}"));
            }
        }
        if i < args.session.count {
            tokio::time::sleep(pause(args.session.pause_min, args.session.pause_max)?).await;
        }
    }
    log(format_args!(
        "sent {}, received {}, lost {lost}",
        args.session.count,
        args.session.count - lost
    ));
    anyhow::ensure!(lost == 0, "{lost} of {} responses lost", args.session.count);
    Ok(())
}

/// Waits for the datagram whose payload is `expected`; a late answer to an earlier
/// message, or anything malformed, is reported and skipped.
async fn await_reply(
    socket: &UdpSocket,
    buf: &mut [u8],
    expected: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(buf)).await {
            Err(_) => return Err(format!("none within {}s", timeout.as_secs_f64())),
            Ok(Err(e)) => return Err(format!("{e} (is the server running?)")),
            Ok(Ok(n)) => n,
        };
        match decode(&buf[..n]) {
            Ok((Kind::Text, payload)) if payload == expected => {
                if n != DATAGRAM_LEN {
                    log(format_args!(
                        "note: response datagram is {n} bytes, not {DATAGRAM_LEN}"
                    ));
                }
                return Ok(());
            }
            Ok((kind, payload)) => log(format_args!("skipped unexpected {kind} {payload}")),
            Err(e) => log(format_args!("skipped malformed datagram of {n} bytes: {e}")),
        }
    }
}
