//! `labctl forward <instance> <remote-port>`: a local port that reaches a port on the
//! instance through Session Manager, instead of an SSH tunnel. Every local connection
//! is one smux stream in one session, so many run at once.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use labctl_ssm::channel::{Event, Sender};
use labctl_ssm::message::{MAX_INPUT_CHUNK, PayloadType, PortFlag};
use labctl_ssm::smux;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::cli::{ForwardArgs, GlobalArgs};
use crate::lab::{Lab, Needs};
use crate::printer::Printer;
use crate::{session, targets};

const PORT_DOCUMENT: &str = "AWS-StartPortForwardingSession";

pub async fn run(
    global: &GlobalArgs,
    args: &ForwardArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let target = targets::require_single(targets::resolve(&lab, &args.instance).await?)?;
    targets::require_online(&lab.clients, std::slice::from_ref(&target)).await?;
    let listener = TcpListener::bind(("127.0.0.1", args.local_port.unwrap_or(0)))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} (in use? pick another with --local-port)",
                args.local_port.unwrap_or(0)
            )
        })?;
    let local = listener.local_addr()?.port();
    let parameters = HashMap::from([
        ("portNumber".to_owned(), vec![args.remote_port.to_string()]),
        ("localPortNumber".to_owned(), vec![local.to_string()]),
    ]);
    if args.plugin {
        drop(listener);
        return session::hand_over(&lab, &target.id, Some(PORT_DOCUMENT), &parameters).await;
    }
    let mut started = session::start(
        &lab.clients,
        &lab.sdk,
        &target.id,
        Some(PORT_DOCUMENT),
        &parameters,
    )
    .await?;
    session::handshake(&mut started.channel).await?;
    printer.result(&format!(
        "forwarding 127.0.0.1:{local} -> {}:{} (session {}; Ctrl-C ends it)",
        target.name, args.remote_port, started.id
    ));
    let pacing = args.pace_like_plugin.then_some(Duration::from_millis(1));
    let outcome = serve(listener, started.channel, pacing).await;
    session::terminate(&lab.clients, &started.id).await;
    outcome.map(|()| ExitCode::SUCCESS)
}

/// Relays local connections until Ctrl-C or the session's end.
async fn serve(
    listener: TcpListener,
    channel: labctl_ssm::channel::Channel,
    pacing: Option<Duration>,
) -> anyhow::Result<()> {
    let labctl_ssm::channel::Channel {
        sender, mut events, ..
    } = channel;
    let (to_smux, smux_in) = mpsc::channel::<Bytes>(256);
    let (smux_out, mut from_smux) = mpsc::channel::<Bytes>(256);
    let mux = smux::Session::client(smux_in, smux_out, smux::Config::default());
    let out = sender.clone();
    let pump = tokio::spawn(async move { pump(&mut from_smux, &out, pacing).await });
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let result = loop {
        tokio::select! {
            conn = listener.accept() => {
                let (mut tcp, peer) = conn.context("accepting a local connection")?;
                let mux = mux.clone();
                tokio::spawn(async move {
                    match mux.open().await {
                        Ok(mut stream) => {
                            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
                            let _ = stream.shutdown().await;
                        }
                        Err(e) => tracing::warn!("{peer}: cannot open a stream: {e}"),
                    }
                });
            }
            event = events.recv() => match event {
                Some(Event::Data(PayloadType::Output, bytes)) => {
                    if to_smux.send(bytes).await.is_err() {
                        break Err(anyhow!("the port session's stream multiplexer stopped"));
                    }
                }
                Some(Event::Data(PayloadType::Flag, body))
                    if body.get(..4) == Some(&(PortFlag::ConnectToPortError as u32).to_be_bytes()[..]) =>
                {
                    eprintln!("labctl: the instance could not connect to the port");
                }
                Some(Event::Data(..)) => {}
                Some(Event::Closed(text)) => {
                    if !text.trim().is_empty() {
                        eprintln!("{}", text.trim());
                    }
                    break Ok(());
                }
                Some(Event::Failed(e)) => break Err(anyhow!(e)),
                None => break Err(anyhow!("the session's data channel ended")),
            },
            _ = &mut ctrl_c => {
                let _ = sender
                    .send(PayloadType::Flag, session::flag(PortFlag::TerminateSession as u32))
                    .await;
                break Ok(());
            }
        }
    };
    mux.close();
    pump.abort();
    result
}

/// smux's bytes to the channel in messages of at most 1024 bytes; with `pacing`, one
/// message per `pacing` at most, as the official plugin sends (for comparisons). The
/// pauses are scheduled, not slept one by one, so a late timer never makes the peer
/// slower than the plugin's 1 KiB per millisecond.
async fn pump(from_smux: &mut mpsc::Receiver<Bytes>, sender: &Sender, pacing: Option<Duration>) {
    let mut next = tokio::time::Instant::now();
    while let Some(mut bytes) = from_smux.recv().await {
        while !bytes.is_empty() {
            let piece = bytes.split_to(bytes.len().min(MAX_INPUT_CHUNK));
            if sender.send(PayloadType::Output, piece).await.is_err() {
                return;
            }
            if let Some(pause) = pacing {
                next = (next + pause).max(tokio::time::Instant::now() - pause * 100);
                tokio::time::sleep_until(next).await;
            }
        }
    }
}
