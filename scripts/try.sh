#!/usr/bin/env bash
# try.sh - the default lab, end to end, on a local LocalStack: nothing touches AWS.
#
# Starts the project's LocalStack (scripts/localstack.sh), then runs labctl on the
# repository's topology.yaml: validate it, show what it creates, and check that the
# AWS layer reaches the emulated cloud. The same labctl commands work on real AWS
# without AWS_ENDPOINT_URL.
#
# Usage: scripts/try.sh
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

endpoint=$(bash scripts/localstack.sh start)
export AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
# LocalStack has no Ubuntu 24.04 image; graph shows the image reference unresolved.
cargo build --quiet --bin labctl
labctl=${CARGO_TARGET_DIR:-target}/debug/labctl

run() { printf '\n$ labctl %s\n' "$*" >&2; "$labctl" "$@"; }
run validate
run graph
run doctor
printf '\nLocalStack keeps running at %s; stop it with: scripts/localstack.sh stop\n' "$endpoint" >&2
