//! Streaming reader for classic pcap and pcapng files.
//!
//! Captures come from students' instances and may be cut short or damaged, so
//! every length read from the file is checked before it is trusted: a bad file
//! gives an [`Error`] naming the byte offset of the record that is wrong, and
//! memory grows only with bytes actually present in the input.

use std::io::{self, Read};

/// The largest pcapng block or packet record accepted.
pub const MAX_RECORD_LEN: u64 = 256 * 1024 * 1024;

/// Decimal exponent of the default pcapng timestamp resolution (microseconds).
const DEFAULT_TSRESOL: u8 = 6;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BOM: u32 = 0x1A2B_3C4D;

/// A capture could not be read; `offset` is where the bad record starts.
#[derive(Debug, thiserror::Error)]
#[error("at offset {offset}: {kind}")]
pub struct Error {
    /// Byte offset in the input of the header, record or block at fault.
    pub offset: u64,
    /// What is wrong there.
    pub kind: ErrorKind,
}

/// The kinds of [`Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The underlying reader failed.
    #[error("read failed: {0}")]
    Io(io::Error),
    /// The input ended inside a structure.
    #[error("{what} truncated: {needed} bytes needed, {available} present")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Its length in bytes.
        needed: u64,
        /// How many bytes the input still had.
        available: u64,
    },
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng file (magic number {0:#010x})")]
    UnknownMagic(u32),
    /// A length field is larger than [`MAX_RECORD_LEN`].
    #[error("{what} length {len} is larger than the limit of {limit} bytes")]
    TooLong {
        /// The structure whose length is too large.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A field holds a value the format does not allow.
    #[error("{0}")]
    Malformed(String),
}

impl Error {
    fn new(offset: u64, kind: ErrorKind) -> Self {
        Error { offset, kind }
    }

    fn malformed(offset: u64, msg: impl Into<String>) -> Self {
        Error::new(offset, ErrorKind::Malformed(msg.into()))
    }
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// 1-based frame number, as Wireshark numbers frames.
    pub number: u64,
    /// Byte offset of the packet's record or block in the input.
    pub offset: u64,
    /// Capture time in nanoseconds since the Unix epoch (saturating).
    pub timestamp_ns: u64,
    /// Length of the packet on the wire, which may exceed `data.len()`.
    pub orig_len: u32,
    /// Link-layer header type (`LINKTYPE_*` value) of `data`.
    pub link_type: u32,
    /// The captured bytes, starting with the link-layer header.
    pub data: Vec<u8>,
}

impl Packet {
    /// Length on the wire, never less than the captured length.
    pub fn wire_len(&self) -> u64 {
        u64::from(self.orig_len).max(self.data.len() as u64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(s),
            Endian::Big => u16::from_be_bytes(s),
        })
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(s),
            Endian::Big => u32::from_be_bytes(s),
        })
    }

    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let s: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u64::from_le_bytes(s),
            Endian::Big => u64::from_be_bytes(s),
        })
    }
}

/// A `Read` that knows how far it has got.
struct Source<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Source<R> {
    /// Reads until `buf` is full or the input ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    // A misbehaving reader may claim more than it was given.
                    let k = k.min(buf.len() - n);
                    n += k;
                    self.offset += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::new(self.offset, ErrorKind::Io(e))),
            }
        }
        Ok(n)
    }

    /// Bytes of the structure that began at `start` read so far.
    ///
    /// `exact`, `vec` and `skip` read the rest of such a structure; when the
    /// input ends early, their [`ErrorKind::Truncated`] counts the whole of it,
    /// these bytes included, in both `needed` and `available`.
    fn consumed(&self, start: u64) -> u64 {
        self.offset.saturating_sub(start)
    }

    /// Fills `buf` with the next bytes of the structure that began at `start`.
    fn exact(&mut self, buf: &mut [u8], start: u64, what: &'static str) -> Result<(), Error> {
        let already = self.consumed(start);
        let n = self.fill(buf)?;
        if n < buf.len() {
            return Err(truncated(
                start,
                what,
                already + buf.len() as u64,
                already + n as u64,
            ));
        }
        Ok(())
    }

    /// Reads the next `len` bytes of the structure that began at `start`,
    /// growing the buffer only as data arrives.
    fn vec(&mut self, len: u64, start: u64, what: &'static str) -> Result<Vec<u8>, Error> {
        let already = self.consumed(start);
        let mut out = Vec::new();
        while (out.len() as u64) < len {
            let have = out.len();
            // At most 1 MiB beyond what the input has actually delivered.
            let step = (len - have as u64).min(1 << 20) as usize;
            out.resize(have + step, 0);
            let n = self.fill(&mut out[have..])?;
            out.truncate(have + n);
            if n < step {
                return Err(truncated(
                    start,
                    what,
                    already + len,
                    already + out.len() as u64,
                ));
            }
        }
        Ok(out)
    }

    /// Skips the next `len` bytes of the structure that began at `start`.
    fn skip(&mut self, len: u64, start: u64, what: &'static str) -> Result<(), Error> {
        let already = self.consumed(start);
        let copied = io::copy(&mut (&mut self.inner).take(len), &mut io::sink())
            .map_err(|e| Error::new(self.offset, ErrorKind::Io(e)))?;
        self.offset += copied;
        if copied < len {
            return Err(truncated(start, what, already + len, already + copied));
        }
        Ok(())
    }
}

fn truncated(start: u64, what: &'static str, needed: u64, available: u64) -> Error {
    Error::new(
        start,
        ErrorKind::Truncated {
            what,
            needed,
            available,
        },
    )
}

fn check_len(offset: u64, what: &'static str, len: u64) -> Result<(), Error> {
    if len > MAX_RECORD_LEN {
        return Err(Error::new(
            offset,
            ErrorKind::TooLong {
                what,
                len,
                limit: MAX_RECORD_LEN,
            },
        ));
    }
    Ok(())
}

/// Timestamp resolution and offset of one pcapng interface.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: u32,
    snap_len: u32,
    /// `if_tsresol`: high bit set means a power of two, else of ten.
    tsresol: u8,
    /// `if_tsoffset` in seconds.
    tsoffset: i64,
}

impl Interface {
    fn timestamp_ns(&self, ticks: u64) -> u64 {
        let ticks = u128::from(ticks);
        let exp = u32::from(self.tsresol & 0x7f);
        let ns = if self.tsresol & 0x80 != 0 {
            (ticks * 1_000_000_000) >> exp
        } else if exp <= 9 {
            ticks * 10u128.pow(9 - exp)
        } else {
            10u128.checked_pow(exp - 9).map_or(0, |d| ticks / d)
        };
        let ns = ns as i128 + i128::from(self.tsoffset) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }
}

enum State {
    Pcap {
        endian: Endian,
        nanos: bool,
        link_type: u32,
    },
    Pcapng {
        endian: Endian,
        interfaces: Vec<Interface>,
        /// Simple packet blocks carry no time; they get the last one seen.
        last_ts: u64,
    },
}

/// Streams the packets of a pcap or pcapng capture.
///
/// Iterating yields each packet in file order; after the first error the
/// iterator ends.
pub struct Reader<R> {
    src: Source<R>,
    state: State,
    number: u64,
    failed: bool,
}

impl<R: Read> Reader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(inner: R) -> Result<Self, Error> {
        let mut src = Source { inner, offset: 0 };
        let mut magic = [0u8; 4];
        src.exact(&mut magic, 0, "file header")?;
        let le = u32::from_le_bytes(magic);
        let (endian, nanos) = match le {
            0xa1b2_c3d4 => (Endian::Little, false),
            0xd4c3_b2a1 => (Endian::Big, false),
            0xa1b2_3c4d => (Endian::Little, true),
            0x4d3c_b2a1 => (Endian::Big, true),
            PCAPNG_SHB => {
                let mut reader = Reader {
                    src,
                    state: State::Pcapng {
                        endian: Endian::Little,
                        interfaces: Vec::new(),
                        last_ts: 0,
                    },
                    number: 0,
                    failed: false,
                };
                reader.section_header(0)?;
                return Ok(reader);
            }
            other => {
                return Err(Error::new(
                    0,
                    ErrorKind::UnknownMagic(u32::from_be_bytes(other.to_be_bytes())),
                ));
            }
        };
        let mut rest = [0u8; 20];
        src.exact(&mut rest, 0, "file header")?;
        let major = endian.u16(&rest, 0).unwrap_or(0);
        if major != 2 {
            return Err(Error::malformed(
                4,
                format!("unsupported pcap version {major}"),
            ));
        }
        let network = endian.u32(&rest, 16).unwrap_or(0);
        Ok(Reader {
            src,
            state: State::Pcap {
                endian,
                nanos,
                link_type: network & 0xffff,
            },
            number: 0,
            failed: false,
        })
    }

    /// Returns the next packet, or `None` at the clean end of the input.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, Error> {
        let packet = match self.state {
            State::Pcap {
                endian,
                nanos,
                link_type,
            } => self.pcap_record(endian, nanos, link_type)?,
            State::Pcapng { .. } => self.pcapng_packet()?,
        };
        Ok(packet.map(|mut p| {
            self.number += 1;
            p.number = self.number;
            p
        }))
    }

    fn pcap_record(
        &mut self,
        endian: Endian,
        nanos: bool,
        link_type: u32,
    ) -> Result<Option<Packet>, Error> {
        let start = self.src.offset;
        let mut hdr = [0u8; 16];
        let n = self.src.fill(&mut hdr)?;
        if n == 0 {
            return Ok(None);
        }
        if n < hdr.len() {
            return Err(truncated(start, "packet record header", 16, n as u64));
        }
        let field = |at| endian.u32(&hdr, at).unwrap_or(0);
        let (secs, frac, caplen, orig_len) = (field(0), field(4), field(8), field(12));
        check_len(start, "packet record", u64::from(caplen))?;
        if !nanos && frac >= 1_000_000 || nanos && frac >= 1_000_000_000 {
            return Err(Error::malformed(
                start,
                format!("packet record has a sub-second timestamp of {frac}"),
            ));
        }
        let data = self.src.vec(u64::from(caplen), start, "packet record")?;
        let frac_ns = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        Ok(Some(Packet {
            number: 0,
            offset: start,
            timestamp_ns: u64::from(secs) * 1_000_000_000 + frac_ns,
            orig_len,
            link_type,
            data,
        }))
    }

    /// Reads a section header block whose type field started at `start`.
    fn section_header(&mut self, start: u64) -> Result<(), Error> {
        let mut head = [0u8; 8];
        self.src.exact(&mut head, start, "section header block")?;
        let bom = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let endian = if bom == PCAPNG_BOM {
            Endian::Little
        } else if bom.swap_bytes() == PCAPNG_BOM {
            Endian::Big
        } else {
            return Err(Error::malformed(
                start,
                format!("section header has a bad byte-order magic {bom:#010x}"),
            ));
        };
        let len = u64::from(endian.u32(&head, 0).unwrap_or(0));
        check_len(start, "section header block", len)?;
        if len < 28 || !len.is_multiple_of(4) {
            return Err(Error::malformed(
                start,
                format!("section header block has invalid length {len}"),
            ));
        }
        let body = self.src.vec(len - 12, start, "section header block")?;
        let major = endian.u16(&body, 0).unwrap_or(0);
        if major != 1 {
            return Err(Error::malformed(
                start,
                format!("unsupported pcapng version {major}"),
            ));
        }
        check_trailer(endian, &body, len, start)?;
        self.state = State::Pcapng {
            endian,
            interfaces: Vec::new(),
            last_ts: 0,
        };
        Ok(())
    }

    fn pcapng_packet(&mut self) -> Result<Option<Packet>, Error> {
        loop {
            let start = self.src.offset;
            let mut head = [0u8; 8];
            let n = self.src.fill(&mut head[..4])?;
            if n == 0 {
                return Ok(None);
            }
            if n < 4 {
                return Err(truncated(start, "block header", 8, n as u64));
            }
            let State::Pcapng { endian, .. } = self.state else {
                return Ok(None);
            };
            let block_type = endian.u32(&head, 0).unwrap_or(0);
            if block_type == PCAPNG_SHB {
                self.section_header(start)?;
                continue;
            }
            let got = self.src.fill(&mut head[4..])?;
            if got < 4 {
                return Err(truncated(start, "block header", 8, 4 + got as u64));
            }
            let len = u64::from(endian.u32(&head, 4).unwrap_or(0));
            check_len(start, "block", len)?;
            if len < 12 || !len.is_multiple_of(4) {
                return Err(Error::malformed(
                    start,
                    format!("block of type {block_type:#x} has invalid length {len}"),
                ));
            }
            if !matches!(block_type, 1..=3 | 6) {
                self.src.skip(len - 8, start, "block")?;
                continue;
            }
            let body = self.src.vec(len - 8, start, "block")?;
            check_trailer(endian, &body, len, start)?;
            let body = &body[..body.len() - 4];
            if let Some(p) = self.pcapng_block(block_type, body, start)? {
                return Ok(Some(p));
            }
        }
    }

    fn pcapng_block(
        &mut self,
        block_type: u32,
        body: &[u8],
        start: u64,
    ) -> Result<Option<Packet>, Error> {
        let State::Pcapng {
            endian,
            interfaces,
            last_ts,
        } = &mut self.state
        else {
            return Ok(None);
        };
        let e = *endian;
        let short =
            |what: &str| Error::malformed(start, format!("{what} is too short for its fields"));
        match block_type {
            1 => {
                let link_type = e
                    .u16(body, 0)
                    .ok_or_else(|| short("interface description block"))?;
                let snap_len = e
                    .u32(body, 4)
                    .ok_or_else(|| short("interface description block"))?;
                let mut iface = Interface {
                    link_type: u32::from(link_type),
                    snap_len,
                    tsresol: DEFAULT_TSRESOL,
                    tsoffset: 0,
                };
                for (code, value) in options(e, body, 8, start)? {
                    match (code, value.len()) {
                        (9, 1..) => iface.tsresol = value[0],
                        (14, 8) => iface.tsoffset = e.u64(value, 0).unwrap_or(0) as i64,
                        _ => {}
                    }
                }
                interfaces.push(iface);
                Ok(None)
            }
            2 | 6 => {
                let (iface_id, ts_at) = if block_type == 6 {
                    (e.u32(body, 0), 4)
                } else {
                    (e.u16(body, 0).map(u32::from), 4)
                };
                let what = if block_type == 6 {
                    "enhanced packet block"
                } else {
                    "packet block"
                };
                let fields = (
                    iface_id,
                    e.u32(body, ts_at),
                    e.u32(body, ts_at + 4),
                    e.u32(body, 12),
                    e.u32(body, 16),
                );
                let (Some(id), Some(hi), Some(lo), Some(caplen), Some(orig_len)) = fields else {
                    return Err(short(what));
                };
                let iface = lookup(interfaces, id, start)?;
                let data = body
                    .get(20..20usize.saturating_add(caplen as usize))
                    .ok_or_else(|| {
                        Error::malformed(
                            start,
                            format!("{what} captured length {caplen} exceeds the block"),
                        )
                    })?;
                let ts = iface.timestamp_ns((u64::from(hi) << 32) | u64::from(lo));
                *last_ts = ts;
                Ok(Some(Packet {
                    number: 0,
                    offset: start,
                    timestamp_ns: ts,
                    orig_len,
                    link_type: iface.link_type,
                    data: data.to_vec(),
                }))
            }
            3 => {
                let orig_len = e.u32(body, 0).ok_or_else(|| short("simple packet block"))?;
                let iface = lookup(interfaces, 0, start)?;
                let mut caplen = (body.len() - 4).min(orig_len as usize);
                if iface.snap_len != 0 {
                    caplen = caplen.min(iface.snap_len as usize);
                }
                Ok(Some(Packet {
                    number: 0,
                    offset: start,
                    timestamp_ns: *last_ts,
                    orig_len,
                    link_type: iface.link_type,
                    data: body[4..4 + caplen].to_vec(),
                }))
            }
            _ => Ok(None),
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Packet, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_packet() {
            Ok(p) => p.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn check_trailer(e: Endian, body: &[u8], len: u64, start: u64) -> Result<(), Error> {
    let trailer = body.len().checked_sub(4).and_then(|at| e.u32(body, at));
    if trailer.map(u64::from) != Some(len) {
        return Err(Error::malformed(
            start,
            format!(
                "block length {len} does not match its trailing copy {}",
                trailer.unwrap_or(0)
            ),
        ));
    }
    Ok(())
}

fn lookup(interfaces: &[Interface], id: u32, start: u64) -> Result<Interface, Error> {
    interfaces.get(id as usize).copied().ok_or_else(|| {
        Error::malformed(
            start,
            format!(
                "packet names interface {id}, but the section describes {}",
                interfaces.len()
            ),
        )
    })
}

/// Splits a pcapng option list into (code, value) pairs.
fn options(e: Endian, body: &[u8], mut at: usize, start: u64) -> Result<Vec<(u16, &[u8])>, Error> {
    let mut out = Vec::new();
    while at < body.len() {
        let (Some(code), Some(len)) = (e.u16(body, at), e.u16(body, at + 2)) else {
            return Err(Error::malformed(
                start,
                "option header runs past the end of its block",
            ));
        };
        if code == 0 {
            break;
        }
        let value = body.get(at + 4..at + 4 + usize::from(len)).ok_or_else(|| {
            Error::malformed(
                start,
                format!("option {code} of length {len} runs past the end of its block"),
            )
        })?;
        out.push((code, value));
        at += 4 + usize::from(len).div_ceil(4) * 4;
    }
    Ok(out)
}
