//! The console lab (section 2 of LAB-PROTOCOLS.md): the alphanumeric check and the RTT
//! exercise.
//!
//! Students first run an alphanumeric-check server and client, then replace the server by
//! an echo server and time 500 round trips of `42` over one connection. These programs
//! speak the Python originals' bytes exactly, so either side can be a Python program:
//!
//! - `alnum-server` reads ONE message (one read of up to 1024 bytes, as Python's
//!   `recv(1024)`), answers exactly `Alphanumeric` or `Not alphanumeric.` and closes the
//!   connection, as the Python server's `connectionSocket.close()` does.
//!   "Alphanumeric" is Python 3's `str.isalnum`, see [`is_alnum`].
//! - `alnum-client` sends one line without its newline (Python's `input()`), then
//!   prints the answer.
//! - `echo-server` echoes whatever arrives and keeps the connection open until the
//!   client closes it.
//! - `rtt` times round trips of `42` over one connection and reports the average as the
//!   lab does, plus min, median, p99 and max.
//!
//! Invalid UTF-8 sent to `alnum-server` closes that connection without an answer and
//! logs why. The Python server's `.decode()` raises there, so its client also gets no
//! answer; inventing a verdict about bytes that are not text would hide the client's
//! encoding bug instead of showing it.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use unicode_general_category::{GeneralCategory, get_general_category};

use crate::common::{Listen, log, parse_seconds};

/// The two answers of the alphanumeric check, byte for byte as the Python server sends them.
const YES: &str = "Alphanumeric";
const NO: &str = "Not alphanumeric.";

/// The prompt of the Python client's `input()`.
const PROMPT: &str = "Enter a string to test if it is alphanumeric: ";

/// What the RTT exercise sends and expects back.
const PING: &[u8] = b"42";

/// Largest message the alphanumeric server reads (Python's `recv(1024)`).
const MAX_MESSAGE: usize = 1024;

/// Python 3's `str.isalnum` as Python 3.12 on the instances answers it, with Unicode
/// 15.0.0: non-empty, and every character's general category is a letter (Lu, Ll, Lt,
/// Lm, Lo) or a number (Nd, Nl, No).
///
/// Python also counts any character with a numeric value (`isnumeric()`); in Unicode
/// 15.0.0 every such character is a letter or a number already, so the categories
/// decide. The tables are pinned to 15.0.0: a newer Unicode would call characters
/// alphanumeric that the students' Python calls unassigned (U+2EBF0, from 15.1).
///
/// Not `char::is_alphanumeric`: Rust's accepts marks and symbols with the Alphabetic
/// property (U+0345 COMBINING GREEK YPOGEGRAMMENI, U+1F130 SQUARED LATIN CAPITAL LETTER A),
/// which Python rejects.
pub fn is_alnum(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| {
            use GeneralCategory::*;
            matches!(
                get_general_category(c),
                UppercaseLetter
                    | LowercaseLetter
                    | TitlecaseLetter
                    | ModifierLetter
                    | OtherLetter
                    | DecimalNumber
                    | LetterNumber
                    | OtherNumber
            )
        })
}

/// The server's answer to `text`.
fn verdict(text: &str) -> &'static str {
    if is_alnum(text) { YES } else { NO }
}

/// Options of `alnum-server`.
#[derive(Debug, Args)]
pub struct AlnumServerArgs {
    #[command(flatten)]
    pub listen: Listen,
    /// Port to listen on (0: any free port, printed on the first line).
    #[arg(long, default_value_t = 12000)]
    pub port: u16,
    /// Seconds to wait for a client's message before closing its connection.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = parse_seconds)]
    pub read_timeout: f64,
}

/// Runs `alnum-server`: one message per connection, one answer, then close.
pub async fn run_alnum_server(args: AlnumServerArgs) -> anyhow::Result<()> {
    let wait = Duration::from_secs_f64(args.read_timeout);
    serve(&args.listen, args.port, move |stream, id| {
        alnum_connection(stream, id, wait)
    })
    .await
}

/// Options of `alnum-client`.
#[derive(Debug, Args)]
pub struct AlnumClientArgs {
    /// Server name or address (DNS names such as `server.<zone>` work).
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// Server port.
    #[arg(long, default_value_t = 12000)]
    pub port: u16,
    /// Text to check; without it, prompt and read one line from stdin.
    #[arg(long)]
    pub text: Option<String>,
    /// Seconds to wait for the connection and for the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub timeout: f64,
}

/// Runs `alnum-client`: prompts (unless `--text`), sends the line, prints the answer.
pub async fn run_alnum_client(args: AlnumClientArgs) -> anyhow::Result<()> {
    let wait = Duration::from_secs_f64(args.timeout);
    let text = match args.text {
        Some(text) => text,
        None => prompt_line().await?,
    };
    let mut stream = connect(&args.host, args.port, wait).await?;
    timeout(wait, stream.write_all(text.as_bytes()))
        .await
        .context("timed out sending")?
        .context("sending")?;
    // Half-close after the message: an empty line then still gets its answer (the server
    // sees end-of-file, an empty message, `Not alphanumeric.`), where the Python client
    // would wait forever. Against either server it changes nothing else.
    stream
        .shutdown()
        .await
        .context("closing the sending side")?;
    let answer = read_answer(&mut stream, wait).await?;
    if answer.is_empty() {
        bail!("the server closed the connection without an answer");
    }
    println!("{}", String::from_utf8_lossy(&answer));
    Ok(())
}

/// Options of `echo-server`.
#[derive(Debug, Args)]
pub struct EchoServerArgs {
    #[command(flatten)]
    pub listen: Listen,
    /// Port to listen on (0: any free port, printed on the first line).
    #[arg(long, default_value_t = 12001)]
    pub port: u16,
    /// Seconds a connection may stay silent before the server closes it.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = parse_seconds)]
    pub idle_timeout: f64,
}

/// Runs `echo-server`: echoes every read back, keeping the connection open.
pub async fn run_echo_server(args: EchoServerArgs) -> anyhow::Result<()> {
    let idle = Duration::from_secs_f64(args.idle_timeout);
    serve(&args.listen, args.port, move |stream, id| {
        echo_connection(stream, id, idle)
    })
    .await
}

/// Options of `rtt`.
#[derive(Debug, Args)]
pub struct RttArgs {
    /// Echo server name or address.
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// Echo server port.
    #[arg(long, default_value_t = 12001)]
    pub port: u16,
    /// Round trips, all over one connection.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Also write every sample to FILE as CSV (`seq,rtt_ms`, one line per round trip).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Seconds to wait for the connection and for each echo.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub timeout: f64,
}

/// Runs `rtt`: `--count` round trips of `42` over one connection, then the statistics.
pub async fn run_rtt(args: RttArgs) -> anyhow::Result<()> {
    let wait = Duration::from_secs_f64(args.timeout);
    let stream = connect(&args.host, args.port, wait).await?;
    // Without TCP_NODELAY, Nagle's algorithm may hold a small write while an earlier
    // segment is unacknowledged, and the delayed ACK on the other side then adds tens of
    // milliseconds: the figure would measure that interplay, not the network's RTT.
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    // The timed loop uses a blocking socket on a thread of its own: one write and one read
    // per round trip, no reactor wake-up between them, so the client adds as little as
    // possible to what it measures.
    let stream = stream.into_std().context("taking the socket")?;
    stream.set_nonblocking(false).context("blocking mode")?;
    stream
        .set_read_timeout(Some(wait))
        .context("read timeout")?;
    stream
        .set_write_timeout(Some(wait))
        .context("write timeout")?;
    let count = args.count;
    let samples = tokio::task::spawn_blocking(move || round_trips(stream, count, wait))
        .await
        .context("the round-trip thread failed")??;
    let stats = Stats::of(&samples).context("no samples")?;
    print!("{stats}");
    if let Some(path) = &args.csv {
        std::fs::write(path, csv(&samples))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `count` round trips of `42` on `stream`; the time of each.
fn round_trips(
    mut stream: std::net::TcpStream,
    count: u32,
    wait: Duration,
) -> anyhow::Result<Vec<Duration>> {
    use std::io::{Read, Write};
    let mut samples = Vec::with_capacity(count as usize);
    let mut echo = [0u8; PING.len()];
    for seq in 1..=count {
        let start = Instant::now();
        stream
            .write_all(PING)
            .with_context(|| format!("round trip {seq}: sending"))?;
        // The echo may arrive in pieces: read until both bytes are back.
        stream.read_exact(&mut echo).with_context(|| {
            format!("round trip {seq}: reading the echo (waiting up to {wait:?})")
        })?;
        samples.push(start.elapsed());
        if echo != PING {
            bail!("round trip {seq}: the server answered {echo:?}, not an echo of {PING:?}");
        }
    }
    Ok(samples)
}

/// Summary of the round-trip samples, in the lab's unit (milliseconds).
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    count: usize,
    average: Duration,
    min: Duration,
    median: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    /// The statistics of `samples`; `None` if there are none. The median of an even count
    /// is the mean of the two middle samples; p99 is the nearest-rank percentile.
    fn of(samples: &[Duration]) -> Option<Stats> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        let total: Duration = sorted.iter().sum();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        };
        let rank = (n * 99).div_ceil(100).max(1);
        Some(Stats {
            count: n,
            average: total / u32::try_from(n).ok()?,
            min: sorted[0],
            median,
            p99: sorted[rank - 1],
            max: sorted[n - 1],
        })
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        // The first line is the lab's figure; the rest show the spread behind it.
        writeln!(f, "Average RTT: {:.4} ms", ms(self.average))?;
        writeln!(f, "Min RTT: {:.4} ms", ms(self.min))?;
        writeln!(f, "Median RTT: {:.4} ms", ms(self.median))?;
        writeln!(f, "P99 RTT: {:.4} ms", ms(self.p99))?;
        writeln!(f, "Max RTT: {:.4} ms", ms(self.max))?;
        writeln!(f, "Round trips: {} over one connection", self.count)
    }
}

/// The samples as CSV: a header, then `seq,rtt_ms` (nanosecond precision) per round trip.
fn csv(samples: &[Duration]) -> String {
    let mut out = String::from("seq,rtt_ms\n");
    for (i, d) in samples.iter().enumerate() {
        out.push_str(&format!("{},{:.6}\n", i + 1, d.as_secs_f64() * 1e3));
    }
    out
}

/// Why a connection ended; logged as `conn <id> closed: <reason>`.
type Outcome = Result<String, String>;

/// The accept loop shared by both servers: binds and announces the listener (the first
/// stdout line is `listening on <ip:port>`), then one task per connection, numbered from
/// 1 in accept order, until SIGTERM or Ctrl-C.
async fn serve<H, F>(listen: &Listen, port: u16, handle: H) -> anyhow::Result<()>
where
    H: Fn(TcpStream, u64) -> F,
    F: Future<Output = Outcome> + Send + 'static,
{
    // Signal handlers first: a SIGTERM sent once the port is announced must stop us.
    let stop = crate::common::shutdown();
    let listener = listen
        .tcp(port)
        .with_context(|| format!("cannot listen on {}", listen.addr(port)))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    log(format!("listening on {addr}"));
    let accept_loop = async {
        let mut next_id = 0u64;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    next_id += 1;
                    let id = next_id;
                    log(format!("conn {id} {peer} connected"));
                    let task = handle(stream, id);
                    tokio::spawn(async move {
                        match task.await {
                            Ok(reason) => log(format!("conn {id} closed: {reason}")),
                            Err(reason) => log(format!("conn {id} closed: {reason}")),
                        }
                    });
                }
                Err(e) => crate::common::accept_failed(e).await,
            }
        }
    };
    tokio::select! {
        () = accept_loop => {}
        () = stop => log("shutting down"),
    }
    Ok(())
}

/// One alphanumeric check: one read (as Python's `recv(1024)`), one answer, close.
async fn alnum_connection(mut stream: TcpStream, id: u64, wait: Duration) -> Outcome {
    let mut buf = [0u8; MAX_MESSAGE];
    let n = match timeout(wait, stream.read(&mut buf)).await {
        Err(_) => return Err(format!("no message within {wait:?}")),
        Ok(Err(e)) => return Err(format!("read failed: {e}")),
        Ok(Ok(n)) => n,
    };
    // An immediate end-of-file is the empty message; like Python's "".isalnum() it is
    // answered `Not alphanumeric.`.
    let text = std::str::from_utf8(&buf[..n]).map_err(|e| {
        format!(
            "invalid UTF-8 after {} of {n} bytes, no answer",
            e.valid_up_to()
        )
    })?;
    let answer = verdict(text);
    log(format!("conn {id} message 1: {text:?} -> {answer}"));
    match timeout(wait, stream.write_all(answer.as_bytes())).await {
        Err(_) => return Err("timed out sending the answer".into()),
        Ok(Err(e)) => return Err(format!("sending the answer failed: {e}")),
        Ok(Ok(())) => {}
    }
    // Python closes after answering; a FIN lets the client read the answer to its end.
    let _ = stream.shutdown().await;
    Ok("answered".into())
}

/// Echo until the client closes: every read is written back before the next read.
async fn echo_connection(mut stream: TcpStream, id: u64, idle: Duration) -> Outcome {
    // The reply should leave at once, whatever the client's write pattern (see `run_rtt`).
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut seq = 0u64;
    loop {
        let n = match timeout(idle, stream.read(&mut buf)).await {
            Err(_) => return Err(format!("idle for {idle:?}")),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
            Ok(Ok(0)) => return Ok(format!("peer closed after {seq} messages")),
            Ok(Ok(n)) => n,
        };
        seq += 1;
        match timeout(idle, stream.write_all(&buf[..n])).await {
            Err(_) => return Err(format!("message {seq}: timed out echoing")),
            Ok(Err(e)) => return Err(format!("message {seq}: echo failed: {e}")),
            Ok(Ok(())) => {}
        }
        // Logged after the echo, so the log does not add to the client's round trip.
        log(format!("conn {id} message {seq}: {n} bytes echoed"));
    }
}

/// Connects to `host:port`, trying every address the name resolves to.
async fn connect(host: &str, port: u16, wait: Duration) -> anyhow::Result<TcpStream> {
    let target = crate::common::host_port(host, port);
    timeout(
        wait,
        TcpStream::connect((crate::common::host_name(host), port)),
    )
    .await
    .with_context(|| format!("timed out connecting to {target}"))?
    .with_context(|| format!("cannot connect to {target}"))
}

/// Prints the prompt and reads one line from stdin, without its line ending.
async fn prompt_line() -> anyhow::Result<String> {
    print!("{PROMPT}");
    std::io::Write::flush(&mut std::io::stdout()).context("writing the prompt")?;
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|n| (n, line))
    })
    .await
    .context("reading stdin")?
    .context("reading stdin")?;
    match line {
        (0, _) => bail!("no input (end of stdin)"),
        (_, line) => Ok(line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_owned()),
    }
}

/// Reads the answer: until the server closes, a complete known answer arrives (a server
/// that keeps the connection open), or 1024 bytes.
async fn read_answer(stream: &mut TcpStream, wait: Duration) -> anyhow::Result<Vec<u8>> {
    let mut answer = Vec::new();
    let mut buf = [0u8; MAX_MESSAGE];
    while answer.len() < MAX_MESSAGE && answer != YES.as_bytes() && answer != NO.as_bytes() {
        match timeout(wait, stream.read(&mut buf)).await {
            Err(_) if !answer.is_empty() => break,
            Err(_) => bail!("no answer within {wait:?}"),
            Ok(Err(e)) => return Err(e).context("reading the answer"),
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases for `is_alnum`, with Python's `str.isalnum` answer; `python_agrees_with_table`
    /// checks the answers against a real python3.
    const CASES: &[(&str, bool)] = &[
        ("", false),
        ("abc", true),
        ("ABC123", true),
        ("abc 123", false),
        (" ", false),
        ("\t", false),
        ("hello!", false),
        ("a-b", false),
        ("a_b", false),
        ("a.b", false),
        ("héllo", true),
        ("Ærøskøbing", true),
        ("ǅ", true),          // Lt
        ("ʰ", true),          // Lm
        ("漢字", true),       // Lo
        ("ひらがな", true),   // Lo
        ("٣", true),          // ARABIC-INDIC DIGIT THREE, Nd
        ("²", true),          // SUPERSCRIPT TWO, No
        ("½", true),          // VULGAR FRACTION ONE HALF, No
        ("Ⅻ", true),          // ROMAN NUMERAL TWELVE, Nl
        ("\u{0345}", false),  // COMBINING GREEK YPOGEGRAMMENI, Mn but Alphabetic
        ("a\u{0345}", false), // ... also after a letter
        ("\u{1F130}", false), // SQUARED LATIN CAPITAL LETTER A, So but Alphabetic
        ("e\u{0301}", false), // e + COMBINING ACUTE: Mn is not alphanumeric
        ("\u{00A0}", false),  // NO-BREAK SPACE
        ("😀", false),        // So
        ("abc\n", false),     // a newline the client did not strip
        ("𝟘𝟙", true),         // MATHEMATICAL DOUBLE-STRUCK DIGITS, Nd
        ("\u{200B}", false),  // ZERO WIDTH SPACE, Cf
        ("Ⓐ", false),         // CIRCLED LATIN CAPITAL LETTER A, So
    ];

    #[test]
    fn is_alnum_matches_table() {
        for &(text, expected) in CASES {
            assert_eq!(is_alnum(text), expected, "is_alnum({text:?})");
        }
    }

    /// The table's answers are Python's, not a guess: python3 computes `str.isalnum` for
    /// each case.
    #[test]
    fn python_agrees_with_table() {
        let input: Vec<&str> = CASES.iter().map(|c| c.0).collect();
        let output = python_json(
            "import json,sys; print(json.dumps([s.isalnum() for s in json.load(sys.stdin)]))",
            &serde_json::to_string(&input).unwrap(),
        );
        let python: Vec<bool> = serde_json::from_str(&output).unwrap();
        for (&(text, expected), python) in CASES.iter().zip(python) {
            assert_eq!(expected, python, "table vs python for {text:?}");
        }
    }

    /// Rust's own `char::is_alphanumeric` gives different answers on cases in the table,
    /// which is why `is_alnum` does not use it.
    #[test]
    fn rust_is_alphanumeric_differs() {
        for c in ['\u{0345}', '\u{1F130}'] {
            assert!(c.is_alphanumeric());
            assert!(!is_alnum(&c.to_string()));
        }
    }

    /// Every code point gets Python 3.12's answer, from a table of `str.isalnum()` over
    /// all code points made with Python 3.12 (Unicode 15.0.0) by
    /// `tests/data/alnum_ranges.py`, independently of the tables `is_alnum` uses.
    #[test]
    fn is_alnum_matches_python_3_12_on_every_code_point() {
        let table = include_str!("../tests/data/alnum-unicode-15.0.0.txt");
        let mut alnum = vec![false; 0x110000];
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let (first, last) = line.split_once("..").unwrap_or((line, line));
            let first = u32::from_str_radix(first, 16).expect("hex code point");
            let last = u32::from_str_radix(last, 16).expect("hex code point");
            for cp in first..=last {
                alnum[cp as usize] = true;
            }
        }
        let listed = alnum.iter().filter(|&&a| a).count();
        let claimed: usize = table
            .lines()
            .nth(1)
            .and_then(|l| l.strip_prefix("# ")?.split(' ').next()?.parse().ok())
            .expect("the table's second line counts its code points");
        assert_eq!(listed, claimed, "the table is complete");

        let mut differ = Vec::new();
        for cp in 0..0x110000u32 {
            // Surrogates are not chars; Python calls them not alphanumeric too.
            let ours = char::from_u32(cp).is_some_and(|c| is_alnum(c.encode_utf8(&mut [0; 4])));
            if ours != alnum[cp as usize] {
                differ.push(format!("U+{cp:04X} (python {})", alnum[cp as usize]));
            }
        }
        assert!(differ.is_empty(), "{} differ: {differ:?}", differ.len());
    }

    /// Characters whose answer depends on the Unicode version.
    #[test]
    fn is_alnum_follows_unicode_15_0() {
        // NAG MUNDARI LETTER O and KAWI LETTER A: new in 15.0, letters.
        assert!(is_alnum("\u{1E4D0}"));
        assert!(is_alnum("\u{11F04}"));
        // A CJK ideograph of Extension I, new in 15.1: unassigned for Python 3.12.
        assert!(!is_alnum("\u{2EBF0}"));
        assert_eq!(unicode_general_category::UNICODE_VERSION, (15, 0, 0));
    }

    fn python_json(program: &str, stdin: &str) -> String {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("python3")
            .args(["-c", program])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write to python");
        let out = child.wait_with_output().expect("python3 finishes");
        assert!(out.status.success(), "python3 failed");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn us(us: u64) -> Duration {
        Duration::from_micros(us)
    }

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = Stats::of(&[us(30), us(10), us(20)]).unwrap();
        assert_eq!(
            (s.count, s.min, s.median, s.p99, s.max, s.average),
            (3, us(10), us(20), us(30), us(30), us(20))
        );
        let s = Stats::of(&[us(40), us(10), us(20), us(30)]).unwrap();
        assert_eq!((s.median, s.average), (us(25), us(25)));
        let one = Stats::of(&[us(7)]).unwrap();
        assert_eq!(
            (one.min, one.median, one.p99, one.max),
            (us(7), us(7), us(7), us(7))
        );
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn p99_is_nearest_rank() {
        // 1..=500 µs: the 99th percentile by nearest rank is the 495th sample.
        let samples: Vec<Duration> = (1..=500).rev().map(us).collect();
        let s = Stats::of(&samples).unwrap();
        assert_eq!(s.p99, us(495));
        assert_eq!(s.median, Duration::from_nanos(250_500));
    }

    #[test]
    fn stats_text_leads_with_the_labs_line() {
        let text = Stats::of(&[us(1500)]).unwrap().to_string();
        assert!(text.starts_with("Average RTT: 1.5000 ms\n"), "{text}");
        assert_eq!(csv(&[us(1500)]), "seq,rtt_ms\n1,1.500000\n");
    }
}
