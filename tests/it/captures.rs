//! `labctl pcap-summary` on real capture files written here byte by byte: what it
//! prints, its JSON, and a clear error naming the offset of a damaged file.

use crate::harness::Sandbox;

/// A classic pcap (microseconds, Ethernet) of `frames`, each at `t` seconds.
fn pcap(frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    for (t, frame) in frames {
        out.extend(t.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    }
    out
}

/// Ethernet + IPv4 + TCP (no options, no payload) from `src` to `dst`.
fn tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend([0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend(src.0);
    ip.extend(dst.0);
    let sum = !ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .fold(0u32, |a, b| {
            let s = a + b;
            (s & 0xffff) + (s >> 16)
        }) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f.extend(src.1.to_be_bytes());
    f.extend(dst.1.to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.extend(ack.to_be_bytes());
    f.extend([0x50, flags]);
    f.extend(64240u16.to_be_bytes());
    f.extend([0, 0, 0, 0]);
    f
}

#[test]
fn pcap_summary_names_conversations_and_resets() {
    let sb = Sandbox::new();
    let client = ([10, 0, 1, 5], 40000);
    let server = ([10, 0, 1, 4], 8080);
    // A SYN answered by a reset: a refused connection.
    let file = sb.write_bytes(
        "refused.pcap",
        &pcap(&[
            (100, tcp(client, server, 1000, 0, 0x02)),
            (101, tcp(server, client, 0, 1001, 0x14)),
        ]),
    );
    let run = sb.run(&["pcap-summary", file.to_str().expect("path")]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let text = run.stdout();
    assert!(text.contains("10.0.1.5:40000"), "{text}");
    assert!(text.contains("10.0.1.4:8080"), "{text}");
    assert!(text.to_lowercase().contains("reset"), "{text}");

    let run = sb.run(&["pcap-summary", "--json", file.to_str().expect("path")]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
    let conv = &doc[0]["conversations"];
    assert_eq!(conv.as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(conv[0]["packets"], 2, "{doc}");
    assert_eq!(conv[0]["tcp"]["resets"]["count"], 1, "{doc}");
    assert_eq!(conv[0]["tcp"]["resets"]["first"]["frame"], 2, "{doc}");

    // Cut in the middle of the second record: an error naming the file and the offset.
    let whole = pcap(&[
        (100, tcp(client, server, 1000, 0, 0x02)),
        (101, tcp(server, client, 0, 1001, 0x14)),
    ]);
    let cut = sb.write_bytes("cut.pcap", &whole[..whole.len() - 10]);
    let run = sb.run(&["pcap-summary", cut.to_str().expect("path")]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let err = run.stderr();
    assert!(err.contains("cut.pcap is not a readable capture"), "{err}");
    assert!(err.contains("at offset "), "{err}");
}
