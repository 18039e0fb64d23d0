//! The framed family against raw sockets and Python peers, on 127.0.0.1 only: the exact
//! bytes of frames and datagrams, malformed input, clean shutdown, and the zero-window
//! demo.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{Server, python, run};

const DEADLINE: Duration = Duration::from_secs(20);

fn frame(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(&kind.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn datagram(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = frame(kind, payload);
    d.resize(4096, 0);
    d
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s
}

/// Reads one frame: (header bytes, payload bytes).
fn read_frame(s: &mut TcpStream) -> ([u8; 4], Vec<u8>) {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).expect("header");
    let len = u16::from_be_bytes([header[0], header[1]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    (header, payload)
}

/// One exchange on a healthy connection: proves the server still serves it.
fn exchange(s: &mut TcpStream, text: &str) {
    s.write_all(&frame(1, text.as_bytes())).expect("send");
    let (header, payload) = read_frame(s);
    let want = format!("Response to message: {text}");
    assert_eq!(header, [0, want.len() as u8, 0, 1]);
    assert_eq!(String::from_utf8(payload).expect("utf8"), want);
}

/// Asserts the server closed `s` (EOF or reset) within the deadline.
fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected close, got {n} bytes"),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "connection still open after {DEADLINE:?}"
        ),
    }
}

/// A server's log, kept so lines can be looked for in any order.
struct Log<'a> {
    server: &'a Server,
    seen: Vec<String>,
}

impl<'a> Log<'a> {
    fn new(server: &'a Server) -> Self {
        Log {
            server,
            seen: Vec::new(),
        }
    }

    fn find(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + DEADLINE;
        while let Some(line) = self
            .server
            .line(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!("no log line containing {needle:?}; seen: {:#?}", self.seen)
    }
}

/// A child process whose stdout lines arrive on a channel.
struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Spawned {
    fn start(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn find(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + DEADLINE;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!("no line containing {needle:?}; seen: {:#?}", self.seen)
    }

    /// The address from a `listening on <addr>` line.
    fn listening(&mut self) -> SocketAddr {
        let line = self.find("listening on ");
        line["listening on ".len()..]
            .trim()
            .parse()
            .expect("address")
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit; returns (success, stderr).
    fn finish(mut self) -> (bool, String) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut stderr).expect("stderr");
        }
        (status.success(), stderr)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn labnet(args: &[&str]) -> Command {
    let mut cmd = support::labnet();
    cmd.args(args);
    cmd
}

fn python_script(script: &str) -> Command {
    let mut cmd = python();
    cmd.args(["-c", script]);
    cmd
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---------------------------------------------------------------- TCP

#[test]
fn tcp_server_answers_with_byte_exact_frames() {
    let server = Server::start("tcp-server", &[]);
    let mut log = Log::new(&server);
    let mut s = connect(server.addr);
    // The header arrives in two pieces: the server must reassemble, not assume one read.
    let f = frame(1, b"hello");
    s.write_all(&f[..3]).expect("send");
    s.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&f[3..]).expect("send");
    let mut reply = vec![0u8; 4 + 26];
    s.read_exact(&mut reply).expect("reply");
    assert_eq!(reply, b"\x00\x1a\x00\x01Response to message: hello");
    // payload_length counts UTF-8 bytes, not characters.
    s.write_all(&frame(1, "héllo".as_bytes())).expect("send");
    let (header, payload) = read_frame(&mut s);
    assert_eq!(header, [0, 27, 0, 1]);
    assert_eq!(payload, "Response to message: héllo".as_bytes());
    log.find(&format!("{} connected", s.local_addr().expect("addr")));
    log.find(r#"-> TEXT "hello""#);
    drop(s);
    log.find("closed: peer closed the connection");
}

#[test]
fn tcp_client_against_tcp_server() {
    let server = Server::start("tcp-server", &[]);
    let mut log = Log::new(&server);
    let port = server.addr.port().to_string();
    let out = run(&[
        "tcp-client",
        "--port",
        &port,
        "--count",
        "3",
        "--name",
        "e2e",
        "--pause-min",
        "0",
        "--pause-max",
        "0",
    ]);
    let stdout = stdout_of(&out);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=3 {
        assert!(
            stdout.contains(&format!(
                "received TEXT: Response to message: Message #{i} from client e2e\n"
            )),
            "{stdout}"
        );
        log.find(&format!(r#"-> TEXT "Message #{i} from client e2e""#));
    }
    assert!(!stdout.contains("Message #4"), "{stdout}");
    log.find("closed: peer closed the connection");
}

#[test]
fn tcp_client_reports_a_server_that_closes_without_answering() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        // Read the whole first message (so closing sends FIN, not RST), answer nothing.
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        read_frame(&mut s);
    });
    let out = run(&[
        "tcp-client",
        "--port",
        &port,
        "--count",
        "2",
        "--pause-min",
        "0",
        "--pause-max",
        "0",
    ]);
    peer.join().expect("peer");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("closed the connection before answering #1"),
        "{stderr}"
    );
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let server = Server::start("tcp-server", &[]);
    let mut log = Log::new(&server);
    let mut good = connect(server.addr);
    exchange(&mut good, "before");

    // A peer stuck mid-frame, held open the whole time: it must not stall anyone.
    let mut stuck = connect(server.addr);
    stuck.write_all(b"\x00\x10\x00\x01half").expect("send");
    exchange(&mut good, "while one is stuck");

    let cases: [(&[u8], bool, &str); 4] = [
        (
            b"\x00\x03\x00\x07abc",
            false,
            "closed: unknown message type 7",
        ),
        (
            b"\x00\x02\x00\x01\xff\xfe",
            false,
            "closed: payload is not valid UTF-8",
        ),
        (
            b"\x00\x64\x00\x010123456789",
            true,
            "closed: peer closed mid-frame (10 of 100 payload bytes arrived)",
        ),
        (
            b"\x00\x05",
            true,
            "closed: peer closed mid-frame (2 of 4 header bytes arrived)",
        ),
    ];
    for (bytes, vanish, reason) in cases {
        let mut bad = connect(server.addr);
        let local = bad.local_addr().expect("addr");
        bad.write_all(bytes).expect("send");
        if vanish {
            bad.shutdown(Shutdown::Write).expect("shutdown");
        }
        assert_closed(&mut bad);
        let line = log.find(&format!("{local} closed"));
        assert!(
            line.ends_with(reason),
            "{line:?} should end with {reason:?}"
        );
        exchange(&mut good, "still served");
    }

    let stuck_local = stuck.local_addr().expect("addr");
    drop(stuck);
    let line = log.find(&format!("{stuck_local} closed"));
    assert!(line.ends_with("(4 of 16 payload bytes arrived)"), "{line}");
    exchange(&mut good, "after all");
}

#[test]
fn silent_client_is_closed_after_the_read_timeout() {
    let server = Server::start("tcp-server", &["--read-timeout", "0.5"]);
    let mut log = Log::new(&server);
    let mut silent = connect(server.addr);
    let local = silent.local_addr().expect("addr");
    assert_closed(&mut silent);
    let line = log.find(&format!("{local} closed"));
    assert!(line.contains("read timed out after 0.5s"), "{line}");
}

#[test]
fn tcp_server_delays_responses() {
    let server = Server::start("tcp-server", &["--delay", "0.3"]);
    let mut s = connect(server.addr);
    let start = Instant::now();
    exchange(&mut s, "slow");
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn servers_exit_cleanly_on_sigterm() {
    let tcp = Server::start("tcp-server", &[]);
    let mut client = connect(tcp.addr);
    exchange(&mut client, "hi");
    assert!(tcp.terminate(), "tcp-server exit status after SIGTERM");
    assert!(Server::start("udp-server", &[]).terminate(), "udp-server");
    let hesitant = Server::start("hesitant-server", &["--wait-seconds", "60"]);
    let _peer = connect(hesitant.addr);
    hesitant.wait_for("not reading", DEADLINE);
    assert!(hesitant.terminate(), "hesitant-server");
}

// ---------------------------------------------------------------- UDP

fn udp_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s
}

#[test]
fn udp_server_answers_with_padded_json_encoded_text() {
    let server = Server::start("udp-server", &[]);
    let mut log = Log::new(&server);
    let s = udp_socket();
    s.send_to(&datagram(1, br#""hi \u00e9""#), server.addr)
        .expect("send");
    let mut buf = [0xAAu8; 8192];
    let (n, from) = s.recv_from(&mut buf).expect("reply");
    assert_eq!(from, server.addr);
    assert_eq!(n, 4096, "datagram length");
    // The text is `Response to message: "hi \u00e9"` (payload as received), JSON-encoded.
    let want: &[u8] = br#""Response to message: \"hi \\u00e9\"""#;
    assert_eq!(&buf[..4], &[0, want.len() as u8, 0, 1]);
    assert_eq!(&buf[4..4 + want.len()], want);
    assert!(
        buf[4 + want.len()..n].iter().all(|&b| b == 0),
        "NUL padding"
    );
    log.find(r#"-> TEXT "hi \u00e9""#);

    // A malformed datagram is logged and dropped; the next one is still answered.
    s.send_to(&datagram(9, b"x"), server.addr).expect("send");
    log.find("dropped datagram of 4096 bytes: unknown message type 9");
    s.send_to(&datagram(1, b"\"again\""), server.addr)
        .expect("send");
    let (n, _) = s.recv_from(&mut buf).expect("reply");
    assert_eq!(n, 4096);
    assert!(buf[4..n].starts_with(br#""Response to message: \"again\"""#));
}

#[test]
fn udp_client_against_udp_server() {
    let server = Server::start("udp-server", &[]);
    let mut log = Log::new(&server);
    let port = server.addr.port().to_string();
    let out = run(&[
        "udp-client",
        "--port",
        &port,
        "--count",
        "3",
        "--name",
        "u",
        "--pause-min",
        "0",
        "--pause-max",
        "0",
    ]);
    let stdout = stdout_of(&out);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=3 {
        assert!(
            stdout.contains(&format!(
                "received: Response to message: \"Message #{i} from client u\"\n"
            )),
            "{stdout}"
        );
        log.find(&format!(r#"-> TEXT "Message #{i} from client u""#));
    }
    assert!(stdout.contains("sent 3, received 3, lost 0"), "{stdout}");
}

#[test]
fn udp_client_reports_lost_responses() {
    let silent = udp_socket(); // receives, never answers
    let port = silent.local_addr().expect("addr").port().to_string();
    let out = run(&[
        "udp-client",
        "--port",
        &port,
        "--count",
        "2",
        "--read-timeout",
        "0.3",
        "--pause-min",
        "0",
        "--pause-max",
        "0",
    ]);
    let stdout = stdout_of(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("response to message #1 lost: none within 0.3s"),
        "{stdout}"
    );
    assert!(stdout.contains("sent 2, received 0, lost 2"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 of 2 responses lost"), "{stderr}");
    let mut buf = [0u8; 8192];
    let (n, _) = silent.recv_from(&mut buf).expect("the client did send");
    assert_eq!(n, 4096);
}

// ---------------------------------------------------------------- Python interop

/// The lab's protocol in Python, shared by the inline programs below.
const PY_PROTOCOL: &str = r#"
import json, socket, struct, sys
TEXT, JSON = 1, 2
def frame(kind, payload):
    data = payload.encode("utf-8")
    return struct.pack(">HH", len(data), kind) + data
def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
def read_frame(sock):
    header = read_exact(sock, 4)
    if header is None:
        return None
    length, kind = struct.unpack(">HH", header)
    return kind, read_exact(sock, length).decode("utf-8")
def datagram(kind, payload):
    return frame(kind, payload).ljust(4096, b"\0")
def parse_datagram(data):
    assert len(data) == 4096, len(data)
    length, kind = struct.unpack(">HH", data[:4])
    assert data[4 + length:] == b"\0" * (4096 - 4 - length), "padding"
    return kind, data[4:4 + length].decode("utf-8")
"#;

#[test]
fn python_tcp_client_against_labnet_tcp_server() {
    let server = Server::start("tcp-server", &[]);
    let script = format!(
        "{PY_PROTOCOL}
sock = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
for i in range(1, 4):
    msg = 'Message #%d from client py-é' % i
    sock.sendall(frame(TEXT, msg))
    kind, reply = read_frame(sock)
    assert kind == TEXT, kind
    assert reply == 'Response to message: ' + msg, reply
    print(reply)
sock.close()
"
    );
    let out = python_script(&script)
        .arg(server.addr.port().to_string())
        .output()
        .expect("python3");
    let stdout = stdout_of(&out);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.contains("Response to message: Message #3 from client py-é"));
}

#[test]
fn labnet_tcp_client_against_python_tcp_server() {
    let script = format!(
        "{PY_PROTOCOL}
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', 0))
srv.listen(5)
print('listening on 127.0.0.1:%d' % srv.getsockname()[1], flush=True)
srv.settimeout(20)
conn, _ = srv.accept()
conn.settimeout(20)
while True:
    message = read_frame(conn)
    if message is None:
        break
    kind, text = message
    print('got %d %s' % (kind, text), flush=True)
    conn.sendall(frame(TEXT, 'Response to message: ' + text))
print('done', flush=True)
"
    );
    let mut py = Spawned::start(python_script(&script));
    let port = py.listening().port().to_string();
    let out = run(&[
        "tcp-client",
        "--port",
        &port,
        "--count",
        "2",
        "--name",
        "rs",
        "--pause-min",
        "0",
        "--pause-max",
        "0",
    ]);
    let stdout = stdout_of(&out);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("received TEXT: Response to message: Message #2 from client rs"));
    py.find("got 1 Message #1 from client rs");
    py.find("got 1 Message #2 from client rs");
    py.find("done");
    let (ok, stderr) = py.finish();
    assert!(ok, "{stderr}");
}

#[test]
fn python_udp_client_against_labnet_udp_server() {
    let server = Server::start("udp-server", &[]);
    // Python's json.dumps escapes non-ASCII; the server's answer must be exactly what
    // the Python server would send, bytes included.
    let script = format!(
        "{PY_PROTOCOL}
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(10)
addr = ('127.0.0.1', int(sys.argv[1]))
for i in range(1, 3):
    payload = json.dumps('Message #%d from client Zoë 😀 \"q\"' % i)
    sock.sendto(datagram(TEXT, payload), addr)
    data, _ = sock.recvfrom(65536)
    expected = datagram(TEXT, json.dumps('Response to message: ' + payload))
    assert data == expected, (data[:200], expected[:200])
    print(json.loads(parse_datagram(data)[1]))
"
    );
    let out = python_script(&script)
        .arg(server.addr.port().to_string())
        .output()
        .expect("python3");
    let stdout = stdout_of(&out);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            r#"Response to message: "Message #2 from client Zo\u00eb \ud83d\ude00 \"q\"""#
        ),
        "{stdout}"
    );
}

#[test]
fn labnet_udp_client_against_python_udp_server() {
    let script = format!(
        "{PY_PROTOCOL}
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(('127.0.0.1', 0))
sock.settimeout(20)
print('listening on 127.0.0.1:%d' % sock.getsockname()[1], flush=True)
for _ in range(2):
    data, peer = sock.recvfrom(65536)
    kind, payload = parse_datagram(data)
    assert kind == TEXT, kind
    # Encoded exactly as Python encodes it (ensure_ascii, same escapes).
    assert payload == json.dumps(json.loads(payload)), payload
    print('got ' + payload, flush=True)
    sock.sendto(datagram(TEXT, json.dumps('Response to message: ' + payload)), peer)
"
    );
    let mut py = Spawned::start(python_script(&script));
    let port = py.listening().port().to_string();
    let out = run(&[
        "udp-client",
        "--port",
        &port,
        "--count",
        "2",
        "--name",
        "Zoë 😀",
        "--pause-min",
        "0",
        "--pause-max",
        "0",
    ]);
    let stdout = stdout_of(&out);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    py.find(r#"got "Message #1 from client Zo\u00eb \ud83d\ude00""#);
    py.find(r#"got "Message #2 from client Zo\u00eb \ud83d\ude00""#);
    assert!(
        stdout.contains(
            r#"received: Response to message: "Message #2 from client Zo\u00eb \ud83d\ude00""#
        ),
        "{stdout}"
    );
    assert!(stdout.contains("lost 0"), "{stdout}");
    let (ok, stderr) = py.finish();
    assert!(ok, "{stderr}");
}

// ---------------------------------------------------------------- zero window

fn hesitant(extra: &[&str]) -> Spawned {
    let mut args = vec!["hesitant-server", "--bind", "127.0.0.1", "--port", "0"];
    args.extend_from_slice(extra);
    Spawned::start(labnet(&args))
}

fn eager(port: &str, extra: &[&str]) -> Spawned {
    let mut args = vec![
        "eager-client",
        "--port",
        port,
        "--name",
        "eager",
        "--pause-min",
        "0",
        "--pause-max",
        "0",
        "--send-buffer",
        "8192",
    ];
    args.extend_from_slice(extra);
    Spawned::start(labnet(&args))
}

/// The sequence numbers the hesitant server printed, in order, until its close line.
fn sequence_numbers(server: &mut Spawned) -> (Vec<u64>, String) {
    let closed = server.find("closed: ");
    let numbers = server
        .seen
        .iter()
        .filter_map(|l| l.split_once(" sequence_number "))
        .map(|(_, n)| n.parse().expect("number"))
        .collect();
    (numbers, closed)
}

#[test]
fn eager_client_write_times_out_while_hesitant_server_does_not_read() {
    let mut server = hesitant(&["--recv-buffer", "16384"]);
    let port = server.listening().port().to_string();
    let client = eager(&port, &["--count", "300", "--write-timeout", "1"]);
    server.find("SO_RCVBUF: ");
    server.find("not reading until SIGUSR1");
    let (ok, stderr) = client.finish();
    assert!(!ok, "the eager client should fail with a write timeout");
    let k: u64 = stderr
        .split_once("write timed out after 1s at message #")
        .and_then(|(_, rest)| rest.split_once(": the receiver's window is full"))
        .map(|(k, _)| k.parse().expect("number"))
        .unwrap_or_else(|| panic!("no write-timeout report in {stderr:?}"));
    assert!(k < 300, "{k}");

    // Once it reads, every message written before the stuck one arrives; of #k itself
    // some bytes (a cut frame) or none (a clean close) may have gone out.
    server.signal("USR1");
    server.find("reading now (SIGUSR1)");
    let (numbers, closed) = sequence_numbers(&mut server);
    assert_eq!(numbers, (1..k).collect::<Vec<_>>());
    assert!(
        closed.contains("peer closed mid-frame") || closed.ends_with("peer closed the connection"),
        "{closed}"
    );
}

#[test]
fn eager_client_stalls_until_hesitant_server_reads() {
    let mut server = hesitant(&["--recv-buffer", "16384"]);
    let port = server.listening().port().to_string();
    let mut client = eager(&port, &["--count", "60", "--write-timeout", "60"]);
    client.find("SO_SNDBUF: ");
    client.find("sent #1 ");
    // Stalled: no progress for a while, still running, not done.
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + DEADLINE;
    while quiet_since.elapsed() < Duration::from_millis(700) {
        assert!(
            Instant::now() < deadline,
            "never stalled: {:?}",
            client.seen
        );
        if let Ok(line) = client.lines.recv_timeout(Duration::from_millis(50)) {
            client.seen.push(line);
            quiet_since = Instant::now();
        }
    }
    assert!(
        client.child.try_wait().expect("wait").is_none(),
        "client exited"
    );
    assert!(
        !client.seen.iter().any(|l| l.contains("sent #60 ")),
        "{:?}",
        client.seen
    );

    server.signal("USR1");
    client.find("sent all 60 messages");
    let (ok, stderr) = client.finish();
    assert!(ok, "{stderr}");
    let (numbers, closed) = sequence_numbers(&mut server);
    assert_eq!(numbers, (1..=60).collect::<Vec<_>>());
    assert!(
        closed.ends_with("closed: peer closed the connection"),
        "{closed}"
    );
    let (ok, stderr) = server.finish();
    assert!(ok, "{stderr}");
}

#[test]
fn hesitant_server_starts_reading_after_wait_seconds_with_a_python_producer() {
    let mut server = hesitant(&["--wait-seconds", "0.5"]);
    let addr = server.listening();
    let script = format!(
        "{PY_PROTOCOL}
sock = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
for i in range(1, 4):
    sock.sendall(frame(JSON, json.dumps({{'client_name': 'py', 'sequence_number': i,
        'random_numbers': [10000000] * 400, 'uuids': []}})))
sock.close()
"
    );
    let out = python_script(&script)
        .arg(addr.port().to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.find("reading now (wait over)");
    let (numbers, closed) = sequence_numbers(&mut server);
    assert_eq!(numbers, vec![1, 2, 3]);
    assert!(
        closed.ends_with("closed: peer closed the connection"),
        "{closed}"
    );
}

#[test]
fn eager_messages_parse_in_python() {
    let script = format!(
        "{PY_PROTOCOL}
srv = socket.socket()
srv.bind(('127.0.0.1', 0))
srv.listen(5)
print('listening on 127.0.0.1:%d' % srv.getsockname()[1], flush=True)
srv.settimeout(20)
conn, _ = srv.accept()
conn.settimeout(20)
while True:
    message = read_frame(conn)
    if message is None:
        break
    kind, text = message
    assert kind == JSON, kind
    doc = json.loads(text)
    assert text == json.dumps(doc), 'not json.dumps layout'
    assert sorted(doc) == ['client_name', 'random_numbers', 'sequence_number', 'uuids']
    assert 400 <= len(doc['random_numbers']) <= 800
    assert all(10000000 <= n < 20000000 for n in doc['random_numbers'])
    print('seq %d' % doc['sequence_number'], flush=True)
"
    );
    let mut py = Spawned::start(python_script(&script));
    let port = py.listening().port().to_string();
    let client = eager(&port, &["--count", "3"]);
    let (ok, stderr) = client.finish();
    assert!(ok, "{stderr}");
    py.find("seq 1");
    py.find("seq 3");
    let (ok, stderr) = py.finish();
    assert!(ok, "{stderr}");
}
