//! A real shell in a pseudo-terminal, driven from async code: what the double's agent
//! runs for a shell session, so labctl's tests meet real echo, job control, Ctrl-C and
//! window sizes rather than a script.
//!
//! portable-pty's reader, writer and wait all block, so each gets a thread of its own
//! (never tokio's blocking pool, whose shutdown would wait for them), bridged with
//! channels.

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::{mpsc, oneshot};

/// The most bytes one [`PtyShell::read`] returns: what the agent puts in one message.
pub const MAX_OUTPUT_CHUNK: usize = 1024;

type ShellChild = Box<dyn Child + Send + Sync>;
type Input = (Vec<u8>, oneshot::Sender<io::Result<()>>);

/// A program (usually a shell) running in its own pseudo-terminal, as its session
/// leader. Dropping it kills the program if it still runs and closes the terminal.
pub struct PtyShell {
    master: Mutex<Box<dyn MasterPty + Send>>,
    output: mpsc::Receiver<Bytes>,
    input: mpsc::UnboundedSender<Input>,
    child: Mutex<Option<ShellChild>>,
}

impl std::fmt::Debug for PtyShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtyShell").finish_non_exhaustive()
    }
}

impl PtyShell {
    /// Starts `program args` in the user's home directory, in a `cols`×`rows`
    /// terminal: the double's environment, `TERM=xterm-256color`, then `env`.
    pub fn spawn(
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        cols: u16,
        rows: u16,
    ) -> anyhow::Result<PtyShell> {
        Self::spawn_in(None, program, args, env, cols, rows)
    }

    /// [`PtyShell::spawn`], starting in `dir` (the home directory if `None`).
    pub fn spawn_in(
        dir: Option<&Path>,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        cols: u16,
        rows: u16,
    ) -> anyhow::Result<PtyShell> {
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            // portable-pty would silently start in HOME instead.
            bail!("{} is not a directory", dir.display());
        }
        let pair = native_pty_system()
            .openpty(pty_size(cols, rows))
            .context("opening a pseudo-terminal")?;
        let mut cmd = CommandBuilder::new(program);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        for (key, value) in env {
            cmd.env(key, value);
        }
        // Without a directory, portable-pty starts in HOME.
        if let Some(dir) = dir {
            cmd.cwd(dir);
        }
        let child = pair
            .slave
            .spawn_command(cmd)
            .with_context(|| format!("starting {program} in a pseudo-terminal"))?;
        // Only the child holds the slave now, so its exit ends the output.
        drop(pair.slave);
        let reader = pair.master.try_clone_reader()?;
        let writer = pair.master.take_writer()?;

        let (output_tx, output) = mpsc::channel(16);
        std::thread::Builder::new()
            .name("pty-output".into())
            .spawn(move || pump_output(reader, output_tx))?;
        let (input, input_rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("pty-input".into())
            .spawn(move || pump_input(writer, input_rx))?;

        Ok(PtyShell {
            master: Mutex::new(pair.master),
            output,
            input,
            child: Mutex::new(Some(child)),
        })
    }

    /// The next chunk of output (at most [`MAX_OUTPUT_CHUNK`] bytes), `None` once the
    /// terminal has no writer left (the shell and its jobs exited). Cancel-safe.
    ///
    /// Output nobody reads holds the shell back (the channel is bounded), except
    /// after [`PtyShell::wait`] started: then it is discarded.
    pub async fn read(&mut self) -> Option<Bytes> {
        self.output.recv().await
    }

    /// Types `bytes` into the terminal, in order with earlier writes. The terminal's
    /// line discipline acts on them as on keystrokes: 0x03 interrupts the foreground
    /// job (SIGINT), 0x1c quits it, 0x1a stops it, `\r` ends a line.
    pub async fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let (done, result) = oneshot::channel();
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the terminal is closed");
        self.input
            .send((bytes.to_vec(), done))
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    /// Changes the terminal's size; the foreground job gets SIGWINCH if it changed.
    /// A failure is logged.
    pub fn resize(&self, cols: u16, rows: u16) {
        let master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = master.resize(pty_size(cols, rows)) {
            tracing::warn!("resizing the pty to {cols}x{rows}: {e:#}");
        }
    }

    /// Waits for the program to exit: its exit code, or 128 + n after signal n, as a
    /// shell reports it. `None` if it cannot be waited for.
    pub async fn wait(mut self) -> Option<i32> {
        // Nobody reads any more: let the output thread discard, so the shell never
        // blocks on a full terminal.
        self.output.close();
        loop {
            {
                let mut child = self.child();
                let status = try_wait(child.as_mut()?);
                match status {
                    Ok(Some(code)) => {
                        child.take();
                        return Some(code);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("waiting for the pty's program: {e}");
                        return None;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the program (SIGKILL) if it still runs; [`PtyShell::wait`] then gives
    /// 137. Its jobs get SIGHUP from the kernel when their session leader dies.
    pub fn kill(&self) {
        let mut child = self.child();
        let Some(child) = child.as_mut() else { return };
        // The child is not reaped while we hold it, so its pid is still ours.
        if matches!(try_wait(child), Ok(None)) {
            let child: &mut dyn Child = &mut **child;
            if let Some(child) = child.downcast_mut::<std::process::Child>() {
                let _ = child.kill();
            }
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<ShellChild>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PtyShell {
    fn drop(&mut self) {
        self.kill();
        // Reap it off the async thread.
        if let Some(mut child) = self.child().take() {
            let _ = std::thread::Builder::new()
                .name("pty-reap".into())
                .spawn(move || child.wait());
        }
    }
}

fn pty_size(cols: u16, rows: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// The exit code if the child exited (and is now reaped).
fn try_wait(child: &mut ShellChild) -> io::Result<Option<i32>> {
    let child: &mut dyn Child = &mut **child;
    if let Some(child) = child.downcast_mut::<std::process::Child>() {
        return Ok(child.try_wait()?.map(|status| {
            status
                .code()
                .or(status.signal().map(|n| 128 + n))
                .unwrap_or(1)
        }));
    }
    // Not on Unix: portable-pty's own status has no signal number.
    Ok(child.try_wait()?.map(|status| status.exit_code() as i32))
}

/// Terminal output to `tx` until the terminal has no writer left (read gives EOF or
/// EIO); once `tx` is closed, reads on and discards.
fn pump_output(mut reader: Box<dyn Read + Send>, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; MAX_OUTPUT_CHUNK];
    let mut tx = Some(tx);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if let Some(sender) = &tx
            && sender
                .blocking_send(Bytes::copy_from_slice(&buf[..n]))
                .is_err()
        {
            tx = None;
        }
    }
}

/// Writes each input in turn and reports how it went, until the [`PtyShell`] is gone.
fn pump_input(mut writer: Box<dyn Write + Send>, mut rx: mpsc::UnboundedReceiver<Input>) {
    while let Some((bytes, done)) = rx.blocking_recv() {
        let result = writer.write_all(&bytes).and_then(|()| writer.flush());
        let _ = done.send(result);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    /// An interactive bash and what it printed, matched from where the last match ended.
    struct Session {
        shell: PtyShell,
        seen: Vec<u8>,
        cursor: usize,
    }

    impl Session {
        fn bash() -> Self {
            let env = [("PS1".to_owned(), "pty$ ".to_owned())];
            let shell = PtyShell::spawn("bash", &["--norc", "--noprofile", "-i"], &env, 80, 24)
                .expect("spawn bash");
            Self {
                shell,
                seen: Vec::new(),
                cursor: 0,
            }
        }

        async fn expect(&mut self, needle: &str) {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let rest = &self.seen[self.cursor..];
                if let Some(at) = rest
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                {
                    self.cursor += at + needle.len();
                    return;
                }
                match tokio::time::timeout_at(deadline, self.shell.read()).await {
                    Ok(Some(chunk)) => {
                        assert!(chunk.len() <= MAX_OUTPUT_CHUNK);
                        self.seen.extend_from_slice(&chunk);
                    }
                    Ok(None) => panic!("output ended before {needle:?}:\n{}", self.transcript()),
                    Err(_) => panic!("no {needle:?} after {WAIT:?}:\n{}", self.transcript()),
                }
            }
        }

        async fn run(&mut self, line: &str) {
            self.shell
                .write(format!("{line}\r").as_bytes())
                .await
                .expect("type");
        }

        /// Reads to the end of the output.
        async fn drain(&mut self) {
            while let Some(chunk) = tokio::time::timeout(WAIT, self.shell.read())
                .await
                .expect("output ends")
            {
                self.seen.extend_from_slice(&chunk);
            }
        }

        fn transcript(&self) -> String {
            String::from_utf8_lossy(&self.seen).into_owned()
        }
    }

    #[tokio::test]
    async fn runs_a_command() {
        let mut s = Session::bash();
        s.expect("pty$ ").await;
        // Quoted so that the echoed line does not contain the output.
        s.run("echo h''i").await;
        s.expect("hi\r\n").await;
        s.expect("pty$ ").await;
    }

    #[tokio::test]
    async fn resizes_reach_the_terminal() {
        let mut s = Session::bash();
        s.expect("pty$ ").await;
        s.run("stty size").await;
        s.expect("24 80\r\n").await;
        // readline writes back the size it read while preparing for a prompt, undoing
        // a resize in between: resize at the prompt.
        s.expect("pty$ ").await;
        s.shell.resize(100, 30);
        s.run("stty size").await;
        s.expect("30 100\r\n").await;
    }

    #[tokio::test]
    async fn ctrl_c_interrupts_the_foreground_job() {
        let mut s = Session::bash();
        s.expect("pty$ ").await;
        // The job itself says it started, so it is the foreground job by then; quoted
        // so that the echoed line does not say it.
        s.run("sh -c 'echo sta\"\"rted; exec sleep 30'").await;
        s.expect("started").await;
        let sent = Instant::now();
        s.shell.write(&[0x03]).await.expect("type Ctrl-C");
        s.expect("pty$ ").await;
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{}",
            s.transcript()
        );
        s.run("echo status=$?").await;
        s.expect("status=130").await;
    }

    #[tokio::test]
    async fn exit_code_is_the_shells() {
        let mut s = Session::bash();
        s.expect("pty$ ").await;
        s.run("exit 7").await;
        s.drain().await;
        assert_eq!(s.shell.wait().await, Some(7));
    }

    #[tokio::test]
    async fn killed_shell_reports_the_signal() {
        let mut s = Session::bash();
        s.expect("pty$ ").await;
        s.shell.kill();
        s.drain().await;
        assert_eq!(s.shell.wait().await, Some(128 + 9));
    }

    #[tokio::test]
    async fn wait_does_not_need_the_output_read() {
        // More output than the channel and the terminal buffer hold, never read.
        let shell = PtyShell::spawn(
            "sh",
            &["-c", "head -c 1000000 /dev/zero; exit 3"],
            &[],
            80,
            24,
        )
        .expect("spawn sh");
        let code = tokio::time::timeout(WAIT, shell.wait())
            .await
            .expect("exits");
        assert_eq!(code, Some(3));
    }

    #[tokio::test]
    async fn starts_in_the_given_directory_with_term_set() {
        let dir = std::env::temp_dir();
        let env = [("GREETING".to_owned(), "hello".to_owned())];
        let mut shell = PtyShell::spawn_in(
            Some(&dir),
            "sh",
            &["-c", "echo \"$(pwd -P) $TERM $GREETING\""],
            &env,
            80,
            24,
        )
        .expect("spawn sh");
        let mut seen = Vec::new();
        while let Some(chunk) = tokio::time::timeout(WAIT, shell.read())
            .await
            .expect("ends")
        {
            seen.extend_from_slice(&chunk);
        }
        let want = format!(
            "{} xterm-256color hello",
            dir.canonicalize().expect("dir").display()
        );
        assert!(String::from_utf8_lossy(&seen).contains(&want), "{seen:?}");
        assert_eq!(shell.wait().await, Some(0));
        assert!(
            PtyShell::spawn_in(Some(Path::new("/nonexistent")), "sh", &[], &[], 80, 24).is_err()
        );
    }
}
