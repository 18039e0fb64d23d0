//! `intro-server`: greets each connection, reads one length-prefixed message, logs it,
//! closes.
//!
//! One task per connection, so a slow or silent client never delays another; every read
//! has an idle timeout, so a silent client cannot hold its task forever. Anything
//! malformed closes that one connection with a logged reason. The message is validated
//! and summarised as it streams in, so a long message costs no more memory than a short
//! one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{DEFAULT_PORT, LEN_DIGITS, parse_len};
use crate::common::{self, Listen};

/// The default intro line (without its `\n`). The lab only requires one line; this one
/// also tells a human with `nc` what to send.
const DEFAULT_INTRO: &str =
    "Hello, I am the intro server. Send the message length as 8 hex digits, then the message.";

/// Options of `intro-server`.
///
/// The Python original listens with backlog 5, which drops connections once the lab's
/// load test passes a few dozen clients; labnet defaults higher so the server measures
/// its own handling, not a tiny accept queue. `--backlog 5` reproduces the lab.
#[derive(Debug, Args)]
#[command(
    after_help = "The lab's Python server listens with backlog 5; labnet's default is \
higher (1024) so a load test measures the server, not a tiny accept queue: it holds the \
lab's 1000 clients. Use --backlog 5 to reproduce the lab."
)]
pub struct IntroServerArgs {
    #[command(flatten)]
    listen: Listen,
    /// Port to listen on (0: any free port; the first line says which).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// The intro line sent on accept (a `\n` is appended).
    #[arg(long, default_value = DEFAULT_INTRO)]
    intro: String,
    /// Read size for the message, in bytes (the Python original reads 100 at a time).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    chunk_size: u32,
    /// Seconds a client may stay silent (per read; also the limit for sending the intro)
    /// before its connection is closed.
    #[arg(long, default_value_t = 30.0)]
    read_timeout: f64,
    /// Seconds a whole exchange may take, however the client paces its bytes (a client
    /// trickling one byte per read timeout must not hold its task forever).
    #[arg(long, default_value_t = 300.0)]
    exchange_timeout: f64,
    /// Log only problems and the final summary, not every connection and message (for
    /// load tests, where a thousand log lines would be noise).
    #[arg(long, short)]
    quiet: bool,
}

/// What every connection task needs to know.
struct Config {
    intro: Vec<u8>,
    chunk_size: usize,
    read_timeout: Duration,
    exchange_timeout: Duration,
    quiet: bool,
}

/// Counted for the summary line at shutdown.
#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    messages: AtomicU64,
    dropped: AtomicU64,
}

/// Runs `intro-server` until SIGTERM or Ctrl-C.
pub async fn run_intro_server(args: IntroServerArgs) -> anyhow::Result<()> {
    if args.intro.contains(['\n', '\r']) {
        anyhow::bail!("--intro must be a single line");
    }
    let read_timeout = Duration::try_from_secs_f64(args.read_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--read-timeout must be a positive number of seconds")?;
    let exchange_timeout = Duration::try_from_secs_f64(args.exchange_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--exchange-timeout must be a positive number of seconds")?;
    let listener = args
        .listen
        .tcp(args.port)
        .with_context(|| format!("cannot listen on {}", args.listen.addr(args.port)))?;
    let local = listener.local_addr().context("listening address")?;

    let mut stop = std::pin::pin!(common::shutdown());
    common::log(format_args!("listening on {local}"));

    let mut intro = args.intro.into_bytes();
    intro.push(b'\n');
    let config = Arc::new(Config {
        intro,
        chunk_size: args.chunk_size as usize,
        read_timeout,
        exchange_timeout,
        quiet: args.quiet,
    });
    let stats = Arc::new(Stats::default());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve(stream, peer, config.clone(), stats.clone()));
                }
                Err(e) => crate::common::accept_failed(e).await,
            },
        }
    }
    common::log(format_args!(
        "shutting down: {} connections, {} messages, {} dropped",
        stats.connections.load(Ordering::Relaxed),
        stats.messages.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
    ));
    Ok(())
}

/// One connection, start to close, with its log lines.
async fn serve(mut stream: TcpStream, peer: SocketAddr, config: Arc<Config>, stats: Arc<Stats>) {
    stats.connections.fetch_add(1, Ordering::Relaxed);
    if !config.quiet {
        common::log(format_args!("{peer} connected"));
    }
    let outcome = match timeout(config.exchange_timeout, exchange(&mut stream, &config)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "the exchange took longer than {:?}",
            config.exchange_timeout
        )),
    };
    match outcome {
        Ok(summary) => {
            stats.messages.fetch_add(1, Ordering::Relaxed);
            if !config.quiet {
                common::log(format_args!("{peer} message {summary}"));
            }
        }
        Err(reason) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            common::log(format_args!("{peer} dropped: {reason}"));
        }
    }
    // Dropping the stream closes it: that close is the client's "done".
}

/// Intro, length, message. Returns the message summary, or why the connection is dropped.
async fn exchange(stream: &mut TcpStream, config: &Config) -> Result<Summary, String> {
    // One write, so a client reading the intro with a single recv() gets it whole.
    match timeout(config.read_timeout, stream.write_all(&config.intro)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("sending the intro line: {e}")),
        Err(_) => return Err("timed out sending the intro line".into()),
    }

    let mut digits = [0u8; LEN_DIGITS];
    let mut got = 0;
    while got < LEN_DIGITS {
        let n = read_some(stream, &mut digits[got..], config, "the length prefix").await?;
        if n == 0 {
            return Err(format!("closed after {got} of {LEN_DIGITS} length digits"));
        }
        got += n;
    }
    let len = u64::from(parse_len(&digits)?);

    let mut summary = Summary::new(len);
    let mut buf = vec![0u8; config.chunk_size];
    while summary.received < len {
        // Never read past the message: whatever follows is not ours to consume.
        let want =
            usize::try_from(len - summary.received).map_or(buf.len(), |left| left.min(buf.len()));
        let n = read_some(stream, &mut buf[..want], config, "the message").await?;
        if n == 0 {
            return Err(format!(
                "closed after {} of {len} message bytes",
                summary.received
            ));
        }
        summary
            .feed(&buf[..n])
            .map_err(|at| format!("invalid UTF-8 at byte {at}"))?;
    }
    summary
        .finish()
        .map_err(|at| format!("invalid UTF-8 at byte {at}"))?;
    Ok(summary)
}

/// One read with the idle timeout; errors become drop reasons naming what was awaited.
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    config: &Config,
    what: &str,
) -> Result<usize, String> {
    match timeout(config.read_timeout, stream.read(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(format!("reading {what}: {e}")),
        Err(_) => Err(format!(
            "timed out after {:?} waiting for {what}",
            config.read_timeout
        )),
    }
}

/// How much of a message the log line shows: the start and the end (the lab's messages
/// end with the client's number), each about this many bytes.
const SHOW: usize = 48;

/// A message seen as it streams in: its length, start and end, and UTF-8 validity
/// checked across chunk boundaries, without keeping the whole message.
struct Summary {
    len: u64,
    received: u64,
    head: String,
    tail: String,
    /// The start of a UTF-8 sequence cut by a chunk boundary.
    pending: Vec<u8>,
}

impl Summary {
    fn new(len: u64) -> Self {
        Summary {
            len,
            received: 0,
            head: String::new(),
            tail: String::new(),
            pending: Vec::new(),
        }
    }

    /// Takes the next chunk; on invalid UTF-8 returns the offending byte's offset.
    fn feed(&mut self, chunk: &[u8]) -> Result<(), u64> {
        let start = self.received - self.pending.len() as u64;
        self.received += chunk.len() as u64;
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(chunk);
        let valid = match std::str::from_utf8(&data) {
            Ok(_) => data.len(),
            Err(e) if e.error_len().is_some() => return Err(start + e.valid_up_to() as u64),
            // An incomplete sequence at the end: the next chunk may complete it.
            Err(e) => e.valid_up_to(),
        };
        let text = std::str::from_utf8(&data[..valid]).map_err(|_| start)?;
        self.keep(text);
        self.pending = data[valid..].to_vec();
        Ok(())
    }

    /// At the end of the message: a sequence still incomplete is invalid.
    fn finish(&self) -> Result<(), u64> {
        match self.pending.len() {
            0 => Ok(()),
            n => Err(self.received - n as u64),
        }
    }

    fn keep(&mut self, text: &str) {
        if self.head.len() < 2 * SHOW {
            let room = floor_boundary(text, 2 * SHOW - self.head.len());
            self.head.push_str(&text[..room]);
        }
        self.tail.push_str(text);
        if self.tail.len() > 4 * SHOW {
            let cut = ceil_boundary(&self.tail, self.tail.len() - SHOW);
            self.tail.drain(..cut);
        }
    }
}

impl std::fmt::Display for Summary {
    /// `<len> bytes: "<start>" … "<end>"`, or the whole message if it is short; escaped
    /// (`{:?}`) so a message with newlines stays one log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.len;
        if self.head.len() as u64 == len {
            return write!(f, "{len} bytes: {:?}", self.head);
        }
        let head = &self.head[..floor_boundary(&self.head, SHOW)];
        let tail = &self.tail[ceil_boundary(&self.tail, self.tail.len().saturating_sub(SHOW))..];
        write!(f, "{len} bytes: {head:?} … {tail:?}")
    }
}

/// The largest char boundary of `s` at or below `at`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary of `s` at or above `at`.
fn ceil_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summarise(msg: &[u8], chunk: usize) -> Result<String, u64> {
        let mut s = Summary::new(msg.len() as u64);
        for c in msg.chunks(chunk) {
            s.feed(c)?;
        }
        s.finish()?;
        Ok(s.to_string())
    }

    #[test]
    fn short_message_is_logged_whole_and_escaped() {
        assert_eq!(
            summarise(b"hi\nthere", 3).unwrap(),
            r#"8 bytes: "hi\nthere""#
        );
        assert_eq!(summarise(b"", 3).unwrap(), r#"0 bytes: """#);
    }

    #[test]
    fn long_message_is_logged_as_start_and_end() {
        let msg = super::super::lab_message(42);
        let line = summarise(msg.as_bytes(), 100).unwrap();
        assert!(
            line.starts_with("2725 bytes: \"This is a very long message"),
            "{line}"
        );
        assert!(line.ends_with("AND I AM CLIENT 00000042\""), "{line}");
        assert!(line.len() < 160, "{line}");
    }

    #[test]
    fn utf8_split_across_chunks_is_accepted() {
        let msg = "héllo wörld ✓ 🦀".repeat(20);
        for chunk in 1..8 {
            let line = summarise(msg.as_bytes(), chunk).unwrap();
            assert!(line.contains("🦀"), "{line}");
        }
    }

    #[test]
    fn invalid_utf8_reports_its_offset() {
        assert_eq!(summarise(b"abc\xffdef", 2), Err(3));
        // Truncated sequence at the very end.
        assert_eq!(summarise(b"abc\xe2\x9c", 2), Err(3));
        // Bad continuation after a chunk boundary.
        assert_eq!(summarise(b"ab\xe2\x9cz", 3), Err(2));
    }
}
