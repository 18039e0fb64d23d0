//! Running labnet's programs as real processes on loopback, for the tests.
//!
//! Servers are started with `--bind 127.0.0.1 --port 0`; each prints
//! `listening on <address>` as its first line, which tells the test the port the
//! kernel chose. A server is stopped (SIGTERM, by its PID) when its handle drops.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The labnet binary.
pub fn labnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labnet"))
}

/// A running server and the lines it logs.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `labnet <program> --bind 127.0.0.1 --port 0 <extra...>`.
    pub fn start(program: &str, extra: &[&str]) -> Server {
        Server::start_on(program, "127.0.0.1", extra)
    }

    /// Starts `labnet <program> --bind <bind> --port 0 <extra...>`.
    pub fn start_on(program: &str, bind: &str, extra: &[&str]) -> Server {
        let mut child = labnet()
            .arg(program)
            .args(["--bind", bind, "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn labnet");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("server prints `listening on <addr>` first");
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("first line was {first:?}"));
        Server { child, addr, lines }
    }

    /// The next log line, waiting up to `timeout`.
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no log line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited cleanly.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status.success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `labnet <args>` to completion.
pub fn run(args: &[&str]) -> Output {
    labnet().args(args).output().expect("run labnet")
}

/// Python 3 for the interoperability tests (the machine has CPython 3.11).
pub fn python() -> Command {
    Command::new("python3")
}
