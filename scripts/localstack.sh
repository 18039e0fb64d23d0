#!/usr/bin/env bash
# localstack.sh - run one shared LocalStack for labctl's tests, without Docker.
#
# Why: the integration tests talk to AWS through LocalStack, and the machines
# that run them have no Docker engine. LocalStack 4.13.1 runs directly on the
# host from a virtualenv (`python -m localstack.runtime.main`). nextest runs
# every test as its own process, so `start` is idempotent and serialised by a
# lock: however many processes call it at once, exactly one LocalStack runs and
# they all get its endpoint.
#
# Usage: scripts/localstack.sh COMMAND
#   install    create the virtualenv from localstack-requirements.txt (once)
#   start      start LocalStack unless it is already up; print its endpoint URL
#   endpoint   print the endpoint URL if LocalStack is up and healthy, else exit 1
#   stop       stop the LocalStack named by the pidfile (ok if none is running)
#   status     print a one-line status; exit 0 only if up and healthy
#   logs [N]   print the log file path (stderr) and its last N lines (default 100)
#
# Environment:
#   LABCTL_LOCALSTACK_HOME      cache dir (default ${XDG_CACHE_HOME:-~/.cache}/labctl/localstack)
#   LABCTL_LOCALSTACK_SERVICES  services to enable (default ec2,iam,route53,s3,ssm,sts)
#   LABCTL_LOCALSTACK_TIMEOUT   seconds to wait for start-up (default 180)
#   LABCTL_LOCALSTACK_PYTHON    interpreter for the virtualenv (default python3; CPython 3.11)
#
# Clients then use AWS_ENDPOINT_URL=<printed URL>, any keys (test/test) and a region.

set -euo pipefail

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
requirements=$script_dir/localstack-requirements.txt

home_dir=${LABCTL_LOCALSTACK_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/labctl/localstack}
state_dir=$home_dir/run
services=${LABCTL_LOCALSTACK_SERVICES:-ec2,iam,route53,s3,ssm,sts}
timeout=${LABCTL_LOCALSTACK_TIMEOUT:-180}
python=${LABCTL_LOCALSTACK_PYTHON:-python3}

pid_file=$state_dir/localstack.pid
port_file=$state_dir/localstack.port
services_file=$state_dir/localstack.services
log_file=$state_dir/localstack.log
lock_file=$state_dir/lock

default_port=4566
poll_interval=0.2
stop_timeout=30

log() { printf 'localstack.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The venv is keyed by the pins, so it is shared by every clone and rebuilt
# when the pins change.
venv_dir() {
    local sum
    sum=$(sha256sum "$requirements") || die "cannot read $requirements"
    printf '%s/venv-%s\n' "$home_dir" "${sum:0:12}"
}

# ---------------------------------------------------------------- install

cmd_install() {
    local venv stamp
    venv=$(venv_dir)
    stamp=$venv/.labctl-install-complete
    mkdir -p "$home_dir"
    # A separate lock, so that `install` and `start` never build the same venv twice.
    exec 8>"$home_dir/install.lock"
    flock -x 8
    if [[ -f $stamp ]]; then
        exec 8>&-
        return 0
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        log "warning: $python is not CPython 3.11; the pins in $requirements were made for 3.11"
    fi
    log "installing LocalStack into $venv (takes a minute or two)"
    # No stamp means an earlier install did not finish: start from scratch.
    rm -rf -- "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$requirements"
    # Written only now, so an interrupted install is redone next time.
    touch "$stamp"
    exec 8>&-
    log "installed"
}

# ---------------------------------------------------------------- helpers

read_file() { [[ -f $1 ]] && cat -- "$1" 2>/dev/null; }

valid_pid() { [[ $1 =~ ^[0-9]+$ ]] && ((10#$1 > 1)); }

# Alive means it exists and is not a zombie waiting to be reaped.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Ours means a LocalStack runtime started from one of our venvs; this guards
# against a pidfile whose PID has since been reused by something else.
ours() {
    local cmdline
    valid_pid "$1" && alive "$1" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == "$home_dir"/venv-*/bin/python*localstack.runtime.main* ]]
}

from_current_venv() {
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == "$(venv_dir)/bin/python "* ]]
}

# Process group id of a PID (field 5 of /proc/PID/stat, after the command name).
pgid_of() {
    local stat fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    read -ra fields <<<"${stat##*) }"
    printf '%s\n' "${fields[2]}"
}

http_get() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --noproxy '*' --max-time 2 "$1" 2>/dev/null
    else
        "$python" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.stdout.write(opener.open(sys.argv[1], timeout=2).read().decode())
EOF
    fi
}

# Healthy means every requested service reports available or running.
healthy() {
    local port=$1 body svc wanted
    body=$(http_get "http://127.0.0.1:$port/_localstack/health") || return 1
    IFS=, read -ra wanted <<<"$services"
    for svc in "${wanted[@]}"; do
        [[ -z $svc ]] && continue
        [[ $body =~ \"$svc\"[[:space:]]*:[[:space:]]*\"(available|running)\" ]] || return 1
    done
}

# Prints the endpoint of our running, healthy instance, or fails.
running_endpoint() {
    local pid port
    pid=$(read_file "$pid_file") || return 1
    port=$(read_file "$port_file") || return 1
    ours "$pid" && [[ $port =~ ^[0-9]+$ ]] && healthy "$port" || return 1
    printf 'http://127.0.0.1:%s\n' "$port"
}

port_free() {
    "$(venv_dir)/bin/python" - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
EOF
}

# 4566 (LocalStack's usual port) if free, else whatever free port the kernel picks.
choose_port() {
    if port_free "$default_port"; then
        echo "$default_port"
        return
    fi
    "$(venv_dir)/bin/python" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

write_atomically() {
    printf '%s\n' "$2" >"$1.tmp"
    mv -f -- "$1.tmp" "$1"
}

# Waits until PID has exited (and its group, if TARGET names one), at most
# SECS seconds; fails if it is still there.
wait_gone() {
    local pid=$1 target=$2 deadline=$((SECONDS + $3))
    while kill -0 -- "$target" 2>/dev/null && alive "$pid"; do
        ((SECONDS >= deadline)) && return 1
        sleep "$poll_interval"
    done
}

# Stops one PID (and its process group, if it leads one), allowing GRACE
# seconds for a clean shutdown before SIGKILL. Only a PID that is our
# LocalStack is signalled.
stop_pid() {
    local pid=$1 grace=${2:-$stop_timeout} target
    if ! ours "$pid"; then
        return 0
    fi
    target=$pid
    [[ $(pgid_of "$pid") == "$pid" ]] && target=-$pid
    log "stopping LocalStack (pid $pid)"
    kill -TERM -- "$target" 2>/dev/null || true
    wait_gone "$pid" "$target" "$grace" && return 0
    log "pid $pid still running ${grace}s after SIGTERM; sending SIGKILL"
    kill -KILL -- "$target" 2>/dev/null || true
    wait_gone "$pid" "$target" 10 || log "pid $pid survived SIGKILL"
}

stop_locked() {
    local pid
    pid=$(read_file "$pid_file") || pid=
    [[ -n $pid ]] && stop_pid "$pid"
    rm -f -- "$pid_file" "$port_file" "$services_file"
}

take_lock() {
    mkdir -p "$state_dir"
    exec 9>"$lock_file"
    # Waiters may queue behind a whole start-up, so wait a little longer than that.
    flock -x -w $((timeout + stop_timeout + 30)) 9 || die "timed out waiting for $lock_file"
}

# ---------------------------------------------------------------- start

started_pid=
start_ok=

# On any failure or interruption after launching, take down what we launched.
# Short grace: it holds no state worth saving, and LocalStack 4.13.1 ignores a
# SIGTERM that arrives before its server is up (shutdown thread crashes with
# ReactorNotRunning), so only SIGKILL stops it then.
cleanup_failed_start() {
    if [[ -n $started_pid && -z $start_ok ]]; then
        stop_pid "$started_pid" 3
        rm -f -- "$pid_file" "$port_file" "$services_file"
    fi
}

cmd_start() {
    local endpoint pid port deadline venv run_services old_services began
    [[ $timeout =~ ^[0-9]+$ ]] || die "LABCTL_LOCALSTACK_TIMEOUT must be a number of seconds"
    take_lock

    # Reuse a healthy instance, unless it runs from a venv with older pins.
    if endpoint=$(running_endpoint) && from_current_venv "$(read_file "$pid_file")"; then
        echo "$endpoint"
        return 0
    fi

    # Something of ours may be running but unhealthy, or lack a requested
    # service: restart it, keeping the services it had so that callers asking
    # for different sets do not keep restarting each other.
    run_services=$services
    pid=$(read_file "$pid_file") || pid=
    if [[ -n $pid ]] && ours "$pid"; then
        old_services=$(read_file "$services_file") || old_services=
        [[ -n $old_services ]] && run_services=$old_services,$services
    fi
    run_services=$(tr ',' '\n' <<<"$run_services" | sed '/^$/d' | sort -u | paste -sd, -)
    stop_locked

    cmd_install
    venv=$(venv_dir)
    port=$(choose_port)

    trap cleanup_failed_start EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    log "starting LocalStack on 127.0.0.1:$port with services $run_services (log: $log_file)"
    mkdir -p "$state_dir/filesystem"
    : >"$log_file"
    # setsid gives it its own process group (so stop can take its children too)
    # and detaches it from our terminal; fd 9 is closed so it does not hold the lock.
    (
        cd "$state_dir"
        export GATEWAY_LISTEN=127.0.0.1:$port
        export DNS_ADDRESS=0                 # do not bind port 53
        export SERVICES=$run_services
        export EAGER_SERVICE_LOADING=1       # load services before reporting healthy
        # Host-mode directory layout rooted in the state dir. Without
        # OVERRIDE_IN_DOCKER=0 it sees /.dockerenv in a container and writes
        # to /var/lib/localstack and /tmp/localstack instead.
        export OVERRIDE_IN_DOCKER=0
        export FILESYSTEM_ROOT=$state_dir/filesystem
        # No internet here: use the self-signed cert, send no analytics.
        export SKIP_SSL_CERT_DOWNLOAD=1
        export DISABLE_EVENTS=1
        exec setsid nohup "$venv/bin/python" -m localstack.runtime.main \
            </dev/null >>"$log_file" 2>&1 9>&-
    ) &
    started_pid=$!
    disown "$started_pid" # no "Killed" job notice if we must kill it
    write_atomically "$pid_file" "$started_pid"
    write_atomically "$port_file" "$port"
    write_atomically "$services_file" "$run_services"

    # Wait only as long as needed: poll health until ready, death or deadline.
    services=$run_services
    began=$SECONDS
    deadline=$((began + timeout))
    until healthy "$port"; do
        if ! alive "$started_pid"; then
            log "LocalStack exited during start-up; last lines of $log_file:"
            tail -n 40 -- "$log_file" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "LocalStack not ready after ${timeout}s; last lines of $log_file:"
            tail -n 40 -- "$log_file" >&2 || true
            exit 1
        fi
        sleep "$poll_interval"
    done
    start_ok=1
    log "LocalStack ready (pid $started_pid) after $((SECONDS - began))s"
    printf 'http://127.0.0.1:%s\n' "$port"
}

# ---------------------------------------------------------------- others

cmd_stop() {
    take_lock
    stop_locked
}

cmd_endpoint() {
    running_endpoint
}

cmd_status() {
    local pid port endpoint
    if endpoint=$(running_endpoint); then
        echo "running: pid $(read_file "$pid_file"), $endpoint, services $(read_file "$services_file" || echo "?")"
        return 0
    fi
    pid=$(read_file "$pid_file") || pid=
    port=$(read_file "$port_file") || port=
    if [[ -n $pid ]] && ours "$pid"; then
        echo "starting or unhealthy: pid $pid, port ${port:-?} (log: $log_file)"
    else
        echo "not running"
    fi
    return 1
}

cmd_logs() {
    local lines=${1:-100}
    echo "$log_file" >&2
    [[ -f $log_file ]] || die "no log yet"
    tail -n "$lines" -- "$log_file"
}

usage() {
    sed -n '/^# Usage:/,/^# Clients/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
endpoint) cmd_endpoint ;;
stop) cmd_stop ;;
status) cmd_status ;;
logs) cmd_logs "${2:-}" ;;
*) usage ;;
esac
