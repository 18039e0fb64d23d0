//! The labnet binary the instances run: where labctl gets it, and its digest.
//!
//! The digest is part of every instance's user-data, so it must be known when the plan
//! is made, before anything is uploaded. `artifacts.labnet` says where the binary comes
//! from: `build` builds it from the labctl source tree (or takes the `labnet` installed
//! beside `labctl`), `{path}` names a prebuilt file, `{url, sha256}` needs nothing local.
//! `LABCTL_LABNET_BINARY` overrides `build` and `path`, so tests and release pipelines
//! can hand over a binary they built once.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use labctl_core::topology::ArtifactSource;
use labctl_core::{Located, Topology};
use sha2::{Digest, Sha256};

use crate::printer::Printer;

/// Overrides `artifacts.labnet: build` and `{path}` with a file.
pub const ENV_LABNET: &str = "LABCTL_LABNET_BINARY";

/// A local labnet binary, ready to upload.
#[derive(Debug, Clone)]
pub struct LocalBinary {
    /// Where it is.
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The binary the topology asks for; `None` when instances download it from a URL.
pub fn resolve(
    topology: &Topology,
    topology_file: &Path,
    printer: &Printer,
) -> anyhow::Result<Option<LocalBinary>> {
    let source: &Located<ArtifactSource> = &topology.artifacts.labnet;
    if let ArtifactSource::Url { .. } = source.value {
        return Ok(None);
    }
    let from_env = std::env::var_os(ENV_LABNET).filter(|v| !v.is_empty());
    let path = match &from_env {
        Some(path) => PathBuf::from(path),
        None => match &source.value {
            ArtifactSource::Path(p) => {
                let base = topology_file.parent().unwrap_or(Path::new("."));
                base.join(p)
            }
            _ => build(printer)?,
        },
    };
    let from = match (from_env.is_some(), &source.value) {
        (true, _) => format!("{ENV_LABNET}={}", path.display()),
        (false, ArtifactSource::Path(_)) => format!(
            "{}:{}:{}: `artifacts.labnet.path`",
            topology_file.display(),
            source.pos.line,
            source.pos.col
        ),
        (false, _) => "the labnet build".to_owned(),
    };
    inspect(&path)
        .with_context(|| format!("labnet binary from {from}"))
        .map(Some)
}

/// Checks that `path` is an x86_64 Linux executable and hashes it.
pub fn inspect(path: &Path) -> anyhow::Result<LocalBinary> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut header = [0u8; 20];
    let read = file.read(&mut header)?;
    check_elf(&header[..read])
        .with_context(|| format!("{} cannot run on the instances", path.display()))?;
    let mut hasher = Sha256::new();
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut size = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
        let n = chunk.len();
        size += n as u64;
        reader.consume(n);
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(LocalBinary {
        path: path.to_owned(),
        sha256,
        size,
    })
}

/// The instances are x86_64 Linux (t3); anything else would upload fine and then fail
/// on every instance, so it is refused here.
fn check_elf(header: &[u8]) -> anyhow::Result<()> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        bail!("it is not an ELF executable");
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    match (header[4], header[5], machine) {
        (2, 1, 0x3e) => Ok(()),
        (_, _, 0xb7) => bail!(
            "it is built for aarch64; the instances run x86_64 (build with `--target x86_64-unknown-linux-gnu`)"
        ),
        (class, data, machine) => bail!(
            "it is not an x86_64 executable (class {class}, data {data}, machine {machine:#x})"
        ),
    }
}

/// Builds labnet in release mode from the labctl source tree this `labctl` came from,
/// or falls back to a `labnet` installed beside `labctl`.
fn build(printer: &Printer) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the labctl executable")?;
    let starts = [
        exe.parent().map(Path::to_path_buf),
        std::env::current_dir().ok(),
    ];
    let workspace = starts
        .iter()
        .flatten()
        .flat_map(|start| start.ancestors())
        .find(|dir| {
            dir.join("crates/labnet/Cargo.toml").is_file() && dir.join("Cargo.toml").is_file()
        })
        .map(Path::to_path_buf);
    if let Some(dir) = workspace {
        printer.note(&format!(
            "building labnet (cargo build --release -p labnet in {})",
            dir.display()
        ));
        return cargo_build(&dir);
    }
    let beside = exe.with_file_name("labnet");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!(
        "`artifacts.labnet: build` needs the labctl source tree or a `labnet` installed beside \
         {}; set `artifacts.labnet.path` to a prebuilt binary, or {ENV_LABNET}",
        exe.display()
    )
}

fn cargo_build(workspace: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "labnet",
            "--bin",
            "labnet",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo to build labnet")?;
    if !output.status.success() {
        bail!("cargo could not build labnet ({})", output.status);
    }
    // Cargo names the executable it produced; the target directory may be anywhere.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "labnet")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built labnet but did not say where the executable is")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, machine: u16) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.extend([class, 1]);
        h.resize(18, 0);
        h.extend(machine.to_le_bytes());
        h
    }

    #[test]
    fn only_x86_64_elf_is_accepted() {
        assert!(check_elf(&header(2, 0x3e)).is_ok());
        let arm = check_elf(&header(2, 0xb7)).unwrap_err().to_string();
        assert!(arm.contains("aarch64"), "{arm}");
        assert!(check_elf(&header(1, 0x03)).is_err());
        let script = check_elf(b"#!/bin/sh\necho hello world\n")
            .unwrap_err()
            .to_string();
        assert!(script.contains("not an ELF"), "{script}");
        assert!(check_elf(b"\x7fELF").is_err(), "short file");
    }

    #[test]
    fn inspect_hashes_what_it_reads() {
        // An x86_64 ELF header, then more than one read buffer of varied bytes (the
        // real test binary is hundreds of MiB: too slow to hash unoptimised).
        let mut bytes = header(2, 0x3e);
        bytes.extend((0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("labnet");
        std::fs::write(&path, &bytes).expect("write");
        let bin = inspect(&path).expect("an x86_64 ELF header");
        assert_eq!(bin.size, bytes.len() as u64);
        let expected: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(bin.sha256, expected);
    }
}
