//! `labctl pcap-summary` against tshark on real captures. The crafted captures in
//! crates/pcap/tests/tshark.rs hold only what their author thought of; these hold
//! what a real kernel does when students break things: loss recovery, a stalled
//! receiver, resets. Each test runs labnet on the loopback of a network namespace
//! of its own while tcpdump records it, then reads the file with both tools.
//!
//! Needs root and unshare, ip, nft, tcpdump and tshark (scripts/test-deps.sh
//! installs them); no LocalStack, and nothing outside the namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Sandbox, labnet_binary, transcript};

/// Our count (a key of `tcp_totals` in the JSON) and the tshark field whose flagged
/// frames it must equal, exactly.
const COMPARED: [(&str, &str); 5] = [
    // The total: ours counts fast and spurious retransmissions in, as tshark's field does.
    ("retransmissions", "tcp.analysis.retransmission"),
    ("duplicate_acks", "tcp.analysis.duplicate_ack"),
    ("zero_windows", "tcp.analysis.zero_window"),
    ("window_full", "tcp.analysis.window_full"),
    ("resets", "tcp.flags.reset"),
];

/// Runs before each scenario, inside the namespace: starts tcpdump and defines
/// helpers. Every process is bounded by `timeout` and stopped on exit.
const PROLOGUE: &str = r#"
set -eu
ip link set lo up
# wait_for FILE TEXT: waits (10 s at most) until FILE contains TEXT.
wait_for() {
    for _ in $(seq 400); do grep -qF "$2" "$1" 2>/dev/null && return; sleep 0.025; done
    echo "no '$2' in $1:" >&2; cat "$1" >&2; return 1
}
# serve ARGS: a hesitant server on port 5001 in the background, listening on return.
serve() {
    timeout 20 "$LABNET" hesitant-server --bind 127.0.0.1 --port 5001 "$@" >server.log 2>&1 &
    server=$!
    wait_for server.log "listening on"
}
# eager ARGS: the eager client against it, without pauses.
eager() { timeout 20 "$LABNET" eager-client --port 5001 --pause-min 0 --pause-max 0 "$@"; }
tcpdump -i lo -n -U --immediate-mode -Z root -B 16384 -w "$PCAP" tcp 2>tcpdump.log &
tcpdump=$!
# On any exit: stop the jobs still running, then tcpdump, once the last packets are in.
trap 'for p in $(jobs -p); do [ "$p" = "$tcpdump" ] || kill "$p" || true; done
      sleep 0.2; kill -INT "$tcpdump" || true; wait "$tcpdump" || true
      cat tcpdump.log server.log >&2 2>/dev/null || true' EXIT
wait_for tcpdump.log "listening on"
"#;

/// Runs `traffic` (bash, after [`PROLOGUE`]) in a new network namespace and
/// returns the capture of its TCP on loopback.
fn capture(sb: &Sandbox, name: &str, traffic: &str) -> PathBuf {
    let script = sb.write(&format!("{name}.sh"), &format!("{PROLOGUE}\n{traffic}\n"));
    let dir = script.parent().expect("sandbox directory");
    let pcap = dir.join(format!("{name}.pcap"));
    let out = Command::new("unshare")
        .args(["--net", "bash"])
        .arg(&script)
        .current_dir(dir)
        .env("LABNET", labnet_binary())
        .env("PCAP", &pcap)
        .output()
        .expect("run unshare (util-linux)");
    assert!(
        out.status.success(),
        "{name}: the capture script failed (root, unshare, nft, tcpdump needed):\n{}",
        transcript(&out)
    );
    pcap
}

/// Frames tshark flags with each field of [`COMPARED`], in that order.
fn tshark(pcap: &Path) -> Vec<Vec<u64>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap).args([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-e",
        "frame.number",
    ]);
    for (_, field) in COMPARED {
        cmd.args(["-e", field]);
    }
    let out = cmd
        .output()
        .expect("run tshark (scripts/test-deps.sh installs it)");
    assert!(out.status.success(), "tshark failed:\n{}", transcript(&out));
    let mut hits = vec![Vec::new(); COMPARED.len()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split('\t');
        let frame: u64 = cols
            .next()
            .and_then(|c| c.parse().ok())
            .expect("tshark prints the frame number first");
        for (hit, value) in hits.iter_mut().zip(cols) {
            // Flags print 1 (or True) when set; tcp.flags.reset prints 0 when not.
            if !value.is_empty() && value != "0" && value != "False" {
                hit.push(frame);
            }
        }
    }
    hits
}

/// What `pcap-summary` found, once it agrees with tshark.
struct Found {
    /// Frame bytes in the capture.
    bytes: u64,
    /// Our counts, by the names in [`COMPARED`].
    counts: BTreeMap<&'static str, u64>,
}

/// Reads `pcap` with `labctl pcap-summary --json` and with tshark, and asserts the
/// counts of [`COMPARED`] agree.
fn agree(sb: &Sandbox, pcap: &Path) -> Found {
    let run = sb.run(&["pcap-summary", "--json", pcap.to_str().expect("UTF-8 path")]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON summary");
    let summary = &doc["files"][0];
    let mut counts = BTreeMap::new();
    let mut failures = Vec::new();
    for ((name, field), frames) in COMPARED.iter().zip(tshark(pcap)) {
        let ours = &summary["tcp_totals"][name];
        let count = ours["count"].as_u64().expect("a count");
        if count != frames.len() as u64 {
            failures.push(format!(
                "{name}: ours {count} (first frame {}), tshark {field}: {} (frames {frames:?})",
                ours["first"]["frame"],
                frames.len()
            ));
        }
        counts.insert(*name, count);
    }
    assert!(
        failures.is_empty(),
        "disagreements with tshark on {}:\n{}",
        pcap.display(),
        failures.join("\n")
    );
    Found {
        bytes: summary["bytes"].as_u64().expect("bytes"),
        counts,
    }
}

#[test]
fn clean_transfer_agrees_with_tshark() {
    let sb = Sandbox::new();
    let pcap = capture(
        &sb,
        "clean",
        "serve --wait-seconds 0\neager --count 300\nwait $server",
    );
    let found = agree(&sb, &pcap);
    assert!(found.bytes > 1_000_000, "no transfer captured");
    assert_eq!(found.counts["retransmissions"], 0, "{:?}", found.counts);
    assert_eq!(found.counts["resets"], 0, "{:?}", found.counts);
}

#[test]
fn induced_loss_agrees_with_tshark() {
    let sb = Sandbox::new();
    // Drop on input, not output: tcpdump on lo takes packets on their way in, before
    // the input hook, so the capture holds segments the receiver never gets, as one on
    // a lossy link would. An output drop comes before that point and TCP takes it for
    // a local send error, sending the segment again as new: nothing would show.
    // Ethernet-sized segments make more of them to lose and recover.
    let pcap = capture(
        &sb,
        "loss",
        r#"ip link set lo mtu 1500
nft add table inet lab
nft add chain inet lab in '{ type filter hook input priority 0; }'
nft add rule inet lab in tcp dport 5001 numgen random mod 10 0 drop
serve --wait-seconds 0
eager --count 300
wait $server"#,
    );
    let found = agree(&sb, &pcap);
    assert!(
        found.counts["retransmissions"] > 0,
        "no retransmission: {:?}",
        found.counts
    );
}

#[test]
fn zero_window_agrees_with_tshark() {
    let sb = Sandbox::new();
    // A 4 KiB receive buffer left unread for half a second.
    let pcap = capture(
        &sb,
        "zero_window",
        "serve --recv-buffer 4096 --wait-seconds 0.5\neager --count 100\nwait $server",
    );
    let found = agree(&sb, &pcap);
    assert!(
        found.counts["zero_windows"] > 0,
        "no zero window: {:?}",
        found.counts
    );
    assert!(
        found.counts["window_full"] > 0,
        "no full window: {:?}",
        found.counts
    );
}

#[test]
fn resets_agree_with_tshark() {
    let sb = Sandbox::new();
    let pcap = capture(
        &sb,
        "resets",
        r#"# Refused: nothing listens on port 5002, so the SYN gets a reset.
if timeout 10 "$LABNET" tcp-client --port 5002 --count 1; then echo "port 5002 took a connection" >&2; exit 1; fi
# Unread data: this server never reads, and closing it resets the connection.
serve
timeout 20 "$LABNET" eager-client --port 5001 --pause-min 0 --pause-max 0 >client.log 2>&1 &
client=$!
wait_for client.log "sent #5 "
kill $server
wait $server || true
wait $client || true"#,
    );
    let found = agree(&sb, &pcap);
    // One for the refused connection, one for the unread data.
    assert!(found.counts["resets"] >= 2, "resets: {:?}", found.counts);
}
