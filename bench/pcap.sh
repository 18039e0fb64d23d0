#!/usr/bin/env bash
# pcap.sh - `labctl pcap-summary` throughput beside `tshark -z conv,tcp` and `capinfos`,
# on the same capture of at least a million real packets.
#
# Why: students summarise captures from their instances with `labctl pcap-summary`
# instead of opening Wireshark, and a capture of a load test runs to millions of
# packets. The summary must keep up with the tools it stands in for: tshark's
# conversation table (which, like labctl, dissects every TCP segment) and capinfos
# (which only counts records, so it is the floor). This script times all three on one
# file and prints seconds, MB/s, packets/s and the ratios; it checks that labctl counts
# the same packets as capinfos (it fails if not) and prints its TCP conversation count
# beside tshark's.
#
# The capture is real traffic, made once and cached: inside a network namespace of its
# own (`unshare --net --pid --fork`, so the host's network is never touched), tcpdump
# records `lo` until it has --packets packets while the lab's programs (labnet) talk
# over loopback:
#   - rounds of `labnet load --pause 0` (1000 clients each) against `intro-server`, each
#     round to another 127.x address, so every connection is a conversation of its own;
#   - the same (500 clients a round) against a second `intro-server` whose port loses
#     1 packet in 200 both ways (an nftables rule on the namespace's input hook, after
#     tcpdump has seen the packet): retransmissions, duplicate ACKs;
#   - two long `labnet rtt` connections to `echo-server`;
#   - `eager-client` against `hesitant-server` with a small receive buffer: zero
#     windows, window-full and zero-window probes.
# Each tool is run once untimed (so the file is in the page cache), then --runs times;
# the figures are the median, with the fastest beside it.
#
# Usage: bench/pcap.sh [options]
#   --packets N     packets in the capture (default 1000000)
#   --runs N        timed runs per tool (default 3)
#   --file FILE     time this capture instead of the cached loopback one (no capture)
#   --recapture     capture again even if the cached file exists
#   --no-build      use the existing release binaries instead of `cargo build --release`
#
# Environment: CARGO_TARGET_DIR (binaries in ${CARGO_TARGET_DIR:-target}/release);
# LABCTL_BINARY, LABCTL_LABNET_BINARY (use these binaries, build nothing);
# LABCTL_CACHE (the capture is kept in ${LABCTL_CACHE:-~/.cache/labctl}/bench/).
# Capturing needs root (a network namespace, tcpdump, nft); timing does not. Every
# process started is stopped by its PID, also after a failure or Ctrl-C, and whatever
# is left in the namespace ends with it.
set -euo pipefail
export LC_ALL=C

die() { printf 'pcap.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^# Environment:/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# Runs inside the namespace (the script calls itself through unshare):
#   pcap.sh __capture OUT PACKETS LABNET HOST_NETNS
# Brings `lo` up, adds the loss rule, starts tcpdump and the traffic, and returns once
# tcpdump has written PACKETS packets and everything it started has stopped.
# HOST_NETNS is the caller's network namespace: it refuses to run in that one.
capture_inside() {
    local out=$1 packets=$2 labnet=$3 host_netns=$4
    local lossy_port=8081 pids=() td
    [[ $(readlink /proc/self/ns/net) != "$host_netns" ]] ||
        die "__capture must run in a network namespace of its own"

    # shellcheck disable=SC2317,SC2329  # invoked by the trap below
    stop_all() {
        local pid
        for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
        pids=()
    }
    trap stop_all EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    ip link set lo up
    nft add table inet bench
    # On the input hook: tcpdump sees a packet on `lo` as it comes in, before the
    # hook drops it, so the capture holds the lost packet and its retransmission (a
    # drop on the output hook would happen before tcpdump saw it).
    nft add chain inet bench in '{ type filter hook input priority 0; }'
    nft add rule inet bench in tcp dport "$lossy_port" numgen random mod 200 0 drop
    nft add rule inet bench in tcp sport "$lossy_port" numgen random mod 200 0 drop

    # -B: a 64 MiB kernel buffer, so tcpdump keeps up rather than dropping packets.
    tcpdump -i lo -n -B 65536 -c "$packets" -Z root -w "$out" 2>"$out.tcpdump" &
    td=$!
    pids+=("$td")
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q '^listening on' "$out.tcpdump" 2>/dev/null && break
        kill -0 "$td" 2>/dev/null || { cat "$out.tcpdump" >&2; return 1; }
        sleep 0.05
    done

    "$labnet" intro-server --quiet --port 8080 >/dev/null 2>&1 &
    pids+=($!)
    "$labnet" intro-server --quiet --port "$lossy_port" >/dev/null 2>&1 &
    pids+=($!)
    "$labnet" echo-server --port 12001 >/dev/null 2>&1 &
    pids+=($!)
    "$labnet" hesitant-server --port 1234 --recv-buffer 4096 --wait-seconds 1 >/dev/null 2>&1 &
    pids+=($!)
    sleep 0.3

    # Repeats `labnet load` against PORT, each round to the next address of 127.NET.x.y,
    # until tcpdump has its packets. A TERM stops the round in progress too.
    rounds() {
        local port=$1 net=$2 clients=$3 r=0 child=
        # shellcheck disable=SC2317,SC2329  # invoked by the trap
        trap '[[ -z $child ]] || kill -TERM "$child" 2>/dev/null; exit 143' TERM
        while kill -0 "$td" 2>/dev/null; do
            "$labnet" load --host "127.$net.$((r / 250)).$((r % 250 + 1))" --port "$port" \
                --clients "$clients" --pause 0 --connect-timeout 10 --timeout 10 \
                >/dev/null 2>&1 &
            child=$!
            wait "$child" || true
            child=
            r=$((r + 1))
        done
    }
    rounds 8080 1 1000 &
    pids+=($!)
    rounds "$lossy_port" 2 500 &
    pids+=($!)
    "$labnet" rtt --host 127.3.0.1 --count 100000 >/dev/null 2>&1 &
    pids+=($!)
    "$labnet" rtt --host 127.3.0.2 --count 100000 >/dev/null 2>&1 &
    pids+=($!)
    "$labnet" eager-client --host 127.4.0.1 --port 1234 --count 3000 --pause-min 0 \
        --pause-max 0 --send-buffer 4096 --write-timeout 60 >/dev/null 2>&1 &
    pids+=($!)

    local status=0
    wait "$td" || status=$?
    stop_all
    return "$status"
}

if [[ ${1:-} == __capture ]]; then
    shift
    capture_inside "$@"
    exit
fi

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

packets=1000000
runs=3
file=
recapture=
build=1
while (($#)); do
    case $1 in
    --packets) packets=${2:?--packets needs a number}; shift 2 ;;
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --file) file=${2:?--file needs a capture}; shift 2 ;;
    --recapture) recapture=1; shift ;;
    --no-build) build=; shift ;;
    -h | --help) usage ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $packets =~ ^[1-9][0-9]*$ ]] || die "--packets must be a positive number"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
for tool in tshark capinfos jq; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
labctl=${LABCTL_BINARY:-$target_dir/release/labctl}
labnet=${LABCTL_LABNET_BINARY:-$target_dir/release/labnet}
if [[ -n $build && -z ${LABCTL_BINARY:-} ]]; then
    (cd "$root" && cargo build --release --bin labctl) >&2 || die "cargo build failed"
fi
[[ -x $labctl ]] || die "no labctl binary at $labctl (build it, or drop --no-build)"

# ---------------------------------------------------------------- the capture

if [[ -z $file ]]; then
    cache=${LABCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/labctl}/bench
    file=$cache/loopback-$packets.pcap
    if [[ -n $recapture || ! -s $file ]]; then
        ((EUID == 0)) || die "capturing needs root (a network namespace, tcpdump, nft)"
        for tool in unshare tcpdump nft ip; do
            command -v "$tool" >/dev/null || die "$tool is not installed"
        done
        if [[ -n $build && -z ${LABCTL_LABNET_BINARY:-} ]]; then
            (cd "$root" && cargo build --release -p labnet) >&2 || die "cargo build failed"
        fi
        [[ -x $labnet ]] || die "no labnet binary at $labnet (build it, or drop --no-build)"
        mkdir -p "$cache"
        part=$file.part
        rm -f -- "$part" "$part.tcpdump"
        printf 'capturing %s packets of loopback traffic into %s ...\n' "$packets" "$file" >&2
        t0=$EPOCHREALTIME
        # --pid --fork: anything still running in the namespace ends with it.
        if ! unshare --net --pid --fork -- bash "${BASH_SOURCE[0]}" __capture \
            "$part" "$packets" "$labnet" "$(readlink /proc/self/ns/net)"; then
            msg=$(cat -- "$part.tcpdump" 2>/dev/null || true)
            rm -f -- "$part" "$part.tcpdump"
            die "capture failed${msg:+: $msg}"
        fi
        t1=$EPOCHREALTIME
        printf 'captured in %.1f s; tcpdump: %s\n' "$(bc <<<"$t1 - $t0")" \
            "$(grep -E 'dropped by kernel' "$part.tcpdump" | tr -d '\n')" >&2
        rm -f -- "$part.tcpdump"
        mv -- "$part" "$file"
    fi
fi
[[ -s $file ]] || die "no capture at $file"

size=$(stat -c %s -- "$file")
count=$(capinfos -M -c -- "$file" | awk -F': *' '/^Number of packets/ {print $2}')
[[ $count =~ ^[0-9]+$ ]] || die "capinfos could not count the packets of $file"
printf 'capture: %s\n  %s bytes (%.1f MB), %s packets (capinfos -c)\n' \
    "$file" "$size" "$(bc -l <<<"$size / 1000000")" "$count"
printf 'labctl %s; %s; %s; %s CPUs\n\n' "$("$labctl" --version | cut -d' ' -f2-)" \
    "$(tshark --version 2>/dev/null | head -1)" "$(capinfos -v 2>/dev/null | head -1)" "$(nproc)"

# ---------------------------------------------------------------- sanity

tmp=$(mktemp -d "${TMPDIR:-/tmp}/labctl-pcap-bench.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

"$labctl" pcap-summary --json -- "$file" >"$tmp/labctl.json"
tshark -q -n -z conv,tcp -r "$file" >"$tmp/tshark.txt" 2>/dev/null
read -r l_packets l_tcp_convs l_tcp_packets l_problems < <(jq -r '.files[0] |
    [.packets,
     ([.conversations[] | select(.protocol == "tcp")] | length),
     ([.conversations[] | select(.protocol == "tcp") | .packets] | add // 0),
     ([.tcp_totals | to_entries[] | select(.value.count > 0) | "\(.key)=\(.value.count)"]
      | join(",") | if . == "" then "none" else . end)] | @tsv' \
    "$tmp/labctl.json")
# A row: A <-> B, then frames and bytes (a number and a unit) for <-, -> and total.
read -r t_tcp_convs t_tcp_packets < <(awk '$2 == "<->" {n++; f += $10} END {print n + 0, f + 0}' \
    "$tmp/tshark.txt")
same() { if [[ $1 == "$2" ]]; then echo same; else echo DIFFERENT; fi; }
printf 'packets:            labctl %s, capinfos %s (%s)\n' "$l_packets" "$count" \
    "$(same "$l_packets" "$count")"
printf 'TCP conversations:  labctl %s, tshark %s (%s)\n' "$l_tcp_convs" "$t_tcp_convs" \
    "$(same "$l_tcp_convs" "$t_tcp_convs")"
printf 'TCP packets:        labctl %s, tshark %s (%s)\n' "$l_tcp_packets" "$t_tcp_packets" \
    "$(same "$l_tcp_packets" "$t_tcp_packets")"
printf 'TCP problems (labctl): %s\n\n' "${l_problems//,/ }"
[[ $l_packets == "$count" ]] || die "labctl counted $l_packets packets, capinfos $count"

# ---------------------------------------------------------------- timing

# Sets `med` and `best` to the median and the fastest of --runs timed runs of a
# command, after one untimed run; its output goes to /dev/null.
time_runs() {
    local i t0 t1 samples=()
    "$@" >/dev/null 2>&1 || die "failed: $*"
    for ((i = 0; i < runs; i++)); do
        t0=$EPOCHREALTIME
        "$@" >/dev/null 2>&1 || die "failed: $*"
        t1=$EPOCHREALTIME
        samples+=("$(bc <<<"$t1 - $t0")")
    done
    read -r med best <<<"$(printf '%s\n' "${samples[@]}" | sort -g | awk '{s[NR] = $1} END {
        m = NR % 2 ? s[(NR + 1) / 2] : (s[NR / 2] + s[NR / 2 + 1]) / 2
        printf "%.4f %.4f\n", m, s[1]}')"
}

names=("labctl pcap-summary" "labctl pcap-summary --json" "tshark -q -n -z conv,tcp" "capinfos")
tool() {
    case $1 in
    0) "$labctl" pcap-summary -- "$file" ;;
    1) "$labctl" pcap-summary --json -- "$file" ;;
    2) tshark -q -n -z conv,tcp -r "$file" ;;
    3) capinfos -- "$file" ;;
    esac
}
median=()
printf '%-28s %9s %9s %9s %12s\n' tool "median s" "best s" "MB/s" "packets/s"
for i in "${!names[@]}"; do
    time_runs tool "$i"
    median[i]=$med
    printf '%-28s %9.3f %9.3f %9.1f %12.0f\n' "${names[$i]}" "$med" "$best" \
        "$(bc -l <<<"$size / 1000000 / $med")" "$(bc -l <<<"$count / $med")"
done

printf '\nthroughput ratios (median times, other tool / labctl):\n'
for l in 0 1; do
    for peer in 2 3; do
        printf '  %-28s vs %-26s %6.2f\n' "${names[$l]}" "${names[$peer]}" \
            "$(bc -l <<<"${median[$peer]} / ${median[$l]}")"
    done
done
