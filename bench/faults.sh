#!/usr/bin/env bash
# faults.sh - labctl on a bad day: up and down through the fault-injecting endpoint,
# side by side with a clean run, and a crash at every request.
#
# Why: labctl promises that `up` and `down` finish in one run through throttling,
# server errors, lost answers and crashes. This measures what that costs (wall time
# and AWS calls) and proves the crash half of the promise at every request, not just
# at a few chosen moments.
#
# What it runs, against a LocalStack of its own (empty, on a free port):
#   settings  clean (straight to LocalStack); 0% (through crates/aws-faults, no
#             faults); 5% and 20% of mutating calls failing (throttling, server
#             errors, lost answers and resets in equal parts); EC2's token buckets.
#             Each: --runs rounds of `up` then `down` of the default lab, with the
#             medians of wall time and AWS calls, and the ratio to the clean run.
#   sweep     for k = 1 .. the calls of a clean `up`: `up` ends itself at its k-th
#             request (LABCTL_CRASH_AT, as a kill would), then one `up` must reach an
#             empty plan and one `down` must leave nothing. Printed per k.
#
# Usage: bench/faults.sh [--runs N] [--no-sweep] [--no-build]
# Environment: CARGO_TARGET_DIR; LABCTL_PATIENCE (default 0.2: backoff and timeouts
# at a fifth of labctl's real ones, so a run of the sweep takes minutes, not hours).
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

runs=5
sweep=1
build=1
while (($#)); do
    case $1 in
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --no-sweep) sweep=; shift ;;
    --no-build) build=; shift ;;
    *) sed -n '/^# Usage:/,/^# Environment:/p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
done
export LABCTL_PATIENCE=${LABCTL_PATIENCE:-0.2}
target=${CARGO_TARGET_DIR:-$root/target}
if [[ -n $build ]]; then
    cargo build --release --locked --bin labctl -p labctl --manifest-path "$root/Cargo.toml" >&2
    cargo build --release --locked --bin aws-faults -p aws-faults --manifest-path "$root/Cargo.toml" >&2
    cargo build --release --locked --bin labnet -p labnet --manifest-path "$root/Cargo.toml" >&2
fi
export LABCTL_LABNET_BINARY=${LABCTL_LABNET_BINARY:-$target/release/labnet}
labctl=$target/release/labctl
faults=$target/release/aws-faults
[[ -x $labctl && -x $faults ]] || { echo "faults.sh: build labctl and aws-faults first" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    LABCTL_LOCALSTACK_HOME=$tmp/localstack bash "$root/scripts/localstack.sh" stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
ulimit -c 0

# A LocalStack of our own, sharing the installed virtualenv.
bash "$root/scripts/localstack.sh" install >&2
ls_home=${LABCTL_LOCALSTACK_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/labctl/localstack}
pins=$(sha256sum "$root/scripts/localstack-requirements.txt")
mkdir -p "$tmp/localstack"
ln -s "$ls_home/venv-${pins:0:12}" "$tmp/localstack/venv-${pins:0:12}"
localstack=$(LABCTL_LOCALSTACK_HOME=$tmp/localstack bash "$root/scripts/localstack.sh" start)
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test

# An endpoint with `rules`, on a free port; prints its URL.
endpoint() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$faults" --listen "127.0.0.1:$port" --upstream "$localstack" "$@" >/dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/_faults/stats" >/dev/null 2>&1 && break
        sleep 0.05
    done
    echo "http://127.0.0.1:$port"
}

lab_file() {
    sed -e "s/^name: netlab/name: $1/" -e 's/image: ubuntu-24.04/image: ami-785db401/' \
        "$root/topology.yaml" >"$tmp/$1.yaml"
    echo "$tmp/$1.yaml"
}

# One timed command: prints "seconds calls"; fails if labctl does.
timed() {
    local start end calls
    start=$(date +%s%N)
    calls=$("$labctl" --api-stats "$@" 2>&1 >/dev/null | sed -n 's/^labctl: \([0-9]*\) AWS API calls$/\1/p')
    end=$(date +%s%N)
    [[ -n $calls ]] || { echo "faults.sh: labctl $* failed" >&2; return 1; }
    awk -v ns=$((end - start)) -v calls="$calls" 'BEGIN { printf "%.3f %s\n", ns / 1e9, calls }'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A up_s up_c down_s down_c
settings=(clean 0% 5% 20% ec2-buckets)
for setting in "${settings[@]}"; do
    case $setting in
    clean) url=$localstack ;;
    0%) url=$(endpoint) ;;
    5%) url=$(endpoint --rule '!=throttle@0.0125' --rule '!=server-error@0.0125' --rule '!=lost@0.0125' --rule '!=reset@0.0125') ;;
    20%) url=$(endpoint --rule '!=throttle@0.05' --rule '!=server-error@0.05' --rule '!=lost@0.05' --rule '!=reset@0.05') ;;
    ec2-buckets) url=$(endpoint --ec2-buckets) ;;
    esac
    : >"$tmp/up" && : >"$tmp/down"
    for round in $(seq "$runs"); do
        lab=bench$RANDOM$round
        file=$(lab_file "$lab")
        AWS_ENDPOINT_URL=$url timed -f "$file" up --yes >>"$tmp/up"
        AWS_ENDPOINT_URL=$url timed -f "$file" down --yes --delete-captures >>"$tmp/down"
        echo "faults.sh: $setting round $round done" >&2
    done
    up_s[$setting]=$(cut -d' ' -f1 "$tmp/up" | median)
    up_c[$setting]=$(cut -d' ' -f2 "$tmp/up" | median)
    down_s[$setting]=$(cut -d' ' -f1 "$tmp/down" | median)
    down_c[$setting]=$(cut -d' ' -f2 "$tmp/down" | median)
done

echo
echo "$runs rounds each, LABCTL_PATIENCE=$LABCTL_PATIENCE, medians"
echo
echo "| setting | up s | up calls | up / clean | down s | down calls | down / clean |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for setting in "${settings[@]}"; do
    awk -v s="$setting" -v us="${up_s[$setting]}" -v uc="${up_c[$setting]}" -v u0="${up_s[clean]}" \
        -v ds="${down_s[$setting]}" -v dc="${down_c[$setting]}" -v d0="${down_s[clean]}" \
        'BEGIN { printf "| %s | %.3f | %s | %.2f | %.3f | %s | %.2f |\n", s, us, uc, us / u0, ds, dc, ds / d0 }'
done

[[ -n $sweep ]] || exit 0
calls=${up_c[clean]%.*}
echo
echo "Crash sweep: up ends itself at request k, then one up and one down (clean run: $calls calls)"
echo
echo "| k | recovering up s | re-plan empty | down leaves nothing |"
echo "| ---: | ---: | --- | --- |"
failed=0
for k in $(seq 1 "$calls"); do
    lab=crash$k$RANDOM
    file=$(lab_file "$lab")
    # In a subshell of its own, so the shell does not report the abort.
    (AWS_ENDPOINT_URL=$localstack LABCTL_CRASH_AT=$k "$labctl" -f "$file" up --yes >/dev/null 2>&1) 2>/dev/null || true
    recovered=$(AWS_ENDPOINT_URL=$localstack timed -f "$file" up --yes | cut -d' ' -f1) || recovered=failed
    empty=no
    AWS_ENDPOINT_URL=$localstack "$labctl" -f "$file" plan --detailed-exitcode >/dev/null 2>&1 && empty=yes
    gone=no
    AWS_ENDPOINT_URL=$localstack "$labctl" -f "$file" down --yes --delete-captures >/dev/null 2>&1 &&
        AWS_ENDPOINT_URL=$localstack "$labctl" -f "$file" down --yes 2>&1 | grep -q 'owns nothing' && gone=yes
    [[ $recovered != failed && $empty == yes && $gone == yes ]] || failed=$((failed + 1))
    echo "| $k | $recovered | $empty | $gone |"
done
echo
echo "$failed of $calls crash points did not recover"
[[ $failed -eq 0 ]]
