#!/usr/bin/env bash
# labnet.sh - labnet's lab programs beside the labs' Python programs, on loopback.
#
# Why: labnet replaces the Python programs students run in the console and threading
# labs. It must not make the figures the labs ask about worse (RTT), and its servers
# should hold up where the Python ones give in (1000 concurrent clients, and far more
# idle connections). This script measures both sides against the same peers and prints
# medians and ratios. All traffic stays on 127.0.0.1; every run is bounded.
#
#   (a) RTT: `labnet rtt --count N` and a Python client of the lab's design (send b"42",
#       recv until both bytes are back, time it) take turns against one
#       `labnet echo-server`; median of the per-run averages, ratio Python/labnet.
#   (b) load: `labnet load --clients N` against `labnet intro-server` (--backlog 5
#       and its default 1024) and against a threaded Python intro server of the lab's
#       design, with the lab's backlog 5 and with 1024 (so the ratio is not only SYN
#       retries); median wall time and completion percentiles, ratios.
#   (c) capacity: idle connections opened to `labnet intro-server` up to --conns, with
#       the fd limit raised as far as the hard limit allows; how many it held before the
#       first error, and its VmRSS (from /proc/<pid>/status) with them open.
#
# Usage: bench/labnet.sh [options]
#   --runs N        RTT runs per side (default 5)
#   --count N       round trips per RTT run (default 500, the lab's)
#   --load-runs N   load runs per server (default 3)
#   --clients N     clients per load run (default 1000, the lab's largest)
#   --conns N       connections to try in (c) (default 10000)
#   --only WHAT     rtt | load | capacity: one part only (default all three)
#   --json FILE     also write every figure as JSON to FILE
#   --no-build      use the existing binary instead of `cargo build --release -p labnet`
#
# Environment: CARGO_TARGET_DIR (labnet is ${CARGO_TARGET_DIR:-target}/release/labnet).
# The peers and the driver are bench/labnet_peers.py (Python 3 standard library only).
# Every process started is stopped by its PID on exit, also after a failure or Ctrl-C.

set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

runs=5
count=500
load_runs=3
clients=1000
conns=10000
only=
json_out=
build=1

die() { printf 'labnet.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^# Environment:/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
    case $1 in
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --count) count=${2:?--count needs a number}; shift 2 ;;
    --load-runs) load_runs=${2:?--load-runs needs a number}; shift 2 ;;
    --clients) clients=${2:?--clients needs a number}; shift 2 ;;
    --conns) conns=${2:?--conns needs a number}; shift 2 ;;
    --only) only=${2:?--only needs rtt, load or capacity}; shift 2 ;;
    --json) json_out=${2:?--json needs a file}; shift 2 ;;
    --no-build) build=; shift ;;
    -h | --help) usage ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
case $only in '' | rtt | load | capacity) ;; *) die "--only takes rtt, load or capacity" ;; esac

target_dir=${CARGO_TARGET_DIR:-$root/target}
labnet=$target_dir/release/labnet
if [[ -n $build ]]; then
    (cd "$root" && cargo build --release -p labnet) >&2 || die "cargo build failed"
fi
[[ -x $labnet ]] || die "no labnet binary at $labnet (build it, or drop --no-build)"

# A load test holds one socket per client and (c) needs ~10 000: raise the soft limit to
# the hard one; labnet does the same for itself, Python inherits it from here.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

driver=
# shellcheck disable=SC2317  # invoked by the trap below
cleanup() {
    if [[ -n $driver ]] && kill -0 "$driver" 2>/dev/null; then
        kill -TERM "$driver" 2>/dev/null || true
        wait "$driver" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf 'labnet %s; %s; %s CPUs; fd limit %s\n' \
    "$("$labnet" --version | cut -d' ' -f2-)" "$(python3 --version)" "$(nproc)" "$(ulimit -n)"

args=(bench --labnet "$labnet" --runs "$runs" --count "$count" --load-runs "$load_runs"
    --clients "$clients" --conns "$conns")
[[ -n $only ]] && args+=(--only "$only")
[[ -n $json_out ]] && args+=(--json "$json_out")

# In the background so the trap can stop it by PID; the driver stops its own children.
python3 "$root/bench/labnet_peers.py" "${args[@]}" &
driver=$!
status=0
wait "$driver" || status=$?
driver=
exit "$status"
