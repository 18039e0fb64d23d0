//! `labctl ssm-shell` and `labctl forward` for real, end to end: the lab on LocalStack
//! (EC2, STS), Session Manager from the project's test double (LocalStack has no
//! StartSession), which serves the data channel as the agent does, with a real shell
//! in a pseudo-terminal and real TCP connections behind it. The shell is driven through
//! a real pseudo-terminal, as a user would type.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::double::Double;
use crate::harness::{Sandbox, Teardown};
use crate::pty::{Terminal, assert_cooked};
use crate::reconcile::{lab_sandbox, ok};

const T: Duration = Duration::from_secs(20);
const PROMPT: &str = "ssm-user$ ";

fn shell(sb: &Sandbox, double: &Double) -> Terminal {
    let mut cmd = sb.labctl(&["ssm-shell", "server"]);
    cmd.env("AWS_ENDPOINT_URL_SSM", double.endpoint());
    Terminal::spawn(&cmd, 80, 24)
}

#[test]
fn a_shell_in_a_real_terminal() {
    let (sb, _lab) = lab_sandbox("shell");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let double = Double::start(&[]);
    let term = shell(&sb, &double);
    term.expect(PROMPT, T);
    term.send("echo hello-$((6*7))\r");
    term.expect("hello-42", T);
    // A resize reaches the remote terminal (once the prompt shows, as a shell with
    // readline rewrites the size while it prepares one).
    term.expect(PROMPT, T);
    term.resize(100, 30);
    std::thread::sleep(Duration::from_millis(200));
    term.send("stty size\r");
    term.expect("30 100", T);
    // Ctrl-C interrupts the remote command, not labctl.
    term.send("sh -c 'echo sta\"\"rted; exec sleep 30'\r");
    term.expect("started", T);
    term.send("\x03");
    term.send("echo status-$?\r");
    term.expect("status-130", Duration::from_secs(5));
    // The shell's exit status is labctl's, and the terminal is as it was.
    term.send("exit 3\r");
    assert_eq!(term.wait(T), 3, "{}", term.transcript());
    assert!(
        term.transcript().contains("ended."),
        "{}",
        term.transcript()
    );
    assert_no_marker(&term);
    assert_cooked(&term);
    let stats = sessions(&double);
    let session = stats
        .as_object()
        .and_then(|m| m.values().next())
        .expect("session");
    assert_eq!(
        session["signed_upgrades"], 1,
        "the upgrade is SigV4-signed: {session}"
    );
    assert_eq!(
        session["document"], "AWS-StartInteractiveCommand",
        "{session}"
    );
}

/// The nonce of the marker in a session's command, from the double's record of it.
fn nonce(session: &serde_json::Value) -> String {
    let command = session["parameters"]["command"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no command: {session}"));
    let (_, rest) = command
        .split_once("LABCTL-EXIT;")
        .unwrap_or_else(|| panic!("no marker in {command:?}"));
    let nonce = &rest[..rest.find(';').expect("the nonce ends")];
    assert!(
        nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit()),
        "{nonce:?}"
    );
    nonce.to_owned()
}

/// Neither the exit-status marker nor any part of it reached the user's terminal.
fn assert_no_marker(term: &Terminal) {
    let seen = term.transcript();
    assert!(
        !seen.contains("LABCTL-EXIT") && !seen.contains("\x1b]"),
        "the marker reached the terminal\n{seen:?}"
    );
}

/// The shell's status comes from the marker the wrapper prints, as the agent sends no
/// ExitCode message for a shell (nor does the double): through whole messages, through
/// messages of one byte each, and through messages cut inside the marker. Lookalikes
/// without the session's nonce are shown as they are.
#[test]
fn the_shells_exit_status_arrives_without_an_exit_code_message() {
    let (sb, _lab) = lab_sandbox("shexit");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let exit_7 = |double: &Double| {
        let term = shell(&sb, double);
        term.expect(PROMPT, T);
        term.send("exit 7\r");
        assert_eq!(term.wait(T), 7, "{}", term.transcript());
        assert_no_marker(&term);
        assert_cooked(&term);
    };
    exit_7(&Double::start(&[]));
    // Messages that end in a bare ESC, after `EXIT;`, and after each `;`.
    exit_7(&Double::start(&[
        "--split-after",
        "\x1b",
        "--split-after",
        "EXIT;",
        "--split-after",
        ";",
    ]));
    // One byte a message: the marker cut at every byte.
    let double = Double::start(&["--chunk", "1"]);
    exit_7(&double);

    // Ctrl-D at a fresh prompt ends the shell with status 0.
    let term = shell(&sb, &double);
    term.expect(PROMPT, T);
    term.send("\x04");
    assert_eq!(term.wait(T), 0, "{}", term.transcript());
    assert_no_marker(&term);

    // A shell killed by a signal: 128 + 9, as a shell reports it.
    let term = shell(&sb, &double);
    term.expect(PROMPT, T);
    term.send("kill -9 $$\r");
    assert_eq!(term.wait(T), 137, "{}", term.transcript());
    assert_no_marker(&term);

    // Output that looks like the marker but lacks this session's nonce is the user's:
    // shown byte for byte. The typed line spells it in parts, so its echo does not.
    let term = shell(&sb, &double);
    term.expect(PROMPT, T);
    term.send("L=LABCTL; printf 'a\\033]%s-EXIT;%s;5\\007b\\n' $L 0123ABCD\r");
    term.expect("b\r\n", T);
    term.send("exit 2\r");
    assert_eq!(term.wait(T), 2, "{}", term.transcript());
    let seen = term.transcript();
    assert_eq!(
        seen.matches("LABCTL-EXIT").count(),
        1,
        "only the lookalike\n{seen:?}"
    );
    assert!(
        seen.contains("a\x1b]LABCTL-EXIT;0123ABCD;5\x07b"),
        "{seen:?}"
    );

    let stats = sessions(&double);
    let all = stats.as_object().expect("sessions");
    assert_eq!(all.len(), 4, "{stats}");
    let nonces: std::collections::BTreeSet<String> = all
        .values()
        .map(|session| {
            assert_eq!(
                session["document"], "AWS-StartInteractiveCommand",
                "{session}"
            );
            nonce(session)
        })
        .collect();
    assert_eq!(nonces.len(), 4, "a nonce per session: {nonces:?}");
    assert!(
        nonces.iter().all(|n| !seen.contains(n.as_str())),
        "{seen:?}"
    );
}

/// A session that ends before the shell could report (its parent, the wrapper, is
/// killed) has no status to give: an error, exit 1, and the terminal restored.
#[test]
fn a_session_without_the_shells_status_is_an_error() {
    let (sb, _lab) = lab_sandbox("shlost");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let double = Double::start(&[]);
    let term = shell(&sb, &double);
    term.expect(PROMPT, T);
    term.send("kill -9 $PPID\r");
    assert_eq!(term.wait(T), 1, "{}", term.transcript());
    assert!(
        term.transcript()
            .contains("without the shell's exit status"),
        "{}",
        term.transcript()
    );
    assert_no_marker(&term);
    assert_cooked(&term);
}

#[test]
fn the_shell_survives_the_protocols_hard_cases() {
    let (sb, _lab) = lab_sandbox("shfault");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let double = Double::start(&[
        "--drop-ack-every",
        "4",
        "--reorder",
        "--duplicate",
        "--close-after",
        "30",
        "--pause-after",
        "12",
        "--pause-ms",
        "400",
    ]);
    let term = shell(&sb, &double);
    term.expect(PROMPT, T);
    term.send("seq 1 20000; echo seq-$((2+3))\r");
    // Keystroke by keystroke, as typed: many small input messages.
    for key in "echo typed-while-paused\r".chars() {
        term.send(key.to_string());
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = term.expect("seq-5", T);
    term.expect("typed-while-paused\r\n", T);
    // Every number once, in order.
    // What a line shows last (bash's bracketed-paste switch ends in a carriage return),
    // without the letters the terminal echoed as they were typed during the output.
    let numbers: Vec<u32> = out
        .lines()
        .filter_map(|l| l.split('\r').rfind(|s| !s.is_empty()))
        .filter_map(|l| {
            let digits: String = l.chars().filter(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    let tail: Vec<u32> = numbers
        .iter()
        .copied()
        .skip_while(|n| *n != 1)
        .take(20000)
        .collect();
    assert!(
        tail == (1..=20000).collect::<Vec<_>>(),
        "{}",
        term.transcript()
    );
    // The status survives the faults too.
    term.send("exit 5\r");
    assert_eq!(term.wait(T), 5, "{}", term.transcript());
    assert_no_marker(&term);
    assert_cooked(&term);
    let stats = sessions(&double);
    let session = stats
        .as_object()
        .and_then(|m| m.values().next())
        .expect("one session");
    assert!(session["acks_dropped"].as_u64() > Some(0), "{session}");
    // A withheld acknowledgement leaves the message unaccepted: only the client's
    // retransmission brought it (and the ones behind it, buffered meanwhile) in.
    assert!(session["out_of_order"].as_u64() > Some(0), "{session}");
    assert!(
        session["resumes"].as_u64() >= Some(1),
        "ResumeSession was called: {session}"
    );
    assert!(session["reconnects"].as_u64() >= Some(1), "{session}");
    assert_eq!(session["received_while_paused"], 0, "{session}");
}

/// An echo server on loopback: what it reads it writes back, until EOF.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 16384];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// `labctl forward` running, and the local port it printed.
struct Forward {
    child: Child,
    port: u16,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(sb: &Sandbox, double: &Double, remote: u16) -> Forward {
    let mut cmd = sb.labctl(&["forward", "server", &remote.to_string()]);
    cmd.env("AWS_ENDPOINT_URL_SSM", double.endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("labctl forward");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let port = line
        .strip_prefix("forwarding 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Forward { child, port }
}

/// Deterministic bytes for connection `i`.
fn payload(i: u32, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32 ^ i.wrapping_mul(2_654_435_761);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn one_session_forwards_a_hundred_concurrent_connections() {
    let (sb, _lab) = lab_sandbox("fwd");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let double = Double::start(&[]);
    let echo = echo_server();
    let fwd = forward(&sb, &double, echo);
    let threads: Vec<_> = (0..100u32)
        .map(|i| {
            let port = fwd.port;
            std::thread::spawn(move || {
                let data = payload(i, 64 * 1024 + i as usize);
                let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                conn.set_read_timeout(Some(T)).expect("timeout");
                let mut reader = conn.try_clone().expect("clone");
                let expected = data.clone();
                let read = std::thread::spawn(move || {
                    let mut back = Vec::new();
                    reader.read_to_end(&mut back).map(|_| back)
                });
                conn.write_all(&data).expect("write");
                conn.shutdown(Shutdown::Write).expect("half-close");
                let back = read.join().expect("reader").expect("read to the end");
                assert!(
                    back == expected,
                    "connection {i}: {} bytes back of {}",
                    back.len(),
                    expected.len()
                );
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a connection failed");
    }
    let stats = sessions(&double);
    let sessions = stats.as_object().expect("sessions");
    assert_eq!(
        sessions.len(),
        1,
        "one session for every connection: {stats}"
    );
}

#[test]
fn plugin_hand_over_passes_what_the_aws_cli_passes() {
    let (sb, _lab) = lab_sandbox("plugin");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let double = Double::start(&[]);
    // A stand-in for AWS's session-manager-plugin (not on any registry here): it
    // records its arguments and exits 4.
    let dir = sb.write("bin", "");
    std::fs::remove_file(&dir).expect("make room");
    std::fs::create_dir(&dir).expect("bin dir");
    let record = dir.join("args");
    let script = dir.join("session-manager-plugin");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > {}\nexit 4\n",
            record.display()
        ),
    )
    .expect("stand-in");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = sb.labctl(&["ssm-shell", "server", "--plugin"]);
    cmd.env("AWS_ENDPOINT_URL_SSM", double.endpoint())
        .env("PATH", path);
    let out = cmd.output().expect("labctl");
    assert_eq!(out.status.code(), Some(4), "the plugin's status: {out:?}");
    let args = std::fs::read_to_string(&record).expect("the plugin ran");
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args.len(), 6, "{args:?}");
    let response: serde_json::Value = serde_json::from_str(args[0]).expect("response JSON");
    for key in ["SessionId", "TokenValue", "StreamUrl"] {
        assert!(
            response[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key}: {response}"
        );
    }
    assert_eq!(args[1], crate::reconcile::REGION);
    assert_eq!(args[2], "StartSession");
    assert_eq!(args[3], "", "no profile");
    let request: serde_json::Value = serde_json::from_str(args[4]).expect("request JSON");
    assert!(
        request["Target"]
            .as_str()
            .is_some_and(|t| t.starts_with("i-")),
        "{request}"
    );
    // The standard shell: the plugin exits 0 whatever the shell's status, so labctl
    // wraps nothing for it.
    assert!(request.get("DocumentName").is_none(), "{request}");
    assert_eq!(args[5], double.endpoint());

    // Without --plugin and without a terminal, it says what to use instead and starts
    // no session.
    let mut cmd = sb.labctl(&["ssm-shell", "server"]);
    cmd.env("AWS_ENDPOINT_URL_SSM", double.endpoint())
        .stdin(Stdio::null());
    let out = cmd.output().expect("labctl");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a terminal") && err.contains("labctl exec server"),
        "{err}"
    );
    let started = sessions(&double).as_object().map(|m| m.len());
    assert_eq!(started, Some(1), "only the plugin's session");
}

/// The double's per-session counters (`GET /_double/sessions`).
pub(crate) fn sessions(double: &Double) -> serde_json::Value {
    let host = double.endpoint().trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&host).expect("connect to the double");
    write!(
        conn,
        "GET /_double/sessions HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("response");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[test]
fn a_kms_encrypted_session_is_refused_clearly_and_the_terminal_restored() {
    let (sb, _lab) = lab_sandbox("kms");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let double = Double::start(&["--kms"]);
    let term = shell(&sb, &double);
    term.expect("KMS-encrypted", T);
    assert_eq!(term.wait(T), 1, "{}", term.transcript());
    assert_cooked(&term);
}

/// What the labs do through an SSH tunnel: `labnet load` from the laptop against the
/// instance's intro server, through `labctl forward`.
#[test]
fn labnet_load_runs_through_a_forwarded_port() {
    let (sb, _lab) = lab_sandbox("fwdload");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let double = Double::start(&[]);
    let mut server = std::process::Command::new(crate::harness::labnet_binary())
        .args(["intro-server", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("labnet intro-server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let fwd = forward(&sb, &double, port);
    let load = std::process::Command::new(crate::harness::labnet_binary())
        .args([
            "load",
            "--host",
            "127.0.0.1",
            "--port",
            &fwd.port.to_string(),
        ])
        .args(["--clients", "50", "--pause", "0.1", "--json"])
        .output()
        .expect("labnet load");
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        load.status.success(),
        "{}",
        crate::harness::transcript(&load)
    );
    let doc: serde_json::Value = serde_json::from_slice(&load.stdout).expect("load JSON");
    assert_eq!(doc["runs"][0]["clients"], 50, "{doc}");
}

/// A signal to labctl ends the session and leaves the terminal as it was.
#[test]
fn a_signal_to_labctl_restores_the_terminal() {
    let (sb, _lab) = lab_sandbox("shsig");
    ok(&sb, &["up", "--yes"]);
    let _down = Teardown::new(&sb, &[]);
    let double = Double::start(&[]);
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let term = shell(&sb, &double);
        term.expect(PROMPT, T);
        term.signal(signal);
        assert_eq!(term.wait(T), code, "{signal}: {}", term.transcript());
        assert_cooked(&term);
    }
    let stats = sessions(&double);
    let terminated = stats
        .as_object()
        .expect("sessions")
        .values()
        .filter(|s| s["terminated"] == true)
        .count();
    assert_eq!(terminated, 2, "each session was terminated: {stats}");
}
