#!/usr/bin/env python3
"""Measures `labctl forward` and `labctl ssm-shell` through the project's SSM test double.

Driven by bench/ssm.sh, which brings a lab up on LocalStack first. Everything stays on
127.0.0.1; every run is bounded; every process started is stopped by its PID.

(a) forward: N MB from a local client through `labctl forward` to a sink behind the
    double (which dials it as the agent would), timed from connect until the sink has
    counted every byte. Side by side: the same transfer with `--pace-like-plugin` (1 KiB
    per message and 1 ms after each, as the official plugin sends). Ratio labctl/paced.
(b) echo: a keystroke typed into `labctl ssm-shell` until the remote shell's echo is
    back, over many keystrokes; side by side: the same in a local bash in a local
    pseudo-terminal (no session at all). Ratio ssm-shell/local.
"""

import argparse
import json
import os
import pty
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time


def start_double(binary):
    proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("endpoint "):
        proc.kill()
        sys.exit(f"ssm_peers.py: the double printed {line!r}")
    return proc, line.split(" ", 1)[1]


def sink():
    """A server that counts what it reads, then answers the count (8 bytes) and closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            total = 0
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                total += len(chunk)
            conn.sendall(total.to_bytes(8, "big"))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def forward(labctl, env, remote, paced):
    args = [labctl, "forward", "server", str(remote)]
    if paced:
        args.append("--pace-like-plugin")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline()
    if not line.startswith("forwarding 127.0.0.1:"):
        proc.kill()
        sys.exit(f"ssm_peers.py: labctl forward printed {line!r}")
    return proc, int(line.split(":", 1)[1].split()[0])


def transfer(port, size):
    block = os.urandom(1 << 16)
    start = time.perf_counter()
    conn = socket.create_connection(("127.0.0.1", port), timeout=600)
    sent = 0
    while sent < size:
        n = min(len(block), size - sent)
        conn.sendall(block[:n])
        sent += n
    conn.shutdown(socket.SHUT_WR)
    got = b""
    while len(got) < 8:
        chunk = conn.recv(8 - len(got))
        if not chunk:
            break
        got += chunk
    elapsed = time.perf_counter() - start
    conn.close()
    counted = int.from_bytes(got, "big") if len(got) == 8 else -1
    if counted != size:
        sys.exit(f"ssm_peers.py: the sink counted {counted} bytes of {size}")
    return elapsed


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_until(fd, needle, timeout):
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{needle!r} not seen; got {buf[-200:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                buf += os.read(fd, 65536)
            except OSError as e:  # EIO: the program ended
                raise RuntimeError(f"{needle!r} not seen before the end; got {buf[-400:]!r}") from e
    return buf


def echo_latency(argv, env, keys, prompt):
    """Per-keystroke echo times (ms) of a shell run as argv in a new pseudo-terminal."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, env)
    try:
        read_until(fd, prompt, 30)
        samples = []
        for i in range(keys):
            key = b"abcdefghijklmnopqrstuvwxyz"[i % 26:i % 26 + 1]
            start = time.perf_counter()
            os.write(fd, key)
            read_until(fd, key, 10)
            samples.append((time.perf_counter() - start) * 1000)
            if i % 50 == 49:
                os.write(fd, b"\x15")  # Ctrl-U: clear the line
                time.sleep(0.05)
                while select.select([fd], [], [], 0.05)[0]:
                    os.read(fd, 65536)
        os.write(fd, b"\x15exit\r")
        time.sleep(0.2)
        return samples
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--labctl", required=True)
    p.add_argument("--double", required=True)
    p.add_argument("--topology", required=True)
    p.add_argument("--megabytes", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--keys", type=int, default=200)
    p.add_argument("--json")
    a = p.parse_args()

    double, endpoint = start_double(a.double)
    env = dict(os.environ, AWS_ENDPOINT_URL_SSM=endpoint, LABCTL_TOPOLOGY=a.topology)
    results = {}
    try:
        srv, port = sink()
        size = a.megabytes * 1_000_000
        for name, paced in (("labctl", False), ("paced like the plugin", True)):
            times = []
            for _ in range(a.runs):
                proc, local = forward(a.labctl, env, port, paced)
                try:
                    times.append(transfer(local, size))
                finally:
                    stop(proc)
            results[name] = times
        srv.close()
        fast = size / statistics.median(results["labctl"]) / 1e6
        slow = size / statistics.median(results["paced like the plugin"]) / 1e6
        print(f"forward, {a.megabytes} MB through one session, median of {a.runs}:")
        print(f"  labctl forward           {fast:8.1f} MB/s")
        print(f"  paced like the plugin    {slow:8.1f} MB/s")
        print(f"  ratio labctl/paced       {fast / slow:8.1f}x")

        ssm = echo_latency([a.labctl, "ssm-shell", "server"], env, a.keys, b"ssm-user$ ")
        local_env = dict(os.environ, PS1="local$ ")
        local = echo_latency(["bash", "--norc", "--noprofile", "-i"], local_env, a.keys,
                             b"local$ ")
        med_ssm, med_local = statistics.median(ssm), statistics.median(local)
        p99 = lambda xs: sorted(xs)[int(len(xs) * 0.99) - 1]
        print(f"echo of a keystroke, {a.keys} keys (median / p99):")
        print(f"  labctl ssm-shell         {med_ssm:6.2f} / {p99(ssm):6.2f} ms")
        print(f"  local bash, no session   {med_local:6.2f} / {p99(local):6.2f} ms")
        print(f"  ratio ssm-shell/local    {med_ssm / med_local:6.1f}x")
        results["echo_ssm_ms"] = ssm
        results["echo_local_ms"] = local
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f)
    finally:
        double.kill()
        double.wait()


if __name__ == "__main__":
    main()
