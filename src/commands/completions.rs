//! `labctl completions <shell>` and `labctl man`: shell completion scripts and manual
//! pages, generated from the same clap command that parses the arguments, so they
//! never drift from the binary. Neither reads a topology or calls AWS.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::printer::Printer;

pub fn completions(args: &CompletionsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "labctl", &mut script);
    printer.text(&String::from_utf8(script).context("the completion script is not UTF-8")?);
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let Some(dir) = &args.out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut page)?;
        printer.text(&String::from_utf8(page).context("the manual page is not UTF-8")?);
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    // As clap_mangen's own generate_to, keeping the paths written to print them.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    pages(cmd, dir, &mut written)?;
    for path in written {
        printer.result(&format!("wrote {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `cmd`'s page and its subcommands' pages (`labctl-plan.1`) into `dir`.
fn pages(
    cmd: clap::Command,
    dir: &std::path::Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        pages(sub, dir, written)?;
    }
    let man = clap_mangen::Man::new(cmd);
    let path = man
        .generate_to(dir)
        .with_context(|| format!("cannot write a manual page into {}", dir.display()))?;
    written.push(path);
    Ok(())
}
