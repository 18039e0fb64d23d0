//! `intro-server` and `load`: the real binary on loopback, against raw sockets and against
//! Python programs of the lab's design.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use support::{Server, python, run};

const WAIT: Duration = Duration::from_secs(15);

/// A client socket that gives up (instead of hanging the test) after `WAIT`.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    stream
}

/// Reads the intro line byte by byte, so nothing after it is consumed.
fn read_intro(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        let n = stream.read(&mut byte).expect("read the intro line");
        assert_eq!(
            n, 1,
            "server closed before the end of the intro line: {line:?}"
        );
        line.push(byte[0]);
    }
    line
}

/// Reads until the server closes; returns what came before the close. A reset also
/// counts as closed (the server may reset when it drops unread bytes).
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => rest,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => rest,
        Err(e) => panic!("server did not close the connection: {e}"),
    }
}

/// Waits until every needle has appeared in some log line; returns the matching lines
/// in needle order. Unlike `Server::wait_for`, lines for other needles are not lost.
fn expect_lines(server: &Server, needles: &[String]) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; needles.len()];
    let mut seen = Vec::new();
    while found.iter().any(Option::is_none) {
        let Some(line) = server.line(WAIT) else {
            panic!("missing log lines for {needles:?}; saw {seen:#?}");
        };
        for (needle, slot) in needles.iter().zip(found.iter_mut()) {
            if slot.is_none() && line.contains(needle.as_str()) {
                *slot = Some(line.clone());
            }
        }
        seen.push(line);
    }
    found.into_iter().flatten().collect()
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{:08x}", message.len()).into_bytes();
    bytes.extend_from_slice(message);
    bytes
}

#[test]
fn exchange_is_byte_exact_and_server_closes_after_the_message() {
    let server = Server::start("intro-server", &[]);
    let mut stream = connect(server.addr);
    let me = stream.local_addr().expect("local addr");
    let intro = read_intro(&mut stream);
    assert!(intro.len() > 1, "intro line is empty");
    assert_eq!(intro.iter().filter(|&&b| b == b'\n').count(), 1);

    let message = "This is a very long message".repeat(100) + " AND I AM CLIENT 00000001";
    let bytes = framed(message.as_bytes());
    assert_eq!(&bytes[..8], b"00000aa5");
    // Several writes, like a client that sends the prefix and the message separately.
    stream.write_all(&bytes[..8]).expect("send length");
    stream
        .write_all(&bytes[8..1000])
        .expect("send message start");
    stream.write_all(&bytes[1000..]).expect("send message end");
    assert_eq!(
        read_until_closed(&mut stream),
        b"",
        "server sent more than the intro"
    );

    let lines = expect_lines(
        &server,
        &[
            format!("{me} connected"),
            format!("{me} message 2725 bytes"),
        ],
    );
    assert!(
        lines[1].contains("AND I AM CLIENT 00000001"),
        "{}",
        lines[1]
    );

    // Uppercase digits are accepted (Python's int(x, 16) does); a short message is
    // logged whole.
    let mut stream = connect(server.addr);
    let me = stream.local_addr().expect("local addr");
    read_intro(&mut stream);
    stream.write_all(b"0000000Bhello\nworld").expect("send");
    assert_eq!(read_until_closed(&mut stream), b"");
    expect_lines(
        &server,
        &[format!(r#"{me} message 11 bytes: "hello\nworld""#)],
    );
}

#[test]
fn malformed_inputs_close_only_their_connection_with_a_reason() {
    let server = Server::start("intro-server", &[]);
    // A well-behaved client is mid-exchange while the bad ones come and go.
    let mut good = connect(server.addr);
    let good_me = good.local_addr().expect("local addr");
    read_intro(&mut good);
    good.write_all(b"0000000").expect("send most of the length");

    struct Case {
        send: &'static [u8],
        /// Half-close (FIN) after sending, or reset (RST) if false.
        fin: bool,
        reason: &'static str,
    }
    let cases = [
        Case {
            send: b"zzzzzzzzhello",
            fin: false,
            reason: r#"invalid length prefix "zzzzzzzz""#,
        },
        Case {
            send: b"0x00000a0123456789",
            fin: false,
            reason: "invalid length prefix",
        },
        Case {
            send: b"00a",
            fin: true,
            reason: "closed after 3 of 8 length digits",
        },
        Case {
            send: b"",
            fin: true,
            reason: "closed after 0 of 8 length digits",
        },
        Case {
            send: b"00000064only a few bytes",
            fin: true,
            reason: "closed after 16 of 100 message bytes",
        },
        Case {
            send: b"00000006ab\xffcde",
            fin: false,
            reason: "invalid UTF-8 at byte 2",
        },
        Case {
            send: b"00000002\xe2\x9c",
            fin: false,
            reason: "invalid UTF-8 at byte 0",
        },
    ];
    let mut needles = Vec::new();
    for case in &cases {
        let mut stream = connect(server.addr);
        let me = stream.local_addr().expect("local addr");
        read_intro(&mut stream);
        stream.write_all(case.send).expect("send malformed input");
        if case.fin {
            stream.shutdown(Shutdown::Write).expect("half-close");
        }
        // Whatever was wrong, the server closes this connection.
        read_until_closed(&mut stream);
        needles.push(format!("{me} dropped: {}", case.reason));
    }
    // A peer that vanishes mid-message with a reset.
    let mut stream = connect(server.addr);
    let me = stream.local_addr().expect("local addr");
    read_intro(&mut stream);
    stream
        .write_all(b"00001000partial")
        .expect("send partial message");
    let sock = socket2::SockRef::from(&stream);
    sock.set_linger(Some(Duration::ZERO)).expect("linger 0");
    drop(stream);
    // The reset may reach the server before or after it reads the partial bytes.
    needles.push(format!("{me} dropped: reading the "));

    expect_lines(&server, &needles);

    // The well-behaved client, connected all along, still completes.
    good.write_all(b"4OK!!").expect("send the rest");
    assert_eq!(read_until_closed(&mut good), b"");
    expect_lines(&server, &[format!(r#"{good_me} message 4 bytes: "OK!!"#)]);
}

#[test]
fn silent_and_slow_clients_do_not_block_others() {
    // A long read timeout: if the server handled connections one at a time, the last
    // client would wait far longer than its socket timeout and fail.
    let server = Server::start("intro-server", &["--read-timeout", "120"]);
    let silent = connect(server.addr);
    let mut slow = connect(server.addr);
    read_intro(&mut slow);
    slow.write_all(b"00000100half a message")
        .expect("send half");

    let mut quick = connect(server.addr);
    let me = quick.local_addr().expect("local addr");
    read_intro(&mut quick);
    quick.write_all(&framed(b"I am not blocked")).expect("send");
    assert_eq!(read_until_closed(&mut quick), b"");
    expect_lines(
        &server,
        &[format!(r#"{me} message 16 bytes: "I am not blocked""#)],
    );
    drop((silent, slow));
}

#[test]
fn silent_client_is_dropped_after_the_read_timeout() {
    let server = Server::start("intro-server", &["--read-timeout", "0.5"]);
    let mut silent = connect(server.addr);
    let me = silent.local_addr().expect("local addr");
    read_intro(&mut silent);
    assert_eq!(read_until_closed(&mut silent), b"");
    expect_lines(
        &server,
        &[format!(
            "{me} dropped: timed out after 500ms waiting for the length prefix"
        )],
    );
}

/// A client that sends one byte just inside every read timeout is still dropped once
/// the whole exchange takes too long.
#[test]
fn trickling_client_is_dropped_at_the_exchange_deadline() {
    let server = Server::start(
        "intro-server",
        &["--read-timeout", "1", "--exchange-timeout", "1.5"],
    );
    let mut trickle = connect(server.addr);
    let me = trickle.local_addr().expect("local addr");
    read_intro(&mut trickle);
    for byte in b"0000ffff" {
        if trickle.write_all(&[*byte]).is_err() {
            break; // already dropped
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(read_until_closed(&mut trickle), b"");
    expect_lines(
        &server,
        &[format!("{me} dropped: the exchange took longer than 1.5s")],
    );
}

#[test]
fn sigterm_exits_cleanly_even_with_open_connections() {
    let server = Server::start("intro-server", &[]);
    let mut open = connect(server.addr);
    read_intro(&mut open);
    open.write_all(b"0000").expect("send half the length");
    server.wait_for("connected", WAIT);
    assert!(server.terminate(), "intro-server did not exit 0 on SIGTERM");
}

#[test]
fn quiet_server_logs_only_problems() {
    let server = Server::start("intro-server", &["--quiet"]);
    let mut stream = connect(server.addr);
    read_intro(&mut stream);
    stream.write_all(&framed(b"fine")).expect("send");
    read_until_closed(&mut stream);
    let mut bad = connect(server.addr);
    let me = bad.local_addr().expect("local addr");
    read_intro(&mut bad);
    bad.write_all(b"nothex!!").expect("send");
    read_until_closed(&mut bad);
    // The first line after `listening on` is the problem, not the good exchange.
    let line = server.line(WAIT).expect("a log line");
    assert!(
        line.starts_with(&format!("{me} dropped: invalid length prefix")),
        "{line}"
    );
}

/// The lab's asyncio client, as students write it, against labnet.
const PYTHON_CLIENT: &str = r#"
import asyncio, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def client(i):
    reader, writer = await asyncio.open_connection(host, port)
    intro = await reader.readline()
    assert intro.endswith(b"\n"), intro
    await asyncio.sleep(0.05)
    message = "This is a very long message" * 100 + f" AND I AM CLIENT {i:08d}"
    writer.write(f"{len(message):08x}".encode())
    writer.write(message.encode())
    await writer.drain()
    rest = await reader.read()
    assert rest == b"", rest
    writer.close()
    return intro.decode().strip()
async def main():
    intros = await asyncio.gather(*(client(i) for i in range(n)))
    print(intros[0])
asyncio.run(main())
"#;

#[test]
fn python_lab_client_works_against_labnet_server() {
    let server = Server::start("intro-server", &[]);
    let out = python()
        .args([
            "-c",
            PYTHON_CLIENT,
            "127.0.0.1",
            &server.addr.port().to_string(),
            "5",
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intro server"));
    let needles: Vec<String> = (0..5)
        .map(|i| format!("AND I AM CLIENT {i:08}\""))
        .collect();
    let lines = expect_lines(&server, &needles);
    assert!(
        lines.iter().all(|l| l.contains("message 2725 bytes")),
        "{lines:#?}"
    );
}

/// The threading lab's own server: backlog 5, a thread per connection that sends the
/// intro, reads the 8 hex digits (checked to be exactly that) and the message in reads
/// of at most 100 bytes, and prints what it got. Arguments: how many connections to
/// serve (0: until killed), and `close` to close each, or `hold` to return without
/// closing as the lab's server does. Python closes a socket when its last reference
/// goes, and the accept loop's `conn` keeps the most recent one until the next accept,
/// so with `hold` the last client's connection stays open.
const PYTHON_SERVER: &str = r#"
import re, socket, sys, threading
n, mode = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(5)
print("listening on 127.0.0.1:%d" % srv.getsockname()[1], flush=True)
lock = threading.Lock()
def handle(conn):
    conn.sendall(b"Hello from the Python server, send your message\n")
    header = b""
    while len(header) < 8:
        chunk = conn.recv(8 - len(header))
        if not chunk:
            break
        header += chunk
    ok = re.fullmatch(rb"[0-9a-f]{8}", header) is not None
    length = int(header, 16) if ok else 0
    data = b""
    while len(data) < length:
        chunk = conn.recv(min(100, length - len(data)))
        if not chunk:
            break
        data += chunk
    with lock:
        print("OK" if ok and len(data) == length else "BAD", length, data.decode()[-24:], flush=True)
    if mode == "close":
        conn.close()
threads = []
while n == 0 or len(threads) < n:
    conn, _ = srv.accept()
    t = threading.Thread(target=handle, args=(conn,))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
"#;

#[test]
fn labnet_load_works_against_python_lab_server() {
    let server = PythonServer::start(PYTHON_SERVER, &["4", "close"]);
    let port = server.port.to_string();
    let out = run(&[
        "load",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--clients",
        "4",
        "--pause",
        "0.05",
        "--timeout",
        "10",
        "--json",
    ]);
    let python_lines = server.lines(4).join("\n");
    assert!(
        out.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load prints JSON");
    let run = &doc["runs"][0];
    assert_eq!(run["completed"], 4, "{doc}");
    assert_eq!(run["failed"], 0, "{doc}");
    for i in 0..4 {
        let line = format!("OK 2725 AND I AM CLIENT {i:08}");
        assert!(
            python_lines.contains(&line),
            "no {line:?} in {python_lines}"
        );
    }
    assert!(!python_lines.contains("BAD"), "{python_lines}");
}

#[test]
fn load_of_1000_clients_completes_without_errors() {
    let server = Server::start("intro-server", &["--backlog", "1024", "--quiet"]);
    let port = server.addr.port().to_string();
    let out = run(&[
        "load",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--clients",
        "1000",
        "--pause",
        "0",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "load failed: {doc}");
    let run = &doc["runs"][0];
    assert_eq!(run["clients"], 1000, "{doc}");
    assert_eq!(run["connected"], 1000, "{doc}");
    assert_eq!(run["completed"], 1000, "{doc}");
    for key in ["refused", "reset", "timed_out", "other", "failed"] {
        assert_eq!(run[key], 0, "{key} in {doc}");
    }
    assert!(run["completion_ms"]["p99"].is_number(), "{doc}");
}

#[test]
fn load_counts_refused_connections_and_exits_non_zero() {
    // A port that was just free: nothing listens there now.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port().to_string()
    };
    let out = run(&[
        "load",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--clients",
        "3",
        "--pause",
        "0",
        "--json",
    ]);
    assert!(!out.status.success(), "load must fail when clients fail");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON even on failure");
    let run = &doc["runs"][0];
    assert_eq!(run["refused"], 3, "{doc}");
    assert_eq!(run["connected"], 0, "{doc}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 of 3 clients failed"));
}

#[test]
fn load_sweep_prints_one_row_per_client_count() {
    let server = Server::start("intro-server", &["--quiet"]);
    let port = server.addr.port().to_string();
    let out = run(&[
        "load",
        "--host",
        "localhost",
        "--port",
        &port,
        "--sweep",
        "1,3,5",
        "--pause",
        "0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|c| c.parse::<u32>().is_ok()))
        .collect();
    let counts: Vec<(&str, &str, &str)> = rows.iter().map(|w| (w[0], w[1], w[2])).collect();
    assert_eq!(
        counts,
        [("1", "1", "1"), ("3", "3", "3"), ("5", "5", "5")],
        "{stdout}"
    );
}

/// A Python server that runs until dropped, and the lines it prints.
struct PythonServer {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PythonServer {
    fn start(program: &str, args: &[&str]) -> PythonServer {
        let mut child = python()
            .args(["-c", program])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("python server's first line");
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("first line was {first:?}"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PythonServer { child, port, lines }
    }

    /// The lines printed so far, waiting up to `WAIT` until `n` have come.
    fn lines(&self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => got.push(line),
                Err(_) => break,
            }
        }
        got
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `labnet load --clients 5 --pause 0.05 <extra...>` against `port` on loopback.
fn load5(port: u16, extra: &[&str]) -> std::process::Output {
    let port = port.to_string();
    let mut args = vec![
        "load",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--clients",
        "5",
        "--pause",
        "0.05",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The row of counts of a text table whose first column is `clients`, by header name.
fn text_row(stdout: &str, clients: u32) -> std::collections::HashMap<String, String> {
    let header = stdout
        .lines()
        .find(|l| l.starts_with("clients connected"))
        .unwrap_or_else(|| panic!("no column header in {stdout}"));
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&clients.to_string()))
        .unwrap_or_else(|| panic!("no row for {clients} clients in {stdout}"));
    header
        .split_whitespace()
        .zip(row.split_whitespace())
        .take_while(|(h, _)| *h != "|")
        .map(|(h, v)| (h.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn load_completes_against_the_labs_threaded_server_that_leaves_a_connection_open() {
    let server = PythonServer::start(PYTHON_SERVER, &["0", "hold"]);
    let out = load5(server.port, &["--close-grace", "1", "--json"]);
    let doc = json_of(&out);
    assert!(
        out.status.success(),
        "load failed: {doc} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = &doc["runs"][0];
    assert_eq!(run["completed"], 5, "{doc}");
    assert_eq!(run["failed"], 0, "{doc}");
    let not_closed = run["not_closed"].as_u64().expect("not_closed");
    assert!(not_closed >= 1, "the held connection is not closed: {doc}");
    assert_eq!(
        not_closed + run["closed"].as_u64().expect("closed"),
        5,
        "{doc}"
    );
    assert_eq!(doc["require_close"], false, "{doc}");
    assert_eq!(doc["close_grace_s"], 1.0, "{doc}");
    // Every message went through, whole.
    let lines = server.lines(5);
    for i in 0..5 {
        let line = format!("OK 2725 AND I AM CLIENT {i:08}");
        assert!(lines.contains(&line), "no {line:?} in {lines:?}");
    }

    // Strict: the connection the server holds is a failure, and the exit status says so.
    let out = load5(server.port, &["--close-grace", "0.5", "--require-close"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let row = text_row(&stdout, 5);
    let count = |k: &str| row[k].parse::<u64>().expect("a count");
    assert!(count("not-closed") >= 1, "{stdout}");
    assert_eq!(count("failed"), count("not-closed"), "{stdout}");
    assert_eq!(count("timeout"), count("not-closed"), "{stdout}");
    assert_eq!(count("completed") + count("failed"), 5, "{stdout}");
    assert!(
        stderr.contains("waiting for close: not closed within 500ms"),
        "{stderr}"
    );
    assert!(stderr.contains("clients failed"), "{stderr}");
}

#[test]
fn load_against_intro_server_times_the_close() {
    let server = Server::start("intro-server", &["--quiet"]);
    let out = load5(server.addr.port(), &["--json"]);
    let doc = json_of(&out);
    assert!(out.status.success(), "load failed: {doc}");
    let run = &doc["runs"][0];
    for (key, want) in [
        ("completed", 5),
        ("closed", 5),
        ("not_closed", 0),
        ("failed", 0),
    ] {
        assert_eq!(run[key], want, "{key} in {doc}");
    }
    // Each client's close comes after its send, so every percentile does too.
    for p in ["p50", "p90", "p99", "max"] {
        let close = run["close_ms"][p].as_f64().expect("close_ms");
        let sent = run["sent_ms"][p].as_f64().expect("sent_ms");
        assert!(
            close >= sent,
            "{p}: close {close} before send {sent}: {doc}"
        );
        // With every server closing, completion is the close.
        assert_eq!(run["completion_ms"][p], run["close_ms"][p], "{doc}");
    }

    // The text table, strict: the same counts, the close timed, every column's unit shown.
    let out = load5(server.addr.port(), &["--require-close"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text_row(&stdout, 5);
    for (key, want) in [
        ("clients", "5"),
        ("connected", "5"),
        ("completed", "5"),
        ("not-closed", "0"),
        ("failed", "0"),
    ] {
        assert_eq!(row[key], want, "{key} in {stdout}");
    }
    let groups = stdout
        .lines()
        .find(|l| l.starts_with("clients (count)"))
        .unwrap_or_else(|| panic!("no unit line in {stdout}"));
    for group in [
        "to intro line (ms)",
        "to message sent (ms)",
        "to server close (ms)",
    ] {
        assert!(groups.contains(group), "{group:?} in {stdout}");
    }
    assert!(stdout.starts_with("target 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("pause 0.050 s"), "{stdout}");
    // Every time column of the row holds a number, the close's included.
    let data = stdout
        .lines()
        .find(|l| l.starts_with("      5 "))
        .expect("the row");
    let times: Vec<&str> = data
        .split('|')
        .skip(1)
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(times.len(), 12, "{data}");
    for t in times {
        t.parse::<f64>()
            .unwrap_or_else(|_| panic!("{t:?} in {data}"));
    }
}

#[test]
fn ipv6_addresses_are_printed_in_brackets() {
    let server = Server::start_on("intro-server", "::1", &[]);
    assert!(server.addr.is_ipv6(), "{}", server.addr);
    let port = server.addr.port();
    let target = format!("[::1]:{port}");

    let out = run(&[
        "load",
        "--host",
        "::1",
        "--port",
        &port.to_string(),
        "--clients",
        "1",
        "--pause",
        "0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with(&format!("target {target},")), "{stdout}");
    // The server logs the peer bracketed too.
    let line = server.wait_for(" connected", WAIT);
    assert!(line.starts_with("[::1]:"), "{line}");

    // `--host [::1]` is accepted as well, and the JSON names the same target.
    let out = run(&[
        "load",
        "--host",
        "[::1]",
        "--port",
        &port.to_string(),
        "--clients",
        "1",
        "--pause",
        "0",
        "--json",
    ]);
    let doc = json_of(&out);
    assert!(out.status.success(), "{doc}");
    assert_eq!(doc["target"], target.as_str(), "{doc}");
    assert_eq!(doc["addr"], target.as_str(), "{doc}");

    // The port is taken: the error names the address it could not listen on.
    let out = run(&["intro-server", "--bind", "::1", "--port", &port.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {target}")), "{err}");

    // Nothing listens on a port that was just free: the clients name it bracketed.
    let closed = TcpListener::bind("[::1]:0")
        .expect("bind ::1")
        .local_addr()
        .expect("addr")
        .port()
        .to_string();
    for program in ["tcp-client", "alnum-client", "rtt"] {
        let mut args = vec![program, "--host", "::1", "--port", &closed];
        if program == "alnum-client" {
            args.extend(["--text", "a"]);
        }
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{program}: {err}");
        assert!(
            err.contains(&format!("cannot connect to [::1]:{closed}")),
            "{program}: {err}"
        );
    }
}
