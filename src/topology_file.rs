//! Reading the topology file: the only place the CLI turns a path into a [`Topology`].

use std::path::Path;

use anyhow::Context as _;
use labctl_core::{Diagnostics, Topology, check};

use crate::commands::Reported;
use crate::printer::Printer;

/// The file's text and what validation found in it.
pub struct Loaded {
    /// The path as the user wrote it, for messages.
    pub display: String,
    /// The topology, when it has no errors.
    pub topology: Option<Topology>,
    /// Every problem found.
    pub diagnostics: Diagnostics,
}

/// Reads and validates `path` without printing anything.
pub fn read(path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read topology file {}", path.display()))?;
    let checked = check(&text);
    Ok(Loaded {
        display: path.display().to_string(),
        topology: checked.topology,
        diagnostics: checked.diagnostics,
    })
}

/// Reads `path`, prints its errors and warnings, and returns the topology or fails
/// when it has errors. Commands that act on a lab use this, so nothing touches AWS for
/// a bad file. Notes are for `labctl validate`, not repeated by every command.
pub fn load(path: &Path, printer: &Printer) -> anyhow::Result<Topology> {
    let loaded = read(path)?;
    for d in &loaded.diagnostics {
        if d.severity != labctl_core::Severity::Note {
            printer.diagnostic(&loaded.display, d);
        }
    }
    match loaded.topology {
        Some(t) => Ok(t),
        None => {
            printer.error(&format!(
                "{} has {}; nothing was done",
                loaded.display,
                plural(loaded.diagnostics.error_count(), "error")
            ));
            Err(Reported.into())
        }
    }
}

/// `1 error`, `2 errors`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}
