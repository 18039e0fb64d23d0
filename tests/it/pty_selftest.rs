//! The pseudo-terminal harness itself ([`crate::pty`]): typing, resizing, exit codes, and a cooked check that fails
//! when it should.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::pty::{Terminal, assert_cooked, modes_off};

const WAIT: Duration = Duration::from_secs(20);

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

#[test]
fn types_into_a_shell_and_resizes_it() {
    let mut bash = Command::new("bash");
    bash.args(["--norc", "--noprofile", "-i"])
        .env("PS1", "pty$ ")
        .env_remove("PROMPT_COMMAND");
    let term = Terminal::spawn(&bash, 80, 24);
    term.expect("pty$ ", WAIT);
    term.send("stty size\r");
    term.expect("24 80\r\n", WAIT);
    // At the prompt: see "Resizing a shell" above.
    term.expect("pty$ ", WAIT);
    term.resize(100, 30);
    term.send("stty size\r");
    let out = term.expect("30 100\r\n", WAIT);
    assert!(out.contains("24 80"), "all output so far: {out}");
    term.send("exit 3\r");
    assert_eq!(term.wait(WAIT), 3);
    assert!(
        term.transcript().contains("exit 3"),
        "{}",
        term.transcript()
    );
    assert_cooked(&term);
}

#[test]
fn the_cooked_check_detects_raw_mode_then_sane() {
    let term = Terminal::spawn(
        &sh("stty raw -echo; echo raw; read x; stty sane; echo sane; read y"),
        80,
        24,
    );
    term.expect("raw", WAIT);
    let off = modes_off(&term);
    assert!(off.contains(&"echo") && off.contains(&"icanon"), "{off:?}");
    let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| assert_cooked(&term)));
    let message = check.expect_err("assert_cooked passed on a raw terminal");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("echo"), "{message}");
    term.send("\n");
    term.expect("sane", WAIT);
    assert_cooked(&term);
    term.send("\n");
    assert_eq!(term.wait(WAIT), 0);
    assert_cooked(&term);
}

#[test]
fn a_death_by_signal_in_raw_mode_is_seen() {
    // An interactive bash would have hidden this one by restoring the modes itself.
    let term = Terminal::spawn(&sh("stty raw -echo; kill -TERM $$"), 80, 24);
    assert_eq!(term.wait(WAIT), 128 + 15);
    let off = modes_off(&term);
    assert!(off.contains(&"echo") && off.contains(&"icanon"), "{off:?}");
}

#[test]
fn signals_reach_the_program() {
    let term = Terminal::spawn(
        &sh("trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.05; done"),
        80,
        24,
    );
    term.expect("ready", WAIT);
    term.signal("TERM");
    term.expect("got-term", WAIT);
    assert_eq!(term.wait(WAIT), 5);
}

#[test]
fn expect_fails_with_the_transcript() {
    let term = Terminal::spawn(&sh("printf 'one\\033[1mtwo\\n'; sleep 30"), 80, 24);
    term.expect("two", WAIT);
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        term.expect("three", Duration::from_millis(200));
    }));
    let message = failed.expect_err("expect found a missing needle");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("\"three\""), "{message}");
    assert!(message.contains("one\\e[1mtwo"), "{message}");
}

#[test]
fn dropping_kills_a_running_program() {
    let term = Terminal::spawn(&sh("echo started; exec sleep 30"), 80, 24);
    term.expect("started", WAIT);
    let proc = PathBuf::from(format!("/proc/{}", term.pid()));
    assert!(proc.exists());
    let started = Instant::now();
    drop(term);
    assert!(!proc.exists(), "still running after the drop");
    assert!(started.elapsed() < Duration::from_secs(5));
}
