//! An agent that numbers its output far ahead of what labctl expects (the test
//! double's `--skip-ahead` fault) must not make labctl hold every later message for a
//! gap that never fills: `labctl forward` ends the session with an error naming the
//! message and the bound, terminates it, and exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use labctl_ssm::channel::AHEAD_MAX_DISTANCE;

use crate::double::Double;
use crate::harness::Teardown;
use crate::reconcile::{lab_sandbox, ok};
use crate::ssm::sessions;

const T: Duration = Duration::from_secs(20);

/// Kills `labctl forward` if the test fails before it exits.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An echo server on loopback, one connection at a time is enough here.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                if conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = conn.shutdown(Shutdown::Write);
        }
    });
    port
}

#[test]
fn a_port_session_ends_when_the_agent_numbers_far_ahead() {
    let (sb, _lab) = lab_sandbox("skipahead");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    // The handshake is the agent's messages 0 and 1; the first echoed bytes jump ahead.
    let double = Double::start(&["--skip-ahead", "2", "--skip-by", "1000000"]);
    let echo = echo_server();
    let mut cmd = sb.labctl(&["forward", "server", &echo.to_string()]);
    cmd.env("AWS_ENDPOINT_URL_SSM", double.endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut fwd = Killed(cmd.spawn().expect("labctl forward"));
    let mut stderr = fwd.0.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut line = String::new();
    BufReader::new(fwd.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let port: u16 = line
        .strip_prefix("forwarding 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));

    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(T)).expect("timeout");
    conn.write_all(b"hello").expect("write");

    let started = Instant::now();
    let status = loop {
        if let Some(status) = fwd.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < T,
            "labctl forward still runs, holding messages past a gap that never fills"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = stderr.join().expect("stderr reader");
    assert_eq!(status.code(), Some(1), "{err}");
    let expected = format!(
        "the agent sent message 1000002 while 2 was expected; \
         more than {AHEAD_MAX_DISTANCE} ahead: ending the session"
    );
    assert!(err.contains(&expected), "{err}");
    // The echo, numbered past the bound, never reached the local connection.
    let mut back = Vec::new();
    let _ = conn.read_to_end(&mut back);
    assert!(back.is_empty(), "{:?}", String::from_utf8_lossy(&back));

    let stats = sessions(&double);
    let session = stats
        .as_object()
        .and_then(|m| m.values().next())
        .expect("one session");
    assert_eq!(session["terminated"], true, "{session}");
}
