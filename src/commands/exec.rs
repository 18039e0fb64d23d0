//! `labctl exec <instance|role|all> -- <command...>`: runs one shell command on the
//! lab's instances through SSM Run Command (`AWS-RunShellScript`), and shows each
//! instance's output and exit code.
//!
//! Nothing is sent unless every target is running and its agent is online, so a typo or
//! a stopped instance is an immediate error rather than a command that waits out its
//! timeout. SSM keeps only the first 24,000 characters of stdout and 8,000 of stderr;
//! longer output is reported as truncated.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_ssm::types::CommandInvocationStatus;
use serde_json::json;

use crate::aws::wait::{self, Backoff};
use crate::aws::{AwsError, Clients, aws};
use crate::cli::{ExecArgs, GlobalArgs};
use crate::lab::{Lab, Needs};
use crate::printer::Printer;
use crate::targets::{self, Target};

/// The SSM document that runs shell lines on Linux.
const DOCUMENT: &str = "AWS-RunShellScript";
/// What SSM keeps of each stream (GetCommandInvocation's documented limits).
const STDOUT_LIMIT: usize = 24_000;
const STDERR_LIMIT: usize = 8_000;
/// SendCommand's TimeoutSeconds (time to start running) takes at least this.
const MIN_DELIVERY_SECS: u64 = 30;

pub async fn run(
    global: &GlobalArgs,
    args: &ExecArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let targets = targets::resolve(&lab, &args.target).await?;
    targets::require_online(&lab.clients, &targets).await?;
    let line = shell_line(&args.command);
    let outcomes = run_line(&lab.clients, &targets, &line, args.timeout, "labctl exec").await?;
    if args.json {
        let rows: Vec<_> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "instance": o.target.name,
                    "id": o.target.id,
                    "command_id": o.command_id,
                    "status": o.status,
                    "exit_code": o.exit_code,
                    "stdout": o.stdout,
                    "stderr": o.stderr,
                    "stdout_truncated": o.stdout_truncated(),
                    "stderr_truncated": o.stderr_truncated(),
                    "error": o.error,
                })
            })
            .collect();
        printer.json(&json!({ "instances": rows }))?;
    } else {
        for o in &outcomes {
            show(o, args.timeout, printer, outcomes.len() > 1)?;
        }
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.succeeded())
        .map(|o| format!("{} ({})", o.target.name, o.verdict(args.timeout)))
        .collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    printer.error(&format!(
        "the command failed on {} of {} instance(s): {}",
        failed.len(),
        outcomes.len(),
        failed.join(", ")
    ));
    Ok(ExitCode::FAILURE)
}

/// Runs `line` on every target through SSM Run Command and waits for each result. The
/// agent has `timeout` to run it (and at least MIN_DELIVERY_SECS to pick it up); a
/// target without a result gets an [`Outcome`] saying why.
pub(crate) async fn run_line<'t>(
    clients: &Clients,
    targets: &'t [Target],
    line: &str,
    timeout: Duration,
    comment: &str,
) -> anyhow::Result<Vec<Outcome<'t>>> {
    let timeout = timeout.as_secs();
    let delivery = timeout.max(MIN_DELIVERY_SECS);
    let command_id = send(clients, targets, line, timeout, delivery, comment).await?;
    tracing::info!(%command_id, %line, "command sent");
    // SSM reports TimedOut itself after delivery + timeout; the margin covers its own
    // reporting delay.
    let policy = Backoff {
        first: Duration::from_millis(200),
        max: Duration::from_secs(3),
        deadline: Duration::from_secs(delivery + timeout + 60),
    };
    let results = futures::future::join_all(
        targets
            .iter()
            .map(|t| invocation(clients, &command_id, t, policy)),
    )
    .await;
    Ok(targets
        .iter()
        .zip(results)
        .map(|(t, r)| Outcome::new(t, &command_id, r))
        .collect())
}

/// The command's words as one shell line: each word quoted unless it needs none, so
/// the instance's shell sees exactly the words given.
pub(crate) fn shell_line(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:,+@%^".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

async fn send(
    clients: &Clients,
    targets: &[Target],
    line: &str,
    timeout: u64,
    delivery: u64,
    comment: &str,
) -> anyhow::Result<String> {
    let out = clients
        .ssm
        .send_command()
        .document_name(DOCUMENT)
        .set_instance_ids(Some(targets.iter().map(|t| t.id.clone()).collect()))
        .parameters("commands", vec![line.to_owned()])
        .parameters("executionTimeout", vec![timeout.to_string()])
        .comment(comment)
        .timeout_seconds(i32::try_from(delivery).unwrap_or(i32::MAX))
        // One instance failing never stops SSM from running it on the others.
        .max_errors("100%")
        .send()
        .await
        .map_err(aws("SSM SendCommand"))?;
    out.command()
        .and_then(|c| c.command_id())
        .map(str::to_owned)
        .context("SSM SendCommand answered without a command id")
}

/// What one invocation ended as.
struct Finished {
    status: CommandInvocationStatus,
    details: String,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Polls one instance's invocation until it ends. Right after SendCommand SSM may not
/// know the invocation yet (InvocationDoesNotExist): that is retried like "running".
async fn invocation(
    clients: &Clients,
    command_id: &str,
    target: &Target,
    policy: Backoff,
) -> anyhow::Result<Finished> {
    let found = std::sync::Mutex::new(None);
    let what = format!("the command to finish on {}", target.name);
    wait::until(&what, policy, || {
        let found = &found;
        async move {
            let out = clients
                .ssm
                .get_command_invocation()
                .command_id(command_id)
                .instance_id(&target.id)
                .send()
                .await
                .map_err(aws(format!("SSM GetCommandInvocation {}", target.id)));
            let out = match out {
                Ok(out) => out,
                Err(e) if e.is(&["InvocationDoesNotExist"]) => return Ok(false),
                Err(e) => return Err(anyhow::Error::from(e)),
            };
            let Some(status) = out.status().cloned() else {
                return Ok(false);
            };
            if !is_final(&status) {
                return Ok(false);
            }
            let finished = Finished {
                status,
                details: out.status_details().unwrap_or_default().to_owned(),
                code: out.response_code(),
                stdout: out.standard_output_content().unwrap_or_default().to_owned(),
                stderr: out.standard_error_content().unwrap_or_default().to_owned(),
            };
            *found.lock().expect("invocation lock") = Some(finished);
            Ok(true)
        }
    })
    .await?;
    found
        .into_inner()
        .expect("invocation lock")
        .context("the invocation ended without a result")
}

fn is_final(status: &CommandInvocationStatus) -> bool {
    matches!(
        status,
        CommandInvocationStatus::Success
            | CommandInvocationStatus::Failed
            | CommandInvocationStatus::TimedOut
            | CommandInvocationStatus::Cancelled
    )
}

/// One instance's result, as shown and as JSON.
pub(crate) struct Outcome<'a> {
    pub target: &'a Target,
    pub command_id: String,
    /// SSM's invocation status (`Success`, `Failed`, `TimedOut`...), when it ended.
    pub status: Option<String>,
    details: String,
    /// The command's exit code, when it ran to an end.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Why there is no result (an API error, or labctl's own deadline).
    pub error: Option<String>,
}

impl<'a> Outcome<'a> {
    fn new(target: &'a Target, command_id: &str, result: anyhow::Result<Finished>) -> Self {
        let command_id = command_id.to_owned();
        match result {
            Ok(f) => Outcome {
                target,
                command_id,
                // SSM answers -1 when the command did not run to an exit code.
                exit_code: (f.code >= 0 && f.status != CommandInvocationStatus::TimedOut)
                    .then_some(f.code),
                status: Some(f.status.as_str().to_owned()),
                details: f.details,
                stdout: f.stdout,
                stderr: f.stderr,
                error: None,
            },
            Err(e) => Outcome {
                target,
                command_id,
                status: None,
                details: String::new(),
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                error: Some(match e.downcast_ref::<AwsError>() {
                    Some(aws) => aws.to_string(),
                    None => format!("{e:#}"),
                }),
            },
        }
    }

    pub fn succeeded(&self) -> bool {
        self.status.as_deref() == Some("Success") && self.exit_code == Some(0)
    }

    fn stdout_truncated(&self) -> bool {
        self.stdout.chars().count() >= STDOUT_LIMIT
    }

    fn stderr_truncated(&self) -> bool {
        self.stderr.chars().count() >= STDERR_LIMIT
    }

    /// `exit 0`, `exit 3`, `timed out after 10m`...
    pub fn verdict(&self, timeout: Duration) -> String {
        if let Some(e) = &self.error {
            return format!("no result: {e}");
        }
        let status = self.status.as_deref().unwrap_or_default();
        match (status, self.exit_code) {
            (_, Some(code)) if status == "Success" || status == "Failed" => format!("exit {code}"),
            ("TimedOut", _) if self.details == "DeliveryTimedOut" => {
                "not delivered: the agent did not pick the command up in time (TimedOut)".into()
            }
            ("TimedOut", _) => format!(
                "timed out after {} (TimedOut); a longer --timeout lets it run longer",
                labctl_core::duration::format(timeout)
            ),
            ("Cancelled", _) => "cancelled (Cancelled)".into(),
            _ if self.details.is_empty() || self.details == status => {
                format!("failed without an exit code ({status})")
            }
            _ => format!("failed without an exit code ({status}: {})", self.details),
        }
    }
}

/// A header line on stderr, then the instance's stdout on stdout and stderr on stderr.
fn show(o: &Outcome, timeout: Duration, printer: &Printer, several: bool) -> anyhow::Result<()> {
    let header = format!(
        "── {} ({}): {}",
        o.target.name,
        o.target.id,
        o.verdict(timeout)
    );
    if o.succeeded() {
        printer.note(&header);
    } else {
        // A failure's header is its explanation: never silenced.
        eprintln!("{header}");
    }
    // Several instances: each one's output ends with a newline, so the next header
    // starts on a line of its own.
    let terminated = |text: &str| {
        if several && !text.is_empty() && !text.ends_with('\n') {
            format!("{text}\n")
        } else {
            text.to_owned()
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(terminated(&o.stdout).as_bytes())?;
    out.flush()?;
    drop(out);
    let mut err = std::io::stderr().lock();
    err.write_all(terminated(&o.stderr).as_bytes())?;
    err.flush()?;
    drop(err);
    for (stream, limit, cut) in [
        ("stdout", STDOUT_LIMIT, o.stdout_truncated()),
        ("stderr", STDERR_LIMIT, o.stderr_truncated()),
    ] {
        if cut {
            printer.note(&format!(
                "{}: {stream} was truncated: SSM keeps only its first {limit} characters",
                o.target.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn words_are_quoted_only_when_the_shell_would_split_or_expand_them() {
        assert_eq!(shell_line(&words(&["echo", "a b"])), "echo 'a b'");
        assert_eq!(
            shell_line(&words(&["sh", "-c", "echo out; echo err >&2; exit 3"])),
            "sh -c 'echo out; echo err >&2; exit 3'"
        );
        assert_eq!(
            shell_line(&words(&["echo", "it's", "", "$HOME"])),
            r"echo 'it'\''s' '' '$HOME'"
        );
        assert_eq!(
            shell_line(&words(&["ping", "-c", "3", "server.lab.internal"])),
            "ping -c 3 server.lab.internal"
        );
    }
}
