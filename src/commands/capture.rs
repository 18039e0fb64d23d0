//! `labctl capture <instance|role|all>`: starts the capture helper (`lab-capture`, from
//! the user-data) on instances through SSM Run Command, and says where the files will be.
//!
//! The helper checks its options (the filter compiles, the interface exists) before it
//! detaches, so a mistake is reported here rather than lost in an instance's log. It
//! then records in the background, past the end of the SSM command, and uploads each
//! finished file with the instance role; `labctl pcap-fetch` brings them home. With
//! `--json`, one document holds each instance's result and where its files go.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::cli::{CaptureArgs, GlobalArgs};
use crate::commands::exec::{Outcome, run_line, shell_line};
use crate::lab::{Lab, Needs};
use crate::printer::Printer;
use crate::targets;

/// Time the helper gets to check its options and detach.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What `lab-capture` exits with when its options are wrong.
const USAGE_ERROR: i32 = 2;

pub async fn run(
    global: &GlobalArgs,
    args: &CaptureArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    if !is_label(&args.label) {
        bail!(
            "--label takes lowercase letters, digits and dashes (at most 40, starting with a \
             letter or digit), not `{}`",
            args.label
        );
    }
    let lab = Lab::prepare(global, printer, Needs::Read).await?;
    let targets = targets::resolve(&lab, &args.target).await?;
    targets::require_online(&lab.clients, &targets).await?;
    let line = shell_line(&command(args));
    let outcomes = run_line(
        &lab.clients,
        &targets,
        &line,
        START_TIMEOUT,
        "labctl capture",
    )
    .await?;
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for o in &outcomes {
        let why = (!o.succeeded()).then(|| failure(o));
        if args.json {
            rows.push(json!({
                "instance": o.target.name,
                "id": o.target.id,
                "command_id": o.command_id,
                "status": if why.is_none() { "started" } else { "failed" },
                "recording": said(&o.stdout, "recording on "),
                "files": said(&o.stdout, "files go to "),
                "error": why,
            }));
        } else if why.is_none() {
            for l in o.stdout.lines().filter(|l| !l.trim().is_empty()) {
                printer.result(&format!("{}: {l}", o.target.name));
            }
        }
        if let Some(why) = why {
            printer.error(&format!("{}: {why}", o.target.name));
            failed.push(o.target.name.as_str());
        }
    }
    let started: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.succeeded())
        .map(|o| o.target.name.as_str())
        .collect();
    let fetch = (!started.is_empty())
        .then(|| crate::invocation::command(&format!("pcap-fetch {}", started.join(" "))));
    if args.json {
        printer.json(&json!({
            "label": args.label,
            "seconds": args.seconds,
            "instances": rows,
            "fetch": fetch,
        }))?;
    } else if let Some(fetch) = &fetch {
        printer.note(&format!(
            "when it ends (in {} at most), `{fetch}` brings the files home",
            labctl_core::duration::format(Duration::from_secs(args.seconds.into())),
        ));
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Why the helper did not start on an instance.
fn failure(o: &Outcome<'_>) -> String {
    match o.exit_code {
        // The shell's "command not found": an instance launched before the helper.
        Some(127) => "it has no lab-capture (launched by an older labctl: `labctl up` \
                      replaces it)"
            .to_owned(),
        Some(USAGE_ERROR) => o.stderr.trim().to_owned(),
        _ if o.status.as_deref() == Some("TimedOut") => format!(
            "lab-capture did not start within {} (TimedOut)",
            labctl_core::duration::format(START_TIMEOUT)
        ),
        _ => {
            let err = o.stderr.trim();
            format!(
                "{}{}{err}",
                o.verdict(START_TIMEOUT),
                if err.is_empty() { "" } else { ": " }
            )
        }
    }
}

/// The rest of the helper's line that starts with `prefix` (`files go to s3://...`).
fn said(stdout: &str, prefix: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .map(str::to_owned)
}

/// The helper's command line for these options.
fn command(args: &CaptureArgs) -> Vec<String> {
    let mut words: Vec<String> = ["lab-capture", "record", "--detach", "--seconds"]
        .map(String::from)
        .to_vec();
    words.push(args.seconds.to_string());
    let mut opt = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            words.push(name.to_owned());
            words.push(v);
        }
    };
    opt("--count", args.count.map(|n| n.to_string()));
    opt("--interface", args.interface.clone());
    opt(
        "--rotate-seconds",
        args.rotate_seconds.map(|n| n.to_string()),
    );
    opt("--rotate-mb", args.rotate_mb.map(|n| n.to_string()));
    opt("--label", Some(args.label.clone()));
    words.push("--".to_owned());
    // tcpdump takes the expression as one word as well as several.
    if let Some(f) = args.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        words.push(f.to_owned());
    }
    words
}

/// The helper's rule for labels, checked before any AWS call.
fn is_label(label: &str) -> bool {
    let mut chars = label.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && label.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CaptureArgs {
        CaptureArgs {
            target: "server".into(),
            filter: Some("tcp port 8080".into()),
            seconds: 30,
            count: Some(1000),
            interface: None,
            rotate_seconds: None,
            rotate_mb: Some(5),
            label: "load".into(),
            json: false,
        }
    }

    #[test]
    fn the_filter_is_one_quoted_word_after_the_options() {
        assert_eq!(
            shell_line(&command(&args())),
            "lab-capture record --detach --seconds 30 --count 1000 --rotate-mb 5 \
             --label load -- 'tcp port 8080'"
        );
        let bare = CaptureArgs {
            filter: Some("  ".into()),
            count: None,
            rotate_mb: None,
            ..args()
        };
        assert_eq!(
            shell_line(&command(&bare)),
            "lab-capture record --detach --seconds 30 --label load --"
        );
    }

    #[test]
    fn labels_follow_the_helpers_rule() {
        assert!(is_label("capture"));
        assert!(is_label("run-2"));
        assert!(!is_label("-x"));
        assert!(!is_label("Upper"));
        assert!(!is_label("a b"));
        assert!(!is_label(""));
        assert!(!is_label(&"a".repeat(41)));
    }
}
