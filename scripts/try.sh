#!/usr/bin/env bash
# try.sh - the default lab, end to end, on a local LocalStack: nothing touches AWS.
#
# Starts the project's LocalStack (scripts/localstack.sh) and brings the repository's
# topology.yaml up there with labctl: plan, up (which re-plans to prove AWS matches),
# then the outputs. LocalStack has no Ubuntu 24.04 image, so the lab runs from a copy
# of topology.yaml that names an image from LocalStack's catalogue; everything else is
# the default lab. The same labctl commands work on real AWS without AWS_ENDPOINT_URL.
#
# Usage: scripts/try.sh          bring the lab up (again: it is idempotent)
#        scripts/try.sh down     take it down
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

# ami-785db401: x86_64 Ubuntu in LocalStack's built-in catalogue.
localstack_image=ami-785db401
work=${LABCTL_TRY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/labctl/try}
mkdir -p "$work"
sed "s/image: ubuntu-24.04/image: $localstack_image/" topology.yaml > "$work/topology.yaml"

endpoint=$(bash scripts/localstack.sh start)
export AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
# The build the tests make (`cargo test`'s feature set, dev-dependencies included):
# `cargo build --bin labctl` alone resolves other features for tokio, hashbrown and
# num-traits, which the AWS SDK depends on, so the SDK would compile twice on a machine
# that runs both this and scripts/test.sh.
cargo test --workspace --no-run --locked --quiet
labctl=${CARGO_TARGET_DIR:-target}/debug/labctl

run() { printf '\n$ labctl %s\n' "$*" >&2; "$labctl" -f "$work/topology.yaml" "$@"; }
if [ "${1:-up}" = down ]; then
  run down --yes
  exit
fi
run validate
run plan
run up --yes
printf '\nThe lab runs on LocalStack at %s.\nTake it down with: scripts/try.sh down   (LocalStack itself: scripts/localstack.sh stop)\n' "$endpoint" >&2
