//! Writes small pcap and pcapng files from crafted TCP flows, for the tests.

#![allow(dead_code)]

use std::net::IpAddr;

/// TCP flag bits.
pub const FIN: u16 = 0x01;
/// SYN.
pub const SYN: u16 = 0x02;
/// RST.
pub const RST: u16 = 0x04;
/// PSH.
pub const PSH: u16 = 0x08;
/// ACK.
pub const ACK: u16 = 0x10;

/// A frame and its capture time in nanoseconds.
pub type Frame = (u64, Vec<u8>);

/// One TCP connection between a client and a server; builds Ethernet frames.
pub struct Conn {
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub vlan: Option<u16>,
}

/// A segment to craft.
#[derive(Clone, Copy)]
pub struct Seg {
    pub from_client: bool,
    pub seq: u32,
    pub ack: u32,
    pub flags: u16,
    pub win: u16,
    pub wscale: Option<u8>,
    pub len: u32,
}

impl Conn {
    pub fn v4(client: [u8; 4], cport: u16, server: [u8; 4], sport: u16) -> Self {
        Conn {
            client: (IpAddr::from(client), cport),
            server: (IpAddr::from(server), sport),
            vlan: None,
        }
    }

    /// Ethernet frame carrying `s`.
    pub fn frame(&self, s: Seg) -> Vec<u8> {
        let (src, dst) = if s.from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&src.1.to_be_bytes());
        tcp.extend_from_slice(&dst.1.to_be_bytes());
        tcp.extend_from_slice(&s.seq.to_be_bytes());
        tcp.extend_from_slice(&s.ack.to_be_bytes());
        let opts: Vec<u8> = match s.wscale {
            // MSS 1460, NOP, window scale.
            Some(ws) => vec![2, 4, 0x05, 0xb4, 1, 3, 3, ws],
            None if s.flags & SYN != 0 => vec![2, 4, 0x05, 0xb4],
            None => vec![],
        };
        let off = ((20 + opts.len()) / 4) as u16;
        tcp.extend_from_slice(&((off << 12) | s.flags).to_be_bytes());
        tcp.extend_from_slice(&s.win.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(&opts);
        tcp.extend(std::iter::repeat_n(0x61u8, s.len as usize));
        let ip = ip_packet(src.0, dst.0, 6, &tcp);
        let ethertype: u16 = if matches!(src.0, IpAddr::V4(_)) {
            0x0800
        } else {
            0x86dd
        };
        ethernet(self.vlan, ethertype, &ip)
    }
}

/// IPv4 or IPv6 header around `payload`, with checksums computed for IPv4/TCP.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut payload = payload.to_vec();
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    let csum_at = if proto == 6 { 16 } else { 6 };
    pseudo.extend_from_slice(&payload);
    let c = checksum(&pseudo);
    payload[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
            h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h.extend_from_slice(&payload);
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            h.extend_from_slice(&[proto, 64]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(&payload);
            h
        }
        _ => unreachable!(),
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn ethernet(vlan: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if let Some(id) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram in an Ethernet frame.
pub fn udp_frame(src: (IpAddr, u16), dst: (IpAddr, u16), len: usize) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&src.1.to_be_bytes());
    u.extend_from_slice(&dst.1.to_be_bytes());
    u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend(std::iter::repeat_n(0x62u8, len));
    let ethertype: u16 = if matches!(src.0, IpAddr::V4(_)) {
        0x0800
    } else {
        0x86dd
    };
    ethernet(None, ethertype, &ip_packet(src.0, dst.0, 17, &u))
}

/// Classic pcap, microsecond or nanosecond timestamps, either byte order.
pub fn pcap(frames: &[Frame], big_endian: bool, nanos: bool, link_type: u32) -> Vec<u8> {
    let w32 = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        })
    };
    let w16 = |out: &mut Vec<u8>, v: u16| {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        })
    };
    let mut out = Vec::new();
    w32(&mut out, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    w16(&mut out, 2);
    w16(&mut out, 4);
    w32(&mut out, 0);
    w32(&mut out, 0);
    w32(&mut out, 262_144);
    w32(&mut out, link_type);
    for (ts, data) in frames {
        w32(&mut out, (ts / 1_000_000_000) as u32);
        let frac = ts % 1_000_000_000;
        w32(
            &mut out,
            if nanos {
                frac as u32
            } else {
                (frac / 1000) as u32
            },
        );
        w32(&mut out, data.len() as u32);
        w32(&mut out, data.len() as u32);
        out.extend_from_slice(data);
    }
    out
}

/// pcapng with one section and one interface; `tsresol` as in `if_tsresol`.
pub fn pcapng(frames: &[Frame], big_endian: bool, tsresol: u8, link_type: u16) -> Vec<u8> {
    let mut w = NgWriter {
        out: Vec::new(),
        big_endian,
    };
    w.section();
    w.interface(link_type, tsresol);
    for (ts, data) in frames {
        w.epb(0, ticks(*ts, tsresol), data.len() as u32, data);
    }
    w.out
}

/// Converts nanoseconds to `if_tsresol` ticks.
pub fn ticks(ns: u64, tsresol: u8) -> u64 {
    if tsresol & 0x80 != 0 {
        ((u128::from(ns) << (tsresol & 0x7f)) / 1_000_000_000) as u64
    } else if tsresol <= 9 {
        ns / 10u64.pow(9 - u32::from(tsresol))
    } else {
        ns * 10u64.pow(u32::from(tsresol) - 9)
    }
}

/// Low-level pcapng block writer.
pub struct NgWriter {
    pub out: Vec<u8>,
    pub big_endian: bool,
}

impl NgWriter {
    fn u16b(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32b(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// A block with `body` padded to 4 bytes.
    pub fn block(&mut self, block_type: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (body.len() + 12) as u32;
        let (t, l) = (self.u32b(block_type), self.u32b(len));
        self.out.extend_from_slice(&t);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&l);
    }

    pub fn section(&mut self) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u32b(0x1A2B_3C4D));
        b.extend_from_slice(&self.u16b(1));
        b.extend_from_slice(&self.u16b(0));
        b.extend_from_slice(&[0xff; 8]);
        self.block(0x0A0D_0D0A, &b);
    }

    pub fn interface(&mut self, link_type: u16, tsresol: u8) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u16b(link_type));
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.u32b(262_144));
        // if_name, then if_tsresol, then end of options.
        b.extend_from_slice(&self.u16b(2));
        b.extend_from_slice(&self.u16b(4));
        b.extend_from_slice(b"eth0");
        b.extend_from_slice(&self.u16b(9));
        b.extend_from_slice(&self.u16b(1));
        b.extend_from_slice(&[tsresol, 0, 0, 0]);
        b.extend_from_slice(&[0, 0, 0, 0]);
        self.block(1, &b);
    }

    pub fn epb(&mut self, iface: u32, ticks: u64, orig_len: u32, data: &[u8]) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u32b(iface));
        b.extend_from_slice(&self.u32b((ticks >> 32) as u32));
        b.extend_from_slice(&self.u32b(ticks as u32));
        b.extend_from_slice(&self.u32b(data.len() as u32));
        b.extend_from_slice(&self.u32b(orig_len));
        b.extend_from_slice(data);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        self.block(6, &b);
    }

    pub fn spb(&mut self, orig_len: u32, data: &[u8]) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u32b(orig_len));
        b.extend_from_slice(data);
        self.block(3, &b);
    }
}

/// Builds a flow's frames: times in microseconds from a fixed start.
pub struct Flow<'a> {
    pub conn: &'a Conn,
    pub frames: Vec<Frame>,
}

/// 2024-03-01T00:00:00Z, so absolute times are realistic.
pub const T0: u64 = 1_709_251_200_000_000_000;

impl<'a> Flow<'a> {
    pub fn new(conn: &'a Conn) -> Self {
        Flow {
            conn,
            frames: Vec::new(),
        }
    }

    /// Client segment at `t_us`.
    pub fn c(
        &mut self,
        t_us: u64,
        seq: u32,
        ack: u32,
        flags: u16,
        win: u16,
        len: u32,
    ) -> &mut Self {
        self.push(
            t_us,
            Seg {
                from_client: true,
                seq,
                ack,
                flags,
                win,
                wscale: None,
                len,
            },
        )
    }

    /// Server segment at `t_us`.
    pub fn s(
        &mut self,
        t_us: u64,
        seq: u32,
        ack: u32,
        flags: u16,
        win: u16,
        len: u32,
    ) -> &mut Self {
        self.push(
            t_us,
            Seg {
                from_client: false,
                seq,
                ack,
                flags,
                win,
                wscale: None,
                len,
            },
        )
    }

    pub fn push(&mut self, t_us: u64, seg: Seg) -> &mut Self {
        self.frames.push((T0 + t_us * 1000, self.conn.frame(seg)));
        self
    }

    /// SYN, SYN-ACK, ACK with client ISN `cisn`, server ISN `sisn`, RTT 10 ms.
    pub fn handshake(
        &mut self,
        t_us: u64,
        cisn: u32,
        sisn: u32,
        wscale: Option<u8>,
        swin: u16,
        cwin: u16,
    ) -> &mut Self {
        self.push(
            t_us,
            Seg {
                from_client: true,
                seq: cisn,
                ack: 0,
                flags: SYN,
                win: 64240,
                wscale,
                len: 0,
            },
        );
        self.push(
            t_us + 5_000,
            Seg {
                from_client: false,
                seq: sisn,
                ack: cisn + 1,
                flags: SYN | ACK,
                win: swin,
                wscale,
                len: 0,
            },
        );
        self.c(t_us + 10_000, cisn + 1, sisn + 1, ACK, cwin, 0)
    }

    /// `n` full 1000-byte client segments from `seq`, 100 µs apart from `t_us`.
    pub fn burst(&mut self, t_us: u64, n: u32, seq: u32, ack: u32, win: u16) -> &mut Self {
        for k in 0..n {
            self.c(
                t_us + u64::from(k) * 100,
                seq + k * 1000,
                ack,
                ACK,
                win,
                1000,
            );
        }
        self
    }

    /// FIN/ACK, FIN/ACK, ACK from client sequence `cseq` and server sequence
    /// `sseq`, 5 ms apart from `t_us`.
    pub fn close(&mut self, t_us: u64, cseq: u32, sseq: u32, cwin: u16, swin: u16) -> &mut Self {
        self.c(t_us, cseq, sseq, FIN | ACK, cwin, 0)
            .s(t_us + 5_000, sseq, cseq + 1, FIN | ACK, swin, 0)
            .c(t_us + 10_000, cseq + 1, sseq + 1, ACK, cwin, 0)
    }
}

/// Merges frames of several flows by time (stable).
pub fn merge(mut parts: Vec<Vec<Frame>>) -> Vec<Frame> {
    let mut all: Vec<Frame> = parts.drain(..).flatten().collect();
    all.sort_by_key(|f| f.0);
    all
}

/// A clean IPv4 transfer, a short IPv6 one on a VLAN, and a UDP exchange.
pub fn clean() -> Vec<Frame> {
    let a = Conn::v4([10, 0, 1, 10], 43210, [10, 0, 2, 20], 8080);
    let mut f = Flow::new(&a);
    f.handshake(0, 1000, 5000, Some(7), 65160, 502);
    f.c(10_100, 1001, 5001, PSH | ACK, 502, 1000)
        .c(10_200, 2001, 5001, ACK, 502, 1000)
        .c(10_300, 3001, 5001, PSH | ACK, 502, 1000);
    f.s(20_100, 5001, 2001, ACK, 509, 0)
        .s(20_300, 5001, 4001, ACK, 509, 0);
    f.s(21_000, 5001, 4001, PSH | ACK, 509, 500)
        .c(31_000, 4001, 5501, ACK, 502, 0);
    f.close(40_000, 4001, 5501, 502, 509);

    let b6 = Conn {
        client: ("2001:db8::10".parse().expect("addr"), 50000),
        server: ("2001:db8::20".parse().expect("addr"), 443),
        vlan: Some(42),
    };
    let mut g = Flow::new(&b6);
    g.handshake(2_000, 70_000, 90_000, Some(8), 64800, 256);
    g.c(12_100, 70_001, 90_001, PSH | ACK, 256, 300)
        .s(22_100, 90_001, 70_301, ACK, 253, 0);

    let dns = (IpAddr::from([10, 0, 0, 2]), 53);
    let client = (IpAddr::from([10, 0, 1, 10]), 40000);
    let udp = vec![
        (T0 + 3_000_000, udp_frame(client, dns, 40)),
        (T0 + 4_000_000, udp_frame(dns, client, 120)),
    ];
    merge(vec![f.frames, g.frames, udp])
}

/// Fast retransmission after three duplicate ACKs, a timeout retransmission,
/// and a spurious one (with the duplicate ACK it provokes).
pub fn retransmissions() -> Vec<Frame> {
    let a = Conn::v4([10, 0, 1, 10], 43300, [10, 0, 2, 20], 8080);
    let mut f = Flow::new(&a);
    f.handshake(0, 1000, 5000, Some(7), 65160, 502);
    f.burst(10_100, 5, 1001, 5001, 502);
    f.s(20_100, 5001, 2001, ACK, 509, 0);
    f.s(20_300, 5001, 2001, ACK, 509, 0)
        .s(20_400, 5001, 2001, ACK, 509, 0)
        .s(20_500, 5001, 2001, ACK, 509, 0);
    f.c(20_600, 2001, 5001, ACK, 502, 1000);
    f.s(30_600, 5001, 6001, ACK, 509, 0);
    f.c(31_000, 6001, 5001, PSH | ACK, 502, 1000);
    f.c(331_000, 6001, 5001, PSH | ACK, 502, 1000);
    f.s(341_000, 5001, 7001, ACK, 509, 0);
    f.c(600_000, 6001, 5001, PSH | ACK, 502, 1000);
    f.s(610_000, 5001, 7001, ACK, 509, 0);
    f.close(700_000, 7001, 5001, 502, 509);
    f.frames
}

/// A receiver stall: the sender fills the window, the receiver advertises
/// zero, the sender probes twice, then the window opens again.
pub fn zero_window() -> Vec<Frame> {
    let a = Conn::v4([10, 0, 1, 10], 43400, [10, 0, 2, 20], 9000);
    let mut f = Flow::new(&a);
    f.handshake(0, 1000, 5000, None, 4000, 64240);
    f.burst(10_100, 4, 1001, 5001, 64240);
    f.s(20_400, 5001, 5001, ACK, 0, 0);
    f.c(220_000, 5001, 5001, ACK, 64240, 1);
    f.s(230_000, 5001, 5001, ACK, 0, 0);
    f.c(630_000, 5001, 5001, ACK, 64240, 1);
    f.s(640_000, 5001, 5001, ACK, 0, 0);
    f.s(700_000, 5001, 5001, ACK, 4000, 0);
    f.c(700_100, 5001, 5001, PSH | ACK, 64240, 1000);
    f.s(710_100, 5001, 6001, ACK, 4000, 0);
    f.close(720_000, 6001, 5001, 64240, 4000);
    f.frames
}

/// A connection reset mid-transfer and a refused connection.
pub fn resets() -> Vec<Frame> {
    let a = Conn::v4([10, 0, 1, 10], 43500, [10, 0, 2, 20], 8080);
    let mut f = Flow::new(&a);
    f.handshake(0, 1000, 5000, Some(7), 65160, 502);
    f.c(10_100, 1001, 5001, PSH | ACK, 502, 100);
    f.s(20_100, 5001, 1101, RST | ACK, 0, 0);
    let b = Conn::v4([10, 0, 1, 10], 43501, [10, 0, 2, 20], 81);
    let mut g = Flow::new(&b);
    g.push(
        30_000,
        Seg {
            from_client: true,
            seq: 3000,
            ack: 0,
            flags: SYN,
            win: 64240,
            wscale: Some(7),
            len: 0,
        },
    );
    g.s(30_200, 0, 3001, RST | ACK, 0, 0);
    merge(vec![f.frames, g.frames])
}

/// Segments arriving out of order (a gap, then the missing segment).
pub fn reordered() -> Vec<Frame> {
    let a = Conn::v4([10, 0, 1, 10], 43600, [10, 0, 2, 20], 8080);
    let mut f = Flow::new(&a);
    f.handshake(0, 1000, 5000, Some(7), 65160, 502);
    f.c(10_200, 2001, 5001, ACK, 502, 1000)
        .c(10_300, 1001, 5001, ACK, 502, 1000);
    f.s(20_300, 5001, 3001, ACK, 509, 0);
    f.frames
}

/// Every scenario, by name.
pub fn scenarios() -> Vec<(&'static str, Vec<Frame>)> {
    vec![
        ("clean", clean()),
        ("retransmissions", retransmissions()),
        ("zero_window", zero_window()),
        ("resets", resets()),
        ("reordered", reordered()),
    ]
}
