//! The local terminal, as an interactive remote shell needs it.
//!
//! A remote shell only feels local if every keystroke reaches it untouched: no local
//! echo, no line editing, Ctrl-C as the byte 0x03 instead of a SIGINT that kills
//! labctl. That takes raw mode, and a terminal left raw after exit is the best-known
//! defect of the Session Manager plugin, so [`RawMode`] restores it on every way out:
//! return, error, panic, and (with [`terminated`]) a signal. The module also reports
//! window-size changes ([`resizes`]) and reads stdin in chunks one input message can
//! carry ([`StdinReader`]).
//!
//! crossterm changes the terminal on stdin, or `/dev/tty` when stdin is not one;
//! [`RawMode::enter`] refuses a stdin that is not a terminal, so it is always stdin's.

use std::io::{self, IsTerminal, Read};
use std::os::fd::AsFd;
use std::sync::{Mutex, MutexGuard, Once, PoisonError, TryLockError};
use std::task::Poll;
use std::thread::ThreadId;
use std::time::Duration;

use bytes::Bytes;
use labctl_ssm::message::MAX_INPUT_CHUNK;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

/// The thread that holds the [`RawMode`] guard, while one exists.
static OWNER: Mutex<Option<ThreadId>> = Mutex::new(None);

fn owner() -> MutexGuard<'static, Option<ThreadId>> {
    OWNER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The terminal in raw mode while this guard lives; dropping it restores the modes
/// the terminal had before.
///
/// Raw mode means no echo, no canonical (line) mode, no signal keys (Ctrl-C, Ctrl-\,
/// Ctrl-Z arrive as bytes 0x03, 0x1c, 0x1a) and no output processing (`\n` is not
/// turned into `\r\n`: anything labctl itself prints meanwhile must say `\r\n`).
///
/// Restoration happens on drop (normal return, `?`, unwinding), in a panic hook
/// before the panic message prints (for a panic on the guard's thread, or any panic
/// when panics abort), and after a signal if the caller exits through [`terminated`].
/// Left raw: SIGKILL, signals not watched there (SIGUSR1, ...) and a stop (SIGSTOP;
/// an interactive bash restores the modes of a job that stops).
#[derive(Debug)]
pub struct RawMode {
    on: bool,
}

impl RawMode {
    /// Switches the terminal on stdin to raw mode.
    ///
    /// Fails with "stdin is not a terminal" (kind `Unsupported`) when stdin is a pipe
    /// or a file, leaving every terminal alone; and with kind `AlreadyExists` while
    /// another guard is alive.
    pub fn enter() -> io::Result<RawMode> {
        if !io::stdin().is_terminal() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "stdin is not a terminal",
            ));
        }
        let mut owner = owner();
        if owner.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the terminal is already in raw mode",
            ));
        }
        install_panic_hook();
        crossterm::terminal::enable_raw_mode()?;
        *owner = Some(std::thread::current().id());
        Ok(RawMode { on: true })
    }

    /// Restores the terminal now; calling it again, or dropping the guard after it,
    /// does nothing.
    pub fn restore(&mut self) -> io::Result<()> {
        if self.on {
            // A no-op when the panic hook has restored already.
            crossterm::terminal::disable_raw_mode()?;
            self.on = false;
            *owner() = None;
        }
        Ok(())
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = self.restore();
        *owner() = None;
    }
}

/// Restores the terminal before the panic message prints, then runs the previous hook.
///
/// A panic on another thread leaves raw mode on: tokio catches a task's panic and
/// the session goes on.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let here = Some(std::thread::current().id());
            // Never wait for the lock here: the panic may come from under it.
            let ours = match OWNER.try_lock() {
                Ok(owner) => *owner == here,
                Err(TryLockError::Poisoned(owner)) => *owner.into_inner() == here,
                Err(TryLockError::WouldBlock) => true,
            };
            if cfg!(panic = "abort") || ours {
                let _ = crossterm::terminal::disable_raw_mode();
            }
            previous(info);
        }));
    });
}

/// Resolves with the signal number when labctl receives SIGTERM, SIGHUP, SIGQUIT or
/// SIGINT, so that a `select!` loop can return and drop its [`RawMode`] guard.
/// Exit with 128 + that number, as a shell reports a death by signal.
///
/// The handlers are installed by this call, not at the first poll, so call it before
/// [`RawMode::enter`]. From then on, for the rest of the process, those signals no
/// longer kill labctl by themselves. Needs a tokio runtime; a signal that cannot be
/// watched is logged and skipped.
pub fn terminated() -> impl Future<Output = i32> + Send + 'static {
    let mut watched: Vec<(i32, Signal)> = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::interrupt(),
    ] {
        match signal(kind) {
            Ok(stream) => watched.push((kind.as_raw_value(), stream)),
            Err(e) => tracing::warn!("cannot watch signal {}: {e}", kind.as_raw_value()),
        }
    }
    std::future::poll_fn(move |cx| {
        for (number, stream) in &mut watched {
            if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                return Poll::Ready(*number);
            }
        }
        Poll::Pending
    })
}

/// The terminal's size as (columns, rows), read from `/dev/tty` (else stdout); `None`
/// without a terminal, or when it reports 0×0.
pub fn size() -> Option<(u16, u16)> {
    // window_size, not size: size falls back to running `tput`.
    let size = crossterm::terminal::window_size().ok()?;
    (size.columns > 0 && size.rows > 0).then_some((size.columns, size.rows))
}

/// Watches the terminal's size; see [`Resizes::recv`].
///
/// Call it before reading the initial [`size`]: then no change is ever missed (at
/// worst one is reported twice).
pub fn resizes() -> Resizes {
    // The handler first, then the baseline: a change between them still signals.
    let signal = signal(SignalKind::window_change())
        .map_err(|e| tracing::warn!("cannot watch terminal resizes: {e}"))
        .ok();
    Resizes {
        signal,
        sizes: SizeChanges::new(size()),
    }
}

/// Window-size changes, from SIGWINCH.
#[derive(Debug)]
pub struct Resizes {
    signal: Option<Signal>,
    sizes: SizeChanges,
}

impl Resizes {
    /// Waits for the next size that differs from the last one reported (or from the
    /// size when [`resizes`] was called). `None` when SIGWINCH cannot be watched.
    /// Cancel-safe, for `select!`.
    pub async fn recv(&mut self) -> Option<(u16, u16)> {
        let signal = self.signal.as_mut()?;
        loop {
            signal.recv().await?;
            if let Some(changed) = self.sizes.observe(size()) {
                return Some(changed);
            }
        }
    }
}

/// Turns size readings into changes: SIGWINCH also comes for a size that did not
/// change (or changed and changed back before we looked).
#[derive(Debug)]
struct SizeChanges {
    last: Option<(u16, u16)>,
}

impl SizeChanges {
    fn new(initial: Option<(u16, u16)>) -> Self {
        Self { last: initial }
    }

    /// The new size if `now` is known and differs from the last one.
    fn observe(&mut self, now: Option<(u16, u16)>) -> Option<(u16, u16)> {
        let now = now?;
        if self.last == Some(now) {
            return None;
        }
        self.last = Some(now);
        Some(now)
    }
}

/// Stdin, read as it comes: each chunk is what one `read` returned (in raw mode,
/// usually one keystroke or one paste), at most [`MAX_INPUT_CHUNK`] bytes, the most
/// one input message carries.
///
/// A dedicated thread does the blocking reads. Unlike `tokio::io::stdin`, whose
/// uncancellable read makes the runtime's shutdown wait for the next keystroke, it
/// never delays exit. Make one per process: after the reader is dropped, the
/// thread's pending read still takes (and discards) the next chunk.
#[derive(Debug)]
pub struct StdinReader {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
}

impl StdinReader {
    /// Starts reading stdin (a duplicate of its descriptor, unbuffered).
    pub fn spawn() -> io::Result<StdinReader> {
        let mut stdin = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let (tx, chunks) = mpsc::channel(8);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = vec![0u8; MAX_INPUT_CHUNK];
                loop {
                    let chunk = match stdin.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // Someone else set O_NONBLOCK on the shared terminal.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        Err(e) => Err(e),
                    };
                    let failed = chunk.is_err();
                    if tx.blocking_send(chunk).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(StdinReader { chunks })
    }

    /// The next chunk; `Ok(None)` at end of input (then forever). In raw mode Ctrl-D
    /// is the byte 0x04, not an end: the end comes from a pipe or a hung-up terminal.
    /// Cancel-safe, for `select!`.
    pub async fn read(&mut self) -> io::Result<Option<Bytes>> {
        self.chunks.recv().await.transpose()
    }
}

// The pseudo-terminal harness of the integration tests, shared (it is self-contained).
// Its own tests run there, not here, so not all of it is used here.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/it/pty.rs"]
mod pty;

#[cfg(test)]
mod tests {
    //! The pure parts directly; the terminal parts in a real pseudo-terminal. crossterm
    //! only switches the terminal on stdin (or /dev/tty), never a given descriptor, so
    //! each terminal test runs this test binary again, as only that test, inside a
    //! pty whose slave is the child's stdin and controlling terminal. The child part
    //! of a test is the branch taken when [`CHILD`] is set.

    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::pty::{Terminal, assert_cooked, modes_off};
    use super::*;

    const CHILD: &str = "LABCTL_TERMINAL_TEST_CHILD";
    const WAIT: Duration = Duration::from_secs(20);

    fn is_child() -> bool {
        std::env::var_os(CHILD).is_some()
    }

    /// This test binary, running only `test` (a function of this module), as a child.
    fn child(test: &str) -> Command {
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
        cmd.args([
            &format!("{module}::{test}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "0");
        cmd
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    #[test]
    fn size_changes_are_reported_once() {
        let mut sizes = SizeChanges::new(Some((80, 24)));
        assert_eq!(sizes.observe(Some((80, 24))), None);
        assert_eq!(sizes.observe(Some((100, 30))), Some((100, 30)));
        assert_eq!(sizes.observe(Some((100, 30))), None);
        assert_eq!(sizes.observe(Some((80, 24))), Some((80, 24)));
    }

    #[test]
    fn unknown_sizes_are_not_changes() {
        let mut sizes = SizeChanges::new(None);
        assert_eq!(sizes.observe(None), None);
        assert_eq!(sizes.observe(Some((80, 24))), Some((80, 24)));
        assert_eq!(sizes.observe(None), None);
        assert_eq!(sizes.observe(Some((80, 24))), None);
    }

    #[test]
    fn raw_mode_delivers_ctrl_c_as_a_byte_and_restores_once() {
        if is_child() {
            runtime().block_on(async {
                let mut raw = RawMode::enter().expect("enter raw mode");
                let second = RawMode::enter().expect_err("a second guard");
                assert_eq!(second.kind(), io::ErrorKind::AlreadyExists);
                let mut stdin = StdinReader::spawn().expect("stdin reader");
                println!("child: raw");
                let got = stdin.read().await.expect("read").expect("a chunk");
                println!("child: got {:?}", &got[..]);
                raw.restore().expect("restore");
                raw.restore().expect("restore again");
                drop(raw);
                println!("child: restored");
                let again = RawMode::enter().expect("enter raw mode after a restore");
                drop(again);
                println!("child: done");
            });
            return;
        }
        let term = Terminal::spawn(
            &child("raw_mode_delivers_ctrl_c_as_a_byte_and_restores_once"),
            80,
            24,
        );
        term.expect("child: raw", WAIT);
        let off = modes_off(&term);
        for mode in ["echo", "icanon", "isig", "opost", "icrnl"] {
            assert!(
                off.contains(&mode),
                "{mode} still on in raw mode:\n{}",
                term.stty()
            );
        }
        term.send([0x03]);
        // With isig on, Ctrl-C would have killed the child instead.
        term.expect("child: got [3]", WAIT);
        term.expect("child: restored", WAIT);
        assert_cooked(&term);
        term.expect("child: done", WAIT);
        assert_eq!(term.wait(WAIT), 0, "{}", term.transcript());
        assert_cooked(&term);
    }

    #[test]
    fn panic_message_prints_on_a_restored_terminal() {
        if is_child() {
            let _raw = RawMode::enter().expect("enter raw mode");
            println!("child: raw");
            panic!("boom in raw mode");
        }
        let term = Terminal::spawn(
            &child("panic_message_prints_on_a_restored_terminal"),
            80,
            24,
        );
        term.expect("boom in raw mode", WAIT);
        assert_eq!(term.wait(WAIT), 101, "{}", term.transcript());
        // Output processing back on when the message printed: its newline became \r\n.
        assert!(
            term.transcript().contains("boom in raw mode\r\n"),
            "{}",
            term.transcript()
        );
        assert_cooked(&term);
    }

    #[test]
    fn panic_check_fails_without_the_hook() {
        // The control for the test above: with the default hook, the message prints
        // while raw (no \r); unwinding restores afterwards.
        if is_child() {
            let _raw = RawMode::enter().expect("enter raw mode");
            let _ = std::panic::take_hook();
            println!("child: raw");
            panic!("boom in raw mode");
        }
        let term = Terminal::spawn(&child("panic_check_fails_without_the_hook"), 80, 24);
        term.expect("boom in raw mode", WAIT);
        assert_eq!(term.wait(WAIT), 101, "{}", term.transcript());
        let transcript = term.transcript();
        assert!(transcript.contains("boom in raw mode\n"), "{transcript}");
        assert!(!transcript.contains("boom in raw mode\r\n"), "{transcript}");
        assert_cooked(&term);
    }

    #[test]
    fn signals_end_the_session_and_restore() {
        if is_child() {
            runtime().block_on(async {
                let signalled = terminated();
                let raw = RawMode::enter().expect("enter raw mode");
                println!("child: raw");
                let number = signalled.await;
                drop(raw);
                println!("child: signal {number}");
                std::process::exit(128 + number);
            });
            return;
        }
        for (name, number) in [("TERM", 15), ("HUP", 1), ("QUIT", 3), ("INT", 2)] {
            let term = Terminal::spawn(&child("signals_end_the_session_and_restore"), 80, 24);
            term.expect("child: raw", WAIT);
            assert!(modes_off(&term).contains(&"echo"), "{}", term.stty());
            term.signal(name);
            term.expect(&format!("child: signal {number}"), WAIT);
            assert_eq!(term.wait(WAIT), 128 + number, "{}", term.transcript());
            assert_cooked(&term);
        }
    }

    #[test]
    fn resizes_report_each_new_size_once() {
        if is_child() {
            runtime().block_on(async {
                let mut resizes = resizes();
                println!("size {:?}", size());
                loop {
                    let size = resizes.recv().await;
                    println!("resized {size:?}");
                    if size == Some((90, 20)) {
                        break;
                    }
                }
            });
            return;
        }
        let term = Terminal::spawn(&child("resizes_report_each_new_size_once"), 80, 24);
        term.expect("size Some((80, 24))", WAIT);
        term.resize(100, 30);
        term.expect("resized Some((100, 30))", WAIT);
        // A SIGWINCH with no change reports nothing.
        term.signal("WINCH");
        std::thread::sleep(Duration::from_millis(200));
        term.resize(90, 20);
        term.expect("resized Some((90, 20))", WAIT);
        assert_eq!(term.wait(WAIT), 0, "{}", term.transcript());
        assert_eq!(
            term.transcript().matches("resized").count(),
            2,
            "{}",
            term.transcript()
        );
    }

    #[test]
    fn stdin_not_a_terminal_is_refused_without_touching_dev_tty() {
        if is_child() {
            let err = RawMode::enter().expect_err("raw mode on /dev/null");
            println!("refused: {err} ({:?})", err.kind());
            return;
        }
        // The pty stays the controlling terminal (/dev/tty), crossterm's fallback.
        let test = child("stdin_not_a_terminal_is_refused_without_touching_dev_tty");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"exec "$0" "$@" </dev/null"#])
            .arg(test.get_program())
            .args(test.get_args())
            .envs(test.get_envs().filter_map(|(k, v)| Some((k, v?))));
        let term = Terminal::spawn(&cmd, 80, 24);
        term.expect("refused: stdin is not a terminal (Unsupported)", WAIT);
        assert_eq!(term.wait(WAIT), 0, "{}", term.transcript());
        assert_cooked(&term);
    }

    #[test]
    fn stdin_reader_forwards_chunks_then_the_end() {
        if is_child() {
            runtime().block_on(async {
                let mut stdin = StdinReader::spawn().expect("stdin reader");
                let (mut total, mut largest) = (0, 0);
                while let Some(chunk) = stdin.read().await.expect("read") {
                    total += chunk.len();
                    largest = largest.max(chunk.len());
                }
                assert!(stdin.read().await.expect("read after the end").is_none());
                println!("total {total} largest {largest}");
            });
            return;
        }
        let mut proc = child("stdin_reader_forwards_chunks_then_the_end")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let mut input = proc.stdin.take().expect("child stdin");
        input.write_all(&[b'x'; 3000]).expect("write stdin");
        drop(input);
        let out = proc.wait_with_output().expect("child output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest's "test ... " may precede it on the same line.
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("total ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no total in:\n{stdout}"));
        let (total, largest) = line.split_once(" largest ").expect("total line");
        assert_eq!(total, "3000");
        let largest: usize = largest.parse().expect("largest");
        assert!((1..=MAX_INPUT_CHUNK).contains(&largest), "{line}");
    }
}
