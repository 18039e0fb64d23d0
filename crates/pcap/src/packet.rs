//! Decoding link, IP and TCP/UDP headers of a captured packet.
//!
//! Captures are often snap-length limited, so decoding never fails: it returns
//! as much as the captured bytes allow, and lengths come from the IP headers
//! (what was sent) rather than from what was captured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `LINKTYPE_NULL`: BSD loopback, 4-byte address family in host order.
pub const LINKTYPE_NULL: u32 = 0;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// `LINKTYPE_RAW`: raw IPv4 or IPv6.
pub const LINKTYPE_RAW: u32 = 101;
/// `LINKTYPE_LOOP`: like `LINKTYPE_NULL` but the family is big-endian.
pub const LINKTYPE_LOOP: u32 = 108;
/// `LINKTYPE_LINUX_SLL`: Linux cooked capture (`tcpdump -i any`).
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// `LINKTYPE_IPV4`: raw IPv4.
pub const LINKTYPE_IPV4: u32 = 228;
/// `LINKTYPE_IPV6`: raw IPv6.
pub const LINKTYPE_IPV6: u32 = 229;
/// `LINKTYPE_LINUX_SLL2`: Linux cooked capture v2.
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// TCP flag bits as in the header's flags field (NS is bit 8).
pub mod flags {
    /// FIN.
    pub const FIN: u16 = 0x001;
    /// SYN.
    pub const SYN: u16 = 0x002;
    /// RST.
    pub const RST: u16 = 0x004;
    /// PSH.
    pub const PSH: u16 = 0x008;
    /// ACK.
    pub const ACK: u16 = 0x010;
    /// URG.
    pub const URG: u16 = 0x020;
}

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// The IP-level view of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPacket {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol number (after IPv6 extension headers).
    pub protocol: u8,
    /// What the transport header says, as far as it was captured.
    pub transport: Transport,
}

/// The transport layer of an [`IpPacket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A TCP segment whose fixed header was captured.
    Tcp(TcpSegment),
    /// A UDP datagram whose header was captured.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// A TCP or UDP header cut short by the capture; ports if they survived.
    Truncated {
        /// Source and destination port, when the first 4 bytes were captured.
        ports: Option<(u16, u16)>,
    },
    /// A later IP fragment: no transport header.
    Fragment,
    /// Another protocol.
    Other,
}

/// The TCP fields the analysis needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when ACK is set).
    pub ack: u32,
    /// Flag bits, see [`flags`].
    pub flags: u16,
    /// Window field as sent, before scaling.
    pub window: u16,
    /// Window scale option (shift count), if present and captured.
    pub window_scale: Option<u8>,
    /// Payload length from the IP lengths, not from the captured bytes.
    pub payload_len: u32,
}

impl TcpSegment {
    /// Whether all of the bits in `mask` are set.
    pub fn has(&self, mask: u16) -> bool {
        self.flags & mask == mask
    }
}

/// Decodes `data` captured on a `link_type` link; `wire_len` is its length on
/// the wire. Returns `None` when the packet is not IP or the IP header was not
/// captured.
pub fn decode(link_type: u32, data: &[u8], wire_len: u64) -> Option<IpPacket> {
    let (ethertype, at) = match link_type {
        LINKTYPE_ETHERNET => ethernet(data)?,
        LINKTYPE_RAW => (0, 0),
        LINKTYPE_IPV4 => (0x0800, 0),
        LINKTYPE_IPV6 => (0x86dd, 0),
        LINKTYPE_LINUX_SLL => (be16(data, 14)?, 16),
        LINKTYPE_LINUX_SLL2 => (be16(data, 0)?, 20),
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let raw: [u8; 4] = data.get(..4)?.try_into().ok()?;
            let family = match link_type {
                LINKTYPE_LOOP => u32::from_be_bytes(raw),
                // Host order of the capturing machine: accept either.
                _ if u32::from_le_bytes(raw) < 256 => u32::from_le_bytes(raw),
                _ => u32::from_be_bytes(raw),
            };
            match family {
                2 => (0x0800, 4),
                10 | 24 | 28 | 30 => (0x86dd, 4),
                _ => return None,
            }
        }
        _ => return None,
    };
    let ip = data.get(at..)?;
    // Bytes of the IP packet on the wire, for headers that say "length 0".
    let ip_wire_len = wire_len.saturating_sub(at as u64);
    let ethertype = match ethertype {
        0 => match ip.first()? >> 4 {
            4 => 0x0800,
            6 => 0x86dd,
            _ => return None,
        },
        e => e,
    };
    match ethertype {
        0x0800 => ipv4(ip, ip_wire_len),
        0x86dd => ipv6(ip, ip_wire_len),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Returns the ethertype and the offset of the payload, past any VLAN tags.
fn ethernet(data: &[u8]) -> Option<(u16, usize)> {
    let mut at = 12;
    // Bounded: stacked tags beyond a few are not real traffic.
    for _ in 0..8 {
        let ethertype = be16(data, at)?;
        match ethertype {
            0x8100 | 0x88a8 | 0x9100 => at += 4,
            _ => return Some((ethertype, at + 2)),
        }
    }
    None
}

fn ipv4(ip: &[u8], wire_len: u64) -> Option<IpPacket> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let total = u64::from(be16(ip, 2)?);
    // A total length of 0 comes from segmentation offload: use the frame.
    let total = if total == 0 { wire_len } else { total };
    let frag = be16(ip, 6)?;
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    let protocol = ip[9];
    let transport = if frag & 0x1fff != 0 {
        Transport::Fragment
    } else {
        let payload_len = total.saturating_sub(ihl as u64);
        transport(protocol, ip.get(ihl..).unwrap_or(&[]), payload_len)
    };
    Some(IpPacket {
        src,
        dst,
        protocol,
        transport,
    })
}

fn ipv6(ip: &[u8], wire_len: u64) -> Option<IpPacket> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let addr = |at: usize| -> Option<IpAddr> {
        let b: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    };
    let (src, dst) = (addr(8)?, addr(24)?);
    let payload = u64::from(be16(ip, 4)?);
    // Payload length 0 is a jumbogram or offload: use the frame.
    let mut remaining = if payload == 0 {
        wire_len.saturating_sub(40)
    } else {
        payload
    };
    let mut next = ip[6];
    let mut at = 40usize;
    let mut fragment = false;
    // Bounded walk over extension headers.
    for _ in 0..16 {
        let len = match next {
            0 | 43 | 60 | 135 | 139 | 140 => (usize::from(*ip.get(at + 1).unwrap_or(&0)) + 1) * 8,
            51 => (usize::from(*ip.get(at + 1).unwrap_or(&0)) + 2) * 4,
            44 => {
                if let Some(off) = be16(ip, at + 2) {
                    fragment |= off & 0xfff8 != 0;
                }
                8
            }
            _ => break,
        };
        let Some(&following) = ip.get(at) else {
            return Some(IpPacket {
                src,
                dst,
                protocol: next,
                transport: Transport::Truncated { ports: None },
            });
        };
        next = following;
        at += len;
        remaining = remaining.saturating_sub(len as u64);
    }
    let transport = if fragment {
        Transport::Fragment
    } else {
        transport(next, ip.get(at..).unwrap_or(&[]), remaining)
    };
    Some(IpPacket {
        src,
        dst,
        protocol: next,
        transport,
    })
}

/// Decodes a transport header; `len` is the IP payload length as sent.
fn transport(protocol: u8, b: &[u8], len: u64) -> Transport {
    match protocol {
        IPPROTO_TCP | IPPROTO_UDP => {}
        _ => return Transport::Other,
    }
    let ports = be16(b, 0).zip(be16(b, 2));
    if protocol == IPPROTO_UDP {
        return match ports {
            Some((src_port, dst_port)) if b.len() >= 8 => Transport::Udp { src_port, dst_port },
            _ => Transport::Truncated { ports },
        };
    }
    let (Some((src_port, dst_port)), Some(seq), Some(ack), Some(off_flags), Some(window)) =
        (ports, be32(b, 4), be32(b, 8), be16(b, 12), be16(b, 14))
    else {
        return Transport::Truncated { ports };
    };
    if b.len() < 20 {
        return Transport::Truncated { ports };
    }
    let header_len = usize::from(off_flags >> 12) * 4;
    let window_scale = tcp_window_scale(b.get(20..header_len.max(20)).unwrap_or(&b[20..]));
    Transport::Tcp(TcpSegment {
        src_port,
        dst_port,
        seq,
        ack,
        flags: off_flags & 0x01ff,
        window,
        window_scale,
        payload_len: len
            .saturating_sub(header_len.max(20) as u64)
            .min(u64::from(u32::MAX)) as u32,
    })
}

/// Finds the window scale option (kind 3) in the captured options.
fn tcp_window_scale(opts: &[u8]) -> Option<u8> {
    let mut at = 0;
    while let Some(&kind) = opts.get(at) {
        match kind {
            0 => return None,
            1 => at += 1,
            _ => {
                let len = usize::from(*opts.get(at + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == 3 && len == 3 {
                    // RFC 7323: shifts above 14 are treated as 14.
                    return opts.get(at + 2).map(|&s| s.min(14));
                }
                at += len;
            }
        }
    }
    None
}
