//! Container formats and link types read back what was written.

mod common;

use labctl_pcap::packet::{self, Transport};
use labctl_pcap::{ErrorKind, Packet, Reader};

fn read_all(bytes: &[u8]) -> Vec<Packet> {
    Reader::new(bytes)
        .expect("header")
        .collect::<Result<_, _>>()
        .expect("packets")
}

#[test]
fn timestamps_survive_every_resolution() {
    let frames = common::retransmissions();
    for (bytes, tolerance) in [
        (common::pcap(&frames, false, false, 1), 0),
        (common::pcap(&frames, true, true, 1), 0),
        (common::pcapng(&frames, false, 6, 1), 0),
        (common::pcapng(&frames, true, 9, 1), 0),
        (common::pcapng(&frames, false, 3, 1), 1_000_000),
        (common::pcapng(&frames, false, 0x80 | 20, 1), 1000),
    ] {
        let got = read_all(&bytes);
        assert_eq!(got.len(), frames.len());
        for (p, (ts, data)) in got.iter().zip(&frames) {
            assert!(
                ts.abs_diff(p.timestamp_ns) <= tolerance,
                "{} vs {ts}",
                p.timestamp_ns
            );
            assert_eq!(&p.data, data);
            assert_eq!(p.orig_len as usize, data.len());
            assert_eq!(p.link_type, 1);
        }
        assert_eq!(got.last().map(|p| p.number), Some(frames.len() as u64));
    }
}

#[test]
fn pcapng_sections_simple_packets_and_unknown_blocks() {
    let frames = common::clean();
    let ip = &frames[0].1[14..];
    let mut w = common::NgWriter {
        out: Vec::new(),
        big_endian: false,
    };
    w.section();
    w.block(0x0BAD, b"ignore me");
    w.interface(1, 6);
    w.interface(101, 9);
    w.epb(1, 1_000_000_123, ip.len() as u32, ip);
    w.block(5, &[0u8; 16]);
    w.spb(frames[0].1.len() as u32, &frames[0].1);
    let mut be = common::NgWriter {
        out: Vec::new(),
        big_endian: true,
    };
    be.section();
    be.interface(228, 6);
    be.epb(0, 2_000_000, ip.len() as u32, ip);
    w.out.extend_from_slice(&be.out);
    let got = read_all(&w.out);
    let links: Vec<u32> = got.iter().map(|p| p.link_type).collect();
    assert_eq!(links, [101, 1, 228]);
    assert_eq!(got[0].timestamp_ns, 1_000_000_123);
    // A simple packet block has no time: it takes the previous one.
    assert_eq!(got[1].timestamp_ns, 1_000_000_123);
    assert_eq!(got[2].timestamp_ns, 2_000_000_000);
    for p in &got {
        let d = packet::decode(p.link_type, &p.data, p.wire_len()).expect("ip");
        assert!(matches!(d.transport, Transport::Tcp(_)));
    }
}

#[test]
fn link_types_decode_to_the_same_ip_packet() {
    let frame = &common::clean()[3].1;
    let ip = &frame[14..];
    let want = packet::decode(1, frame, frame.len() as u64).expect("ethernet");
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(ip);
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    sll2.extend_from_slice(ip);
    let mut null_le = vec![2, 0, 0, 0];
    null_le.extend_from_slice(ip);
    let mut null_be = vec![0, 0, 0, 2];
    null_be.extend_from_slice(ip);
    let mut vlan = common::ethernet(Some(7), 0x0800, ip);
    vlan.splice(12..12, [0x88, 0xa8, 0, 5]);
    for (link, data) in [
        (101, ip.to_vec()),
        (228, ip.to_vec()),
        (113, sll),
        (276, sll2),
        (0, null_le),
        (0, null_be),
        (1, vlan),
    ] {
        let got = packet::decode(link, &data, data.len() as u64);
        assert_eq!(got.as_ref(), Some(&want), "link type {link}");
    }
    assert_eq!(packet::decode(229, ip, ip.len() as u64), None);
    assert_eq!(packet::decode(147, ip, ip.len() as u64), None);
}

#[test]
fn snap_length_keeps_lengths_from_the_ip_header() {
    let frame = &common::retransmissions()[3].1;
    // Ethernet + IPv4 + TCP with no options: the payload was not captured.
    let d = packet::decode(1, &frame[..54], frame.len() as u64).expect("ip");
    let Transport::Tcp(seg) = d.transport else {
        panic!("{:?}", d.transport)
    };
    assert_eq!((seg.seq, seg.payload_len), (1001, 1000));
    // Cut inside the TCP header: ports only.
    let d = packet::decode(1, &frame[..40], frame.len() as u64).expect("ip");
    assert_eq!(
        d.transport,
        Transport::Truncated {
            ports: Some((43300, 8080))
        }
    );
    assert_eq!(packet::decode(1, &frame[..30], frame.len() as u64), None);
}

#[test]
fn fragments_and_ipv6_extension_headers() {
    let frame = &common::retransmissions()[3].1;
    let mut ip = frame[14..].to_vec();
    ip[6] = 0x00;
    ip[7] = 0x10; // offset 16 * 8 bytes: a later fragment
    assert_eq!(
        packet::decode(101, &ip, ip.len() as u64).map(|d| d.transport),
        Some(Transport::Fragment)
    );
    ip[6] = 0x20;
    ip[7] = 0; // more fragments, offset 0: the first fragment carries TCP
    assert!(matches!(
        packet::decode(101, &ip, ip.len() as u64).map(|d| d.transport),
        Some(Transport::Tcp(_))
    ));

    let v6 = common::clean()
        .into_iter()
        .find(|f| f.1.len() > 18 && f.1[16..18] == [0x86, 0xdd])
        .expect("v6")
        .1;
    let mut ip6 = v6[18..].to_vec();
    let tcp = ip6.split_off(40);
    ip6[6] = 0; // hop-by-hop options, 8 bytes, then TCP
    let plen = u16::from_be_bytes([ip6[4], ip6[5]]) + 8;
    ip6[4..6].copy_from_slice(&plen.to_be_bytes());
    ip6.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    ip6.extend_from_slice(&tcp);
    let d = packet::decode(229, &ip6, ip6.len() as u64).expect("ipv6");
    assert_eq!(d.protocol, 6);
    assert!(matches!(d.transport, Transport::Tcp(_)));
}

#[test]
fn typed_errors_name_the_offset() {
    let frames = common::resets();
    let mut pcap = common::pcap(&frames, false, false, 1);
    let second = 24 + 16 + frames[0].1.len();
    pcap[second + 8..second + 12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let err = Reader::new(pcap.as_slice())
        .expect("header")
        .nth(1)
        .expect("item")
        .expect_err("too long");
    assert_eq!(err.offset, second as u64);
    assert!(matches!(err.kind, ErrorKind::TooLong { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("at offset {second}: ")),
        "{err}"
    );

    // A length below the limit but past the end: truncated, nothing huge allocated.
    pcap[second + 8..second + 12].copy_from_slice(&(200u32 << 20).to_le_bytes());
    let err = Reader::new(pcap.as_slice())
        .expect("header")
        .nth(1)
        .expect("item")
        .expect_err("truncated");
    assert!(matches!(err.kind, ErrorKind::Truncated { .. }), "{err}");
    assert_eq!(err.offset, second as u64);

    let mut ng = common::pcapng(&frames, false, 6, 1);
    let epb = common::pcapng(&frames[..0], false, 6, 1).len();
    ng[epb + 8..epb + 12].copy_from_slice(&9u32.to_le_bytes()); // interface 9
    let err = Reader::new(ng.as_slice())
        .expect("header")
        .next()
        .expect("item")
        .expect_err("bad iface");
    assert_eq!(err.offset, epb as u64);
    assert!(err.to_string().contains("interface 9"), "{err}");

    assert!(matches!(
        Reader::new(&b"GIF89a.."[..]).err().map(|e| e.kind),
        Some(ErrorKind::UnknownMagic(_))
    ));
    let empty = Reader::new(&b""[..]).err().expect("empty is an error");
    assert_eq!(empty.offset, 0);
}
