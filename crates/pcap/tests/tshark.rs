//! Cross-checks the TCP analysis against tshark on the crafted captures.
//!
//! Each count is compared with the number of frames tshark marks with the
//! field named next to it; the first flagged frame must agree too.

mod common;

use std::process::Command;

use labctl_pcap::{Problem, TcpProblems, summarize_reader};

/// (tshark field, our count, whether it must agree).
fn fields(t: &TcpProblems) -> Vec<(&'static str, &Problem)> {
    vec![
        ("tcp.analysis.retransmission", &t.retransmissions),
        ("tcp.analysis.fast_retransmission", &t.fast_retransmissions),
        (
            "tcp.analysis.spurious_retransmission",
            &t.spurious_retransmissions,
        ),
        ("tcp.analysis.out_of_order", &t.out_of_order),
        ("tcp.analysis.duplicate_ack", &t.duplicate_acks),
        ("tcp.analysis.zero_window", &t.zero_windows),
        ("tcp.analysis.zero_window_probe", &t.zero_window_probes),
        ("tcp.analysis.window_full", &t.window_full),
        ("tcp.analysis.window_update", &t.window_updates),
        ("tcp.analysis.keep_alive", &t.keep_alives),
        (
            "tcp.analysis.lost_segment",
            &t.previous_segment_not_captured,
        ),
        ("tcp.flags.reset", &t.resets),
    ]
}

/// Frames tshark flags, per field, in field order.
fn tshark(path: &std::path::Path, names: &[&str]) -> Vec<Vec<u64>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(path).args([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-e",
        "frame.number",
    ]);
    for n in names {
        cmd.args(["-e", n]);
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run tshark ({e}); install it with scripts/test-deps.sh"),
    };
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut hits = vec![Vec::new(); names.len()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let frame: u64 = cols[0].parse().expect("frame number");
        for (i, v) in cols.iter().skip(1).enumerate() {
            // Flags print as 1/True when set; tcp.flags.reset prints 0/False when not.
            let set = !v.is_empty() && *v != "0" && *v != "False";
            if set && i < names.len() {
                hits[i].push(frame);
            }
        }
    }
    hits
}

#[test]
fn analysis_agrees_with_tshark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (name, frames) in common::scenarios() {
        for (kind, bytes) in [
            ("pcap", common::pcap(&frames, false, false, 1)),
            ("pcapng", common::pcapng(&frames, true, 9, 1)),
        ] {
            let path = dir.path().join(format!("{name}.{kind}"));
            std::fs::write(&path, &bytes).expect("write capture");
            let summary = summarize_reader(bytes.as_slice()).expect("crafted capture reads");
            let ours = fields(&summary.tcp_totals);
            let names: Vec<&str> = ours.iter().map(|(n, _)| *n).collect();
            let theirs = tshark(&path, &names);
            for ((field, mine), frames) in ours.iter().zip(&theirs) {
                let first = mine.first.map(|o| o.frame);
                if mine.count != frames.len() as u64 || first != frames.first().copied() {
                    failures.push(format!(
                        "{name}.{kind}: {field}: ours {} (first frame {first:?}), tshark {} (frames {frames:?})",
                        mine.count,
                        frames.len()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements with tshark:\n{}",
        failures.join("\n")
    );
}
