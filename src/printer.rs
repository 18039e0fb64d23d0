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

    /// Whether progress and notes are silenced.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// A result line on stdout.
    pub fn result(&self, text: &str) {
        println!("{text}");
    }

    /// A JSON document on stdout.
    pub fn json(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    }

    /// A note on stderr (silenced by `--quiet`).
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// A success line on stderr (silenced by `--quiet`).
    pub fn success(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} {text}", "✓".green());
        }
    }

    /// A warning on stderr: something was left out or could not be done, and the
    /// command goes on.
    pub fn warn(&self, text: &str) {
        eprintln!("{} {text}", "warning:".yellow().bold());
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
            Severity::Note => "note".cyan().bold().to_string(),
        };
        let hint = d
            .hint
            .as_ref()
            .map(|h| format!("; {}", h.cyan()))
            .unwrap_or_default();
        eprintln!("{}:{}: {severity}: {}{hint}", file.bold(), d.pos, d.message);
    }
}

/// Live progress of applied steps: spinners on a terminal, one line per finished step
/// otherwise (logs, CI).
pub struct StepProgress {
    bars: Option<(
        indicatif::MultiProgress,
        std::sync::Mutex<std::collections::BTreeMap<String, indicatif::ProgressBar>>,
    )>,
    quiet: bool,
}

impl StepProgress {
    /// Progress for `printer`'s settings.
    pub fn new(printer: &Printer) -> Self {
        use std::io::IsTerminal;
        let live = !printer.quiet && std::io::stderr().is_terminal();
        Self {
            bars: live.then(|| {
                (
                    indicatif::MultiProgress::new(),
                    std::sync::Mutex::new(Default::default()),
                )
            }),
            quiet: printer.quiet,
        }
    }
}

impl crate::aws::apply::Progress for StepProgress {
    fn started(&self, step: &labctl_core::plan::Step) {
        if let Some((multi, bars)) = &self.bars {
            let label = crate::aws::apply::step_label(step);
            let bar = multi.add(indicatif::ProgressBar::new_spinner());
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_message(label.clone());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bars.lock().expect("progress lock").insert(label, bar);
        }
    }

    fn finished(
        &self,
        step: &labctl_core::plan::Step,
        outcome: &Result<String, String>,
        elapsed: std::time::Duration,
    ) {
        let label = crate::aws::apply::step_label(step);
        let line = match outcome {
            Ok(id) if id.is_empty() => {
                format!("{} {label} ({:.1}s)", "✓".green(), elapsed.as_secs_f64())
            }
            Ok(id) => format!(
                "{} {label} [{id}] ({:.1}s)",
                "✓".green(),
                elapsed.as_secs_f64()
            ),
            Err(e) => format!("{} {label}: {e}", "✗".red()),
        };
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.lock().expect("progress lock").remove(&label) {
                    bar.finish_with_message(line);
                }
            }
            None if !self.quiet || outcome.is_err() => eprintln!("{line}"),
            None => {}
        }
    }
}
