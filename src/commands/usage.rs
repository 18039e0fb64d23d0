//! Usage errors: clap's message, a tip for verbs other tools use (`destroy`, `apply`,
//! `ssh`), the error document when `--json` was asked for, and exit status 1.

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::printer::Printer;

/// Verbs people bring from other tools, and the command that does it here.
const OTHER_VERBS: &[(&str, &str)] = &[
    ("destroy", "down"),
    ("delete", "down"),
    ("teardown", "down"),
    ("apply", "up"),
    ("create", "up"),
    ("deploy", "up"),
    ("ssh", "ssm-shell"),
    ("shell", "ssm-shell"),
    ("tunnel", "forward"),
    ("show", "status"),
    ("list", "status"),
    ("check", "validate"),
];

/// Prints a parse outcome clap did not accept (or help and version, which exit 0) and
/// gives the exit status: 1 for usage errors, never clap's 2, which means "changes
/// pending" for `plan --detailed-exitcode`.
pub fn report(mut err: clap::Error) -> ExitCode {
    if !err.use_stderr() {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let clap_suggests = |ours: &str| match err.get(ContextKind::SuggestedSubcommand) {
        Some(ContextValue::Strings(similar)) => similar.iter().any(|s| s == ours),
        Some(ContextValue::String(similar)) => similar == ours,
        _ => false,
    };
    if err.kind() == ErrorKind::InvalidSubcommand
        && let Some(ContextValue::String(verb)) = err.get(ContextKind::InvalidSubcommand)
        && let Some((ours, tip)) = tip(verb)
        && !clap_suggests(ours)
    {
        let mut tips = match err.get(ContextKind::Suggested) {
            Some(ContextValue::StyledStrs(tips)) => tips.clone(),
            _ => Vec::new(),
        };
        tips.push(tip.into());
        err.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
    }
    if json_requested(std::env::args_os().skip(1)) {
        let text = err.render().to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        let _ = Printer::new(true).json_error(message, None, &[]);
    }
    let _ = err.print();
    ExitCode::FAILURE
}

/// The command for a verb another tool uses, and the tip that names it.
fn tip(verb: &str) -> Option<(&'static str, String)> {
    let (_, ours) = OTHER_VERBS.iter().find(|(theirs, _)| *theirs == verb)?;
    Some((
        ours,
        format!("`labctl {ours}` does that here (labctl has no `{verb}`)"),
    ))
}

/// Whether `--json` is among the options (before `--`, after which words belong to a
/// remote command).
fn json_requested(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.take_while(|a| a != "--").any(|a| a == "--json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_an_option_only_before_the_double_dash() {
        let args = |words: &[&str]| {
            words
                .iter()
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(json_requested(args(&["plan", "--json", "--bogus"])));
        assert!(!json_requested(args(&["exec", "all", "--", "x", "--json"])));
        assert!(!json_requested(args(&["plan"])));
    }

    #[test]
    fn every_verb_points_to_a_real_command() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        for (theirs, ours) in OTHER_VERBS {
            assert!(cli.find_subcommand(ours).is_some(), "{ours}");
            assert!(cli.find_subcommand(theirs).is_none(), "{theirs} is ours");
        }
    }
}
