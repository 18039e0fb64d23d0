//! The framed family of the Terraform sandbox lab (port 1234): a TCP text server and
//! client, a UDP server and client, and the zero-window demo (hesitant server, eager
//! client).
//!
//! Every message on the wire is the Python originals' frame, and the bytes must match
//! exactly so either side can be a Python program:
//!
//! ```text
//! u16 payload_length (big-endian) | u16 message_type (big-endian) | payload (UTF-8)
//! ```
//!
//! `payload_length` counts the payload only; `message_type` is TEXT (1) or JSON (2). Over
//! UDP every datagram is NUL-padded to [`DATAGRAM_LEN`] bytes and a TEXT payload is a
//! JSON-encoded string, encoded the way Python's `json.dumps` does (see [`json_string`]).
//!
//! This file holds the codec and what the programs share; each pair of programs lives in
//! its own submodule.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt};

mod tcp;
mod udp;
mod window;

pub use tcp::{TcpClientArgs, TcpServerArgs, run_tcp_client, run_tcp_server};
pub use udp::{UdpClientArgs, UdpServerArgs, run_udp_client, run_udp_server};
pub use window::{EagerClientArgs, HesitantServerArgs, run_eager_client, run_hesitant_server};

/// Size of the frame header: payload length and message type, two big-endian u16.
pub const HEADER_LEN: usize = 4;
/// Every UDP datagram of the lab is NUL-padded to exactly this many bytes.
pub const DATAGRAM_LEN: usize = 4096;

/// The message types of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Type 1: plain UTF-8 text (over UDP, a JSON-encoded string).
    Text,
    /// Type 2: a JSON document (the eager client's messages).
    Json,
}

impl Kind {
    /// The header's `message_type` value.
    pub fn code(self) -> u16 {
        match self {
            Kind::Text => 1,
            Kind::Json => 2,
        }
    }

    fn from_code(code: u16) -> Option<Kind> {
        match code {
            1 => Some(Kind::Text),
            2 => Some(Kind::Json),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Text => "TEXT",
            Kind::Json => "JSON",
        })
    }
}

/// Why bytes are not a valid frame. The texts are what a server logs before closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The header names a type other than TEXT or JSON.
    UnknownType(u16),
    /// The payload is not UTF-8.
    InvalidUtf8,
    /// The payload does not fit the 16-bit length field.
    TooLong(usize),
    /// Fewer bytes than the header (or its length field) promises.
    Short {
        /// Bytes the frame needs.
        expected: usize,
        /// Bytes there are.
        got: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownType(t) => write!(f, "unknown message type {t}"),
            FrameError::InvalidUtf8 => f.write_str("payload is not valid UTF-8"),
            FrameError::TooLong(n) => write!(f, "payload of {n} bytes exceeds 65535"),
            FrameError::Short { expected, got } => {
                write!(f, "frame needs {expected} bytes, only {got} present")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes one frame: header, then payload.
pub fn encode(kind: Kind, payload: &str) -> Result<Vec<u8>, FrameError> {
    let len = u16::try_from(payload.len()).map_err(|_| FrameError::TooLong(payload.len()))?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&kind.code().to_be_bytes());
    frame.extend_from_slice(payload.as_bytes());
    Ok(frame)
}

/// Splits a header into payload length and type.
pub fn decode_header(header: [u8; HEADER_LEN]) -> Result<(usize, Kind), FrameError> {
    let len = u16::from_be_bytes([header[0], header[1]]);
    let code = u16::from_be_bytes([header[2], header[3]]);
    let kind = Kind::from_code(code).ok_or(FrameError::UnknownType(code))?;
    Ok((usize::from(len), kind))
}

/// Decodes the frame at the start of `bytes`; bytes after it (UDP padding) are ignored.
pub fn decode(bytes: &[u8]) -> Result<(Kind, String), FrameError> {
    let header: [u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Short {
            expected: HEADER_LEN,
            got: bytes.len(),
        })?;
    let (len, kind) = decode_header(header)?;
    let payload = bytes
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(FrameError::Short {
            expected: HEADER_LEN + len,
            got: bytes.len(),
        })?;
    let text = std::str::from_utf8(payload).map_err(|_| FrameError::InvalidUtf8)?;
    Ok((kind, text.to_owned()))
}

/// Encodes one UDP datagram: a frame NUL-padded to [`DATAGRAM_LEN`] bytes.
pub fn encode_datagram(kind: Kind, payload: &str) -> Result<Vec<u8>, FrameError> {
    let mut datagram = encode(kind, payload)?;
    if datagram.len() > DATAGRAM_LEN {
        return Err(FrameError::TooLong(payload.len()));
    }
    datagram.resize(DATAGRAM_LEN, 0);
    Ok(datagram)
}

/// `s` as Python's `json.dumps(s)` writes it: ASCII only, with `\uXXXX` escapes
/// (surrogate pairs beyond the BMP) for everything outside space..`~`.
///
/// serde_json keeps non-ASCII characters as they are, which a Python peer decodes
/// equally well but which is not the same bytes; the lab's payloads must be.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// How reading a frame from a stream can end other than with a frame.
#[derive(Debug)]
pub enum ReadError {
    /// The bytes are not a valid frame.
    Frame(FrameError),
    /// The peer closed inside a frame, after `got` of `expected` bytes of its `part`.
    MidFrame {
        /// "header" or "payload".
        part: &'static str,
        /// Bytes the part needs.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// Nothing arrived within the read timeout.
    Timeout(Duration),
    /// The socket failed (reset, ...).
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Frame(e) => e.fmt(f),
            ReadError::MidFrame {
                part,
                expected,
                got,
            } => write!(
                f,
                "peer closed mid-frame ({got} of {expected} {part} bytes arrived)"
            ),
            ReadError::Timeout(t) => write!(f, "read timed out after {}s", t.as_secs_f64()),
            ReadError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads one frame; `Ok(None)` when the peer closed cleanly between frames.
///
/// The timeout bounds the whole frame, so a peer that stops mid-frame (or never sends)
/// cannot hold the connection forever.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
) -> Result<Option<(Kind, String)>, ReadError> {
    match tokio::time::timeout(timeout, read_frame_inner(reader)).await {
        Ok(result) => result,
        Err(_) => Err(ReadError::Timeout(timeout)),
    }
}

async fn read_frame_inner<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<(Kind, String)>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    let got = fill(reader, &mut header).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(ReadError::MidFrame {
            part: "header",
            expected: HEADER_LEN,
            got,
        });
    }
    let (len, kind) = decode_header(header).map_err(ReadError::Frame)?;
    let mut payload = vec![0u8; len];
    let got = fill(reader, &mut payload).await?;
    if got < len {
        return Err(ReadError::MidFrame {
            part: "payload",
            expected: len,
            got,
        });
    }
    let text = String::from_utf8(payload).map_err(|_| ReadError::Frame(FrameError::InvalidUtf8))?;
    Ok(Some((kind, text)))
}

/// Reads until `buf` is full or the peer closes; returns how many bytes arrived.
async fn fill<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<usize, ReadError> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(got)
}

/// Seconds from the command line as a duration; rejects negative and non-finite values.
fn seconds(value: f64, option: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("{option} must be a non-negative number of seconds"))
}

/// The lab's random pause between messages, uniformly in `[min, max]` seconds.
fn pause(min: f64, max: f64) -> anyhow::Result<Duration> {
    let (min, max) = (seconds(min, "--pause-min")?, seconds(max, "--pause-max")?);
    anyhow::ensure!(min <= max, "--pause-min must not exceed --pause-max");
    if min == max {
        return Ok(min);
    }
    Ok(Duration::from_secs_f64(rand::random_range(
        min.as_secs_f64()..=max.as_secs_f64(),
    )))
}

/// Resolves `host` (a DNS name or an address) to every address it has.
async fn resolve(host: &str, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((crate::common::host_name(host), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    anyhow::ensure!(!addrs.is_empty(), "{host} has no addresses");
    Ok(addrs)
}

/// The client name: the one given, or a fresh UUID4 as in the Python clients.
fn client_name(name: Option<String>) -> String {
    name.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// What the TCP and UDP clients share: where to send, how many messages, as whom,
/// and how long to pause between them (the lab's 5-25 s by default).
#[derive(Debug, clap::Args)]
pub struct Session {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 1234)]
    port: u16,
    /// Number of messages to send (numbered from 1).
    #[arg(long, default_value_t = 10)]
    count: u32,
    /// Client name in the messages (default: a random UUID4).
    #[arg(long)]
    name: Option<String>,
    /// Shortest random pause between messages, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pause_min: f64,
    /// Longest random pause between messages, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 25.0)]
    pause_max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_frame_bytes() {
        let frame = encode(Kind::Text, "hello").expect("encode");
        assert_eq!(frame, b"\x00\x05\x00\x01hello");
        assert_eq!(decode(&frame), Ok((Kind::Text, "hello".to_owned())));
    }

    #[test]
    fn json_frame_header_and_utf8_length_in_bytes() {
        let frame = encode(Kind::Json, "{\"é\":1}").expect("encode");
        assert_eq!(&frame[..4], &[0, 8, 0, 2]); // é is two bytes
        assert_eq!(decode(&frame), Ok((Kind::Json, "{\"é\":1}".to_owned())));
    }

    #[test]
    fn length_limit() {
        let max = "x".repeat(65535);
        assert_eq!(encode(Kind::Text, &max).expect("fits").len(), 65539);
        let over = "x".repeat(65536);
        assert_eq!(encode(Kind::Text, &over), Err(FrameError::TooLong(65536)));
    }

    #[test]
    fn malformed_frames() {
        assert_eq!(
            decode(b"\x00\x01\x00\x07a"),
            Err(FrameError::UnknownType(7))
        );
        assert_eq!(
            decode(b"\x00\x02\x00\x01\xff\xfe"),
            Err(FrameError::InvalidUtf8)
        );
        assert_eq!(
            decode(b"\x00\x0a\x00\x01abc"),
            Err(FrameError::Short {
                expected: 14,
                got: 7
            })
        );
        assert_eq!(
            decode(b"\x00"),
            Err(FrameError::Short {
                expected: 4,
                got: 1
            })
        );
    }

    #[test]
    fn datagram_is_padded_and_decodes() {
        let d = encode_datagram(Kind::Text, "\"hi\"").expect("encode");
        assert_eq!(d.len(), DATAGRAM_LEN);
        assert_eq!(&d[..8], b"\x00\x04\x00\x01\"hi\"");
        assert!(d[8..].iter().all(|&b| b == 0));
        assert_eq!(decode(&d), Ok((Kind::Text, "\"hi\"".to_owned())));
        let too_big = "x".repeat(DATAGRAM_LEN - HEADER_LEN + 1);
        assert!(encode_datagram(Kind::Text, &too_big).is_err());
        let fits = "x".repeat(DATAGRAM_LEN - HEADER_LEN);
        assert_eq!(
            encode_datagram(Kind::Text, &fits).expect("fits").len(),
            DATAGRAM_LEN
        );
    }

    #[test]
    fn json_string_matches_python_json_dumps() {
        // Expected values are Python 3's json.dumps output.
        assert_eq!(json_string("Message #1"), "\"Message #1\"");
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            json_string("\n\r\t\u{8}\u{c}\u{1}"),
            r#""\n\r\t\b\f\u0001""#
        );
        assert_eq!(json_string("\u{7f}é"), r#""\u007f\u00e9""#);
        assert_eq!(json_string("😀"), r#""\ud83d\ude00""#);
        // And serde_json reads it back to the same string.
        let s = "Zoë 😀 \"q\" \u{1}";
        let back: String = serde_json::from_str(&json_string(s)).expect("valid JSON");
        assert_eq!(back, s);
    }

    #[tokio::test]
    async fn read_frame_outcomes() {
        let t = Duration::from_secs(5);
        let mut ok: &[u8] = b"\x00\x02\x00\x01hi\x00\x01\x00\x02{";
        assert_eq!(
            read_frame(&mut ok, t).await.expect("frame"),
            Some((Kind::Text, "hi".to_owned()))
        );
        assert_eq!(
            read_frame(&mut ok, t).await.expect("frame"),
            Some((Kind::Json, "{".to_owned()))
        );
        assert!(read_frame(&mut ok, t).await.expect("eof").is_none());

        let mut short: &[u8] = b"\x00\x0a\x00\x01abc";
        let err = read_frame(&mut short, t).await.expect_err("short");
        assert!(matches!(
            err,
            ReadError::MidFrame {
                part: "payload",
                expected: 10,
                got: 3
            }
        ));
        let mut half_header: &[u8] = b"\x00";
        let err = read_frame(&mut half_header, t).await.expect_err("short");
        assert_eq!(
            err.to_string(),
            "peer closed mid-frame (1 of 4 header bytes arrived)"
        );
    }
}
