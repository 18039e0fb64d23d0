//! `labctl init [DIR]`: the default lab as a starting point, so a first run needs no
//! copy of this repository.
//!
//! It writes `topology.yaml` (the repository's default lab, with the line that points
//! editors at the schema) and `topology.schema.json` beside it, and never overwrites:
//! both names are checked before either is written, each is created only if absent,
//! and a failure halfway removes only the file this run created.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::cli::InitArgs;
use crate::printer::Printer;

/// The repository's default lab.
const DEFAULT_LAB: &str = include_str!("../../topology.yaml");

/// The line that makes YAML language servers check the file against the schema beside it.
const SCHEMA_LINE: &str = "# yaml-language-server: $schema=./topology.schema.json";

pub fn run(args: &InitArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    let here = dir == Path::new(".");
    // `topology.yaml`, not `./topology.yaml`, in messages about the current folder.
    let at = |name: &str| {
        if here {
            PathBuf::from(name)
        } else {
            dir.join(name)
        }
    };
    let files = [
        (at("topology.yaml"), topology()),
        (at("topology.schema.json"), schema()?),
    ];
    for (path, _) in &files {
        // A dangling symlink counts as there: creating through it would write elsewhere.
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; `labctl init` never overwrites a file (nothing was written)",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let mut written: Vec<&PathBuf> = Vec::new();
    for (path, text) in &files {
        if let Err(e) = create_new(path, text) {
            // Only what this run created goes; a file that appeared meanwhile stays.
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(e);
        }
        written.push(path);
    }
    for path in written {
        printer.result(&format!("wrote {}", path.display()));
    }
    let topology = &files[0].0;
    let flag = if here {
        String::new()
    } else {
        format!(
            "-f {} ",
            crate::invocation::quote(&topology.display().to_string())
        )
    };
    printer.note(&format!(
        "Next: edit {} to your lab, then `labctl {flag}plan` shows what `labctl {flag}up` \
         would create and what it costs.",
        topology.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// The default lab with the schema line first (and only once).
fn topology() -> String {
    let rest: String = DEFAULT_LAB
        .lines()
        .filter(|l| l.trim() != SCHEMA_LINE)
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{SCHEMA_LINE}\n{rest}")
}

/// The same text `labctl schema` prints.
pub fn schema() -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(&labctl_core::schema::topology_schema())?;
    text.push('\n');
    Ok(text)
}

/// Writes `text` to a file that must not exist yet.
fn create_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} already exists; `labctl init` never overwrites a file",
                path.display()
            ),
            _ => anyhow::anyhow!("cannot create {}: {e}", path.display()),
        })?;
    let wrote = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = wrote {
        // Created by this call: a half-written file goes.
        let _ = std::fs::remove_file(path);
        bail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_line_comes_first_and_once() {
        let text = topology();
        assert!(text.starts_with(&format!("{SCHEMA_LINE}\n")), "{text}");
        assert_eq!(text.matches(SCHEMA_LINE).count(), 1);
        let checked = labctl_core::check(&text);
        assert!(checked.topology.is_some(), "{:?}", checked.diagnostics);
    }
}
