//! The command-line schema. Doc comments here are the `--help` text.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A complete AWS networking lab from one topology file, and gone again in one command.
///
/// Exit status: 0 on success, 1 on any error (usage errors included); with
/// `plan --detailed-exitcode`, 2 when changes are pending.
#[derive(Debug, Parser)]
#[command(
    name = "labctl",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LABCTL_GIT_COMMIT"), ")"),
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The topology file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        env = "LABCTL_TOPOLOGY",
        default_value = "topology.yaml"
    )]
    pub file: PathBuf,

    /// AWS region; must agree with the topology's `region:` when it has one.
    #[arg(long, global = true, env = "LABCTL_REGION")]
    pub region: Option<String>,

    /// AWS profile from ~/.aws/config (default: the standard credential chain).
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// Your public IPv4 address, for rules with `my-ip` (default: looked up when needed).
    #[arg(long, global = true, env = "LABCTL_MY_IP", value_name = "IPV4")]
    pub my_ip: Option<Ipv4Addr>,

    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log what labctl does (-v: info, -vv: debug, -vvv: trace, AWS SDK included).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print how many AWS API requests the command sent (to stderr, at the end).
    #[arg(long, global = true)]
    pub api_stats: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a topology file and report every problem with its line and column.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the topology file (for editors' YAML language servers).
    Schema,
    /// Show the AWS resources a topology creates, in order, with their dependencies.
    Graph(GraphArgs),
    /// Show what `up` would change: + create, ~ update in place, -/+ replace, - delete.
    Plan(PlanArgs),
    /// Make AWS match the topology, then print the lab's instances and addresses.
    Up(UpArgs),
    /// Delete everything the lab owns, in reverse dependency order.
    Down(DownArgs),
    /// What the lab has now: instances, states, addresses, DNS names.
    Status(StatusArgs),
    /// Print the user-data an instance boots with: what `up` sends, before `up`
    /// gzip-compresses it (cloud-init inflates it on the instance).
    UserData(UserDataArgs),
    /// Check that AWS (or LocalStack) is reachable with the current credentials and region.
    Doctor(DoctorArgs),
    /// Run a shell command on instances through SSM Run Command, with each one's output
    /// and exit code (`labctl exec client -- ping -c 3 server.lab.internal`).
    Exec(ExecArgs),
    /// Open an interactive shell on an instance through SSM Session Manager (no SSH key,
    /// no open port). Exit the shell to end the session; labctl exits with its status.
    SsmShell(SsmShellArgs),
    /// Summarise captures (pcap or pcapng): one row per conversation, and the TCP
    /// problems Wireshark would flag (retransmissions, duplicate ACKs, zero windows,
    /// window full, resets, out-of-order) with counts and first times. No AWS call.
    PcapSummary(PcapSummaryArgs),
    /// Forward a local port to a port on an instance through SSM Session Manager (what an
    /// SSH tunnel did in the labs). Many local connections share one session.
    Forward(ForwardArgs),
    /// Start a tcpdump capture on instances (over SSM); each finished file goes to the
    /// lab's bucket, under captures/<instance>/<label>-<time>/, for `labctl pcap-fetch`.
    Capture(CaptureArgs),
    /// Download the lab's captures into <out>/<instance>/<recording>/: concurrently, verified
    /// (size and SHA-256), resuming interrupted downloads, skipping identical files.
    PcapFetch(PcapFetchArgs),
    /// Write the default lab (topology.yaml and its JSON Schema) into a folder to start
    /// from. Refuses to overwrite anything.
    Init(InitArgs),
    /// Print a shell completion script (`labctl completions bash > ...`). No topology
    /// file or AWS needed.
    Completions(CompletionsArgs),
    /// Print labctl's manual page in roff (`labctl man > ~/.local/share/man/man1/labctl.1`),
    /// or write one page per command into a folder with --out.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to write into (created if missing).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write labctl.1 and one labctl-<command>.1 per command into this folder instead
    /// of printing labctl.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// An instance (`server`, `client-2`), a role (every instance of it), or `all`.
    pub target: String,
    /// A tcpdump filter (`tcp port 8080`, `udp and host 10.0.1.5`).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// How long to record.
    #[arg(long, value_name = "N", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub seconds: u32,
    /// Stop after this many packets (or when the time is up, whichever is first).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=999_999_999))]
    pub count: Option<u32>,
    /// The interface (default: the instance's default route's; `any` for all).
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// Start a new file every N seconds; each is uploaded when it is complete.
    #[arg(long, value_name = "N", conflicts_with = "rotate_mb",
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub rotate_seconds: Option<u32>,
    /// Start a new file every N MB (default 1000); each is uploaded when it is complete.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=5_000))]
    pub rotate_mb: Option<u32>,
    /// File names start with this (lowercase letters, digits, dashes).
    #[arg(long, value_name = "NAME", default_value = "capture")]
    pub label: String,
    /// Print each instance's result (and where its files go) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PcapFetchArgs {
    /// Instances to fetch from (default: all of them).
    pub instances: Vec<String>,
    /// Where to put them: <out>/<instance>/<recording>/<file>.
    #[arg(long, value_name = "DIR", default_value = "captures")]
    pub out: PathBuf,
    /// Only captures stored since this time: an RFC 3339 time with its offset
    /// (`2026-03-01T14:00:00Z`, `2026-03-01T15:00:00+01:00`), a date (`2026-03-01`, UTC),
    /// or a duration back from now (`90m`, `2h`, `1d`; a bare number is seconds).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<std::time::SystemTime>,
    /// Only the newest capture of each instance.
    #[arg(long)]
    pub latest: bool,
    /// Replace local files that differ from the bucket's (default: refuse, keep them).
    #[arg(long)]
    pub force: bool,
    /// Downloads at once.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// List what would be fetched, download nothing.
    #[arg(long)]
    pub list: bool,
}

/// `--since`: an instant, a UTC date, or a duration back from now.
fn parse_since(text: &str) -> Result<std::time::SystemTime, String> {
    labctl_core::duration::parse_since(text, std::time::SystemTime::now())
}

#[derive(Debug, Args)]
pub struct UserDataArgs {
    /// Instance name, as in `labctl status` (`server`, `client-2`).
    pub instance: String,
    /// Make no AWS call: the account id in the bucket's name shows as `{account}`.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when changes are pending, 0 when there are none, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Apply without asking, even when the plan replaces or deletes resources.
    #[arg(short, long)]
    pub yes: bool,
    /// Allow deleting a capture bucket that still holds captures.
    #[arg(long)]
    pub delete_captures: bool,
    /// Print the outputs as JSON.
    #[arg(long)]
    pub json: bool,
    /// Wait until every instance's bootstrap reports ready (or failed), at most this
    /// long: a duration (`90s`, `10m`, `1h`; a bare number is seconds; default 15m).
    /// Instances report a few minutes after launch.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "15m",
          value_parser = parse_wait)]
    pub wait: Option<std::time::Duration>,
}

/// `--wait`: a duration, more than nothing.
fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    let d = labctl_core::duration::parse(text)?;
    if d.is_zero() {
        return Err("waiting 0s would give up at once; give a duration such as `15m`".to_owned());
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Delete without asking.
    #[arg(short, long)]
    pub yes: bool,
    /// Also delete the captures in the lab's bucket (refused otherwise while any exist).
    #[arg(long)]
    pub delete_captures: bool,
    /// Also delete the records in the lab's zone that labctl did not make (refused
    /// otherwise while any exist: a zone goes only when it is empty).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the diagnostics as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Print the resources as JSON.
    #[arg(long, conflicts_with = "dot")]
    pub json: bool,
    /// Print a Graphviz graph (`labctl graph --dot | dot -Tsvg > lab.svg`).
    #[arg(long)]
    pub dot: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// An instance (`server`, `client-2`), a role (every instance of it), or `all`.
    /// A name that is both an instance and a role means the instance.
    pub target: String,
    /// How long the command may run on each instance: a duration (`90s`, `10m`,
    /// `1h30m`; a bare number is seconds), from 1s to 48h.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
    /// Print each instance's result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments, after `--`. The words are quoted for the shell as
    /// given, so `-- echo 'a b'` runs exactly that; for pipes or `&&`, use
    /// `-- sh -c 'a | b'`.
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--timeout`: a duration within what SSM Run Command accepts, 1s to 48h.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    use labctl_core::duration::format;
    let d = labctl_core::duration::parse(text)?;
    let (least, most) = (
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(48 * 3600),
    );
    if !(least..=most).contains(&d) {
        return Err(format!(
            "{} is outside what SSM accepts ({} to {})",
            format(d),
            format(least),
            format(most)
        ));
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct SsmShellArgs {
    /// Instance name, as in `labctl status` (`server`, `client-2`).
    pub instance: String,
    /// Hand the session over to AWS's `session-manager-plugin` (found on PATH), as the
    /// AWS CLI does, instead of speaking the protocol natively.
    #[arg(long)]
    pub plugin: bool,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Instance name, as in `labctl status` (`server`, `client-2`).
    pub instance: String,
    /// The port on the instance (`8080` for the intro server), 1 to 65535.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub remote_port: u16,
    /// The local port on 127.0.0.1 (default: any free one, printed).
    #[arg(long, value_name = "N")]
    pub local_port: Option<u16>,
    /// Hand the session over to AWS's `session-manager-plugin` (found on PATH).
    #[arg(long)]
    pub plugin: bool,
    /// Pause 1 ms after every 1 KiB sent, as the official plugin does (for comparisons).
    #[arg(long, hide = true)]
    pub pace_like_plugin: bool,
}

#[derive(Debug, Args)]
pub struct PcapSummaryArgs {
    /// Capture files (`.pcap`, `.pcapng`).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Print the summaries as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Also draw the capture's I/O graph as a PNG, like Wireshark's: packets per
    /// interval (blue line) and TCP errors per interval (red bars: packets with any TCP
    /// problem the summary counts, resets included). With several files, FILE.png
    /// becomes FILE-1.png, FILE-2.png, ... in the order given. The path written is
    /// printed (a "plot" field with --json).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// The I/O graph's interval in seconds, e.g. 0.01 (default: 1, 2 or 5 times a power
    /// of ten, at least 1 ms, giving at most 200 intervals).
    #[arg(long, value_name = "SECONDS", requires = "plot")]
    pub interval: Option<f64>,
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use clap::Parser;

    use super::{Cli, Command};

    /// Parses a command line as labctl would.
    fn cli(args: &[&str]) -> Result<Command, String> {
        Cli::try_parse_from(std::iter::once("labctl").chain(args.iter().copied()))
            .map(|cli| cli.command)
            .map_err(|e| e.to_string())
    }

    fn since(text: &str) -> Result<SystemTime, String> {
        match cli(&["pcap-fetch", &format!("--since={text}")])? {
            Command::PcapFetch(args) => Ok(args.since.expect("--since given")),
            other => panic!("{other:?}"),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn since_takes_any_rfc_3339_offset() {
        // 2026-03-01T14:00:00Z; `date -Iseconds` prints the local offset.
        let two_pm = 1_772_373_600;
        assert_eq!(since("2026-03-01T14:00:00Z"), Ok(at(two_pm)));
        assert_eq!(since("2026-03-01T14:00:00+00:00"), Ok(at(two_pm)));
        assert_eq!(
            since("2026-03-01T14:00:00+01:00"),
            since("2026-03-01T13:00:00Z")
        );
        assert_eq!(since("2026-03-01T14:00:00+01:00"), Ok(at(two_pm - 3_600)));
        assert_eq!(
            since("2026-03-01T14:00:00-05:00"),
            Ok(at(two_pm + 5 * 3_600))
        );
        assert_eq!(since("2026-03-01t14:00:00z"), Ok(at(two_pm)));
        assert_eq!(since("2026-03-01"), Ok(at(1_772_323_200)));
    }

    #[test]
    fn since_takes_a_duration_back_from_now() {
        for (text, secs) in [("90", 90), ("30s", 30), ("90m", 5_400), ("1d", 86_400)] {
            let before = SystemTime::now();
            let t = since(text).expect(text);
            let after = SystemTime::now();
            let span = Duration::from_secs(secs);
            assert!(before - span <= t && t <= after - span, "{text}");
        }
        for bad in ["yesterday", "2026-13-01", "2026-03-01T14:00:00", "", "-5m"] {
            let err = since(bad).expect_err(bad);
            assert!(err.contains("--since"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_duration_flag_reads_the_same_grammar() {
        let timeout = |t: &str| match cli(&["exec", "all", "--timeout", t, "--", "true"]) {
            Ok(Command::Exec(args)) => Ok(args.timeout),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        let wait = |t: &str| match cli(&["up", "--wait", t]) {
            Ok(Command::Up(args)) => Ok(args.wait.expect("--wait given")),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        for (text, secs) in [
            ("90", 90),
            ("2", 2),
            ("90s", 90),
            ("10m", 600),
            ("1h30m", 5_400),
        ] {
            assert_eq!(
                timeout(text),
                Ok(Duration::from_secs(secs)),
                "--timeout {text}"
            );
            assert_eq!(wait(text), Ok(Duration::from_secs(secs)), "--wait {text}");
        }
        for bad in ["1h30", "5min", "30m1h", "1.5h"] {
            assert!(timeout(bad).is_err(), "--timeout {bad}");
            assert!(wait(bad).is_err(), "--wait {bad}");
        }
        assert!(timeout("49h").expect_err("49h").contains("1s to 2d"));
        assert!(timeout("0").is_err());
        assert!(wait("0s").is_err());
        match cli(&["exec", "all", "--", "true"]) {
            Ok(Command::Exec(args)) => assert_eq!(args.timeout, Duration::from_secs(600)),
            other => panic!("{other:?}"),
        }
        match cli(&["up", "--wait"]) {
            Ok(Command::Up(args)) => assert_eq!(args.wait, Some(Duration::from_secs(15 * 60))),
            other => panic!("{other:?}"),
        }
    }
}
