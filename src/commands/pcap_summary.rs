//! `labctl pcap-summary <file>...`: what a capture holds, as a student needs to read it:
//! one row per conversation and the TCP problems Wireshark's expert info would flag,
//! with counts and when each first happened. No Wireshark needed on the laptop.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::PcapSummaryArgs;
use crate::printer::Printer;

pub fn run(args: &PcapSummaryArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let mut json = Vec::new();
    for (i, path) in args.files.iter().enumerate() {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // A malformed capture is one clear error naming the file and the offset.
        let summary = labctl_pcap::summarize_reader(BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("{} is not a readable capture", path.display()))?;
        if args.json {
            let mut value = serde_json::to_value(&summary)?;
            value["file"] = path.display().to_string().into();
            json.push(value);
        } else {
            if i > 0 {
                printer.result("");
            }
            printer.result(&format!("{}:", path.display()));
            printer.result(summary.render_text().trim_end());
        }
    }
    if args.json {
        printer.result(&serde_json::to_string_pretty(&json)?);
    }
    Ok(ExitCode::SUCCESS)
}
