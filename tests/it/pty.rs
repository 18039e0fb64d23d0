//! A pseudo-terminal a test can type into, for commands that need a real terminal
//! (`labctl ssm-shell`): the test sees what a user would see, and can check afterwards
//! that the command left the terminal's modes as it found them.
//!
//! [`assert_cooked`] reads the modes from outside, with `stty -F <pty>`, so it sees
//! exactly what the program left. Typing `stty -a` into an interactive bash after the
//! program would not do: bash itself restores the modes when a job dies of a signal,
//! hiding the bug, and while bash waits at a prompt readline has its own modes on.
//!
//! Resizing a shell: bash's readline reads the window size and writes it back each
//! time it prepares the terminal for a prompt, so a resize that lands in between is
//! undone. Resize only once the shell shows its prompt (as a user would).
//!
//! Self-contained (std and portable-pty only): `src/terminal.rs` includes this file
//! in its unit tests. Its own tests are in `pty_selftest.rs`, so that they run once,
//! here, and not again in labctl's unit tests.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

type PtyChild = Box<dyn portable_pty::Child + Send + Sync>;

/// A program running in a pseudo-terminal, with everything it printed so far.
pub struct Terminal {
    master: Box<dyn MasterPty + Send>,
    writer: Mutex<Box<dyn Write + Send>>,
    child: Mutex<PtyChild>,
    output: Arc<Output>,
    tty: PathBuf,
    pid: u32,
}

/// What the reader thread collected, and how far [`Terminal::expect`] has matched.
struct Output {
    state: Mutex<State>,
    grew: Condvar,
}

struct State {
    bytes: Vec<u8>,
    cursor: usize,
    ended: bool,
}

impl Output {
    fn state(&self) -> MutexGuard<'_, State> {
        // A failed expect panics; its transcript is still wanted afterwards.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Terminal {
    /// Runs `cmd` (its program, arguments, environment changes and directory; not
    /// its stdio) as the session leader of a new `cols`×`rows` pseudo-terminal, which
    /// is its stdin, stdout, stderr and controlling terminal. `TERM` is
    /// `xterm-256color` unless `cmd` sets it; `env_clear` is not carried over.
    pub fn spawn(cmd: &Command, cols: u16, rows: u16) -> Terminal {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut builder = CommandBuilder::new(cmd.get_program());
        builder.args(cmd.get_args());
        builder.env("TERM", "xterm-256color");
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => builder.env(key, value),
                None => builder.env_remove(key),
            }
        }
        let dir = match cmd.get_current_dir() {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir().expect("current directory"),
        };
        builder.cwd(dir);
        let child = pair
            .slave
            .spawn_command(builder)
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} in a pty: {e:#}"));
        // Only the child holds the slave now: its exit ends the output.
        drop(pair.slave);
        let pid = child.process_id().expect("child pid");
        let tty = pair.master.tty_name().expect("the pty's device path");
        let reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let output = Arc::new(Output {
            state: Mutex::new(State {
                bytes: Vec::new(),
                cursor: 0,
                ended: false,
            }),
            grew: Condvar::new(),
        });
        let collected = Arc::clone(&output);
        std::thread::Builder::new()
            .name(format!("pty-{pid}"))
            .spawn(move || collect(reader, &collected))
            .expect("spawn the pty reader");
        Terminal {
            master: pair.master,
            writer: Mutex::new(writer),
            child: Mutex::new(child),
            output,
            tty,
            pid,
        }
    }

    /// Types `input` (text or bytes: `"ls\r"`, `[0x03]` for Ctrl-C).
    pub fn send(&self, input: impl AsRef<[u8]>) {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer
            .write_all(input.as_ref())
            .and_then(|()| writer.flush())
            .unwrap_or_else(|e| panic!("typing into the pty: {e}\n{}", self.render()));
    }

    /// Waits until `needle` appears in output not matched by an earlier `expect`, and
    /// returns all output so far. Panics with the transcript on timeout, or when the
    /// output ended without it. Output is raw: escape sequences and `\r` included.
    pub fn expect(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut state = self.output.state();
        loop {
            if let Some(at) = find(&state.bytes[state.cursor..], needle.as_bytes()) {
                state.cursor += at + needle.len();
                return String::from_utf8_lossy(&state.bytes).into_owned();
            }
            let now = Instant::now();
            if state.ended || now >= deadline {
                let why = if state.ended {
                    "the output ended".to_owned()
                } else {
                    format!("{timeout:?} passed")
                };
                drop(state);
                panic!("{why} before {needle:?} appeared\n{}", self.render());
            }
            state = self
                .output
                .grew
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Resizes the terminal; the program gets SIGWINCH if the size changed.
    pub fn resize(&self, cols: u16, rows: u16) {
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize the pty");
    }

    /// Waits for the program to exit and returns its exit code (128 + n for a death
    /// by signal n), once its output is collected. Panics with the transcript on
    /// timeout.
    pub fn wait(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.exit_code() {
                self.wait_for_end(Duration::from_secs(2));
                return code;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the program was still running after {timeout:?}\n{}",
                    self.render()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the program printed so far, raw.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.output.state().bytes).into_owned()
    }

    /// Sends signal `name` (`"TERM"`, `"HUP"`, ...) to the program, which must still
    /// be running.
    pub fn signal(&self, name: &str) {
        // Holding the child: it cannot be reaped, so its pid cannot be reused meanwhile.
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "SIG{name} for a program that exited\n{}",
            self.render()
        );
        let status = Command::new("kill")
            .args(["-s", name, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {} failed", self.pid);
    }

    /// The program's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `stty -a` of the terminal, read from outside; works after the program exited.
    pub fn stty(&self) -> String {
        let out = Command::new("stty")
            .arg("-F")
            .arg(&self.tty)
            .arg("-a")
            .output()
            .expect("run stty");
        assert!(
            out.status.success(),
            "stty -F {} -a: {}",
            self.tty.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn exit_code(&self) -> Option<i32> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        exit_code(&mut child)
    }

    /// Lets the reader catch up after the exit; a grandchild that keeps the pty open
    /// would hold the end back forever, so this gives up after `limit`.
    fn wait_for_end(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut state = self.output.state();
        while !state.ended {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            state = self
                .output
                .grew
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The transcript for a failure message: control characters made visible.
    fn render(&self) -> String {
        let text = self.transcript().replace("\r\n", "\n");
        let mut shown = String::from("--- terminal transcript\n");
        for c in text.chars() {
            match c {
                '\n' | '\t' => shown.push(c),
                '\r' => shown.push_str("\\r"),
                '\x1b' => shown.push_str("\\e"),
                c if c.is_control() => shown.push_str(&format!("\\x{:02x}", u32::from(c))),
                c => shown.push(c),
            }
        }
        shown.push_str("\n--- end of transcript");
        shown
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(child.try_wait(), Ok(None)) {
            // SIGHUP, as a closed terminal would; SIGKILL after 200 ms.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The cooked modes (of `echo`, `icanon`, `isig`, `opost`, `icrnl`, all on in a new
/// pty) that are off in `term` now.
pub fn modes_off(term: &Terminal) -> Vec<&'static str> {
    let stty = term.stty();
    let words: Vec<&str> = stty
        .split(|c: char| c.is_whitespace() || c == ';')
        .collect();
    ["echo", "icanon", "isig", "opost", "icrnl"]
        .into_iter()
        .filter(|mode| !words.contains(mode))
        .collect()
}

/// Panics, with `stty -a` and the transcript, unless the terminal's modes are cooked:
/// call it after the program exited to prove it restored the terminal.
pub fn assert_cooked(term: &Terminal) {
    let off = modes_off(term);
    assert!(
        off.is_empty(),
        "the terminal is not cooked: {} off\n--- stty -a\n{}{}",
        off.join(", "),
        term.stty(),
        term.render()
    );
}

/// Copies the pty's output into `output` until the last slave descriptor closes.
fn collect(mut reader: Box<dyn Read + Send>, output: &Output) {
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => output.state().bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: every slave descriptor is closed.
            Err(_) => break,
        }
        output.grew.notify_all();
    }
    output.state().ended = true;
    output.grew.notify_all();
}

/// The child's exit code if it exited: its code, or 128 + the signal that killed it.
fn exit_code(child: &mut PtyChild) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let child: &mut dyn portable_pty::Child = &mut **child;
    match child.downcast_mut::<std::process::Child>() {
        Some(child) => {
            let status = child.try_wait().ok()??;
            status.code().or_else(|| status.signal().map(|n| 128 + n))
        }
        // Never on Unix; portable-pty's status has no signal number.
        None => child
            .try_wait()
            .ok()?
            .map(|status| status.exit_code() as i32),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
