//! Conversations and the TCP problems Wireshark's expert info reports.
//!
//! Students compare what this prints with what they see in Wireshark, so the
//! TCP checks follow Wireshark's `tcp.analysis.*` definitions (its manual's
//! "TCP Analysis" section) rather than a stricter reading of the RFCs: a frame
//! flagged here is a frame Wireshark flags, with the same name.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::packet::{self, IPPROTO_TCP, IPPROTO_UDP, IpPacket, TcpSegment, Transport, flags};
use crate::reader::Packet;

/// Fast retransmissions follow the duplicate ACKs within this time.
const FAST_RETRANSMISSION_NS: u64 = 20_000_000;
/// Out-of-order window when the handshake's RTT is unknown.
const DEFAULT_OUT_OF_ORDER_NS: u64 = 3_000_000;

/// One side of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    /// IP address.
    pub addr: IpAddr,
    /// TCP or UDP port; `None` for other protocols and portless fragments.
    pub port: Option<u16>,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, Some(p)) => write!(f, "{a}:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

/// Where a problem was first seen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Occurrence {
    /// Frame number (1-based, as in Wireshark).
    pub frame: u64,
    /// Seconds since the capture's first packet.
    pub time_s: f64,
    /// Absolute time in nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

/// How often a problem occurred and when first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Problem {
    /// Number of frames flagged.
    pub count: u64,
    /// The first flagged frame.
    pub first: Option<Occurrence>,
}

impl Problem {
    fn record(&mut self, frame: u64, time_ns: u64) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(Occurrence {
                frame,
                time_s: 0.0,
                time_ns,
            });
        }
    }

    fn merge(&mut self, other: &Problem) {
        self.count += other.count;
        if let Some(o) = other.first
            && self
                .first
                .is_none_or(|s| (o.time_ns, o.frame) < (s.time_ns, s.frame))
        {
            self.first = Some(o);
        }
    }
}

/// Counts of the frames Wireshark's TCP analysis flags, one field per flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TcpProblems {
    /// `tcp.analysis.retransmission`: all retransmissions, fast and spurious ones included.
    pub retransmissions: Problem,
    /// `tcp.analysis.fast_retransmission`: after duplicate ACKs for the same data.
    pub fast_retransmissions: Problem,
    /// `tcp.analysis.spurious_retransmission`: data the receiver had already acknowledged.
    pub spurious_retransmissions: Problem,
    /// `tcp.analysis.out_of_order`: an earlier segment arriving shortly after later ones.
    pub out_of_order: Problem,
    /// `tcp.analysis.duplicate_ack`.
    pub duplicate_acks: Problem,
    /// `tcp.analysis.zero_window`: the sender tells the other side to stop sending.
    pub zero_windows: Problem,
    /// `tcp.analysis.zero_window_probe`.
    pub zero_window_probes: Problem,
    /// `tcp.analysis.window_full`: the sender filled the receiver's window.
    pub window_full: Problem,
    /// `tcp.analysis.window_update`.
    pub window_updates: Problem,
    /// `tcp.analysis.keep_alive`.
    pub keep_alives: Problem,
    /// `tcp.analysis.lost_segment`: a gap in sequence numbers (not captured or lost).
    pub previous_segment_not_captured: Problem,
    /// `tcp.flags.reset`: segments with RST set.
    pub resets: Problem,
}

impl TcpProblems {
    fn all(&self) -> [(&'static str, &Problem); 12] {
        [
            ("retransmissions", &self.retransmissions),
            ("fast retransmissions", &self.fast_retransmissions),
            ("spurious retransmissions", &self.spurious_retransmissions),
            ("out-of-order", &self.out_of_order),
            ("duplicate ACKs", &self.duplicate_acks),
            ("zero windows", &self.zero_windows),
            ("zero window probes", &self.zero_window_probes),
            ("window full", &self.window_full),
            ("window updates", &self.window_updates),
            ("keep-alives", &self.keep_alives),
            (
                "previous segment not captured",
                &self.previous_segment_not_captured,
            ),
            ("resets", &self.resets),
        ]
    }

    fn all_mut(&mut self) -> [&mut Problem; 12] {
        [
            &mut self.retransmissions,
            &mut self.fast_retransmissions,
            &mut self.spurious_retransmissions,
            &mut self.out_of_order,
            &mut self.duplicate_acks,
            &mut self.zero_windows,
            &mut self.zero_window_probes,
            &mut self.window_full,
            &mut self.window_updates,
            &mut self.keep_alives,
            &mut self.previous_segment_not_captured,
            &mut self.resets,
        ]
    }

    fn merge(&mut self, other: &TcpProblems) {
        for (mine, theirs) in self.all_mut().into_iter().zip(other.all()) {
            mine.merge(theirs.1);
        }
    }

    /// Whether nothing was flagged.
    pub fn is_clean(&self) -> bool {
        self.all().iter().all(|(_, p)| p.count == 0)
    }
}

/// Traffic between two endpoints over one protocol.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    /// `"tcp"`, `"udp"` or the IP protocol number.
    pub protocol: String,
    /// The endpoint that sent the conversation's first packet.
    pub a: Endpoint,
    /// The other endpoint.
    pub b: Endpoint,
    /// Packets from `a` to `b`.
    pub packets_a_to_b: u64,
    /// Packets from `b` to `a`.
    pub packets_b_to_a: u64,
    /// Frame bytes (on the wire, link header included) from `a` to `b`.
    pub bytes_a_to_b: u64,
    /// Frame bytes from `b` to `a`.
    pub bytes_b_to_a: u64,
    /// Packets both ways.
    pub packets: u64,
    /// Frame bytes both ways.
    pub bytes: u64,
    /// First packet, in seconds since the capture's first packet.
    pub start_s: f64,
    /// First packet, nanoseconds since the Unix epoch.
    pub first_ns: u64,
    /// Last packet, nanoseconds since the Unix epoch.
    pub last_ns: u64,
    /// Seconds from first to last packet.
    pub duration_s: f64,
    /// TCP problems; present for TCP conversations.
    pub tcp: Option<TcpProblems>,
}

/// What a capture contained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// All packets read.
    pub packets: u64,
    /// Frame bytes of all packets.
    pub bytes: u64,
    /// Packets that are not IP or whose IP header was not captured.
    pub non_ip_packets: u64,
    /// Time of the first packet, nanoseconds since the Unix epoch.
    pub first_ns: Option<u64>,
    /// Seconds from first to last packet.
    pub duration_s: f64,
    /// Conversations in order of their first packet.
    pub conversations: Vec<Conversation>,
    /// TCP problems over all conversations.
    pub tcp_totals: TcpProblems,
}

/// Window scaling of one direction, learnt from the handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum WinScale {
    /// No SYN seen: Wireshark does not check for full windows then.
    #[default]
    Unknown,
    NotUsed,
    Shift(u8),
}

/// Sequence state of one direction; 0 means "not known yet", as in Wireshark.
#[derive(Debug, Clone, Default)]
struct Flow {
    nextseq: u32,
    nextseq_ns: u64,
    lastack: u32,
    lastack_ns: u64,
    window: Option<u16>,
    window_from_syn: bool,
    win_scale: WinScale,
    dupacks: u32,
    last_keep_alive: bool,
    last_zero_window_probe: bool,
    syn_seq: Option<u32>,
}

#[derive(Debug, Clone, Default)]
struct TcpState {
    /// Indexed by direction: 0 is a to b.
    flows: [Flow; 2],
    syn_ns: Option<u64>,
    first_rtt_ns: Option<u64>,
}

/// Sequence comparisons modulo 2^32.
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn seq_gt(a: u32, b: u32) -> bool {
    seq_lt(b, a)
}

fn within(now: u64, since: u64, limit: u64) -> bool {
    now.checked_sub(since).is_some_and(|d| d < limit)
}

/// Which analysis flags one segment got.
#[derive(Debug, Default)]
struct Flags {
    zero_window_probe: bool,
    zero_window: bool,
    lost: bool,
    keep_alive: bool,
    window_update: bool,
    window_full: bool,
    duplicate_ack: bool,
    fast_retransmission: bool,
    out_of_order: bool,
    spurious: bool,
    retransmission: bool,
}

impl TcpState {
    fn analyze(&mut self, dir: usize, s: &TcpSegment, now: u64) -> Flags {
        let control = flags::SYN | flags::FIN | flags::RST;
        let plain = s.flags & control == 0;
        let seglen = s.payload_len;

        if s.has(flags::SYN) && !s.has(flags::ACK) {
            // A new SYN with another ISN starts a new connection on these ports.
            if self.flows[dir].syn_seq.is_some_and(|isn| isn != s.seq) {
                *self = TcpState::default();
            }
            self.syn_ns = Some(now);
        }
        if s.flags & (flags::SYN | flags::ACK) == flags::ACK
            && self.first_rtt_ns.is_none()
            && let Some(syn) = self.syn_ns
        {
            self.first_rtt_ns = Some(now.saturating_sub(syn));
        }
        if s.has(flags::SYN) {
            self.flows[dir].syn_seq = Some(s.seq);
            self.flows[dir].win_scale = s.window_scale.map_or(WinScale::NotUsed, WinScale::Shift);
            if s.has(flags::ACK) && self.flows.iter().any(|f| f.win_scale == WinScale::NotUsed) {
                for f in &mut self.flows {
                    f.win_scale = WinScale::NotUsed;
                }
            }
        }

        let [a, b] = &mut self.flows;
        let (fwd, rev) = if dir == 0 { (a, b) } else { (b, a) };
        let mut fl = Flags::default();
        let window = s.window;

        if seglen == 1 && s.seq == fwd.nextseq && rev.window == Some(0) {
            fl.zero_window_probe = true;
        } else {
            fl.zero_window = window == 0 && plain;
            fl.lost = fwd.nextseq != 0 && seq_gt(s.seq, fwd.nextseq) && !s.has(flags::RST);
            fl.keep_alive = seglen <= 1 && s.seq == fwd.nextseq.wrapping_sub(1) && plain;
            let same_place = seglen == 0 && s.seq == fwd.nextseq && s.ack == fwd.lastack && plain;
            fl.window_update = same_place && window != 0 && fwd.window != Some(window);
            let shift = match rev.win_scale {
                WinScale::Unknown => None,
                _ if rev.window_from_syn => Some(0),
                WinScale::NotUsed => Some(0),
                WinScale::Shift(n) => Some(n),
            };
            if let (Some(shift), Some(rwin)) = (shift, rev.window) {
                let edge = rev.lastack.wrapping_add(u32::from(rwin) << shift);
                fl.window_full = seglen > 0 && plain && s.seq.wrapping_add(seglen) == edge;
            }
            let repeated = same_place && fwd.window == Some(window);
            let keep_alive_ack = repeated && window != 0 && rev.last_keep_alive;
            let probe_ack = seglen == 0
                && window == 0
                && fwd.window == Some(0)
                && s.seq == fwd.nextseq
                && (s.ack == fwd.lastack || s.ack == fwd.lastack.wrapping_add(1))
                && rev.last_zero_window_probe
                && plain;
            if !keep_alive_ack && !probe_ack && repeated && window != 0 {
                fwd.dupacks += 1;
                fl.duplicate_ack = true;
            }
        }
        // As in Wireshark, only a new ACK number restarts the count: a window
        // update or a data segment between duplicate ACKs does not.
        if s.ack != fwd.lastack {
            fwd.dupacks = 0;
        }

        let syn_fin = s.flags & (flags::SYN | flags::FIN) != 0;
        if (seglen > 0 || syn_fin) && !fl.keep_alive {
            let not_advanced = fwd.nextseq != 0 && seq_lt(s.seq, fwd.nextseq);
            let ooo_limit = self
                .first_rtt_ns
                .filter(|&r| r > 0)
                .unwrap_or(DEFAULT_OUT_OF_ORDER_NS);
            if not_advanced
                && rev.dupacks >= 2
                && rev.lastack == s.seq
                && within(now, rev.lastack_ns, FAST_RETRANSMISSION_NS)
            {
                fl.fast_retransmission = true;
            } else if not_advanced
                && within(now, fwd.nextseq_ns, ooo_limit)
                && fwd.nextseq != s.seq.wrapping_add(seglen)
            {
                fl.out_of_order = true;
            } else if seglen > 0
                && rev.lastack != 0
                && !seq_gt(s.seq.wrapping_add(seglen), rev.lastack)
            {
                fl.spurious = true;
            } else if not_advanced {
                fl.retransmission = true;
            }
        }

        // A probe's byte is not taken as sent: the next probe repeats it.
        if (seglen > 0 || syn_fin) && !fl.zero_window_probe {
            let next = s.seq.wrapping_add(seglen).wrapping_add(u32::from(syn_fin));
            if fwd.nextseq == 0 || seq_gt(next, fwd.nextseq) {
                fwd.nextseq = next;
                fwd.nextseq_ns = now;
            }
        }
        fwd.window = Some(window);
        fwd.window_from_syn = s.has(flags::SYN);
        fwd.lastack = s.ack;
        fwd.lastack_ns = now;
        fwd.last_keep_alive = fl.keep_alive;
        fwd.last_zero_window_probe = fl.zero_window_probe;
        fl
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    protocol: u8,
    lo: Endpoint,
    hi: Endpoint,
}

struct Entry {
    conv: Conversation,
    tcp: Option<(TcpState, TcpProblems)>,
}

/// Builds a [`Summary`] from packets fed one at a time, in capture order.
#[derive(Default)]
pub struct Analyzer {
    packets: u64,
    bytes: u64,
    non_ip: u64,
    first_ns: Option<u64>,
    last_ns: u64,
    index: HashMap<Key, usize>,
    entries: Vec<Entry>,
}

impl Analyzer {
    /// An analyzer that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts for one packet; returns whether it was flagged with any TCP
    /// problem (counted in one of the [`TcpProblems`] fields), e.g. for an I/O graph.
    pub fn push(&mut self, p: &Packet) -> bool {
        let now = p.timestamp_ns;
        let wire = p.wire_len();
        self.packets += 1;
        self.bytes += wire;
        self.first_ns.get_or_insert(now);
        self.last_ns = self.last_ns.max(now);
        let Some(ip) = packet::decode(p.link_type, &p.data, wire) else {
            self.non_ip += 1;
            return false;
        };
        let (src, dst) = endpoints(&ip);
        let (lo, hi) = if src <= dst { (src, dst) } else { (dst, src) };
        let key = Key {
            protocol: ip.protocol,
            lo,
            hi,
        };
        let idx = *self.index.entry(key).or_insert_with(|| {
            self.entries.push(Entry {
                conv: Conversation {
                    protocol: match ip.protocol {
                        IPPROTO_TCP => "tcp".to_string(),
                        IPPROTO_UDP => "udp".to_string(),
                        n => n.to_string(),
                    },
                    a: src,
                    b: dst,
                    packets_a_to_b: 0,
                    packets_b_to_a: 0,
                    bytes_a_to_b: 0,
                    bytes_b_to_a: 0,
                    packets: 0,
                    bytes: 0,
                    start_s: 0.0,
                    first_ns: now,
                    last_ns: now,
                    duration_s: 0.0,
                    tcp: None,
                },
                tcp: (ip.protocol == IPPROTO_TCP).then(Default::default),
            });
            self.entries.len() - 1
        });
        let entry = &mut self.entries[idx];
        let c = &mut entry.conv;
        let dir = usize::from(c.a != src);
        if dir == 0 {
            c.packets_a_to_b += 1;
            c.bytes_a_to_b += wire;
        } else {
            c.packets_b_to_a += 1;
            c.bytes_b_to_a += wire;
        }
        c.first_ns = c.first_ns.min(now);
        c.last_ns = c.last_ns.max(now);
        if let (Transport::Tcp(seg), Some((state, problems))) = (&ip.transport, &mut entry.tcp) {
            let fl = state.analyze(dir, seg, now);
            let frame = p.number;
            let marks = [
                (
                    fl.retransmission || fl.fast_retransmission || fl.spurious,
                    &mut problems.retransmissions,
                ),
                (fl.fast_retransmission, &mut problems.fast_retransmissions),
                (fl.spurious, &mut problems.spurious_retransmissions),
                (fl.out_of_order, &mut problems.out_of_order),
                (fl.duplicate_ack, &mut problems.duplicate_acks),
                (fl.zero_window, &mut problems.zero_windows),
                (fl.zero_window_probe, &mut problems.zero_window_probes),
                (fl.window_full, &mut problems.window_full),
                (fl.window_update, &mut problems.window_updates),
                (fl.keep_alive, &mut problems.keep_alives),
                (fl.lost, &mut problems.previous_segment_not_captured),
                (seg.has(flags::RST), &mut problems.resets),
            ];
            let mut flagged = false;
            for (hit, problem) in marks {
                if hit {
                    problem.record(frame, now);
                    flagged = true;
                }
            }
            return flagged;
        }
        false
    }

    /// The summary of everything pushed so far.
    pub fn finish(self) -> Summary {
        let first = self.first_ns.unwrap_or(0);
        let rel = |t: u64| (i128::from(t) - i128::from(first)) as f64 / 1e9;
        let mut totals = TcpProblems::default();
        let conversations = self
            .entries
            .into_iter()
            .map(|e| {
                let mut c = e.conv;
                c.packets = c.packets_a_to_b + c.packets_b_to_a;
                c.bytes = c.bytes_a_to_b + c.bytes_b_to_a;
                c.start_s = rel(c.first_ns);
                c.duration_s = (c.last_ns - c.first_ns) as f64 / 1e9;
                c.tcp = e.tcp.map(|(_, mut problems)| {
                    for p in problems.all_mut() {
                        if let Some(o) = &mut p.first {
                            o.time_s = rel(o.time_ns);
                        }
                    }
                    totals.merge(&problems);
                    problems
                });
                c
            })
            .collect();
        Summary {
            packets: self.packets,
            bytes: self.bytes,
            non_ip_packets: self.non_ip,
            first_ns: self.first_ns,
            duration_s: rel(self.last_ns).max(0.0),
            conversations,
            tcp_totals: totals,
        }
    }
}

fn endpoints(ip: &IpPacket) -> (Endpoint, Endpoint) {
    let ports = match &ip.transport {
        Transport::Tcp(s) => Some((s.src_port, s.dst_port)),
        Transport::Udp { src_port, dst_port } => Some((*src_port, *dst_port)),
        Transport::Truncated { ports } => *ports,
        Transport::Fragment | Transport::Other => None,
    };
    (
        Endpoint {
            addr: ip.src,
            port: ports.map(|p| p.0),
        },
        Endpoint {
            addr: ip.dst,
            port: ports.map(|p| p.1),
        },
    )
}

impl Summary {
    /// A table for people: one row per conversation, its problems beneath it,
    /// then the totals.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} packets, {} bytes, {:.3} s{}",
            self.packets,
            self.bytes,
            self.duration_s,
            if self.non_ip_packets > 0 {
                format!(" ({} not IP)", self.non_ip_packets)
            } else {
                String::new()
            }
        );
        let rows: Vec<[String; 7]> = self
            .conversations
            .iter()
            .map(|c| {
                [
                    c.protocol.to_uppercase(),
                    c.a.to_string(),
                    c.b.to_string(),
                    format!("{} ({}/{})", c.packets, c.packets_a_to_b, c.packets_b_to_a),
                    format!("{} ({}/{})", c.bytes, c.bytes_a_to_b, c.bytes_b_to_a),
                    format!("{:.3}", c.start_s),
                    format!("{:.3}", c.duration_s),
                ]
            })
            .collect();
        let head = [
            "PROTO",
            "A",
            "B",
            "PACKETS (A>B/B>A)",
            "BYTES (A>B/B>A)",
            "START s",
            "DURATION s",
        ];
        let mut widths = head.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(s, "{cell:<w$}  ");
            }
            s.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&head.map(String::from)));
        for (r, c) in rows.iter().zip(&self.conversations) {
            let _ = writeln!(out, "{}", line(r));
            if let Some(t) = &c.tcp {
                write_problems(&mut out, "    ", t);
            }
        }
        if self.tcp_totals.is_clean() {
            let _ = writeln!(out, "TCP problems: none");
        } else {
            let _ = writeln!(out, "TCP problems in total:");
            write_problems(&mut out, "    ", &self.tcp_totals);
        }
        out
    }

    /// The summary as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn write_problems(out: &mut String, indent: &str, t: &TcpProblems) {
    for (name, p) in t.all() {
        if let (true, Some(o)) = (p.count > 0, p.first) {
            let _ = writeln!(
                out,
                "{indent}{name}: {} (first at {:.6} s, frame {})",
                p.count, o.time_s, o.frame
            );
        }
    }
}
