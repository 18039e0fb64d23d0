//! Where output goes: results to stdout, progress and problems to stderr.
//!
//! Commands never print directly; they go through the [`Printer`], which knows whether
//! the user asked for quiet output and colours only what reaches a terminal.
//!
//! With `--json`, stdout holds exactly one JSON document: the command's result through
//! [`Printer::json`], or the error envelope through [`Printer::json_error`]. Both carry
//! [`JSON_VERSION`], so scripts can tell when a shape changes.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use anstream::{eprintln, print, println};
use owo_colors::OwoColorize;

use labctl_core::{Diagnostic, Severity};

/// The shape version of every `--json` document, its top-level `"version"` field. It
/// goes up when a field is removed, renamed or changes meaning; new fields may appear
/// without a new version.
pub const JSON_VERSION: u32 = 1;

/// Whether a JSON document has gone to stdout: stdout is one per process, and with it
/// the promise of one document.
static WROTE_JSON: AtomicBool = AtomicBool::new(false);

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

    /// Text on stdout exactly as given (a generated script or page).
    pub fn text(&self, text: &str) {
        print!("{text}");
    }

    /// A command's `--json` result on stdout: `value`'s fields (it must serialize as a
    /// struct or map) after `"version"`.
    pub fn json(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        #[derive(serde::Serialize)]
        struct Versioned<'a, T> {
            version: u32,
            #[serde(flatten)]
            value: &'a T,
        }
        self.raw_json(&Versioned {
            version: JSON_VERSION,
            value,
        })
    }

    /// The error envelope on stdout, for a command run with `--json` that failed:
    /// `{"version": 1, "error": {"message", "file", "diagnostics"}}`. `file` and the
    /// diagnostics (as `validate --json` lists them) are there when a topology file
    /// failed validation; otherwise `file` is null and the list is empty.
    pub fn json_error(
        &self,
        message: &str,
        file: Option<&str>,
        diagnostics: &[Diagnostic],
    ) -> anyhow::Result<()> {
        self.json(&serde_json::json!({
            "error": {
                "message": message,
                "file": file,
                "diagnostics": diagnostics,
            }
        }))
    }

    /// Whether a JSON document already went to stdout.
    pub fn wrote_json(&self) -> bool {
        WROTE_JSON.load(Ordering::SeqCst)
    }

    /// A JSON document on stdout as it is; every document goes through here.
    fn raw_json(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        WROTE_JSON.store(true, Ordering::SeqCst);
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
                    // The finished line carries its own time; the spinner's goes.
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    bar.finish_with_message(line);
                }
            }
            None if !self.quiet || outcome.is_err() => eprintln!("{line}"),
            None => {}
        }
    }
}
