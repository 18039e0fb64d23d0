//! Where output goes: results to stdout, progress and problems to stderr.
//!
//! Commands never print directly; they go through the [`Printer`], which knows whether
//! the user asked for quiet output and colours only what reaches a terminal.

use std::io::Write;

use anstream::{eprintln, println};
use owo_colors::OwoColorize;

use labctl_core::{Diagnostic, Severity};

/// The one way commands write to the terminal.
#[derive(Debug, Clone)]
pub struct Printer {
    quiet: bool,
}

impl Printer {
    /// A printer; `quiet` silences progress and notes, never results or errors.
    pub fn new(quiet: bool) -> Self {
        Self { quiet }
    }

    /// A result line on stdout.
    pub fn result(&self, text: &str) {
        println!("{text}");
    }

    /// A JSON document on stdout.
    pub fn json(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        Ok(())
    }

    /// A success line on stderr (silenced by `--quiet`).
    pub fn success(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} {text}", "✓".green());
        }
    }

    /// An error on stderr.
    pub fn error(&self, text: &str) {
        eprintln!("{} {text}", "error:".red().bold());
    }

    /// A topology diagnostic on stderr, as `file:line:col: severity: message; hint`.
    pub fn diagnostic(&self, file: &str, d: &Diagnostic) {
        let severity = match d.severity {
            Severity::Error => "error".red().bold().to_string(),
            Severity::Warning => "warning".yellow().bold().to_string(),
        };
        let hint = d
            .hint
            .as_ref()
            .map(|h| format!("; {}", h.cyan()))
            .unwrap_or_default();
        eprintln!("{}:{}: {severity}: {}{hint}", file.bold(), d.pos, d.message);
    }
}
