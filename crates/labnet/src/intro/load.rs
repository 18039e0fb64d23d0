//! `load`: the lab's load test, N clients against an intro server at once.
//!
//! The lab has students watch resets and retransmissions in Wireshark as N grows; this
//! client counts the outcomes itself (connected, completed, refused, reset, timed out,
//! other) and reports percentiles of the time to the intro line, to the message sent and
//! to the server's close, so the point where the server's accept queue or threads give
//! out shows in one table.
//!
//! Each client does what the lab's asyncio client does: connect, read the intro line,
//! sleep, send the long message with its length prefix. That is a completed client, as
//! it is for the lab's client, which never waits for a close. The lab's own threaded
//! server never closes explicitly (Python closes a socket when its last reference goes,
//! and the accept loop keeps the last one), so the close is observed, not required: each
//! client then waits a grace period for it and records when it came. A client whose
//! server has not closed by then counts as "not closed", not as failed, unless
//! `--require-close` asks for the strict check (labnet's `intro-server` always closes).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::time::{timeout, timeout_at};

use super::{DEFAULT_PORT, encode_len, lab_message};
use crate::common::{host_name, host_port, parse_seconds};

/// The lab's series of client counts, for a bare `--sweep`.
const LAB_SERIES: &str = "10,20,50,100,200,500,1000";

/// An intro line longer than this is not one.
const MAX_INTRO: u64 = 64 * 1024;

/// Options of `load`.
///
/// Exits 1 if any client of any run failed (the results are printed first), so a script
/// can tell a clean run from a congested one.
#[derive(Debug, Args)]
#[command(
    after_help = "A client has completed when its intro line arrived and its whole message \
was sent, as the lab's client does. It then waits --close-grace for the server's close: a \
close that comes is timed (\"to server close\"); one that does not is counted as \
\"not closed\", which is not a failure unless --require-close is given. Times are from \
the start of each client's connect.

Exit status: 0 if every client completed, 1 if any failed (refused, reset, timed out or \
other; with --require-close also not closed; the results are printed first) or on a \
usage error."
)]
pub struct LoadArgs {
    /// Server host name or address (resolved once per run).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Number of clients, all started at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// Run a series of client counts, one result row each; bare `--sweep` runs the lab's
    /// series 10,20,50,100,200,500,1000.
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 0..=1,
        default_missing_value = LAB_SERIES,
        conflicts_with = "clients",
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    sweep: Option<Vec<u32>>,
    /// Seconds each client sleeps between the intro line and sending (the lab sleeps 1).
    #[arg(long, default_value_t = 1.0)]
    pause: f64,
    /// Seconds allowed for each connect.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Seconds allowed for each later step: the intro line and the send.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Seconds each client waits for the server's close once its message is sent.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = parse_seconds)]
    close_grace: f64,
    /// Count a client whose server has not closed within --close-grace as failed, for
    /// servers that promise to close (labnet's intro-server does).
    #[arg(long)]
    require_close: bool,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

/// Per-client settings shared by all the tasks of a run.
struct Plan {
    addr: SocketAddr,
    pause: Duration,
    connect_timeout: Duration,
    timeout: Duration,
    close_grace: Duration,
    require_close: bool,
}

/// How a client failed, by `io::ErrorKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Refused,
    /// ECONNRESET, and EPIPE (a write after the peer's RST).
    Reset,
    /// The OS's ETIMEDOUT or one of our timeouts.
    TimedOut,
    Other,
}

impl Failure {
    fn of(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Failure::Reset,
            io::ErrorKind::TimedOut => Failure::TimedOut,
            _ => Failure::Other,
        }
    }
}

/// One client's result; times are from the start of its connect.
#[derive(Default)]
struct Outcome {
    connected: bool,
    intro: Option<Duration>,
    /// The whole message was handed to the kernel.
    sent: Option<Duration>,
    /// The server's close (end of stream) arrived.
    closed: Option<Duration>,
    /// The message was sent but the server did not close within the grace period.
    not_closed: bool,
    failure: Option<(Failure, String)>,
}

impl Outcome {
    /// Intro line received and message sent, with nothing failing (with
    /// `--require-close`, a missing close is a failure).
    fn completed(&self) -> bool {
        self.sent.is_some() && self.failure.is_none()
    }

    /// When the client completed: the server's close where it came, else the send.
    fn completion(&self) -> Option<Duration> {
        if self.completed() {
            self.closed.or(self.sent)
        } else {
            None
        }
    }
}

/// A run's results.
struct Run {
    clients: u32,
    wall: Duration,
    outcomes: Vec<Outcome>,
}

/// Runs `load`.
pub async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let secs = |v: f64, name: &str| {
        Duration::try_from_secs_f64(v)
            .with_context(|| format!("{name} must be a non-negative number of seconds"))
    };
    let pause = secs(args.pause, "--pause")?;
    let connect_timeout = secs(args.connect_timeout, "--connect-timeout")?;
    let step_timeout = secs(args.timeout, "--timeout")?;
    let close_grace = secs(args.close_grace, "--close-grace")?;
    let series = args.sweep.clone().unwrap_or_else(|| vec![args.clients]);
    let target = host_port(&args.host, args.port);

    if !args.json {
        println!(
            "target {target}, pause {:.3} s, close grace {:.3} s{}",
            pause.as_secs_f64(),
            close_grace.as_secs_f64(),
            if args.require_close {
                " (a close is required)"
            } else {
                ""
            }
        );
        for line in table_header() {
            println!("{line}");
        }
    }
    let mut runs = Vec::new();
    let mut addr = None;
    for &clients in &series {
        // Resolved once per run, not per client: the load is on the server, not on DNS.
        let resolved = tokio::net::lookup_host((host_name(&args.host), args.port))
            .await
            .with_context(|| format!("cannot resolve {target}"))?
            .next()
            .with_context(|| format!("{target} resolves to no address"))?;
        addr = Some(resolved);
        let plan = Arc::new(Plan {
            addr: resolved,
            pause,
            connect_timeout,
            timeout: step_timeout,
            close_grace,
            require_close: args.require_close,
        });
        let run = run_once(clients, plan).await;
        if !args.json {
            println!("{}", table_row(&run));
            let _ = io::stdout().flush();
            for (error, count) in error_counts(&run) {
                eprintln!("  {clients} clients: {count} × {error}");
            }
            let not_closed = not_closed(&run);
            if not_closed > 0 && !args.require_close {
                eprintln!(
                    "  {clients} clients: {not_closed} × not closed by the server within {:?} \
(completed all the same; --require-close makes this a failure)",
                    close_grace
                );
            }
        }
        runs.push(run);
    }
    if args.json {
        let doc = json!({
            "target": target,
            "addr": addr.map(|a| a.to_string()),
            "pause_s": pause.as_secs_f64(),
            "close_grace_s": close_grace.as_secs_f64(),
            "require_close": args.require_close,
            "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
        });
        println!("{doc}");
    }

    let failed: usize = runs.iter().map(|r| failures(r).len()).sum();
    let total: u64 = runs.iter().map(|r| u64::from(r.clients)).sum();
    if failed > 0 {
        anyhow::bail!("{failed} of {total} clients failed");
    }
    Ok(())
}

/// Starts `clients` clients together and waits for all of them.
async fn run_once(clients: u32, plan: Arc<Plan>) -> Run {
    // The barrier holds every client until all are spawned, so they connect together,
    // as the lab's asyncio.gather does.
    let gate = Arc::new(Barrier::new(clients as usize));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients as usize)
        .map(|i| tokio::spawn(client(i, plan.clone(), gate.clone())))
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| Outcome {
            failure: Some((Failure::Other, format!("client task failed: {e}"))),
            ..Outcome::default()
        }));
    }
    Run {
        clients,
        wall: started.elapsed(),
        outcomes,
    }
}

/// One client of the lab: connect, intro line, pause, length + message, then a grace
/// period for the server's close.
async fn client(i: usize, plan: Arc<Plan>, gate: Arc<Barrier>) -> Outcome {
    gate.wait().await;
    let mut outcome = Outcome::default();
    if let Err(failure) = exchange(i, &plan, &mut outcome).await {
        outcome.failure = Some(failure);
    }
    outcome
}

async fn exchange(i: usize, plan: &Plan, outcome: &mut Outcome) -> Result<(), (Failure, String)> {
    let t0 = Instant::now();
    let stream = timed(
        plan.connect_timeout,
        "connect",
        TcpStream::connect(plan.addr),
    )
    .await?;
    outcome.connected = true;

    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let got = timed(
        plan.timeout,
        "intro line",
        (&mut reader).take(MAX_INTRO).read_until(b'\n', &mut line),
    )
    .await?;
    if got == 0 || line.last() != Some(&b'\n') {
        return Err((
            Failure::Other,
            "intro line: connection closed before a full line".into(),
        ));
    }
    outcome.intro = Some(t0.elapsed());

    tokio::time::sleep(plan.pause).await;

    let message = lab_message(i);
    let mut bytes = Vec::with_capacity(8 + message.len());
    bytes.extend_from_slice(&encode_len(message.len()).expect("the lab message is short"));
    bytes.extend_from_slice(message.as_bytes());
    timed(plan.timeout, "send", reader.get_mut().write_all(&bytes)).await?;
    outcome.sent = Some(t0.elapsed());

    // Anything the server sends before its close is ignored. One deadline for the whole
    // wait, so a server that keeps talking cannot stretch it.
    let deadline = tokio::time::Instant::now() + plan.close_grace;
    let mut sink = [0u8; 1024];
    loop {
        match timeout_at(deadline, reader.read(&mut sink)).await {
            Ok(Ok(0)) => {
                outcome.closed = Some(t0.elapsed());
                return Ok(());
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err((Failure::of(&e), format!("waiting for close: {e}"))),
            Err(_) => {
                outcome.not_closed = true;
                if plan.require_close {
                    return Err((
                        Failure::TimedOut,
                        format!(
                            "waiting for close: not closed within {:?} (--close-grace)",
                            plan.close_grace
                        ),
                    ));
                }
                return Ok(());
            }
        }
    }
}

/// Awaits an I/O step with a timeout; a failure is classified and names the step.
async fn timed<T>(
    limit: Duration,
    step: &str,
    io: impl Future<Output = io::Result<T>>,
) -> Result<T, (Failure, String)> {
    match timeout(limit, io).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((Failure::of(&e), format!("{step}: {e}"))),
        Err(_) => Err((
            Failure::TimedOut,
            format!("{step}: timed out after {limit:?}"),
        )),
    }
}

fn failures(run: &Run) -> Vec<(Failure, &str)> {
    run.outcomes
        .iter()
        .filter_map(|o| o.failure.as_ref().map(|(f, m)| (*f, m.as_str())))
        .collect()
}

fn count(run: &Run, kind: Failure) -> usize {
    failures(run).iter().filter(|(f, _)| *f == kind).count()
}

/// Distinct error messages and how many clients saw each.
fn error_counts(run: &Run) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for (_, message) in failures(run) {
        *counts.entry(message).or_insert(0) += 1;
    }
    counts
}

/// p50, p90, p99 and max in milliseconds (nearest rank), or `None` without samples.
fn percentiles(samples: impl Iterator<Item = Duration>) -> Option<[f64; 4]> {
    let mut ms: Vec<f64> = samples.map(|d| d.as_secs_f64() * 1000.0).collect();
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let r = (p / 100.0 * ms.len() as f64).ceil() as usize;
        ms[r.clamp(1, ms.len()) - 1]
    };
    Some([rank(50.0), rank(90.0), rank(99.0), ms[ms.len() - 1]])
}

fn intro_times(run: &Run) -> Option<[f64; 4]> {
    percentiles(run.outcomes.iter().filter_map(|o| o.intro))
}

fn sent_times(run: &Run) -> Option<[f64; 4]> {
    percentiles(run.outcomes.iter().filter_map(|o| o.sent))
}

fn close_times(run: &Run) -> Option<[f64; 4]> {
    percentiles(run.outcomes.iter().filter_map(|o| o.closed))
}

fn completion_times(run: &Run) -> Option<[f64; 4]> {
    percentiles(run.outcomes.iter().filter_map(Outcome::completion))
}

fn connected(run: &Run) -> usize {
    run.outcomes.iter().filter(|o| o.connected).count()
}

fn completed(run: &Run) -> usize {
    run.outcomes.iter().filter(|o| o.completed()).count()
}

fn closed(run: &Run) -> usize {
    run.outcomes.iter().filter(|o| o.closed.is_some()).count()
}

fn not_closed(run: &Run) -> usize {
    run.outcomes.iter().filter(|o| o.not_closed).count()
}

/// The count columns: name and width.
const COUNTS: [(&str, usize); 9] = [
    ("clients", 7),
    ("connected", 9),
    ("completed", 9),
    ("not-closed", 10),
    ("failed", 6),
    ("refused", 7),
    ("reset", 5),
    ("timeout", 7),
    ("other", 5),
];

/// Width of one percentile column, in milliseconds with one decimal.
const MS: usize = 8;

/// The percentile groups, each p50 p90 p99 max.
const TIMES: [&str; 3] = [
    "to intro line (ms)",
    "to message sent (ms)",
    "to server close (ms)",
];

/// Two header lines: the groups with their units, then the columns.
fn table_header() -> [String; 2] {
    let counts_width = COUNTS.iter().map(|(_, w)| w + 1).sum::<usize>() - 1;
    let times_width = 4 * MS + 3;
    let mut groups = format!("{:<counts_width$}", "clients (count)");
    let mut columns = COUNTS
        .iter()
        .map(|(name, w)| format!("{name:>w$}"))
        .collect::<Vec<_>>()
        .join(" ");
    for group in TIMES {
        groups.push_str(&format!(" | {group:^times_width$}"));
        columns.push_str(&format!(
            " | {:>MS$} {:>MS$} {:>MS$} {:>MS$}",
            "p50", "p90", "p99", "max"
        ));
    }
    [groups.trim_end().to_owned(), columns]
}

fn table_row(run: &Run) -> String {
    let values = [
        run.clients as usize,
        connected(run),
        completed(run),
        not_closed(run),
        failures(run).len(),
        count(run, Failure::Refused),
        count(run, Failure::Reset),
        count(run, Failure::TimedOut),
        count(run, Failure::Other),
    ];
    let mut row = COUNTS
        .iter()
        .zip(values)
        .map(|((_, w), v)| format!("{v:>w$}"))
        .collect::<Vec<_>>()
        .join(" ");
    for times in [intro_times(run), sent_times(run), close_times(run)] {
        row.push_str(" | ");
        row.push_str(&match times {
            Some(v) => v.map(|x| format!("{x:>MS$.1}")).join(" "),
            None => vec![format!("{:>MS$}", "-"); 4].join(" "),
        });
    }
    row
}

fn run_json(run: &Run) -> serde_json::Value {
    let ms = |p: Option<[f64; 4]>| match p {
        Some([p50, p90, p99, max]) => json!({
            "p50": round3(p50), "p90": round3(p90), "p99": round3(p99), "max": round3(max),
        }),
        None => serde_json::Value::Null,
    };
    json!({
        "clients": run.clients,
        "connected": connected(run),
        "completed": completed(run),
        "closed": closed(run),
        "not_closed": not_closed(run),
        "refused": count(run, Failure::Refused),
        "reset": count(run, Failure::Reset),
        "timed_out": count(run, Failure::TimedOut),
        "other": count(run, Failure::Other),
        "failed": failures(run).len(),
        "wall_ms": round3(run.wall.as_secs_f64() * 1000.0),
        "intro_ms": ms(intro_times(run)),
        "sent_ms": ms(sent_times(run)),
        "close_ms": ms(close_times(run)),
        "completion_ms": ms(completion_times(run)),
        "errors": error_counts(run),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis);
        let [p50, p90, p99, max] = percentiles(samples).unwrap();
        assert_eq!((p50, p90, p99, max), (50.0, 90.0, 99.0, 100.0));
        let [p50, _, p99, max] = percentiles([Duration::from_millis(7)].into_iter()).unwrap();
        assert_eq!((p50, p99, max), (7.0, 7.0, 7.0));
        assert!(percentiles(std::iter::empty()).is_none());
    }

    #[test]
    fn errors_are_classified_by_kind() {
        let kind = |k| Failure::of(&io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::ConnectionRefused), Failure::Refused);
        assert_eq!(kind(io::ErrorKind::ConnectionReset), Failure::Reset);
        assert_eq!(kind(io::ErrorKind::BrokenPipe), Failure::Reset);
        assert_eq!(kind(io::ErrorKind::TimedOut), Failure::TimedOut);
        assert_eq!(kind(io::ErrorKind::UnexpectedEof), Failure::Other);
    }
}
