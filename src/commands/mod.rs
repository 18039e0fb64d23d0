//! One module per command; [`run`] dispatches to them.

mod capture;
mod completions;
mod doctor;
mod down;
mod exec;
mod forward;
mod graph;
mod init;
mod pcap_fetch;
mod pcap_summary;
mod plan;
mod schema;
mod ssm_shell;
mod status;
mod up;
pub mod usage;
mod user_data;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::printer::Printer;

/// An error that has already been shown on stderr; only the exit status remains (and,
/// with `--json`, the error document, which carries the message).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// Runs the parsed command. With `--json`, stdout holds exactly one JSON document
/// whatever happens: the command's result, or the error envelope for any error it
/// returns, with the diagnostics when a topology failed validation.
pub fn run(cli: Cli, printer: &Printer) -> anyhow::Result<ExitCode> {
    let json = wants_json(&cli.command);
    let outcome = dispatch(cli, printer);
    if let Err(err) = &outcome
        && json
        && !printer.wrote_json()
    {
        let invalid = err.downcast_ref::<crate::topology_file::Invalid>();
        let diagnostics: Vec<_> = invalid
            .map(|i| i.diagnostics.iter().cloned().collect())
            .unwrap_or_default();
        printer.json_error(
            &format!("{err:#}"),
            invalid.map(|i| i.file.as_str()),
            &diagnostics,
        )?;
    }
    outcome
}

/// Whether the command was asked for JSON. Every command is named, so a new one must
/// say whether it has `--json`.
fn wants_json(command: &Command) -> bool {
    match command {
        Command::Validate(a) => a.json,
        Command::Graph(a) => a.json,
        Command::Plan(a) => a.json,
        Command::Up(a) => a.json,
        Command::Status(a) => a.json,
        Command::Doctor(a) => a.json,
        Command::Exec(a) => a.json,
        Command::PcapSummary(a) => a.json,
        Command::Capture(a) => a.json,
        Command::Schema
        | Command::Down(_)
        | Command::UserData(_)
        | Command::SsmShell(_)
        | Command::Forward(_)
        | Command::PcapFetch(_)
        | Command::Init(_)
        | Command::Completions(_)
        | Command::Man(_) => false,
    }
}

fn dispatch(cli: Cli, printer: &Printer) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(&cli.global, &args, printer),
        Command::Schema => schema::run(printer),
        Command::Graph(args) => graph::run(&cli.global, &args, printer),
        Command::Plan(args) => block_on(plan::run(&cli.global, &args, printer)),
        Command::Up(args) => block_on(up::run(&cli.global, &args, printer)),
        Command::Down(args) => block_on(down::run(&cli.global, &args, printer)),
        Command::Status(args) => block_on(status::run(&cli.global, &args, printer)),
        Command::UserData(args) => block_on(user_data::run(&cli.global, &args, printer)),
        Command::Doctor(args) => block_on(doctor::run(&cli.global, &args, printer)),
        Command::Exec(args) => block_on(exec::run(&cli.global, &args, printer)),
        Command::PcapSummary(args) => pcap_summary::run(&args, printer),
        Command::SsmShell(args) => block_on(ssm_shell::run(&cli.global, &args, printer)),
        Command::Forward(args) => block_on(forward::run(&cli.global, &args, printer)),
        Command::Capture(args) => block_on(capture::run(&cli.global, &args, printer)),
        Command::PcapFetch(args) => block_on(pcap_fetch::run(&cli.global, &args, printer)),
        Command::Init(args) => init::run(&args, printer),
        Command::Completions(args) => completions::completions(&args, printer),
        Command::Man(args) => completions::man(&args, printer),
    }
}

/// Runs an async command on a runtime made for it; commands that need no I/O never
/// start one.
fn block_on<F: Future<Output = anyhow::Result<ExitCode>>>(future: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// Asks before destroying anything: `--yes` skips the question, and without a terminal
/// to ask on, labctl refuses rather than guess.
pub fn confirm(plan: &labctl_core::plan::Plan, yes: bool, printer: &Printer) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes || !plan.is_destructive() {
        return Ok(());
    }
    let n = plan.count(labctl_core::plan::Action::Replace)
        + plan.count(labctl_core::plan::Action::Delete);
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "the plan replaces or deletes {n} resource(s) and there is no terminal to ask on; \
             re-run with --yes to apply it"
        );
    }
    eprint!("This replaces or deletes {n} resource(s). Type `yes` to go on: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        let cancelled = "cancelled; nothing was changed";
        printer.error(cancelled);
        return Err(Reported(cancelled.to_owned()).into());
    }
    Ok(())
}

/// Refuses to delete a bucket that holds captures unless told to.
pub async fn guard_captures(
    clients: &crate::aws::Clients,
    plan: &labctl_core::plan::Plan,
    desired: &labctl_core::Desired,
    delete_captures: bool,
) -> anyhow::Result<()> {
    use labctl_core::Kind;
    use labctl_core::plan::Action;
    for c in &plan.changes {
        // A renamed bucket's captures are copied to the new one before it goes, so
        // only a bucket that goes for good needs consent.
        if c.address.kind != Kind::Bucket
            || !matches!(c.action, Action::Delete | Action::Replace)
            || c.goes_last(desired)
        {
            continue;
        }
        let Some(bucket) = &c.id else { continue };
        let held = Held::count(clients, bucket).await?;
        if held.versions > 0 && !delete_captures {
            anyhow::bail!(
                "bucket {bucket} still holds {held}; fetch them first (`{}`) or pass \
                 --delete-captures, which deletes every version; nothing was changed",
                crate::invocation::command("pcap-fetch")
            );
        }
    }
    Ok(())
}

/// What a bucket holds under `captures/`, every version counted: an overwritten or
/// deleted capture is still evidence until the bucket goes.
struct Held {
    /// Captures that are current.
    files: usize,
    /// Stored versions, current or not (delete markers are not counted).
    versions: usize,
}

impl Held {
    async fn count(clients: &crate::aws::Clients, bucket: &str) -> anyhow::Result<Self> {
        let all = crate::aws::kinds::bucket::versions(
            clients,
            bucket,
            labctl_core::marks::CAPTURES_PREFIX,
        )
        .await?;
        let mut current = std::collections::BTreeSet::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut versions = 0;
        for v in &all {
            // Each key's newest comes first: it decides whether the key is current.
            if seen.insert(v.key.as_str()) && !v.delete_marker {
                current.insert(v.key.as_str());
            }
            versions += usize::from(!v.delete_marker);
        }
        Ok(Held {
            files: current.len(),
            versions,
        })
    }
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} capture file(s) under captures/", self.files)?;
        if self.versions != self.files {
            write!(
                f,
                " ({} stored version(s), counting overwritten and deleted ones)",
                self.versions
            )?;
        }
        Ok(())
    }
}
