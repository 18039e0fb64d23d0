//! Reading the topology file: the only place the CLI turns a path into a [`Topology`].

use std::path::Path;

use labctl_core::{Diagnostics, Topology, check};

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

/// A topology file that failed validation. Its diagnostics are already on stderr;
/// with `--json` they go into the error document too.
#[derive(Debug, thiserror::Error)]
#[error("{file} has {}; nothing was done", plural(diagnostics.error_count(), "error"))]
pub struct Invalid {
    /// The path as the user wrote it.
    pub file: String,
    /// Every problem found, warnings and notes included.
    pub diagnostics: Diagnostics,
}

/// Reads and validates `path` without printing anything.
pub fn read(path: &Path) -> anyhow::Result<Loaded> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| {
        let mut message = format!("cannot read topology file {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            message.push_str(&format!("; {}", missing_hint(path)));
        }
        anyhow::anyhow!(message)
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    // A file over the limit is judged by its size, never read into memory; a reader
    // that keeps giving (a device, a pipe) stops one byte past the limit.
    let size = file.metadata().map_err(cannot)?.len();
    if let Some(too_large) = labctl_core::yaml::too_large(size) {
        let mut diagnostics = labctl_core::Diagnostics::default();
        diagnostics.error(too_large.pos, too_large.message).hint = too_large.hint;
        return Ok(Loaded {
            display: path.display().to_string(),
            topology: None,
            diagnostics,
        });
    }
    let mut text = String::new();
    file.take(labctl_core::yaml::MAX_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
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
        None => Err(Invalid {
            file: loaded.display,
            diagnostics: loaded.diagnostics,
        }
        .into()),
    }
}

/// What to do about a topology file that is not there: write the default lab with
/// `labctl init`, or name another file.
fn missing_hint(path: &Path) -> String {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && *d != Path::new("."));
    let init = match dir {
        Some(d) if path.file_name() == Some("topology.yaml".as_ref()) => {
            format!(
                "labctl init {}",
                crate::invocation::quote(&d.display().to_string())
            )
        }
        _ => "labctl init".to_owned(),
    };
    format!(
        "`{init}` writes the default lab to start from, or `-f FILE` (or LABCTL_TOPOLOGY) \
         names another topology file"
    )
}

/// `1 error`, `2 errors`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}
