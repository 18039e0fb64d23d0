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

/// `refused.pcap` in the sandbox: a SYN from 10.0.1.5:40000 to 10.0.1.4:8080 answered
/// by a reset, a refused connection.
pub(crate) fn refused(sb: &Sandbox) -> std::path::PathBuf {
    let client = ([10, 0, 1, 5], 40000);
    let server = ([10, 0, 1, 4], 8080);
    sb.write_bytes(
        "refused.pcap",
        &pcap(&[
            (100, tcp(client, server, 1000, 0, 0x02)),
            (101, tcp(server, client, 0, 1001, 0x14)),
        ]),
    )
}

#[test]
fn pcap_summary_names_conversations_and_resets() {
    let sb = Sandbox::new();
    let file = refused(&sb);
    let run = sb.run(&["pcap-summary", file.to_str().expect("path")]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let text = run.stdout();
    assert!(text.contains("10.0.1.5:40000"), "{text}");
    assert!(text.contains("10.0.1.4:8080"), "{text}");
    assert!(text.to_lowercase().contains("reset"), "{text}");

    let run = sb.run(&["pcap-summary", "--json", file.to_str().expect("path")]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
    let conv = &doc["files"][0]["conversations"];
    assert_eq!(conv.as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(conv[0]["packets"], 2, "{doc}");
    assert_eq!(conv[0]["tcp"]["resets"]["count"], 1, "{doc}");
    assert_eq!(conv[0]["tcp"]["resets"]["first"]["frame"], 2, "{doc}");

    // Cut in the middle of the second record: an error naming the file and the offset.
    let whole = std::fs::read(&file).expect("read refused.pcap");
    let cut = sb.write_bytes("cut.pcap", &whole[..whole.len() - 10]);
    let run = sb.run(&["pcap-summary", cut.to_str().expect("path")]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let err = run.stderr();
    assert!(err.contains("cut.pcap is not a readable capture"), "{err}");
    assert!(err.contains("at offset "), "{err}");
}

/// The pixels of a PNG as RGB, with its size.
fn decode_png(path: &std::path::Path) -> (u32, u32, Vec<[u8; 3]>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("PNG written"));
    let mut reader = png::Decoder::new(file).read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG pixels");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels = buf[..info.buffer_size()]
        .chunks(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, pixels)
}

#[test]
fn pcap_summary_plots_resets_where_they_happened() {
    let sb = Sandbox::new();
    let server = ([10, 0, 1, 4], 8080);
    // 20 s of connection attempts; only those from t = 13 s on are refused.
    let mut frames = Vec::new();
    for k in 0..20u16 {
        let client = ([10, 0, 1, 5], 40000 + k);
        let t = 100 + u32::from(k);
        frames.push((t, tcp(client, server, 1000, 0, 0x02)));
        if k >= 13 {
            frames.push((t, tcp(server, client, 0, 1001, 0x14)));
        }
    }
    let file = sb.write_bytes("refusals.pcap", &pcap(&frames));
    let run = sb.run(&[
        "pcap-summary",
        file.to_str().expect("path"),
        "--plot",
        "io.png",
    ]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert!(
        run.stdout().contains("I/O graph written to io.png"),
        "{}",
        run.transcript()
    );

    // labctl runs in the sandbox, where the capture is.
    let (width, height, pixels) = decode_png(&file.with_file_name("io.png"));
    assert_eq!((width, height), (1200, 600));
    let at = |x: u32, y: u32| pixels[(y * width + x) as usize];
    // The plot area is the white rectangle; the legend and labels lie outside it.
    let white: Vec<(u32, u32)> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .filter(|&(x, y)| at(x, y) == [255, 255, 255])
        .collect();
    let x0 = white.iter().map(|p| p.0).min().expect("a plot area");
    let x1 = white.iter().map(|p| p.0).max().expect("a plot area");
    let y0 = white.iter().map(|p| p.1).min().expect("a plot area");
    let y1 = white.iter().map(|p| p.1).max().expect("a plot area");
    assert!(
        x1 - x0 > width / 2 && y1 - y0 > height / 2,
        "{x0}..{x1} x {y0}..{y1}"
    );
    let columns = |rgb: [u8; 3]| -> Vec<u32> {
        (x0..=x1)
            .filter(|&x| (y0..=y1).any(|y| at(x, y) == rgb))
            .collect()
    };
    let middle = (x0 + x1) / 2;
    let errors = columns([214, 39, 40]);
    assert!(!errors.is_empty(), "no TCP error bars");
    assert!(
        errors.iter().all(|&x| x > middle),
        "TCP error pixels left of the middle ({middle}): {errors:?}"
    );
    let packets = columns([31, 119, 180]);
    assert!(
        packets.iter().any(|&x| x < middle),
        "no packet line in the first half: {packets:?}"
    );

    // --json carries the path; --interval sets the interval.
    let run = sb.run(&[
        "pcap-summary",
        "--json",
        file.to_str().expect("path"),
        "--plot",
        "io-1s.png",
        "--interval",
        "1",
    ]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON");
    assert_eq!(doc["files"][0]["plot"], "io-1s.png", "{doc}");
    assert_eq!(doc["files"][0]["tcp_totals"]["resets"]["count"], 7, "{doc}");
    assert!(file.with_file_name("io-1s.png").is_file());
}

#[test]
fn pcap_summary_plot_errors_are_clear() {
    let sb = Sandbox::new();
    let file = refused(&sb);
    let dir = file.parent().expect("sandbox dir").to_path_buf();
    let file = file.to_str().expect("path");

    let run = sb.run(&["pcap-summary", file, "--plot", "missing/io.png"]);
    assert_ne!(run.code(), 0, "{}", run.transcript());
    let err = run.stderr();
    assert!(
        err.contains("cannot write the plot to missing/io.png"),
        "{err}"
    );
    assert!(err.contains("no directory missing"), "{err}");

    // Only PNG is written, so any other name is refused before anything is read.
    for name in ["io.jpg", "io"] {
        let run = sb.run(&["pcap-summary", file, "--plot", name]);
        assert_ne!(run.code(), 0, "{}", run.transcript());
        let err = run.stderr();
        assert!(
            err.contains(&format!("cannot write the plot to {name}: only PNG")),
            "{err}"
        );
        assert!(!dir.join(name).exists(), "{name} was written");
    }

    let run = sb.run(&["pcap-summary", file, "--plot", "io.png", "--interval", "0"]);
    assert_ne!(run.code(), 0, "{}", run.transcript());
    assert!(
        run.stderr().contains("--interval must be"),
        "{}",
        run.transcript()
    );

    let run = sb.run(&["pcap-summary", file, "--interval", "1"]);
    assert_ne!(run.code(), 0, "{}", run.transcript());
    assert!(run.stderr().contains("--plot"), "{}", run.transcript());

    // Nothing was written by the failed runs.
    assert!(!dir.join("io.png").exists());
    assert!(!dir.join("missing").exists());
}
