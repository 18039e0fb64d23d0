//! `labctl ssm-shell <instance>`: an interactive shell on an instance through Session
//! Manager, with no SSH key and no open port. The local terminal is raw while the
//! session runs and restored on every way out.
//!
//! labctl exits with the remote shell's status, which Session Manager does not report:
//! the agent sends no ExitCode message for a shell in a pseudo-terminal (only for
//! non-interactive commands with separate output streams), and the official plugin
//! exits 0 however the shell ended. So the session runs `AWS-StartInteractiveCommand`
//! with a wrapper that starts `sh` (what a standard session starts) and, once it has
//! ended, prints its status in a marker with a nonce of this session
//! ([`remote_command`]); labctl takes the marker out of the output ([`ExitMarker`]),
//! so the user never sees it. A session that ends without the marker (terminated,
//! timed out, the wrapper killed) is an error.

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

/// The session document: one command, in a pseudo-terminal, as the standard shell is.
const DOCUMENT: &str = "AWS-StartInteractiveCommand";

pub async fn run(
    global: &GlobalArgs,
    args: &SsmShellArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let target = targets::require_single(targets::resolve(&lab, &args.instance).await?)?;
    targets::require_online(&lab.clients, std::slice::from_ref(&target)).await?;
    if args.plugin {
        // The standard shell: the plugin would print the marker and exit 0 anyway.
        return session::hand_over(&lab, &target.id, None, &HashMap::new()).await;
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!(
            "`labctl ssm-shell` needs a terminal on stdin; for one command use \
             `labctl exec {} -- <command>`",
            args.instance
        );
    }
    let nonce = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase();
    let parameters = HashMap::from([("command".to_owned(), vec![remote_command(&nonce)])]);
    let started = session::start(
        &lab.clients,
        &lab.sdk,
        &target.id,
        Some(DOCUMENT),
        &parameters,
    )
    .await?;
    printer.note(&format!(
        "Starting session {} with {} ({}). Exit the shell to end it.",
        started.id, target.name, target.id
    ));
    // Watch signals and resizes before going raw, so none is missed in between.
    let terminated = terminal::terminated();
    let resizes = terminal::resizes();
    let outcome = match terminal::RawMode::enter() {
        Ok(raw) => {
            let outcome = drive(
                started.channel,
                resizes,
                terminated,
                ExitMarker::new(&nonce),
            )
            .await;
            drop(raw);
            outcome
        }
        Err(e) => Err(anyhow!("cannot put the terminal in raw mode: {e}")),
    };
    match outcome {
        Ok(Ending {
            status,
            text,
            signal,
        }) => {
            if signal.is_some() {
                session::terminate(&lab.clients, &started.id).await;
            }
            if !text.trim().is_empty() {
                printer.note(text.trim());
            }
            printer.note(&format!("Session {} ended.", started.id));
            match (signal, status) {
                (Some(signal), _) => Ok(ExitCode::from((128 + signal).clamp(0, 255) as u8)),
                (None, Some(status)) => Ok(ExitCode::from(status.clamp(0, 255) as u8)),
                (None, None) => bail!(
                    "the session ended without the shell's exit status, which is unknown \
                     (the session was terminated or timed out, or the wrapper around the \
                     shell was killed)"
                ),
            }
        }
        Err(e) => {
            session::terminate(&lab.clients, &started.id).await;
            Err(e)
        }
    }
}

/// What the instance runs, as `sh -c '<this>'`: `sh`, then its status in the marker.
///
/// The wrapper catches (rather than ignores) INT, QUIT and TSTP, so a keystroke meant
/// for the inner shell cannot end or stop the wrapper while the inner shell and its
/// commands keep the default actions; it ignores TTOU only after the inner shell, so the
/// marker is written even to a terminal left to another process group with `tostop`.
/// The marker, an OSC string (`ESC ] … BEL`) that terminals ignore, holds only
/// upper-case letters, digits and `;`, which no output mode changes. The agent turns
/// `$$` into `$` and resolves `{{…}}` in parameters: the command has neither.
fn remote_command(nonce: &str) -> String {
    format!(
        "trap : INT QUIT TSTP; sh; s=$?; trap '' TTOU; \
         printf '\\033]LABCTL-EXIT;{nonce};%d\\007' \"$s\""
    )
}

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;
/// `$?` is at most 255.
const MAX_DIGITS: usize = 3;

/// Takes the wrapper's marker, `ESC ] LABCTL-EXIT;<nonce>;<status> BEL`, out of the
/// shell's output, wherever the agent split it across messages.
///
/// Output that may be the start of a marker is held back until the next message tells;
/// since the marker starts with ESC, that is only output ending in a bare ESC or a cut
/// escape sequence, which the rest of its sequence soon follows. Anything that is not
/// exactly a marker with this session's nonce passes through unchanged.
struct ExitMarker {
    /// `ESC ] LABCTL-EXIT;<nonce>;`
    head: Vec<u8>,
    /// Output held back: it may be the start of a marker.
    held: Vec<u8>,
    /// The status in the last complete marker.
    status: Option<i32>,
}

impl ExitMarker {
    fn new(nonce: &str) -> Self {
        Self {
            head: format!("\x1b]LABCTL-EXIT;{nonce};").into_bytes(),
            held: Vec::new(),
            status: None,
        }
    }

    /// The output of `chunk` to show, without any marker.
    fn feed(&mut self, chunk: Bytes) -> Bytes {
        if self.held.is_empty() && !chunk.contains(&ESC) {
            return chunk;
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(&chunk);
        let mut shown = Vec::with_capacity(buf.len());
        let mut rest = buf.as_slice();
        loop {
            let Some(at) = rest.windows(self.head.len()).position(|w| w == self.head) else {
                // Hold back the longest end of the output that begins a marker.
                let from = rest.len().saturating_sub(self.head.len() - 1);
                let keep = (from..rest.len())
                    .find(|&i| self.head.starts_with(&rest[i..]))
                    .map_or(0, |i| rest.len() - i);
                shown.extend_from_slice(&rest[..rest.len() - keep]);
                self.held = rest[rest.len() - keep..].to_vec();
                return shown.into();
            };
            shown.extend_from_slice(&rest[..at]);
            let after = &rest[at + self.head.len()..];
            let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
            match after.get(digits) {
                None if digits <= MAX_DIGITS => {
                    self.held = rest[at..].to_vec();
                    return shown.into();
                }
                Some(&BEL) if (1..=MAX_DIGITS).contains(&digits) => {
                    self.status = std::str::from_utf8(&after[..digits])
                        .ok()
                        .and_then(|d| d.parse().ok());
                    rest = &after[digits + 1..];
                }
                // Not a marker after all: shown as it is.
                _ => {
                    shown.extend_from_slice(&self.head);
                    rest = after;
                }
            }
        }
    }
}

struct Ending {
    /// The remote shell's exit status, if its marker came.
    status: Option<i32>,
    text: String,
    /// labctl was told to stop by this signal, not the shell.
    signal: Option<i32>,
}

/// Keystrokes and resizes to the agent; its output to the terminal; until the end.
///
/// Output still held back when the session closes is dropped: it can only be the
/// start of a marker whose end never came, or a bare escape sequence fragment.
async fn drive(
    mut channel: labctl_ssm::channel::Channel,
    mut resizes: terminal::Resizes,
    terminated: impl Future<Output = i32>,
    mut marker: ExitMarker,
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
                    let shown = marker.feed(bytes);
                    if !shown.is_empty() {
                        stdout.write_all(&shown)?;
                        stdout.flush()?;
                    }
                }
                Some(Event::Data(PayloadType::HandshakeRequest, body)) => {
                    session::answer_handshake(&channel, &body).await?;
                }
                Some(Event::Data(PayloadType::Error | PayloadType::StdErr, body)) => {
                    let mut err = std::io::stderr();
                    err.write_all(&body)?;
                    err.flush()?;
                }
                Some(Event::Data(..)) => {}
                Some(Event::Closed(text)) => {
                    return Ok(Ending { status: marker.status, text, signal: None });
                }
                // The shell has ended and its status is known: the session's last
                // moments do not change it.
                Some(Event::Failed(e)) if marker.status.is_some() => {
                    return Ok(Ending { status: marker.status, text: e.to_string(), signal: None });
                }
                Some(Event::Failed(e)) => bail!("{e}"),
                None => bail!("the session's data channel ended without closing"),
            },
            signal = &mut terminated => {
                return Ok(Ending { status: None, text: String::new(), signal: Some(signal) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "0123456789ABCDEF0123456789ABCDEF";

    fn marker(status: &str) -> String {
        format!("\x1b]LABCTL-EXIT;{NONCE};{status}\x07")
    }

    /// What `chunks` show, one after another, and the status found.
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Option<i32>) {
        let mut m = ExitMarker::new(NONCE);
        let mut shown = Vec::new();
        for chunk in chunks {
            shown.extend_from_slice(&m.feed(Bytes::copy_from_slice(chunk)));
        }
        (shown, m.status)
    }

    #[test]
    fn the_marker_is_taken_out_at_every_split() {
        let output = format!("exit 7\r\n{}", marker("7"));
        let bytes = output.as_bytes();
        for cut in 0..=bytes.len() {
            let (shown, status) = run(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(shown, b"exit 7\r\n", "cut at {cut}");
            assert_eq!(status, Some(7), "cut at {cut}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&singles), (b"exit 7\r\n".to_vec(), Some(7)));
    }

    #[test]
    fn output_around_the_marker_is_kept() {
        let output = format!("a\x1b[0mb{}late\x1b", marker("137"));
        let (shown, status) = run(&[output.as_bytes()]);
        // The final bare ESC may begin a marker: held back.
        assert_eq!(shown, b"a\x1b[0mblate");
        assert_eq!(status, Some(137));
        let (shown, _) = run(&[output.as_bytes(), b"[K"]);
        assert_eq!(shown, b"a\x1b[0mblate\x1b[K");
    }

    #[test]
    fn lookalikes_pass_through_unchanged() {
        let other = "FEDCBA9876543210FEDCBA9876543210";
        for text in [
            format!("\x1b]LABCTL-EXIT;{other};3\x07"),
            format!("\x1b]LABCTL-EXIT;{NONCE};\x07"),
            format!("\x1b]LABCTL-EXIT;{NONCE};1234\x07"),
            format!("\x1b]LABCTL-EXIT;{NONCE};7x"),
            format!("LABCTL-EXIT;{NONCE};7\x07"),
            format!("\x1b]labctl-exit;{};7\x07", NONCE.to_lowercase()),
            "\x1b]0;user@host: ~\x07".to_owned(),
        ] {
            let bytes = text.as_bytes();
            for cut in 0..=bytes.len() {
                let (shown, status) = run(&[&bytes[..cut], &bytes[cut..], b"."]);
                assert_eq!(
                    String::from_utf8_lossy(&shown),
                    format!("{text}."),
                    "cut at {cut}"
                );
                assert_eq!(status, None, "{text:?}");
            }
        }
    }

    #[test]
    fn a_cut_marker_is_never_shown() {
        let full = marker("0");
        let bytes = full.as_bytes();
        for cut in 0..bytes.len() {
            let (shown, status) = run(&[b"$ ", &bytes[..cut]]);
            assert_eq!(shown, b"$ ", "cut at {cut}");
            assert_eq!(status, None);
        }
    }

    #[test]
    fn the_last_marker_counts() {
        let output = format!("{}x{}", marker("1"), marker("0"));
        assert_eq!(run(&[output.as_bytes()]), (b"x".to_vec(), Some(0)));
    }

    #[test]
    fn the_command_is_plain_sh_and_safe_from_the_agents_substitutions() {
        let command = remote_command(NONCE);
        assert!(command.contains("; sh; s=$?;"), "{command}");
        assert!(
            command.contains(&format!("LABCTL-EXIT;{NONCE};%d")),
            "{command}"
        );
        assert!(
            !command.contains("$$") && !command.contains("{{"),
            "{command}"
        );
    }
}
