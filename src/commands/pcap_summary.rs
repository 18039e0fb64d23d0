//! `labctl pcap-summary <file>...`: what a capture holds, as a student needs to read it:
//! one row per conversation and the TCP problems Wireshark's expert info would flag,
//! with counts and when each first happened. No Wireshark needed on the laptop.
//!
//! With `--plot`, also when: Wireshark's I/O graph (packets and TCP errors per
//! interval) as a PNG, drawn by [`crate::plot`].

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use labctl_pcap::{Analyzer, IoGraphBuilder, Reader, Summary};

use crate::cli::PcapSummaryArgs;
use crate::printer::Printer;

/// Titles longer than this are cut at the front: the file name matters most.
const MAX_TITLE_CHARS: usize = 80;

pub fn run(args: &PcapSummaryArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    // Bad options fail before any capture is read, however large.
    let interval_ns = args.interval.map(interval_ns).transpose()?;
    if let Some(plot) = &args.plot {
        check_plot_path(plot)?;
    }
    let mut json = Vec::new();
    for (i, path) in args.files.iter().enumerate() {
        let plot = args.plot.as_deref().map(|p| match args.files.len() {
            1 => p.to_path_buf(),
            _ => numbered(p, i + 1),
        });
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // A malformed capture is one clear error naming the file and the offset.
        let (summary, graph) = read(BufReader::with_capacity(1 << 20, file), plot.is_some())
            .with_context(|| format!("{} is not a readable capture", path.display()))?;
        if !args.json {
            if i > 0 {
                printer.result("");
            }
            printer.result(&format!("{}:", path.display()));
            printer.result(summary.render_text().trim_end());
        }
        let mut written = None;
        if let (Some(out), Some(graph)) = (plot, graph) {
            let graph = graph
                .build(interval_ns)
                .with_context(|| format!("cannot plot {}", path.display()))?;
            crate::plot::write_png(&graph, &title(path), &out)?;
            if !args.json {
                printer.result(&format!("I/O graph written to {}", out.display()));
            }
            written = Some(out.display().to_string());
        }
        if args.json {
            json.push(JsonSummary {
                file: path.display().to_string(),
                summary,
                plot: written,
            });
        }
    }
    if args.json {
        // Serialized straight to the output: a million-packet capture's summary is
        // tens of MB of JSON.
        printer.json(&JsonFiles { files: &json })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--json` document: every file's summary, in the order given.
#[derive(serde::Serialize)]
struct JsonFiles<'a> {
    files: &'a [JsonSummary],
}

/// One file's summary as `--json` prints it.
#[derive(serde::Serialize)]
struct JsonSummary {
    file: String,
    #[serde(flatten)]
    summary: Summary,
    /// The I/O graph written, with `--plot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    plot: Option<String>,
}

/// The summary and, when `graph`, the packets for the I/O graph, in one pass.
fn read(
    r: impl Read,
    graph: bool,
) -> Result<(Summary, Option<IoGraphBuilder>), labctl_pcap::Error> {
    let mut analyzer = Analyzer::new();
    let mut builder = graph.then(IoGraphBuilder::new);
    for packet in Reader::new(r)? {
        let packet = packet?;
        let flagged = analyzer.push(&packet);
        if let Some(b) = &mut builder {
            b.push(packet.timestamp_ns, packet.wire_len(), flagged);
        }
    }
    Ok((analyzer.finish(), builder))
}

/// `--interval` in nanoseconds; below 1 µs is finer than most captures' clocks.
fn interval_ns(seconds: f64) -> anyhow::Result<u64> {
    anyhow::ensure!(
        seconds.is_finite() && seconds >= 1e-6,
        "--interval must be a number of seconds, at least 0.000001 (1 µs), not {seconds}"
    );
    // `as` saturates: an interval longer than any capture is one bucket.
    Ok((seconds * 1e9).round() as u64)
}

/// A clear error now rather than after reading the captures.
fn check_plot_path(plot: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        plot.file_name().is_some(),
        "--plot needs a file name, not {}",
        plot.display()
    );
    // The image is always a PNG; a name promising another format would mislead.
    anyhow::ensure!(
        plot.extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("png")),
        "cannot write the plot to {}: only PNG is supported, use a name ending in .png",
        plot.display()
    );
    let dir = plot
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    anyhow::ensure!(
        dir.is_dir(),
        "cannot write the plot to {}: there is no directory {}",
        plot.display(),
        dir.display()
    );
    Ok(())
}

/// `io.png` for the `n`th of several captures: `io-1.png`, `io-2.png`, ...
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.file_stem().unwrap_or_default().to_os_string();
    name.push(format!("-{n}"));
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

fn title(capture: &Path) -> String {
    let name = capture.display().to_string();
    let chars = name.chars().count();
    if chars <= MAX_TITLE_CHARS {
        return format!("I/O graph: {name}");
    }
    let tail: String = name.chars().skip(chars - (MAX_TITLE_CHARS - 1)).collect();
    format!("I/O graph: …{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_plots_are_numbered_beside_the_name_given() {
        assert_eq!(numbered(Path::new("io.png"), 1), Path::new("io-1.png"));
        assert_eq!(
            numbered(Path::new("out/graph.v2.png"), 12),
            Path::new("out/graph.v2-12.png")
        );
        assert_eq!(numbered(Path::new("graph"), 2), Path::new("graph-2"));
    }

    #[test]
    fn intervals_below_a_microsecond_are_refused() {
        assert_eq!(interval_ns(0.01).expect("10 ms"), 10_000_000);
        assert_eq!(interval_ns(1.5).expect("1.5 s"), 1_500_000_000);
        for bad in [0.0, -1.0, 1e-7, f64::NAN, f64::INFINITY] {
            assert!(interval_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_titles_keep_the_file_name() {
        let long = format!("/{}/capture.pcap", "d".repeat(200));
        let t = title(Path::new(&long));
        assert!(t.ends_with("/capture.pcap"), "{t}");
        assert_eq!(t.chars().count(), "I/O graph: ".len() + MAX_TITLE_CHARS);
        assert_eq!(title(Path::new("a.pcap")), "I/O graph: a.pcap");
    }
}
