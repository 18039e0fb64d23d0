#!/usr/bin/env bash
# test.sh - run every test: the pure core, the CLI, and the AWS layer against LocalStack.
#
# Why a script: the suite needs cargo-nextest and a running LocalStack; this makes
# both present (installing what is missing) so one command works on a fresh machine.
# LocalStack is left running for the next run; `scripts/localstack.sh stop` ends it.
#
# Usage: scripts/test.sh [nextest arguments...]
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

# Debian 12's cloud-init (extracted, not installed) and the shell linter, for the
# user-data tests.
bash scripts/test-deps.sh

# labnet as instances get it, built once here: tests upload it, and never run cargo
# themselves (cargo's build lock would deadlock under the test run).
labnet=$(cargo build --release --locked -p labnet --bin labnet --message-format=json-render-diagnostics |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$labnet" ] || { echo "test.sh: could not build labnet" >&2; exit 1; }
export LABCTL_LABNET_BINARY=$labnet
# The SSM test double, built the same way (debug: the test build shares it).
ssm_double=$(cargo build --locked -p ssm-double --bin ssm-double --message-format=json-render-diagnostics |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$ssm_double" ] || { echo "test.sh: could not build ssm-double" >&2; exit 1; }
export LABCTL_SSM_DOUBLE=$ssm_double

# Start (or find) the shared LocalStack before the tests do, so its start-up time is
# not charged to whichever test happens to run first.
endpoint=$(bash scripts/localstack.sh start)
echo "test.sh: LocalStack at $endpoint" >&2

profile=default
[ "${CI:-}" = "true" ] && profile=ci
exec cargo nextest run --workspace --locked --profile "$profile" "$@"
