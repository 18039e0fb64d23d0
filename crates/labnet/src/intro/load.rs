//! `load`: the lab's load test, N clients against an intro server at once.
//!
//! The lab has students watch resets and retransmissions in Wireshark as N grows; this
//! client counts the outcomes itself (connected, refused, reset, timed out, other) and
//! reports percentiles of time-to-intro-line and time-to-completion, so the point where
//! the server's accept queue or threads give out shows in one table. Each client does
//! exactly what the lab's asyncio client does: connect, read the intro line, sleep, send
//! the long message with its length prefix, wait for the server to close.

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
use tokio::time::timeout;

use super::{DEFAULT_PORT, encode_len, lab_message};

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
    after_help = "Exit status: 0 if every client completed, 1 if any failed \
(refused, reset, timed out or other; the results are printed first) or on a usage error."
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
    /// Seconds allowed for each later step: the intro line, the send, the server's close.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
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

/// One client's result.
#[derive(Default)]
struct Outcome {
    connected: bool,
    intro: Option<Duration>,
    done: Option<Duration>,
    failure: Option<(Failure, String)>,
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
    let series = args.sweep.clone().unwrap_or_else(|| vec![args.clients]);
    let target = format!("{}:{}", args.host, args.port);

    if !args.json {
        println!("target {target}, pause {:.3} s", pause.as_secs_f64());
        println!("{}", table_header());
    }
    let mut runs = Vec::new();
    let mut addr = None;
    for &clients in &series {
        // Resolved once per run, not per client: the load is on the server, not on DNS.
        let resolved = tokio::net::lookup_host(&target)
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
        });
        let run = run_once(clients, plan).await;
        if !args.json {
            println!("{}", table_row(&run));
            let _ = io::stdout().flush();
            for (error, count) in error_counts(&run) {
                eprintln!("  {clients} clients: {count} × {error}");
            }
        }
        runs.push(run);
    }
    if args.json {
        let doc = json!({
            "target": target,
            "addr": addr.map(|a| a.to_string()),
            "pause_s": pause.as_secs_f64(),
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

/// One client of the lab: connect, intro line, pause, length + message, wait for close.
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

    // The server closes after reading the message; anything it sends before is ignored.
    let mut sink = [0u8; 1024];
    while timed(plan.timeout, "waiting for close", reader.read(&mut sink)).await? > 0 {}
    outcome.done = Some(t0.elapsed());
    Ok(())
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

fn done_times(run: &Run) -> Option<[f64; 4]> {
    percentiles(run.outcomes.iter().filter_map(|o| o.done))
}

fn table_header() -> String {
    format!(
        "{:>7} {:>9} {:>9} {:>7} {:>6} {:>7} {:>6} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        "clients",
        "connected",
        "completed",
        "refused",
        "reset",
        "timeout",
        "other",
        "intro p50",
        "p90",
        "p99",
        "max",
        "done p50",
        "p90",
        "p99",
        "max",
    )
}

fn table_row(run: &Run) -> String {
    let completed = run.outcomes.iter().filter(|o| o.done.is_some()).count();
    let connected = run.outcomes.iter().filter(|o| o.connected).count();
    let ms = |p: Option<[f64; 4]>| match p {
        Some(v) => v.map(|x| format!("{x:>9.1}")).join(" "),
        None => format!("{:>9} {:>9} {:>9} {:>9}", "-", "-", "-", "-"),
    };
    format!(
        "{:>7} {:>9} {:>9} {:>7} {:>6} {:>7} {:>6} | {} | {}",
        run.clients,
        connected,
        completed,
        count(run, Failure::Refused),
        count(run, Failure::Reset),
        count(run, Failure::TimedOut),
        count(run, Failure::Other),
        ms(intro_times(run)),
        ms(done_times(run)),
    )
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
        "connected": run.outcomes.iter().filter(|o| o.connected).count(),
        "completed": run.outcomes.iter().filter(|o| o.done.is_some()).count(),
        "refused": count(run, Failure::Refused),
        "reset": count(run, Failure::Reset),
        "timed_out": count(run, Failure::TimedOut),
        "other": count(run, Failure::Other),
        "failed": failures(run).len(),
        "wall_ms": round3(run.wall.as_secs_f64() * 1000.0),
        "intro_ms": ms(intro_times(run)),
        "completion_ms": ms(done_times(run)),
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
