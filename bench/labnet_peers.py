#!/usr/bin/env python3
"""labnet_peers.py - the Python side of bench/labnet.sh (Python 3 standard library only).

Why: labnet replaces the labs' Python programs, so it should be at least as fast and hold
at least as many connections. This file holds Python peers written from the labs' designs
(LAB-PROTOCOLS.md sections 2 and 3) and the driver that runs them beside labnet on
loopback and prints medians and ratios.

Subcommands:
  rtt-client   --port P [--host H] [--count N]
               the lab's RTT client: send b"42", recv until both bytes are back, time
               each round trip with time.perf_counter(); prints `Average RTT: X ms`
  intro-server [--port P] [--backlog N]
               the lab's threaded intro server: one thread per connection; intro line,
               8 lowercase hex digits of length, the message read in 100-byte chunks,
               print it, close. First line: `listening on ip:port`
  bench        --labnet BIN [--runs N] [--count N] [--load-runs N] [--clients N]
               [--conns N] [--only rtt|load|capacity]
               the benchmark itself (see bench/labnet.sh)

Every process the driver starts is stopped by its PID when it ends (also on SIGTERM).
"""

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

LOOPBACK = "127.0.0.1"

# ---------------------------------------------------------------------------- peers


def rtt_average_ms(host, port, count):
    """The lab's RTT client on one connection; returns the average in milliseconds."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect((host, port))
    s.settimeout(10)
    total = 0.0
    try:
        for _ in range(count):
            start = time.perf_counter()
            s.send(b"42")
            got = b""
            while len(got) < 2:
                chunk = s.recv(1024)
                if not chunk:
                    raise RuntimeError("echo server closed the connection")
                got += chunk
            total += time.perf_counter() - start
    finally:
        s.close()
    return total / count * 1000


def cmd_rtt_client(args):
    print(f"Average RTT: {rtt_average_ms(args.host, args.port, args.count):.3f} ms")


INTRO = b"Hello! I am the server. Send me the length as 8 hex digits, then the message.\n"


def intro_handler(conn):
    """One connection of the lab's threaded server."""
    try:
        conn.sendall(INTRO)
        header = b""
        while len(header) < 8:
            chunk = conn.recv(8 - len(header))
            if not chunk:
                return
            header += chunk
        length = int(header.decode(), 16)
        message = b""
        while len(message) < length:
            chunk = conn.recv(min(100, length - len(message)))
            if not chunk:
                break
            message += chunk
        print(message.decode(errors="replace"), flush=True)
    except (OSError, ValueError):
        pass
    finally:
        conn.close()


def cmd_intro_server(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.host, args.port))
    s.listen(args.backlog)
    host, port = s.getsockname()
    print(f"listening on {host}:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        conn, _ = s.accept()
        threading.Thread(target=intro_handler, args=(conn,), daemon=True).start()


# ---------------------------------------------------------------------------- driver

STARTED = []  # every process the driver started, stopped by PID at the end


def stop_all():
    for proc in STARTED:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    STARTED.clear()


def start_server(argv):
    """Starts a server, reads `listening on ip:port`, drains the rest of its stdout."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    STARTED.append(proc)
    first = proc.stdout.readline().decode().strip()
    if not first.startswith("listening on "):
        raise RuntimeError(f"{argv[0]}: first line was {first!r}")
    port = int(first.rsplit(":", 1)[1])
    lines = []

    def drain():
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return proc, port, lines


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    STARTED.remove(proc)


def intro_server_argv(labnet, *extra):
    """`labnet intro-server` on a free loopback port; `--quiet` (no line per connection)
    when this build has it, so 1000 log lines do not weigh on the figures."""
    help_text = subprocess.run([labnet, "intro-server", "--help"], capture_output=True,
                               text=True).stdout
    quiet = ["--quiet"] if "--quiet" in help_text else []
    return [labnet, "intro-server", "--bind", LOOPBACK, "--port", "0", *quiet, *extra]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def bench_rtt(labnet, runs, count):
    print(f"\n(a) RTT: {count} round trips of b'42' over one connection, {runs} runs each,")
    print("    against the same `labnet echo-server`; figures are each run's average.")
    proc, port, _ = start_server([labnet, "echo-server", "--bind", LOOPBACK, "--port", "0"])
    labnet_ms, python_ms = [], []
    try:
        for _ in range(runs):
            out = subprocess.run(
                [labnet, "rtt", "--host", LOOPBACK, "--port", str(port), "--count", str(count)],
                capture_output=True, text=True, timeout=120, check=True,
            ).stdout
            avg = next(l for l in out.splitlines() if l.startswith("Average RTT: "))
            labnet_ms.append(float(avg.split()[2]))
            python_ms.append(rtt_average_ms(LOOPBACK, port, count))
    finally:
        stop(proc)
    lm, pm = median(labnet_ms), median(python_ms)
    print(f"    labnet rtt      median {lm:.4f} ms  runs {fmt(labnet_ms)}")
    print(f"    Python client   median {pm:.4f} ms  runs {fmt(python_ms)}")
    print(f"    ratio Python/labnet {pm / lm:.2f}")
    return {"labnet_ms": labnet_ms, "python_ms": python_ms}


def fmt(xs, digits=4):
    return "[" + ", ".join(f"{x:.{digits}f}" for x in xs) + "]"


def load_once(labnet, port, clients):
    """One `labnet load` run; returns (driver wall seconds, the run's JSON or None)."""
    start = time.perf_counter()
    done = subprocess.run(
        [labnet, "load", "--host", LOOPBACK, "--port", str(port),
         "--clients", str(clients), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    wall = time.perf_counter() - start
    try:
        run = json.loads(done.stdout)["runs"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        run = None
        print(f"    (unparsed load output, exit {done.returncode}: "
              f"{(done.stdout + done.stderr).strip()[:300]!r})")
    return wall, run


def pct(run, key, p):
    try:
        return float(run[key][p])
    except (TypeError, KeyError, ValueError):
        return float("nan")


def bench_load(labnet, runs, clients):
    somaxconn = open("/proc/sys/net/core/somaxconn").read().strip()
    print(f"\n(b) load: `labnet load --clients {clients}` (each client sleeps 1 s after the"
          f" intro), {runs} runs per server; net.core.somaxconn = {somaxconn}")
    me = os.path.abspath(__file__)
    servers = [
        ("labnet intro-server --backlog 5",
         intro_server_argv(labnet, "--backlog", "5")),
        ("labnet intro-server (default backlog 1024)", intro_server_argv(labnet)),
        ("Python threaded, backlog 5 (lab)",
         [sys.executable, me, "intro-server", "--port", "0", "--backlog", "5"]),
        ("Python threaded, backlog 1024",
         [sys.executable, me, "intro-server", "--port", "0", "--backlog", "1024"]),
    ]
    results = {}
    for name, argv in servers:
        proc, port, _ = start_server(argv)
        walls, runs_json = [], []
        try:
            for _ in range(runs):
                wall, run = load_once(labnet, port, clients)
                walls.append(wall)
                runs_json.append(run)
        finally:
            stop(proc)
        ok = [r for r in runs_json if r]
        row = {
            "wall_s": median(walls),
            "done_p50": median([pct(r, "completion_ms", "p50") for r in ok]),
            "done_p99": median([pct(r, "completion_ms", "p99") for r in ok]),
            "done_max": median([pct(r, "completion_ms", "max") for r in ok]),
            "intro_p99": median([pct(r, "intro_ms", "p99") for r in ok]),
            "failed": [r.get("failed") for r in ok],
            "refused": [r.get("refused") for r in ok],
            "reset": [r.get("reset") for r in ok],
            "timed_out": [r.get("timed_out") for r in ok],
            "walls_s": walls,
            "runs": runs_json,
        }
        results[name] = row
        print(f"    {name:40s} wall {row['wall_s']:.3f} s {fmt(walls, 2)}  completion p50 "
              f"{row['done_p50']:.1f} p99 {row['done_p99']:.1f} max {row['done_max']:.1f} ms"
              f"  intro p99 {row['intro_p99']:.1f} ms  failed {row['failed']}"
              f" (refused {row['refused']} reset {row['reset']}"
              f" timed out {row['timed_out']})")
        errors = {}
        for r in ok:
            for message, n in (r.get("errors") or {}).items():
                errors[message] = errors.get(message, 0) + n
        if errors:
            print(f"        errors over the runs: {errors}")
    # Like for like: the lab's backlog 5 on both sides, then 1024 on both sides.
    names = [name for name, _ in servers]
    for python_name, labnet_name in ((names[2], names[0]), (names[3], names[1])):
        py, ln = results[python_name], results[labnet_name]
        print(f"    ratio {python_name} / {labnet_name}: wall "
              f"{py['wall_s'] / ln['wall_s']:.2f}, completion p50 "
              f"{py['done_p50'] / ln['done_p50']:.2f}, p99 "
              f"{py['done_p99'] / ln['done_p99']:.2f}")
    return results


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def bench_capacity(labnet, target, batch=500):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"\n(c) capacity: idle connections to `labnet intro-server --backlog 4096` up to"
          f" {target} (driver fd limit {soft}/{hard})")
    proc, port, _ = start_server(intro_server_argv(labnet, "--backlog", "4096"))
    base_rss = rss_kib(proc.pid)
    socks, held, error = [], 0, None
    started = time.perf_counter()
    try:
        while held < target and error is None:
            fresh = []
            for _ in range(min(batch, target - held)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(5)
                try:
                    s.connect((LOOPBACK, port))
                except OSError as e:
                    s.close()
                    error = f"connect #{held + len(fresh) + 1}: {e}"
                    break
                fresh.append(s)
            socks.extend(fresh)
            # Held means accepted: the server has sent its intro line on this socket.
            for s in fresh:
                try:
                    if not s.recv(4096):
                        error = f"connection #{held + 1} closed before its intro line"
                        break
                except OSError as e:
                    error = f"connection #{held + 1}: no intro line ({e})"
                    break
                held += 1
        # Still open at the end: a peek finds no EOF on any of them.
        closed = 0
        for s in socks[:held]:
            s.setblocking(False)
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        rss = rss_kib(proc.pid)
        fds = open_fds(proc.pid)
        took = time.perf_counter() - started
    finally:
        for s in socks:
            s.close()
        stop(proc)
    print(f"    held {held - closed} of {target} connections open at once"
          f" ({'no error' if error is None else error}); {closed} closed early")
    print(f"    server VmRSS {rss / 1024:.1f} MiB with them open ({base_rss / 1024:.1f} MiB"
          f" idle, {(rss - base_rss) / max(held, 1):.2f} KiB per connection);"
          f" {fds} fds; {took:.2f} s to open")
    return {"held": held - closed, "error": error, "rss_kib": rss, "idle_rss_kib": base_rss}


def cmd_bench(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = {}
    try:
        if args.only in (None, "rtt"):
            report["rtt"] = bench_rtt(args.labnet, args.runs, args.count)
        if args.only in (None, "load"):
            report["load"] = bench_load(args.labnet, args.load_runs, args.clients)
        if args.only in (None, "capacity"):
            report["capacity"] = bench_capacity(args.labnet, args.conns)
    finally:
        stop_all()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rtt-client")
    r.add_argument("--host", default=LOOPBACK)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--count", type=int, default=500)
    i = sub.add_parser("intro-server")
    i.add_argument("--host", default=LOOPBACK)
    i.add_argument("--port", type=int, default=8080)
    i.add_argument("--backlog", type=int, default=5)
    b = sub.add_parser("bench")
    b.add_argument("--labnet", required=True)
    b.add_argument("--runs", type=int, default=5)
    b.add_argument("--count", type=int, default=500)
    b.add_argument("--load-runs", type=int, default=3)
    b.add_argument("--clients", type=int, default=1000)
    b.add_argument("--conns", type=int, default=10000)
    b.add_argument("--only", choices=["rtt", "load", "capacity"])
    b.add_argument("--json")
    args = p.parse_args()
    {"rtt-client": cmd_rtt_client, "intro-server": cmd_intro_server,
     "bench": cmd_bench}[args.cmd](args)


if __name__ == "__main__":
    main()
