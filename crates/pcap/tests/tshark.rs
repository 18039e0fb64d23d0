//! Cross-checks the TCP analysis against tshark on the crafted captures.
//!
//! Each count is compared with the number of frames tshark marks with the
//! field named next to it; the first flagged frame must agree too.

mod common;

use std::process::Command;

use labctl_pcap::{Problem, TcpProblems, summarize_reader};

/// Pairs of (tshark field, our count and first frame for it).
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

/// Found on a real capture with induced loss: Wireshark restarts its duplicate
/// ACK count only when the ACK number moves, so neither a window update nor a
/// data segment between two duplicate ACKs resets it, and the retransmission
/// that follows the second duplicate is a fast one.
#[test]
fn duplicate_ack_count_survives_window_updates_and_data() {
    use common::{ACK, Conn, Flow, PSH};
    let a = Conn::v4([10, 0, 1, 10], 43700, [10, 0, 2, 20], 8080);
    let mut f = Flow::new(&a);
    f.handshake(0, 1000, 5000, Some(7), 65160, 502);
    f.burst(10_100, 4, 1001, 5001, 502);
    // 2001 is lost: one ACK, a duplicate, a window update, a second duplicate.
    f.s(20_100, 5001, 2001, ACK, 509, 0)
        .s(20_300, 5001, 2001, ACK, 509, 0)
        .s(20_400, 5001, 2001, ACK, 600, 0)
        .s(20_500, 5001, 2001, ACK, 600, 0);
    f.c(20_600, 2001, 5001, ACK, 502, 1000);
    f.s(30_600, 5001, 5001, ACK, 600, 0);

    // The same with the receiver sending data between the duplicates.
    let b = Conn::v4([10, 0, 1, 10], 43701, [10, 0, 2, 20], 8080);
    let mut g = Flow::new(&b);
    g.handshake(100_000, 1000, 5000, Some(7), 65160, 502);
    g.burst(110_100, 4, 1001, 5001, 502);
    g.s(120_100, 5001, 2001, ACK, 509, 0)
        .s(120_300, 5001, 2001, ACK, 509, 0)
        .s(120_400, 5001, 2001, PSH | ACK, 509, 100)
        .s(120_500, 5101, 2001, ACK, 509, 0);
    g.c(120_600, 2001, 5101, ACK, 502, 1000);
    g.s(130_600, 5101, 5001, ACK, 509, 0);

    let frames = common::merge(vec![f.frames, g.frames]);
    let bytes = common::pcap(&frames, false, false, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dupacks.pcap");
    std::fs::write(&path, &bytes).expect("write capture");
    let summary = summarize_reader(bytes.as_slice()).expect("crafted capture reads");
    let ours = fields(&summary.tcp_totals);
    let names: Vec<&str> = ours.iter().map(|(n, _)| *n).collect();
    for ((field, mine), frames) in ours.iter().zip(tshark(&path, &names)) {
        assert_eq!(
            (mine.count, mine.first.map(|o| o.frame)),
            (frames.len() as u64, frames.first().copied()),
            "{field}: ours vs tshark (frames {frames:?})"
        );
    }
    // Both retransmissions are fast ones, so the check above is not vacuous.
    assert_eq!(summary.tcp_totals.fast_retransmissions.count, 2);
}
