//! smux v1, the stream multiplexer that Session Manager port-forwarding sessions carry
//! inside the data channel's byte stream.
//!
//! Agents newer than 3.0.196.0 run one smux session (the protocol of
//! `github.com/xtaci/smux`, version 1) over the Output/Input byte stream of an
//! `AWS-StartPortForwardingSession`, and every local TCP connection is one smux stream.
//! The data channel hands us that byte stream in arbitrarily sized chunks (the official
//! plugin sends at most 1024 bytes per message, and frames span messages), so this
//! module works on channels of [`Bytes`] rather than on a socket:
//!
//! - [`Frame`], [`encode`] and [`Decoder`] are the pure wire format;
//! - [`Session`] runs one side of a session: [`Session::client`] for labctl (opens
//!   streams 3, 5, 7, ... as xtaci does), [`Session::server`] for the agent's test
//!   double (accepts them).
//!
//! Frame: `ver(1)=1 | cmd(1) | length(u16 LE) | stream id(u32 LE) | payload`, with SYN 0,
//! FIN 1, PSH 2, NOP 3. v1 has no window updates, so flow control is back-pressure:
//!
//! - writes wait for room in a bounded queue of frames, which waits for the caller to
//!   take frames from `output`;
//! - each stream buffers at most [`Config::stream_buffer`] received bytes; when a frame
//!   does not fit, the session stops reading `input` until that stream's reader makes
//!   room (or drops the stream, whose data is then discarded). This is head-of-line
//!   blocking: one stream nobody reads stalls every stream of the session, exactly as
//!   xtaci's shared receive bucket does. No data is ever dropped for a live stream.
//!
//! Keep-alive NOPs are accepted and ignored; sending them is off by default (the agent
//! disables keep-alive from 3.1.1511.0 on) and there is no keep-alive timeout.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::mpsc::{self, OwnedPermit};
use tokio::sync::{Notify, watch};

/// The only protocol version this module speaks (v2 adds window updates).
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 8;
/// Largest payload xtaci/smux sends per frame by default (`MaxFrameSize`).
pub const DEFAULT_MAX_FRAME: usize = 32768;
/// Largest payload the 16-bit length field can describe.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// A frame's command byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cmd {
    /// Opens a stream.
    Syn = 0,
    /// The sender will write no more on the stream.
    Fin = 1,
    /// Stream data.
    Psh = 2,
    /// Keep-alive; carries nothing.
    Nop = 3,
}

impl Cmd {
    /// The command for a wire byte, if v1 defines one.
    pub fn from_u8(value: u8) -> Option<Cmd> {
        match value {
            0 => Some(Cmd::Syn),
            1 => Some(Cmd::Fin),
            2 => Some(Cmd::Psh),
            3 => Some(Cmd::Nop),
            _ => None,
        }
    }
}

/// One decoded or to-be-encoded smux v1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame does.
    pub cmd: Cmd,
    /// The stream it belongs to (0 for NOP, as xtaci writes it).
    pub sid: u32,
    /// Data; empty for everything but PSH.
    pub payload: Bytes,
}

impl Frame {
    /// A SYN opening stream `sid`.
    pub fn syn(sid: u32) -> Frame {
        Frame {
            cmd: Cmd::Syn,
            sid,
            payload: Bytes::new(),
        }
    }

    /// A FIN closing the sender's side of stream `sid`.
    pub fn fin(sid: u32) -> Frame {
        Frame {
            cmd: Cmd::Fin,
            sid,
            payload: Bytes::new(),
        }
    }

    /// A PSH carrying `payload` on stream `sid`.
    pub fn psh(sid: u32, payload: impl Into<Bytes>) -> Frame {
        Frame {
            cmd: Cmd::Psh,
            sid,
            payload: payload.into(),
        }
    }

    /// A keep-alive NOP.
    pub fn nop() -> Frame {
        Frame {
            cmd: Cmd::Nop,
            sid: 0,
            payload: Bytes::new(),
        }
    }
}

/// A protocol error: the peer's bytes are not smux v1. Any of these ends the session.
///
/// Offsets count bytes from the start of the session's input stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The version byte is not 1.
    #[error("smux: frame at byte offset {offset} has version {version}, expected 1")]
    BadVersion {
        /// Offset of the version byte.
        offset: u64,
        /// The version found.
        version: u8,
    },
    /// The command byte is none of SYN, FIN, PSH, NOP.
    #[error(
        "smux: unknown command {cmd} at byte offset {offset} (v1 has SYN 0, FIN 1, PSH 2, NOP 3)"
    )]
    BadCommand {
        /// Offset of the command byte.
        offset: u64,
        /// The command found.
        cmd: u8,
    },
    /// A SYN, FIN or NOP declares a payload (xtaci never sends one, and would lose
    /// framing on it).
    #[error("smux: {cmd:?} frame at byte offset {offset} declares a {len}-byte payload")]
    ControlPayload {
        /// Offset of the frame.
        offset: u64,
        /// Its command.
        cmd: Cmd,
        /// The declared length.
        len: u16,
    },
    /// A frame declares more payload than the decoder accepts.
    #[error(
        "smux: frame at byte offset {offset} declares {len} payload bytes, more than the limit {max}"
    )]
    FrameTooLarge {
        /// Offset of the frame.
        offset: u64,
        /// The declared length.
        len: u16,
        /// The decoder's limit.
        max: usize,
    },
    /// The input ended inside a frame.
    #[error("smux: input ended inside the frame at byte offset {offset} ({buffered} bytes of it)")]
    Truncated {
        /// Offset of the incomplete frame.
        offset: u64,
        /// How many of its bytes arrived.
        buffered: usize,
    },
}

/// Appends the wire form of `frame` to `dst`.
///
/// # Panics
/// If the payload is longer than [`MAX_PAYLOAD`] (the length field cannot say so).
pub fn encode_into(frame: &Frame, dst: &mut BytesMut) {
    dst.reserve(HEADER_LEN + frame.payload.len());
    put_header(dst, frame.cmd, frame.sid, frame.payload.len());
    dst.put_slice(&frame.payload);
}

/// The wire form of `frame`.
///
/// # Panics
/// If the payload is longer than [`MAX_PAYLOAD`].
pub fn encode(frame: &Frame) -> Bytes {
    let mut dst = BytesMut::with_capacity(HEADER_LEN + frame.payload.len());
    encode_into(frame, &mut dst);
    dst.freeze()
}

fn put_header(dst: &mut BytesMut, cmd: Cmd, sid: u32, len: usize) {
    let len = u16::try_from(len).expect("smux payload longer than 65535 bytes");
    dst.put_u8(VERSION);
    dst.put_u8(cmd as u8);
    dst.put_u16_le(len);
    dst.put_u32_le(sid);
}

fn encode_psh(sid: u32, data: &[u8]) -> Bytes {
    let mut dst = BytesMut::with_capacity(HEADER_LEN + data.len());
    put_header(&mut dst, Cmd::Psh, sid, data.len());
    dst.put_slice(data);
    dst.freeze()
}

/// Incremental frame decoder: feed it chunks cut anywhere, take whole frames out.
///
/// The header is checked as soon as its 8 bytes are in, so a bad frame is reported
/// without waiting for a payload that may never come. After an error the decoder stays
/// on the bad frame and keeps returning the same error.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// Input offset of `buf[0]`.
    offset: u64,
    max_payload: usize,
}

impl Decoder {
    /// A decoder accepting payloads up to `max_payload` bytes (xtaci reads whatever the
    /// 16-bit length says, so [`MAX_PAYLOAD`] is the compatible choice).
    pub fn new(max_payload: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            offset: 0,
            max_payload,
        }
    }

    /// Appends the next chunk of input.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole frame, `None` if more input is needed, or the protocol error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = &self.buf[..HEADER_LEN];
        let offset = self.offset;
        if header[0] != VERSION {
            return Err(Error::BadVersion {
                offset,
                version: header[0],
            });
        }
        let cmd = Cmd::from_u8(header[1]).ok_or(Error::BadCommand {
            offset: offset + 1,
            cmd: header[1],
        })?;
        let len = u16::from_le_bytes([header[2], header[3]]);
        let sid = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if cmd != Cmd::Psh && len != 0 {
            return Err(Error::ControlPayload { offset, cmd, len });
        }
        if usize::from(len) > self.max_payload {
            return Err(Error::FrameTooLarge {
                offset,
                len,
                max: self.max_payload,
            });
        }
        let total = HEADER_LEN + usize::from(len);
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(usize::from(len)).freeze();
        self.offset += total as u64;
        Ok(Some(Frame { cmd, sid, payload }))
    }

    /// Input bytes held that do not yet make a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Checks that the input ended on a frame boundary.
    pub fn finish(&self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Truncated {
                offset: self.offset,
                buffered: self.buf.len(),
            })
        }
    }
}

/// Session tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest PSH payload this side sends; longer writes are split (1..=65535).
    pub max_frame: usize,
    /// Largest payload accepted from the peer; more is a protocol error.
    pub max_recv_frame: usize,
    /// Received bytes one stream buffers before the session stops reading input.
    pub stream_buffer: usize,
    /// Streams the peer may open ahead of [`Session::accept`] before the session stops
    /// reading input.
    pub accept_backlog: usize,
    /// Frames queued inside the session ahead of `output` before writes wait.
    pub write_queue: usize,
    /// Send a NOP this often; `None` (the default) sends none.
    pub keepalive: Option<Duration>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_frame: DEFAULT_MAX_FRAME,
            max_recv_frame: MAX_PAYLOAD,
            stream_buffer: 1 << 20,
            accept_backlog: 1024,
            write_queue: 64,
            keepalive: None,
        }
    }
}

impl Config {
    fn normalized(mut self) -> Config {
        self.max_frame = self.max_frame.clamp(1, MAX_PAYLOAD);
        self.stream_buffer = self.stream_buffer.max(1);
        self.accept_backlog = self.accept_backlog.max(1);
        self.write_queue = self.write_queue.max(1);
        self
    }
}

/// Why the session ended.
#[derive(Debug, Clone)]
enum End {
    /// `close()`, or every handle dropped.
    Local,
    /// `input` closed on a frame boundary.
    InputEnded,
    /// The caller dropped `output`'s receiver.
    OutputClosed,
    /// The peer broke the protocol (or the input ended mid-frame).
    Protocol(Error),
}

/// A poisoned lock only means another thread panicked mid-update of plain data; keep going.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn session_closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "smux session closed")
}

struct State {
    streams: HashMap<u32, Arc<StreamShared>>,
    /// Last id this side opened; the next is two more.
    last_id: u32,
    end: Option<End>,
}

struct Shared {
    config: Config,
    /// Frames from streams and `open` to the writer task (bounded: back-pressure).
    frames: mpsc::Sender<Bytes>,
    state: Mutex<State>,
    ended: AtomicBool,
    ended_tx: watch::Sender<bool>,
    /// Live `Session` handles plus `Stream`s; the session ends when it drops to 0.
    handles: AtomicUsize,
}

impl Shared {
    fn end(&self, why: End) {
        let streams = {
            let mut state = lock(&self.state);
            if state.end.is_some() {
                return;
            }
            match &why {
                End::Protocol(err) => {
                    tracing::debug!(%err, "smux session ended by a protocol error")
                }
                other => tracing::debug!(why = ?other, "smux session ended"),
            }
            let read_end = match &why {
                End::Protocol(err) => ReadEnd::Error(err.clone()),
                _ => ReadEnd::Eof,
            };
            state.end = Some(why);
            self.ended.store(true, Ordering::SeqCst);
            std::mem::take(&mut state.streams)
                .into_values()
                .map(|s| (s, read_end.clone()))
                .collect::<Vec<_>>()
        };
        for (stream, read_end) in streams {
            let waker = {
                let mut recv = lock(&stream.recv);
                recv.ended = Some(read_end);
                recv.reader.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
            stream.space.notify_one();
        }
        self.ended_tx.send_replace(true);
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn release_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.end(End::Local);
        }
    }
}

async fn wait_ended(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens once nothing can run.
    let _ = rx.wait_for(|ended| *ended).await;
}

/// One side of an smux v1 session over a pair of byte channels.
///
/// Clones share the session. It ends on [`Session::close`], when `input` closes, on a
/// protocol error, when `output`'s receiver is dropped, or when every `Session` handle
/// and every [`Stream`] is dropped. When it ends, frames already accepted from writes
/// are still passed to `output` (waiting for the caller to take them), then `output`
/// closes.
pub struct Session {
    shared: Arc<Shared>,
    accepts: Arc<tokio::sync::Mutex<mpsc::Receiver<Stream>>>,
}

impl Session {
    /// The labctl side: opens streams with odd ids from 3.
    ///
    /// `input`: bytes from the peer in order, chunked arbitrarily; the session ends when
    /// it closes. `output`: encoded frames for the peer, each item one or more whole
    /// frames. Spawns the session's tasks on the current tokio runtime.
    pub fn client(
        input: mpsc::Receiver<Bytes>,
        output: mpsc::Sender<Bytes>,
        config: Config,
    ) -> Session {
        Session::start(input, output, config, 1)
    }

    /// The agent's side: accepts streams; any it opens have even ids from 2.
    ///
    /// Channels as for [`Session::client`].
    pub fn server(
        input: mpsc::Receiver<Bytes>,
        output: mpsc::Sender<Bytes>,
        config: Config,
    ) -> Session {
        Session::start(input, output, config, 0)
    }

    fn start(
        input: mpsc::Receiver<Bytes>,
        output: mpsc::Sender<Bytes>,
        config: Config,
        last_id: u32,
    ) -> Session {
        let config = config.normalized();
        let (frames_tx, frames_rx) = mpsc::channel(config.write_queue);
        let (accept_tx, accept_rx) = mpsc::channel(config.accept_backlog);
        let shared = Arc::new(Shared {
            frames: frames_tx,
            state: Mutex::new(State {
                streams: HashMap::new(),
                last_id,
                end: None,
            }),
            ended: AtomicBool::new(false),
            ended_tx: watch::Sender::new(false),
            handles: AtomicUsize::new(1),
            config,
        });
        tokio::spawn(demux(shared.clone(), input, accept_tx));
        tokio::spawn(writer(shared.clone(), frames_rx, output));
        Session {
            shared,
            accepts: Arc::new(tokio::sync::Mutex::new(accept_rx)),
        }
    }

    /// Opens a stream: sends SYN (waiting for room in the write queue).
    ///
    /// Fails once the session has ended or its stream ids are used up.
    pub async fn open(&self) -> io::Result<Stream> {
        let mut ended = self.shared.ended_tx.subscribe();
        let permit = tokio::select! {
            biased;
            _ = wait_ended(&mut ended) => return Err(session_closed()),
            permit = self.shared.frames.reserve() => permit.map_err(|_| session_closed())?,
        };
        let inner = {
            let mut state = lock(&self.shared.state);
            if state.end.is_some() {
                return Err(session_closed());
            }
            let id = state
                .last_id
                .checked_add(2)
                .ok_or_else(|| io::Error::other("smux stream ids exhausted"))?;
            state.last_id = id;
            let inner = StreamShared::new(id);
            state.streams.insert(id, inner.clone());
            inner
        };
        // SYN goes into the queue before the stream can queue anything.
        permit.send(encode(&Frame::syn(inner.id)));
        Ok(Stream::new(inner, self.shared.clone()))
    }

    /// The next stream the peer opened, in SYN order; `None` once the session has ended
    /// and every stream opened before that was taken.
    pub async fn accept(&self) -> Option<Stream> {
        self.accepts.lock().await.recv().await
    }

    /// Ends the session: every stream's reads end (after buffered data) and writes fail.
    pub fn close(&self) {
        self.shared.end(End::Local);
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.is_ended()
    }

    /// Resolves when the session ends: with the protocol error that ended it, or `None`
    /// for any other end.
    pub async fn closed(&self) -> Option<Error> {
        let mut ended = self.shared.ended_tx.subscribe();
        wait_ended(&mut ended).await;
        match &lock(&self.shared.state).end {
            Some(End::Protocol(err)) => Some(err.clone()),
            _ => None,
        }
    }
}

impl Clone for Session {
    fn clone(&self) -> Session {
        self.shared.handles.fetch_add(1, Ordering::SeqCst);
        Session {
            shared: self.shared.clone(),
            accepts: self.accepts.clone(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.release_handle();
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Reads the peer's bytes, decodes frames and routes them to streams.
async fn demux(
    shared: Arc<Shared>,
    mut input: mpsc::Receiver<Bytes>,
    accepts: mpsc::Sender<Stream>,
) {
    let mut ended = shared.ended_tx.subscribe();
    let mut decoder = Decoder::new(shared.config.max_recv_frame);
    loop {
        let chunk = tokio::select! {
            biased;
            _ = wait_ended(&mut ended) => return,
            chunk = input.recv() => chunk,
        };
        let Some(chunk) = chunk else {
            shared.end(match decoder.finish() {
                Ok(()) => End::InputEnded,
                Err(err) => End::Protocol(err),
            });
            return;
        };
        decoder.push(&chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if !dispatch(&shared, frame, &accepts, &mut ended).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    shared.end(End::Protocol(err));
                    return;
                }
            }
        }
    }
}

/// Handles one frame; false once the session has ended.
async fn dispatch(
    shared: &Arc<Shared>,
    frame: Frame,
    accepts: &mpsc::Sender<Stream>,
    ended: &mut watch::Receiver<bool>,
) -> bool {
    match frame.cmd {
        Cmd::Nop => true,
        Cmd::Syn => {
            let inner = {
                let mut state = lock(&shared.state);
                if state.end.is_some() {
                    return false;
                }
                if state.streams.contains_key(&frame.sid) {
                    tracing::trace!(sid = frame.sid, "smux: SYN for an open stream ignored");
                    return true;
                }
                let inner = StreamShared::new(frame.sid);
                state.streams.insert(frame.sid, inner.clone());
                inner
            };
            let stream = Stream::new(inner, shared.clone());
            tokio::select! {
                biased;
                _ = wait_ended(ended) => false,
                // Nobody can accept any more (every Session dropped): the stream drops
                // here, which answers the peer with FIN.
                _ = accepts.send(stream) => true,
            }
        }
        Cmd::Fin => {
            let Some(inner) = lock(&shared.state).streams.get(&frame.sid).cloned() else {
                tracing::trace!(sid = frame.sid, "smux: FIN for an unknown stream ignored");
                return true;
            };
            let waker = {
                let mut recv = lock(&inner.recv);
                recv.peer_fin = true;
                recv.reader.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
            true
        }
        Cmd::Psh => {
            if frame.payload.is_empty() {
                return true;
            }
            let Some(inner) = lock(&shared.state).streams.get(&frame.sid).cloned() else {
                tracing::trace!(sid = frame.sid, "smux: PSH for an unknown stream ignored");
                return true;
            };
            push_data(shared, &inner, frame.payload, ended).await
        }
    }
}

/// Queues data for a stream's reader, waiting while its buffer is full (this is where
/// head-of-line blocking happens). False once the session has ended.
async fn push_data(
    shared: &Shared,
    inner: &StreamShared,
    data: Bytes,
    ended: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        {
            let mut recv = lock(&inner.recv);
            if recv.gone || recv.ended.is_some() {
                return true; // nobody will read it
            }
            if recv.peer_fin {
                tracing::trace!(sid = inner.id, "smux: PSH after FIN ignored");
                return true;
            }
            // An empty buffer takes any frame, so a frame larger than the buffer still passes.
            if recv.buffered == 0 || recv.buffered + data.len() <= shared.config.stream_buffer {
                recv.buffered += data.len();
                recv.chunks.push_back(data);
                let waker = recv.reader.take();
                drop(recv);
                if let Some(waker) = waker {
                    waker.wake();
                }
                return true;
            }
            recv.space_wanted = true;
        }
        // notify_one keeps a permit, so a read between the unlock and here is not lost.
        tokio::select! {
            biased;
            _ = wait_ended(ended) => return false,
            _ = inner.space.notified() => {}
        }
    }
}

/// Moves frames from the session's queue to `output`, plus keep-alives.
async fn writer(
    shared: Arc<Shared>,
    mut frames: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) {
    let mut ended = shared.ended_tx.subscribe();
    let mut keepalive = shared.config.keepalive.map(|every| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    loop {
        let frame = tokio::select! {
            biased;
            _ = wait_ended(&mut ended) => break,
            frame = frames.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            _ = tick(&mut keepalive) => encode(&Frame::nop()),
        };
        if output.send(frame).await.is_err() {
            shared.end(End::OutputClosed);
            return;
        }
    }
    // Deliver what writes already handed over; refuse the rest.
    frames.close();
    while let Ok(frame) = frames.try_recv() {
        if output.send(frame).await.is_err() {
            return;
        }
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Why reads end once the session has.
#[derive(Debug, Clone)]
enum ReadEnd {
    Eof,
    Error(Error),
}

#[derive(Default)]
struct Recv {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    peer_fin: bool,
    ended: Option<ReadEnd>,
    /// The local `Stream` was dropped: discard data.
    gone: bool,
    /// The demux task waits on `space`.
    space_wanted: bool,
    reader: Option<Waker>,
}

struct StreamShared {
    id: u32,
    recv: Mutex<Recv>,
    /// Wakes the demux task when the reader freed buffer space.
    space: Notify,
}

impl StreamShared {
    fn new(id: u32) -> Arc<StreamShared> {
        Arc::new(StreamShared {
            id,
            recv: Mutex::new(Recv::default()),
            space: Notify::new(),
        })
    }
}

type Reserve = Pin<Box<dyn Future<Output = Result<OwnedPermit<Bytes>, SendError<()>>> + Send>>;

/// One smux stream: a byte pipe in each direction.
///
/// Reads return EOF after the peer's FIN once buffered data is consumed; writes stay
/// possible until [`AsyncWrite::poll_shutdown`], which sends FIN. Dropping a stream
/// that was not shut down sends FIN too. `poll_flush` returns at once: written data is
/// already queued in the session.
pub struct Stream {
    inner: Arc<StreamShared>,
    session: Arc<Shared>,
    /// A write waiting for room in the session's frame queue.
    reserving: Option<Reserve>,
    fin_sent: bool,
}

impl Stream {
    fn new(inner: Arc<StreamShared>, session: Arc<Shared>) -> Stream {
        session.handles.fetch_add(1, Ordering::SeqCst);
        Stream {
            inner,
            session,
            reserving: None,
            fin_sent: false,
        }
    }

    /// The smux stream id.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// Queues the frame `make` builds once the session's queue has room.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        make: impl FnOnce() -> Bytes,
    ) -> Poll<io::Result<()>> {
        if let Some(reserve) = self.reserving.as_mut() {
            let result = std::task::ready!(reserve.as_mut().poll(cx));
            self.reserving = None;
            return Poll::Ready(match result {
                Ok(permit) if !self.session.is_ended() => {
                    permit.send(make());
                    Ok(())
                }
                _ => Err(session_closed()),
            });
        }
        let reserve = match self.session.frames.try_reserve() {
            Ok(permit) => {
                permit.send(make());
                return Poll::Ready(Ok(()));
            }
            Err(TrySendError::Closed(())) => return Poll::Ready(Err(session_closed())),
            Err(TrySendError::Full(())) => Box::pin(self.session.frames.clone().reserve_owned()),
        };
        self.reserving = Some(reserve);
        self.poll_send(cx, make)
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.inner.id)
            .field("fin_sent", &self.fin_sent)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut recv = lock(&self.inner.recv);
        if !recv.chunks.is_empty() {
            while buf.remaining() > 0 {
                let Some(front) = recv.chunks.front_mut() else {
                    break;
                };
                let n = front.len().min(buf.remaining());
                buf.put_slice(&front[..n]);
                front.advance(n);
                if front.is_empty() {
                    recv.chunks.pop_front();
                }
                recv.buffered -= n;
            }
            let notify = std::mem::take(&mut recv.space_wanted);
            drop(recv);
            if notify {
                self.inner.space.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        if recv.peer_fin {
            return Poll::Ready(Ok(()));
        }
        match &recv.ended {
            Some(ReadEnd::Eof) => Poll::Ready(Ok(())),
            Some(ReadEnd::Error(err)) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err.clone())))
            }
            None => {
                recv.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "smux stream shut down",
            )));
        }
        if this.session.is_ended() {
            return Poll::Ready(Err(session_closed()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // One frame per call; write_all comes back for the rest.
        let n = buf.len().min(this.session.config.max_frame);
        let id = this.inner.id;
        std::task::ready!(this.poll_send(cx, || encode_psh(id, &buf[..n])))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.fin_sent {
            return Poll::Ready(Ok(()));
        }
        if this.session.is_ended() {
            return Poll::Ready(Err(session_closed()));
        }
        let id = this.inner.id;
        std::task::ready!(this.poll_send(cx, || encode(&Frame::fin(id))))?;
        this.fin_sent = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        {
            let mut recv = lock(&self.inner.recv);
            recv.gone = true;
            recv.chunks.clear();
            recv.buffered = 0;
        }
        // Let a demux task waiting for this stream's buffer move on.
        self.inner.space.notify_one();
        // A write still waiting for a permit never happened; drop it before queueing FIN.
        self.reserving = None;
        let id = self.inner.id;
        let ended = {
            let mut state = lock(&self.session.state);
            if state
                .streams
                .get(&id)
                .is_some_and(|s| Arc::ptr_eq(s, &self.inner))
            {
                state.streams.remove(&id);
            }
            state.end.is_some()
        };
        if !self.fin_sent && !ended {
            let fin = encode(&Frame::fin(id));
            match self.session.frames.try_send(fin) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(fin)) => {
                    // Every frame this stream wrote is already queued, so FIN still
                    // comes after them.
                    let frames = self.session.frames.clone();
                    match tokio::runtime::Handle::try_current() {
                        Ok(handle) => {
                            handle.spawn(async move {
                                let _ = frames.send(fin).await;
                            });
                        }
                        Err(_) => tracing::debug!(
                            sid = id,
                            "smux: stream dropped outside a runtime, FIN not sent"
                        ),
                    }
                }
            }
        }
        self.session.release_handle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as xtaci/smux's Go `writeFrame` lays them out (and async_smux agrees).
    #[test]
    fn encodes_frames_as_xtaci_writes_them() {
        assert_eq!(encode(&Frame::syn(3)).as_ref(), [1, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(encode(&Frame::fin(3)).as_ref(), [1, 1, 0, 0, 3, 0, 0, 0]);
        assert_eq!(encode(&Frame::nop()).as_ref(), [1, 3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            encode(&Frame::psh(0x0403_0201, &b"hi"[..])).as_ref(),
            [1, 2, 2, 0, 1, 2, 3, 4, b'h', b'i']
        );
        let big = encode(&Frame::psh(5, vec![7u8; 0x1234]));
        assert_eq!(&big[..8], [1, 2, 0x34, 0x12, 5, 0, 0, 0]);
        assert_eq!(big.len(), 8 + 0x1234);
        assert_eq!(encode_psh(5, &[7u8; 0x1234]), big);
    }

    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::syn(3),
            Frame::psh(3, (0..=255u8).collect::<Vec<_>>()),
            Frame::nop(),
            Frame::psh(3, &b"x"[..]),
            Frame::syn(5),
            Frame::psh(5, &b"hello"[..]),
            Frame::fin(3),
            Frame::psh(0xdead_beef, &b"far"[..]),
        ]
    }

    fn wire(frames: &[Frame]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        for frame in frames {
            encode_into(frame, &mut dst);
        }
        dst.to_vec()
    }

    fn decode_chunks(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut decoder = Decoder::new(MAX_PAYLOAD);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            while let Some(frame) = decoder.next_frame().unwrap() {
                out.push(frame);
            }
        }
        decoder.finish().unwrap();
        assert_eq!(decoder.buffered(), 0);
        out
    }

    #[test]
    fn decodes_several_frames_from_one_chunk() {
        let frames = sample_frames();
        assert_eq!(decode_chunks(&[&wire(&frames)]), frames);
    }

    #[test]
    fn decodes_across_every_split_point() {
        let frames = sample_frames();
        let bytes = wire(&frames);
        for i in 0..=bytes.len() {
            assert_eq!(
                decode_chunks(&[&bytes[..i], &bytes[i..]]),
                frames,
                "split at {i}"
            );
        }
        // Three pieces, every pair of cut points, over the first few frames.
        let short = &bytes[..40];
        let expected: Vec<Frame> = {
            let mut decoder = Decoder::new(MAX_PAYLOAD);
            decoder.push(short);
            std::iter::from_fn(|| decoder.next_frame().unwrap()).collect()
        };
        for i in 0..=short.len() {
            for j in i..=short.len() {
                let mut decoder = Decoder::new(MAX_PAYLOAD);
                let mut got = Vec::new();
                for piece in [&short[..i], &short[i..j], &short[j..]] {
                    decoder.push(piece);
                    while let Some(frame) = decoder.next_frame().unwrap() {
                        got.push(frame);
                    }
                }
                assert_eq!(got, expected, "cuts at {i}, {j}");
            }
        }
    }

    #[test]
    fn decodes_one_byte_chunks_including_a_full_size_frame() {
        let mut frames = sample_frames();
        frames.push(Frame::psh(
            7,
            (0..MAX_PAYLOAD)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        ));
        frames.push(Frame::fin(7));
        let bytes = wire(&frames);
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_chunks(&chunks), frames);
    }

    #[test]
    fn rejects_a_bad_version_naming_offset_and_value() {
        let mut bytes = wire(&[Frame::psh(3, &b"ab"[..])]); // 10 bytes
        bytes.extend_from_slice(&[2, 0, 0, 0, 3, 0, 0, 0]);
        let mut decoder = Decoder::new(MAX_PAYLOAD);
        decoder.push(&bytes);
        assert_eq!(
            decoder.next_frame().unwrap(),
            Some(Frame::psh(3, &b"ab"[..]))
        );
        let err = decoder.next_frame().unwrap_err();
        assert_eq!(
            err,
            Error::BadVersion {
                offset: 10,
                version: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "smux: frame at byte offset 10 has version 2, expected 1"
        );
        // The decoder stays on the bad frame.
        assert_eq!(decoder.next_frame().unwrap_err(), err);
    }

    #[test]
    fn rejects_an_unknown_command_before_its_payload_arrives() {
        let mut bytes = wire(&[Frame::syn(3)]);
        // cmd 4 is v2's UPD; its length says 8 bytes follow, but none have arrived.
        bytes.extend_from_slice(&[1, 4, 8, 0, 3, 0, 0, 0]);
        let mut decoder = Decoder::new(MAX_PAYLOAD);
        decoder.push(&bytes);
        assert_eq!(decoder.next_frame().unwrap(), Some(Frame::syn(3)));
        let err = decoder.next_frame().unwrap_err();
        assert_eq!(err, Error::BadCommand { offset: 9, cmd: 4 });
        assert!(
            err.to_string()
                .contains("unknown command 4 at byte offset 9"),
            "{err}"
        );
    }

    #[test]
    fn rejects_control_frames_with_payload() {
        let mut decoder = Decoder::new(MAX_PAYLOAD);
        decoder.push(&[1, 1, 1, 0, 3, 0, 0, 0]);
        assert_eq!(
            decoder.next_frame().unwrap_err(),
            Error::ControlPayload {
                offset: 0,
                cmd: Cmd::Fin,
                len: 1
            }
        );
    }

    #[test]
    fn oversize_length_is_rejected_from_the_header_alone() {
        let limit = DEFAULT_MAX_FRAME;
        let mut decoder = Decoder::new(limit);
        let header = [1, 2, 0x01, 0x80, 3, 0, 0, 0]; // 0x8001 = 32769
        decoder.push(&header[..7]);
        assert_eq!(decoder.next_frame().unwrap(), None);
        decoder.push(&header[7..]);
        let err = decoder.next_frame().unwrap_err();
        assert_eq!(
            err,
            Error::FrameTooLarge {
                offset: 0,
                len: 32769,
                max: limit
            }
        );
        assert!(err.to_string().contains("32769"), "{err}");

        // Exactly the limit passes.
        let mut decoder = Decoder::new(limit);
        let frame = Frame::psh(3, vec![9u8; limit]);
        decoder.push(&encode(&frame));
        assert_eq!(decoder.next_frame().unwrap(), Some(frame));
    }

    #[test]
    fn finish_reports_input_ending_mid_frame() {
        let mut decoder = Decoder::new(MAX_PAYLOAD);
        decoder.push(&wire(&[Frame::syn(3)]));
        decoder.push(&[1, 2, 5, 0, 3, 0, 0, 0, b'a']);
        assert_eq!(decoder.next_frame().unwrap(), Some(Frame::syn(3)));
        assert_eq!(decoder.next_frame().unwrap(), None);
        assert_eq!(
            decoder.finish(),
            Err(Error::Truncated {
                offset: 8,
                buffered: 9
            })
        );
    }

    #[test]
    fn config_is_normalized() {
        let config = Config {
            max_frame: 1 << 20,
            stream_buffer: 0,
            accept_backlog: 0,
            write_queue: 0,
            ..Config::default()
        }
        .normalized();
        assert_eq!(config.max_frame, MAX_PAYLOAD);
        assert_eq!(
            (
                config.stream_buffer,
                config.accept_backlog,
                config.write_queue
            ),
            (1, 1, 1)
        );
        assert_eq!(Config::default().max_frame, 32768);
        assert_eq!(Config::default().keepalive, None);
    }
}
