//! `labctl ssm-shell <instance>`: an interactive shell on an instance through Session
//! Manager, with no SSH key and no open port. The local terminal is raw while the
//! session runs and restored on every way out.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use labctl_ssm::channel::Event;
use labctl_ssm::message::{PayloadType, Size};

use crate::cli::{GlobalArgs, SsmShellArgs};
use crate::lab::{Lab, Needs};
use crate::printer::Printer;
use crate::{session, targets, terminal};

pub async fn run(
    global: &GlobalArgs,
    args: &SsmShellArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let target = targets::require_single(targets::resolve(&lab, &args.instance).await?)?;
    targets::require_online(&lab.clients, std::slice::from_ref(&target)).await?;
    if args.plugin {
        return session::hand_over(&lab, &target.id, None, &HashMap::new()).await;
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!(
            "`labctl ssm-shell` needs a terminal on stdin; for one command use \
             `labctl exec {} -- <command>`",
            args.instance
        );
    }
    let started = session::start(&lab.clients, &lab.sdk, &target.id, None, &HashMap::new()).await?;
    printer.note(&format!(
        "Starting session {} with {} ({}). Exit the shell to end it.",
        started.id, target.name, target.id
    ));
    // Watch signals and resizes before going raw, so none is missed in between.
    let terminated = terminal::terminated();
    let resizes = terminal::resizes();
    let outcome = match terminal::RawMode::enter() {
        Ok(raw) => {
            let outcome = drive(started.channel, resizes, terminated).await;
            drop(raw);
            outcome
        }
        Err(e) => Err(anyhow!("cannot put the terminal in raw mode: {e}")),
    };
    match outcome {
        Ok(Ending {
            code,
            text,
            interrupted,
        }) => {
            if interrupted {
                session::terminate(&lab.clients, &started.id).await;
            }
            if !text.trim().is_empty() {
                printer.note(text.trim());
            }
            printer.note(&format!("Session {} ended.", started.id));
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Err(e) => {
            session::terminate(&lab.clients, &started.id).await;
            Err(e)
        }
    }
}

struct Ending {
    code: i32,
    text: String,
    /// labctl was told to stop (a signal), not the shell.
    interrupted: bool,
}

/// Keystrokes and resizes to the agent; its output to the terminal; until the end.
async fn drive(
    mut channel: labctl_ssm::channel::Channel,
    mut resizes: terminal::Resizes,
    terminated: impl Future<Output = i32>,
) -> anyhow::Result<Ending> {
    let sender = channel.sender.clone();
    let send_size = |(cols, rows): (u16, u16)| {
        let size = Size {
            cols: cols.into(),
            rows: rows.into(),
        };
        Bytes::from(serde_json::to_vec(&size).unwrap_or_default())
    };
    if let Some(size) = terminal::size() {
        sender
            .send(PayloadType::Size, send_size(size))
            .await
            .map_err(|e| anyhow!(e))?;
    }
    let mut stdin = terminal::StdinReader::spawn()?;
    let mut stdin_open = true;
    let mut code = 0;
    let mut stdout = std::io::stdout();
    tokio::pin!(terminated);
    loop {
        tokio::select! {
            chunk = stdin.read(), if stdin_open => match chunk {
                Ok(Some(bytes)) => {
                    sender.send(PayloadType::Output, bytes).await.map_err(|e| anyhow!(e))?;
                }
                Ok(None) | Err(_) => stdin_open = false,
            },
            Some(size) = resizes.recv() => {
                let _ = sender.send(PayloadType::Size, send_size(size)).await;
            }
            event = channel.events.recv() => match event {
                Some(Event::Data(PayloadType::Output, bytes)) => {
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
                Some(Event::Data(PayloadType::HandshakeRequest, body)) => {
                    session::answer_handshake(&channel, &body).await?;
                }
                Some(Event::Data(PayloadType::ExitCode, body)) => {
                    code = String::from_utf8_lossy(&body).trim().parse().unwrap_or(code);
                }
                Some(Event::Data(PayloadType::Error | PayloadType::StdErr, body)) => {
                    let mut err = std::io::stderr();
                    err.write_all(&body)?;
                    err.flush()?;
                }
                Some(Event::Data(..)) => {}
                Some(Event::Closed(text)) => return Ok(Ending { code, text, interrupted: false }),
                Some(Event::Failed(e)) => bail!("{e}"),
                None => bail!("the session's data channel ended without closing"),
            },
            signal = &mut terminated => {
                return Ok(Ending { code: 128 + signal, text: String::new(), interrupted: true });
            }
        }
    }
}
