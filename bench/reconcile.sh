#!/usr/bin/env bash
# reconcile.sh - time labctl against CloudFormation on the same LocalStack.
#
# Why: labctl replaces a CloudFormation stack (or a console session) for the
# lab, so it should be at least as quick to bring the lab up and tear it down,
# and a no-change `plan` should be cheap. This script measures both tools from
# one process, round by round, against one LocalStack, and prints medians,
# min/max, the labctl/CloudFormation ratios and labctl's AWS API call counts.
#
# Each round (all timed with Python's time.perf_counter()):
#   labctl, default lab without `dns:`  up (cold, fresh lab name), plan, down
#   CloudFormation, bench/lab.cfn.yaml  create-stack until CREATE_COMPLETE,
#                                       delete-stack until DELETE_COMPLETE/gone
#   labctl, the full default lab        up, plan, down (reported beside it)
# The head-to-head leaves DNS out because LocalStack 4.13.1's CloudFormation
# cannot create an AWS::Route53::HostedZone. `plan --detailed-exitcode` must
# exit 0 (nothing to change) right after `up`, or the run fails.
#
# Usage: bench/reconcile.sh [options]
#   --runs N            timed rounds (default 5)
#   --warmup N          untimed rounds first, for one-off start-up costs (default 1)
#   --only WHAT         labctl | cfn: run one half only (default both)
#   --poll SECONDS      describe-stacks interval while waiting (default 0.05)
#   --json FILE         also write every sample as JSON to FILE
#   --no-build          use the existing labctl binary instead of `cargo build --release`
#   --keep-localstack   leave LocalStack running even if this script started it
#   --fresh-localstack  run a LocalStack of its own (empty, on a free port) and stop
#                       it at the end; the shared one keeps every terminated instance,
#                       and its DescribeInstances slows down as they pile up
#
# Environment: CARGO_TARGET_DIR (labctl is ${CARGO_TARGET_DIR:-target}/release/labctl),
# LABCTL_LOCALSTACK_HOME (see scripts/localstack.sh).
#
# The lab copies live in a temporary directory: topology.yaml with
# `image: ubuntu-24.04` replaced by ami-785db401 (LocalStack has no Ubuntu
# 24.04 image) and a fresh `name:` per round. Whatever a round created is
# deleted on exit, also after a failure or Ctrl-C (labctl down, delete-stack).
# LocalStack is stopped at the end only if this script started it.

set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

runs=5
warmup=1
only=
poll=0.05
json_out=
build=1
keep_localstack=
fresh=

die() { printf 'reconcile.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^# Environment:/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
    case $1 in
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --warmup) warmup=${2:?--warmup needs a number}; shift 2 ;;
    --only) only=${2:?--only needs labctl or cfn}; shift 2 ;;
    --poll) poll=${2:?--poll needs seconds}; shift 2 ;;
    --json) json_out=${2:?--json needs a file}; shift 2 ;;
    --no-build) build=; shift ;;
    --keep-localstack) keep_localstack=1; shift ;;
    --fresh-localstack) fresh=1; shift ;;
    -h | --help) usage ;;
    *) printf 'reconcile.sh: unknown argument %s\n' "$1" >&2; usage ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup must be a number"
[[ -z $only || $only == labctl || $only == cfn ]] || die "--only takes labctl or cfn"
[[ $poll =~ ^0*\.0*[1-9][0-9]*$ ]] || die "--poll must be a fraction of a second, e.g. 0.05"
[[ -z $json_out || $json_out == /* ]] || json_out=$PWD/$json_out

cd "$root"

# ---------------------------------------------------------------- labctl

labctl=
if [[ $only != cfn ]]; then
    target_dir=${CARGO_TARGET_DIR:-target}
    [[ $target_dir == /* ]] || target_dir=$root/$target_dir
    labctl=$target_dir/release/labctl
    if [[ -n $build ]]; then
        printf 'reconcile.sh: cargo build --release --bin labctl\n' >&2
        cargo build --release --quiet --bin labctl
    fi
    [[ -x $labctl ]] || die "no labctl binary at $labctl"
    help=$("$labctl" --help) || die "$labctl --help failed"
    for cmd in up plan down; do
        grep -Eq "^[[:space:]]+$cmd([[:space:]]|$)" <<<"$help" ||
            die "$labctl has no \`$cmd\` command yet (see \`labctl --help\`)"
    done
fi

# ---------------------------------------------------------------- cleanup

tmp=$(mktemp -d "${TMPDIR:-/tmp}/labctl-bench.XXXXXX")
ledger=$tmp/ledger
: >"$ledger"

localstack=(bash "$root/scripts/localstack.sh")
started_localstack=
endpoint=
python=
driver_pid=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Interrupted: the driver stops its running labctl first, so nothing is
    # still creating while the cleanup deletes.
    if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
        kill -TERM "$driver_pid" 2>/dev/null || true
        wait "$driver_pid" 2>/dev/null || true
    fi
    if [[ -s $ledger && -n $endpoint ]]; then
        AWS_ENDPOINT_URL=$endpoint "$python" "$tmp/driver.py" cleanup \
            --ledger "$ledger" --labctl "$labctl" || rc=1
    fi
    if [[ -n $started_localstack && -z $keep_localstack ]]; then
        "${localstack[@]}" stop || true
    fi
    rm -rf -- "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- LocalStack

# The LocalStack virtualenv (it has boto3), named as scripts/localstack.sh names it.
ls_home=${LABCTL_LOCALSTACK_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/labctl/localstack}
pins=$(sha256sum "$root/scripts/localstack-requirements.txt")
venv=venv-${pins:0:12}

if [[ -n $fresh ]]; then
    # A LocalStack of our own: empty state, a free port, the shared virtualenv
    # (linked, so nothing is installed twice); always stopped at the end.
    "${localstack[@]}" install
    export LABCTL_LOCALSTACK_HOME=$tmp/localstack
    mkdir -p "$LABCTL_LOCALSTACK_HOME"
    ln -s "$ls_home/$venv" "$LABCTL_LOCALSTACK_HOME/$venv"
    ls_home=$LABCTL_LOCALSTACK_HOME
    keep_localstack=
    started_localstack=1
elif ! "${localstack[@]}" status 2>/dev/null | grep -q 'pid [0-9]'; then
    # Stop it at the end only if none of ours was running (or starting) before.
    started_localstack=1
fi
endpoint=$(LABCTL_LOCALSTACK_SERVICES=ec2,iam,route53,s3,ssm,sts,cloudformation "${localstack[@]}" start)
[[ $endpoint == http://127.0.0.1:* ]] || die "unexpected LocalStack endpoint: $endpoint"
python=$ls_home/$venv/bin/python
"$python" -c 'import boto3' 2>/dev/null || die "no boto3 in $python"

# ---------------------------------------------------------------- the driver

cat >"$tmp/driver.py" <<'PYTHON'
"""Runs and times the rounds; `cleanup` deletes what an interrupted run left."""
import argparse
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time

import boto3
import botocore.exceptions

AMI = "ami-785db401"  # x86_64 Ubuntu in LocalStack's catalogue
COMMAND_TIMEOUT = 900  # seconds; a hung command fails the run instead of stalling it
API_STATS = re.compile(r"^labctl: (\d+) AWS API calls?$", re.M)


def log(msg):
    print(f"reconcile: {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


class Interrupted(BaseException):
    """SIGTERM from reconcile.sh; subprocess.run kills the running labctl on its way out."""


def on_sigterm(signum, frame):
    raise Interrupted()


# ------------------------------------------------------------ AWS environment

def aws_env(region):
    env = dict(os.environ)
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "LABCTL_REGION",
              "LABCTL_TOPOLOGY", "LABCTL_MY_IP"):
        env.pop(k, None)
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION=region, AWS_DEFAULT_REGION=region)
    return env


def client(service, region):
    return boto3.client(
        service, endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=region,
        aws_access_key_id="test", aws_secret_access_key="test")


def cfn_client(region):
    return client("cloudformation", region)


def instance_count(region):
    """Instances LocalStack holds in the region, terminated ones included: it keeps
    them, and its DescribeInstances takes longer the more there are."""
    pages = client("ec2", region).get_paginator("describe_instances").paginate()
    return sum(len(r["Instances"]) for page in pages for r in page["Reservations"])


class Ledger:
    """What exists right now, so that cleanup can delete it whatever happens."""

    def __init__(self, path):
        self.path = path

    def add(self, kind, ref):
        with open(self.path, "a") as f:
            f.write(f"{kind}\t{ref}\n")

    def done(self, kind, ref):
        self.add(kind + "-done", ref)

    def pending(self):
        live = {}
        with open(self.path) as f:
            for line in f:
                kind, ref = line.rstrip("\n").split("\t", 1)
                if kind.endswith("-done"):
                    live.pop((kind[:-5], ref), None)
                else:
                    live[(kind, ref)] = True
        return list(live)


# ------------------------------------------------------------ topology copies

def topology_copy(src, name, drop_dns):
    text = open(src).read()
    text, n = re.subn(r"^name:.*$", f"name: {name}", text, flags=re.M)
    if n != 1:
        raise Failure(f"{src}: expected one top-level `name:` line, found {n}")
    images = len(re.findall(r"^\s+image:", text, flags=re.M))
    text, n = re.subn(r"^(\s+image:\s*)ubuntu-24\.04\b", rf"\g<1>{AMI}", text, flags=re.M)
    if n == 0 or n != images:
        raise Failure(f"{src}: expected every instance to use `image: ubuntu-24.04`")
    if drop_dns:
        out, in_dns, dropped = [], False, False
        for line in text.splitlines(keepends=True):
            if re.match(r"^dns:\s*(#.*)?$", line):
                in_dns = dropped = True
                continue
            if in_dns and (line.strip() == "" or line[0] in " \t"):
                continue
            in_dns = False
            out.append(line)
        if not dropped:
            raise Failure(f"{src}: no top-level `dns:` section to remove")
        text = "".join(out)
    return text


# ------------------------------------------------------------ labctl

def run_labctl(labctl, env, args, expect, logdir, tag):
    cmd = [labctl, "--api-stats", *args]
    out_path = os.path.join(logdir, f"{tag}.log")
    with open(out_path, "w") as out:
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.PIPE, text=True, timeout=COMMAND_TIMEOUT)
        elapsed = time.perf_counter() - t0
        out.write(p.stderr)
    if p.returncode not in expect:
        sys.stderr.write(open(out_path).read())
        raise Failure(f"`{' '.join(cmd[1:])}` exited {p.returncode}, expected {sorted(expect)}"
                      + (" (2: it still sees changes right after `up`)" if p.returncode == 2 else ""))
    calls = API_STATS.findall(p.stderr)
    if not calls:
        log(f"warning: no `labctl: N AWS API calls` line from `{' '.join(cmd[1:])}`")
    return elapsed, int(calls[-1]) if calls else None


def labctl_round(args, env, ledger, variant, name, topo_src):
    path = os.path.join(args.tmp, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(topology_copy(topo_src, name, drop_dns=(variant == "nodns")))
    ledger.add("lab", path)
    sample = {"lab": name}
    for step, cmd, expect in (
        ("up", ["up", "--yes", "-f", path], {0}),
        ("plan", ["plan", "--detailed-exitcode", "-f", path], {0}),
        ("down", ["down", "--yes", "--delete-captures", "-f", path], {0}),
    ):
        secs, calls = run_labctl(args.labctl, env, cmd, expect, args.tmp, f"{name}-{step}")
        sample[step] = secs
        sample[step + "_calls"] = calls
    ledger.done("lab", path)
    return sample


# ------------------------------------------------------------ CloudFormation

def stack_failure(cfn, stack, status, reason):
    lines = [f"stack {stack}: {status} {reason or ''}".rstrip()]
    try:
        for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]:
            if e["ResourceStatus"].endswith("FAILED"):
                lines.append(f"  {e['LogicalResourceId']} ({e['ResourceType']}): "
                             f"{e['ResourceStatus']} {e.get('ResourceStatusReason', '')}")
    except botocore.exceptions.ClientError:
        pass
    return Failure("\n".join(lines))


def wait_stack(cfn, stack, want, poll, timeout=COMMAND_TIMEOUT):
    """Polls until the stack reaches `want` (or is gone, for deletes); returns polls made."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        try:
            s = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        except botocore.exceptions.ClientError as e:
            if want == "DELETE_COMPLETE" and "does not exist" in str(e):
                return polls + 1
            raise
        polls += 1
        status = s["StackStatus"]
        if status == want:
            return polls
        if status.endswith("FAILED") or "ROLLBACK" in status or not status.endswith("IN_PROGRESS"):
            raise stack_failure(cfn, stack, status, s.get("StackStatusReason"))
        if time.monotonic() > deadline:
            raise Failure(f"stack {stack}: still {status} after {timeout}s")
        time.sleep(poll)


def cfn_round(args, cfn, ledger, name, template):
    ledger.add("stack", name)
    t0 = time.perf_counter()
    stack_id = cfn.create_stack(
        StackName=name, TemplateBody=template, Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": "LabName", "ParameterValue": name},
                    {"ParameterKey": "ImageId", "ParameterValue": AMI}])["StackId"]
    create_polls = wait_stack(cfn, stack_id, "CREATE_COMPLETE", args.poll)
    create = time.perf_counter() - t0
    # Untimed: which resources LocalStack only pretended to create.
    resources = cfn.describe_stack_resources(StackName=stack_id)["StackResources"]
    fallback = sorted({r["ResourceType"] for r in resources
                       if "not supported" in r.get("ResourceStatusReason", "")})
    t0 = time.perf_counter()
    cfn.delete_stack(StackName=stack_id)
    delete_polls = wait_stack(cfn, stack_id, "DELETE_COMPLETE", args.poll)
    delete = time.perf_counter() - t0
    ledger.done("stack", name)
    return {"stack": name, "create": create, "delete": delete,
            "create_calls": 1 + create_polls, "delete_calls": 1 + delete_polls,
            "resources": len(resources),
            "fallback": sum(1 for r in resources
                            if "not supported" in r.get("ResourceStatusReason", "")),
            "fallback_types": fallback}


# ------------------------------------------------------------ report

def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs)


def fmt_calls(xs):
    s = stats(xs)
    if s is None:
        return "n/a"
    med, lo, hi = s
    med = f"{med:g}"
    return med if lo == hi else f"{med} ({lo:g}-{hi:g})"


def report(args, samples, held):
    rows = []

    def row(label, lab, key, calls_key=None, note=None, group=None):
        xs = [s[key] for s in samples.get(group, [])]
        st = stats(xs)
        if st is None:
            return
        calls = fmt_calls([s[calls_key] for s in samples[group]]) if calls_key else "-"
        rows.append((label, lab, *(f"{v:.3f}" for v in st), note or calls))

    row("labctl up", "no DNS", "up", "up_calls", group="nodns")
    row("CloudFormation create-stack", "no DNS", "create", group="cfn",
        note="- (inside LocalStack)")
    row("labctl down", "no DNS", "down", "down_calls", group="nodns")
    row("CloudFormation delete-stack", "no DNS", "delete", group="cfn",
        note="- (inside LocalStack)")
    row("labctl plan (no changes)", "no DNS", "plan", "plan_calls", group="nodns")
    row("labctl up", "full", "up", "up_calls", group="full")
    row("labctl plan (no changes)", "full", "plan", "plan_calls", group="full")
    row("labctl down", "full", "down", "down_calls", group="full")

    head = ("command", "lab", "median s", "min s", "max s", "AWS API calls")
    print()
    print(f"{args.runs} timed rounds (after {args.warmup} warm-up), LocalStack "
          f"{os.environ['AWS_ENDPOINT_URL']}, describe-stacks every {args.poll} s; "
          f"LocalStack held {held[0]} EC2 instances (terminated included) before, {held[1]} after")
    print()
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" if i < 2 else "---:" for i in range(len(head))) + " |")
    for r in rows:
        print("| " + " | ".join(r) + " |")

    def ratio(what, a, b):
        sa = stats([s[a[1]] for s in samples.get(a[0], [])])
        sb = stats([s[b[1]] for s in samples.get(b[0], [])])
        if sa and sb:
            print(f"| {what} | {sa[0] / sb[0]:.2f} |")

    if samples.get("cfn") and samples.get("nodns"):
        print()
        print("| labctl / CloudFormation (medians, lab without DNS) | ratio |")
        print("| --- | ---: |")
        ratio("create: `up` / create-stack", ("nodns", "up"), ("cfn", "create"))
        ratio("delete: `down` / delete-stack", ("nodns", "down"), ("cfn", "delete"))
    if samples.get("cfn"):
        c = samples["cfn"][-1]
        print()
        print(f"CloudFormation: {c['resources']} resources in the stack, {c['fallback']} of them "
              f"not deployed by LocalStack (fallback placeholders: "
              f"{', '.join(c['fallback_types']) or 'none'}).")
        print("CloudFormation client calls (create/delete + describe-stacks polls): create "
              + fmt_calls([s["create_calls"] for s in samples["cfn"]]) + ", delete "
              + fmt_calls([s["delete_calls"] for s in samples["cfn"]]) + ".")


# ------------------------------------------------------------ main

def cmd_run(args):
    region = args.region
    env = aws_env(region)
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    ledger = Ledger(args.ledger)
    template = open(args.template).read()
    cfn = cfn_client(region) if args.only != "labctl" else None
    run_id = secrets.token_hex(3)
    halves = []
    if args.only != "cfn":
        # Fail on a bad copy before timing anything.
        for variant in ("nodns", "full"):
            path = os.path.join(args.tmp, f"check-{variant}.yaml")
            with open(path, "w") as f:
                f.write(topology_copy(args.topology, f"bench-{run_id}-x", variant == "nodns"))
            p = subprocess.run([args.labctl, "validate", "-f", path], env=env,
                               capture_output=True, text=True)
            if p.returncode != 0:
                sys.stderr.write(p.stdout + p.stderr)
                raise Failure(f"labctl validate rejects the {variant} copy of {args.topology}")
    if cfn:
        cfn.validate_template(TemplateBody=template)
    samples = {"nodns": [], "cfn": [], "full": []}
    held = [instance_count(region)]
    total = args.warmup + args.runs
    for i in range(total):
        warm = i < args.warmup
        tag = f"w{i + 1}" if warm else f"{i - args.warmup + 1}"
        label = f"warm-up {i + 1}/{args.warmup}" if warm else f"round {tag}/{args.runs}"
        got = {}
        if args.only != "cfn":
            got["nodns"] = labctl_round(args, env, ledger, "nodns", f"bench-{run_id}-n{tag}",
                                        args.topology)
        if cfn:
            got["cfn"] = cfn_round(args, cfn, ledger, f"bench-{run_id}-c{tag}", template)
        if args.only != "cfn":
            got["full"] = labctl_round(args, env, ledger, "full", f"bench-{run_id}-f{tag}",
                                       args.topology)
        parts = []
        if "nodns" in got:
            g = got["nodns"]
            parts.append(f"labctl(no DNS) up {g['up']:.2f}s plan {g['plan']:.2f}s "
                         f"down {g['down']:.2f}s")
        if "cfn" in got:
            g = got["cfn"]
            parts.append(f"cfn create {g['create']:.2f}s delete {g['delete']:.2f}s")
        if "full" in got:
            g = got["full"]
            parts.append(f"labctl(full) up {g['up']:.2f}s plan {g['plan']:.2f}s "
                         f"down {g['down']:.2f}s")
        log(f"{label}: " + "; ".join(parts))
        if not warm:
            for k, v in got.items():
                samples[k].append(v)
    held.append(instance_count(region))
    report(args, samples, held)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "warmup": args.warmup, "poll": args.poll,
                       "instances_before_after": held, "samples": samples}, f, indent=2)
        log(f"samples written to {args.json}")


def cmd_cleanup(args):
    ledger = Ledger(args.ledger)
    failed = False
    cfn = None
    for kind, ref in ledger.pending():
        try:
            if kind == "lab" and args.labctl and os.path.exists(ref):
                region = re.search(r"^region:\s*(\S+)", open(ref).read(), re.M)
                env = aws_env(region.group(1) if region else "eu-north-1")
                log(f"cleanup: labctl down -f {ref}")
                p = subprocess.run([args.labctl, "-q", "down", "--yes", "--delete-captures", "-f", ref],
                                   env=env, stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT)
                if p.returncode != 0:
                    raise Failure(f"labctl down exited {p.returncode}")
            elif kind == "stack":
                cfn = cfn or cfn_client(args.region)
                log(f"cleanup: delete-stack {ref}")
                try:
                    cfn.delete_stack(StackName=ref)
                except botocore.exceptions.ClientError as e:
                    if "does not exist" not in str(e):
                        raise
                wait_stack(cfn, ref, "DELETE_COMPLETE", 0.2, timeout=300)
            ledger.done(kind, ref)
        except Exception as e:  # keep going: delete as much as possible
            failed = True
            log(f"cleanup of {kind} {ref} failed: {e}")
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    c = sub.add_parser("cleanup")
    for q in (r, c):
        q.add_argument("--ledger", required=True)
        q.add_argument("--labctl", default="")
        q.add_argument("--region", default="eu-north-1")
    r.add_argument("--tmp", required=True)
    r.add_argument("--topology", required=True)
    r.add_argument("--template", required=True)
    r.add_argument("--runs", type=int, required=True)
    r.add_argument("--warmup", type=int, required=True)
    r.add_argument("--poll", type=float, required=True)
    r.add_argument("--only", default="")
    r.add_argument("--json", default="")
    a = p.parse_args()
    if a.cmd == "run":
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if a.cmd == "run":
            cmd_run(a)
            return 0
        return cmd_cleanup(a)
    except Failure as e:
        log(f"FAILED: {e}")
        return 1
    except Interrupted:
        log("interrupted")
        return 143


if __name__ == "__main__":
    sys.exit(main())
PYTHON

region=$(sed -n 's/^region:[[:space:]]*\([a-z0-9-]*\).*/\1/p' "$root/topology.yaml" | head -n 1)
# In the background, so that a signal runs the trap at once (bash defers traps
# until a foreground child exits); the trap forwards it to the driver.
AWS_ENDPOINT_URL=$endpoint "$python" "$tmp/driver.py" run \
    --ledger "$ledger" --labctl "$labctl" --region "${region:-eu-north-1}" \
    --tmp "$tmp" --topology "$root/topology.yaml" --template "$root/bench/lab.cfn.yaml" \
    --runs "$runs" --warmup "$warmup" --poll "$poll" --only "$only" --json "$json_out" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
driver_pid=
((status == 0)) || exit "$status"
