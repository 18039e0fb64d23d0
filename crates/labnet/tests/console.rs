//! The console lab's programs over real loopback sockets: alnum-server and alnum-client,
//! echo-server and rtt, against each other and against Python programs written from the
//! protocol facts in LAB-PROTOCOLS.md section 2.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

use support::{Server, python, run};

const WAIT: Duration = Duration::from_secs(10);

/// Sends `message` as one write to an alnum server, half-closes, and returns every byte
/// the server sent before closing.
fn ask(server: &Server, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(message).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer to EOF");
    answer
}

#[test]
fn alnum_server_answers_exactly_for_unicode_cases() {
    let server = Server::start("alnum-server", &[]);
    let cases: &[(&str, &str)] = &[
        ("abc123", "Alphanumeric"),
        ("héllo", "Alphanumeric"),
        ("漢字", "Alphanumeric"),
        ("٣²Ⅻ", "Alphanumeric"),
        ("\u{0345}", "Not alphanumeric."),
        ("\u{1F130}", "Not alphanumeric."),
        // Letters new in Unicode 15.0 (Nag Mundari, Kawi), as Python 3.12 answers.
        ("\u{1E4D0}\u{11F04}", "Alphanumeric"),
        // A CJK ideograph from Unicode 15.1: unassigned for Python 3.12.
        ("\u{2EBF0}", "Not alphanumeric."),
        ("hello world", "Not alphanumeric."),
        ("abc!", "Not alphanumeric."),
        ("", "Not alphanumeric."),
    ];
    for (text, expected) in cases {
        let answer = ask(&server, text.as_bytes());
        assert_eq!(
            String::from_utf8(answer).expect("utf-8"),
            *expected,
            "answer to {text:?}"
        );
    }
    // One log line per connection and per message, numbered in accept order.
    let line = server.wait_for("conn 1 message 1:", WAIT);
    assert!(line.ends_with("\"abc123\" -> Alphanumeric"), "{line}");
    assert!(server.terminate());
}

#[test]
fn alnum_client_against_alnum_server() {
    let server = Server::start("alnum-server", &[]);
    let port = server.addr.port().to_string();
    let out = run(&[
        "alnum-client",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--text",
        "Ⅻ٣",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Alphanumeric\n");

    // Interactive use: the Python client's prompt, a line from stdin without its newline.
    let mut child = support::labnet()
        .args(["alnum-client", "--host", "localhost", "--port", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn alnum-client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"no spaces allowed\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("alnum-client finishes");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Enter a string to test if it is alphanumeric: Not alphanumeric.\n"
    );
    let line = server.wait_for("conn 2 message 1:", WAIT);
    assert!(
        line.contains("\"no spaces allowed\""),
        "newline not stripped: {line}"
    );
}

#[test]
fn python_alnum_client_against_labnet_server() {
    let server = Server::start("alnum-server", &[]);
    // The lab's client: connect, send the encoded text, one recv(1024), print it.
    let client = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.send(sys.argv[2].encode())
print(s.recv(1024).decode())
s.close()
"#;
    for (text, expected) in [("Ærø2", "Alphanumeric"), ("a\u{0345}", "Not alphanumeric.")] {
        let out = python()
            .args(["-c", client, &server.addr.port().to_string(), text])
            .output()
            .expect("python3");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{expected}\n")
        );
    }
}

/// A Python program that prints its port, then runs until it has handled `n` connections.
fn python_server(program: &str, n: u32) -> (Child, u16) {
    let mut child = python()
        .args(["-c", program, &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut first)
        .expect("port line");
    let port = first.trim().parse().expect("python prints its port");
    (child, port)
}

#[test]
fn labnet_alnum_client_against_python_server() {
    // The lab's server: one recv(1024) per connection, str.isalnum, answer, close.
    let server = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(5)
print(s.getsockname()[1], flush=True)
for _ in range(int(sys.argv[1])):
    conn, _ = s.accept()
    sentence = conn.recv(1024).decode()
    conn.send(b"Alphanumeric" if sentence.isalnum() else b"Not alphanumeric.")
    conn.close()
"#;
    let cases = [("²½", "Alphanumeric"), ("\u{1F130}", "Not alphanumeric.")];
    let (mut child, port) = python_server(server, cases.len() as u32);
    for (text, expected) in cases {
        let port = port.to_string();
        let out = run(&[
            "alnum-client",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--text",
            text,
        ]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{expected}\n")
        );
    }
    assert!(child.wait().expect("python server exits").success());
}

#[test]
fn python_rtt_client_against_labnet_echo_server() {
    let server = Server::start("echo-server", &[]);
    // The lab's RTT client: send b"42", read the echo back, time it; here the reads
    // also handle an echo in pieces.
    let client = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
total = 0.0
for _ in range(200):
    start = time.perf_counter()
    s.send(b"42")
    got = b""
    while len(got) < 2:
        chunk = s.recv(1024)
        if not chunk:
            sys.exit("closed early")
        got += chunk
    total += time.perf_counter() - start
    assert got == b"42", got
print("Average RTT:", total / 200 * 1000, "ms")
s.close()
"#;
    let out = python()
        .args(["-c", client, &server.addr.port().to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Average RTT: "));
    server.wait_for("conn 1 closed: peer closed after 200 messages", WAIT);
}

/// Parses `<label>: <x> ms` from rtt's output.
fn stat(out: &str, label: &str) -> f64 {
    out.lines()
        .find_map(|l| {
            l.strip_prefix(label)?
                .strip_prefix(": ")?
                .strip_suffix(" ms")
        })
        .unwrap_or_else(|| panic!("no {label} in {out}"))
        .parse()
        .expect("a number")
}

#[test]
fn rtt_does_all_round_trips_over_one_connection() {
    let server = Server::start("echo-server", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("rtt.csv");
    let port = server.addr.port().to_string();
    let out = run(&[
        "rtt",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--count",
        "300",
        "--csv",
        csv.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let [avg, min, median, p99, max] =
        ["Average RTT", "Min RTT", "Median RTT", "P99 RTT", "Max RTT"].map(|l| stat(&text, l));
    assert!(min <= median && median <= p99 && p99 <= max, "{text}");
    assert!(min <= avg && avg <= max, "{text}");
    assert!(
        text.contains("Round trips: 300 over one connection"),
        "{text}"
    );

    let samples = std::fs::read_to_string(&csv).expect("csv written");
    let lines: Vec<&str> = samples.lines().collect();
    assert_eq!(lines.len(), 301);
    assert_eq!(lines[0], "seq,rtt_ms");
    assert!(lines[300].starts_with("300,"), "{}", lines[300]);

    // A probe connection after rtt has finished: every connection the server logged
    // before the probe's (which must be number 2) was rtt's, so rtt used exactly one.
    let _probe = TcpStream::connect(server.addr).expect("probe connects");
    let (mut connections, mut messages, mut probe_seen, mut rtt_closed) = (0, 0, false, false);
    while !(probe_seen && rtt_closed) {
        let line = server.line(WAIT).expect("server keeps logging");
        if line.contains(" connected") {
            connections += 1;
            probe_seen |= line.starts_with("conn 2 ");
        }
        if line.starts_with("conn 1 message ") {
            messages += 1;
        }
        rtt_closed |= line.starts_with("conn 1 closed: peer closed after 300 messages");
    }
    assert_eq!(connections, 2, "rtt's connection and the probe");
    assert_eq!(messages, 300);
    assert!(server.terminate());
}

#[test]
fn alnum_server_closes_on_invalid_utf8_and_keeps_serving() {
    let server = Server::start("alnum-server", &[]);
    // 0xff never occurs in UTF-8: no answer, the connection is closed, the reason logged.
    assert_eq!(ask(&server, b"ab\xffcd"), b"");
    let line = server.wait_for("conn 1 closed:", WAIT);
    assert!(line.contains("invalid UTF-8 after 2 of 5 bytes"), "{line}");
    // The next client is served as usual.
    assert_eq!(ask(&server, b"ok"), b"Alphanumeric");
    assert!(server.terminate());
}

#[test]
fn alnum_server_closes_a_silent_client() {
    let server = Server::start("alnum-server", &["--read-timeout", "0.5"]);
    let mut silent = TcpStream::connect(server.addr).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut rest = Vec::new();
    // The server gives up on the silent client: end-of-file without an answer.
    assert_eq!(silent.read_to_end(&mut rest).expect("EOF"), 0);
    let line = server.wait_for("conn 1 closed:", WAIT);
    assert!(line.contains("no message within"), "{line}");
    assert_eq!(ask(&server, b"x1"), b"Alphanumeric");
}

#[test]
fn echo_server_survives_a_reset_and_serves_many_exchanges() {
    let server = Server::start("echo-server", &[]);
    // A peer that vanishes with a reset (SO_LINGER 0) only ends its own connection.
    let vanishing = TcpStream::connect(server.addr).expect("connect");
    socket2::SockRef::from(&vanishing)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(vanishing);
    let line = server.wait_for("conn 1 closed:", WAIT);
    assert!(
        line.contains("read failed") || line.contains("peer closed"),
        "{line}"
    );

    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    for i in 0..50 {
        let message = format!("message {i}");
        stream.write_all(message.as_bytes()).expect("send");
        let mut back = vec![0; message.len()];
        stream.read_exact(&mut back).expect("echo");
        assert_eq!(back, message.as_bytes());
    }
    drop(stream);
    server.wait_for("conn 2 closed: peer closed after", WAIT);
}

#[test]
fn echo_server_closes_an_idle_client() {
    let server = Server::start("echo-server", &["--idle-timeout", "0.5"]);
    let mut idle = TcpStream::connect(server.addr).expect("connect");
    idle.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).expect("EOF"), 0);
    let line = server.wait_for("conn 1 closed:", WAIT);
    assert!(line.contains("idle for"), "{line}");
}

#[test]
fn servers_exit_cleanly_on_sigterm_with_a_connection_open() {
    for program in ["alnum-server", "echo-server"] {
        let server = Server::start(program, &[]);
        let _open = TcpStream::connect(server.addr).expect("connect");
        server.wait_for("conn 1 ", WAIT);
        assert!(server.terminate(), "{program} exits 0 on SIGTERM");
    }
}

#[test]
fn clients_fail_with_a_message_when_nothing_listens() {
    // A port that was just free: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
        .to_string();
    for args in [
        vec![
            "alnum-client",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--text",
            "a",
        ],
        vec![
            "rtt",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--count",
            "1",
        ],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot connect to 127.0.0.1:"), "{err}");
    }
}

#[test]
fn rtt_rejects_a_server_that_does_not_echo() {
    // An alnum server answers `42` with `Alphanumeric`, whose first two bytes are not `42`.
    let server = Server::start("alnum-server", &[]);
    let port = server.addr.port().to_string();
    let out = run(&[
        "rtt",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--count",
        "3",
    ]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an echo"), "{err}");
}
