//! Exact counts for the crafted flows, and the summary's shape.

mod common;

use labctl_pcap::{Summary, TcpProblems, summarize_reader};

fn summary(frames: &[common::Frame]) -> Summary {
    summarize_reader(common::pcap(frames, false, false, 1).as_slice())
        .expect("crafted capture reads")
}

/// The counts of `t` in field order, for compact assertions.
fn counts(t: &TcpProblems) -> [u64; 12] {
    [
        t.retransmissions.count,
        t.fast_retransmissions.count,
        t.spurious_retransmissions.count,
        t.out_of_order.count,
        t.duplicate_acks.count,
        t.zero_windows.count,
        t.zero_window_probes.count,
        t.window_full.count,
        t.window_updates.count,
        t.keep_alives.count,
        t.previous_segment_not_captured.count,
        t.resets.count,
    ]
}

#[test]
fn clean_transfer_has_no_problems_and_three_conversations() {
    let s = summary(&common::clean());
    assert_eq!(s.packets, 13 + 5 + 2);
    assert_eq!(s.non_ip_packets, 0);
    assert!(s.tcp_totals.is_clean(), "{:?}", s.tcp_totals);
    let c: Vec<_> = s
        .conversations
        .iter()
        .map(|c| {
            (
                c.protocol.as_str(),
                c.a.to_string(),
                c.b.to_string(),
                c.packets,
            )
        })
        .collect();
    assert_eq!(
        c,
        [
            (
                "tcp",
                "10.0.1.10:43210".to_string(),
                "10.0.2.20:8080".to_string(),
                13
            ),
            (
                "tcp",
                "[2001:db8::10]:50000".to_string(),
                "[2001:db8::20]:443".to_string(),
                5
            ),
            (
                "udp",
                "10.0.1.10:40000".to_string(),
                "10.0.0.2:53".to_string(),
                2
            ),
        ]
    );
    let tcp = &s.conversations[0];
    assert_eq!((tcp.packets_a_to_b, tcp.packets_b_to_a), (8, 5));
    assert_eq!(tcp.bytes, tcp.bytes_a_to_b + tcp.bytes_b_to_a);
    assert!((tcp.duration_s - 0.050).abs() < 1e-9);
    assert!(s.conversations[2].tcp.is_none());
    assert!((s.conversations[1].start_s - 0.002).abs() < 1e-9);
}

#[test]
fn retransmissions_fast_and_spurious() {
    let s = summary(&common::retransmissions());
    // retrans, fast, spurious, ooo, dupack, zero win, zwp, full, update, keep-alive, lost, reset
    assert_eq!(counts(&s.tcp_totals), [3, 1, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
    let fast = s.tcp_totals.fast_retransmissions.first.expect("first");
    assert_eq!(fast.frame, 13);
    assert!((fast.time_s - 0.0206).abs() < 1e-9);
    assert_eq!(fast.time_ns, common::T0 + 20_600_000);
    let dup = s.tcp_totals.duplicate_acks.first.expect("first");
    assert_eq!(dup.frame, 10);
    assert_eq!(
        s.conversations[0].tcp.as_ref().map(counts),
        Some(counts(&s.tcp_totals))
    );
}

#[test]
fn zero_window_stall_with_probes_and_full_window() {
    let s = summary(&common::zero_window());
    assert_eq!(counts(&s.tcp_totals), [0, 0, 0, 0, 0, 3, 2, 1, 1, 0, 0, 0]);
    assert_eq!(s.tcp_totals.window_full.first.map(|o| o.frame), Some(7));
    assert_eq!(s.tcp_totals.zero_windows.first.map(|o| o.frame), Some(8));
}

#[test]
fn resets_are_counted_per_conversation() {
    let s = summary(&common::resets());
    assert_eq!(counts(&s.tcp_totals), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(s.conversations.len(), 2);
    for c in &s.conversations {
        assert_eq!(c.tcp.as_ref().map(|t| t.resets.count), Some(1));
    }
}

#[test]
fn reordered_segment_is_out_of_order_not_retransmission() {
    let s = summary(&common::reordered());
    assert_eq!(counts(&s.tcp_totals), [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]);
}

#[test]
fn all_containers_give_the_same_summary() {
    for (name, frames) in common::scenarios() {
        let want = summary(&frames);
        let variants = [
            common::pcap(&frames, true, false, 1),
            common::pcap(&frames, false, true, 1),
            common::pcap(&frames, true, true, 1),
            common::pcapng(&frames, false, 6, 1),
            common::pcapng(&frames, true, 9, 1),
        ];
        for (i, bytes) in variants.iter().enumerate() {
            let got = summarize_reader(bytes.as_slice()).expect("reads");
            assert_eq!(got, want, "{name} variant {i}");
        }
    }
}

#[test]
fn text_and_json_name_the_problems() {
    let s = summary(&common::retransmissions());
    let text = s.render_text();
    assert!(text.contains("10.0.1.10:43300"), "{text}");
    assert!(
        text.contains("fast retransmissions: 1 (first at 0.020600 s, frame 13)"),
        "{text}"
    );
    assert!(text.contains("TCP problems in total:"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&s.to_json()).expect("json");
    assert_eq!(json["tcp_totals"]["retransmissions"]["count"], 3);
    assert_eq!(json["conversations"][0]["a"]["addr"], "10.0.1.10");
    assert_eq!(
        json["conversations"][0]["tcp"]["duplicate_acks"]["first"]["frame"],
        10
    );
    let clean = summary(&common::clean()).render_text();
    assert!(clean.contains("TCP problems: none"), "{clean}");
}
