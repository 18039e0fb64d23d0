#!/usr/bin/env bash
# ssm.sh - `labctl forward` throughput and `labctl ssm-shell` echo latency, through the
# project's SSM test double, each beside a peer run in the same script.
#
# Why: the official plugin pauses 1 ms after every 1 KiB it sends, which caps a port
# forward; labctl does not. This measures both on the same session endpoint: the same
# transfer with labctl's own pacing and with the plugin's (`--pace-like-plugin`), and a
# keystroke's echo through a session against a local shell with no session at all.
# The lab comes up on the project's LocalStack (EC2 for the names; the double answers
# Session Manager, as in the tests). All traffic stays on 127.0.0.1.
#
# Usage: bench/ssm.sh [--megabytes N] [--runs N] [--keys N] [--json FILE] [--no-build]
#   --megabytes N   size of each transfer (default 100)
#   --runs N        transfers per side (default 3)
#   --keys N        keystrokes per side (default 200)
#   --json FILE     also write every sample as JSON
#   --no-build      use the existing release binaries
#
# Environment: CARGO_TARGET_DIR (binaries in ${CARGO_TARGET_DIR:-target}/release).
# The driver is bench/ssm_peers.py (Python 3 standard library only). The lab is taken
# down on exit, also after a failure or Ctrl-C.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build=1
peer_args=()
while (($#)); do
    case $1 in
    --megabytes | --runs | --keys | --json) peer_args+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --no-build) build=; shift ;;
    *) sed -n '/^# Usage:/,/^# Environment:/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
if [[ -n $build ]]; then
    cargo build --release --quiet --locked -p labctl -p ssm-double -p labnet
fi
labctl=$target_dir/release/labctl
double=$target_dir/release/ssm-double

endpoint=$(bash scripts/localstack.sh start)
export AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export LABCTL_LABNET_BINARY=$target_dir/release/labnet
tmp=$(mktemp -d "${TMPDIR:-/tmp}/labctl-ssm-bench.XXXXXX")
lab=ssmbench$$
sed -e "s/^name: netlab/name: $lab/" -e 's/image: ubuntu-24.04/image: ami-785db401/' \
    topology.yaml >"$tmp/topology.yaml"
cleanup() {
    "$labctl" -q -f "$tmp/topology.yaml" down --yes --delete-captures >/dev/null 2>&1 || true
    rm -rf -- "$tmp"
}
trap cleanup EXIT
"$labctl" -q -f "$tmp/topology.yaml" up --yes >/dev/null
python3 bench/ssm_peers.py --labctl "$labctl" --double "$double" \
    --topology "$tmp/topology.yaml" "${peer_args[@]}"
