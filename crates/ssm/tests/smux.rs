//! smux sessions end to end: client against server over in-memory channels re-chunked
//! as the data channel would, against raw frames, and against an independent
//! implementation (the `async_smux` crate, which speaks xtaci's v1 framing) over TCP.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use labctl_ssm::smux::{Cmd, Config, Decoder, Error, Frame, MAX_PAYLOAD, Session, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Fails a test that hangs instead of hanging the suite.
async fn within<F: Future>(f: F) -> F::Output {
    timeout(Duration::from_secs(60), f)
        .await
        .expect("test timed out")
}

/// xorshift64*: distinct, reproducible data per seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() >> 56) as u8).collect()
    }
}

/// Moves bytes from one session's output to the other's input, cut into pieces of
/// 1..=max_chunk bytes regardless of frame boundaries (as the data channel does).
async fn relay(
    mut from: mpsc::Receiver<Bytes>,
    to: mpsc::Sender<Bytes>,
    max_chunk: usize,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let mut pending = BytesMut::new();
    while let Some(item) = from.recv().await {
        pending.extend_from_slice(&item);
        // Coalesce what is already there so pieces also straddle output items.
        while let Ok(item) = from.try_recv() {
            pending.extend_from_slice(&item);
        }
        while !pending.is_empty() {
            let n = (1 + rng.next() as usize % max_chunk).min(pending.len());
            if to.send(pending.split_to(n).freeze()).await.is_err() {
                return;
            }
        }
    }
}

/// A client and a server joined by relays.
fn pair(config: Config, max_chunk: usize) -> (Session, Session) {
    let (c_out_tx, c_out_rx) = mpsc::channel(8);
    let (s_out_tx, s_out_rx) = mpsc::channel(8);
    let (c_in_tx, c_in_rx) = mpsc::channel(8);
    let (s_in_tx, s_in_rx) = mpsc::channel(8);
    tokio::spawn(relay(c_out_rx, s_in_tx, max_chunk, 1));
    tokio::spawn(relay(s_out_rx, c_in_tx, max_chunk, 2));
    let client = Session::client(c_in_rx, c_out_tx, config.clone());
    let server = Session::server(s_in_rx, s_out_tx, config);
    (client, server)
}

/// A session whose peer is the test: raw bytes in, decoded frames out.
struct Raw {
    input: mpsc::Sender<Bytes>,
    output: mpsc::Receiver<Bytes>,
    decoder: Decoder,
}

impl Raw {
    fn client(config: Config) -> (Session, Raw) {
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, out_rx) = mpsc::channel(8);
        (
            Session::client(in_rx, out_tx, config),
            Raw::new(in_tx, out_rx),
        )
    }

    fn server(config: Config) -> (Session, Raw) {
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, out_rx) = mpsc::channel(8);
        (
            Session::server(in_rx, out_tx, config),
            Raw::new(in_tx, out_rx),
        )
    }

    fn new(input: mpsc::Sender<Bytes>, output: mpsc::Receiver<Bytes>) -> Raw {
        Raw {
            input,
            output,
            decoder: Decoder::new(MAX_PAYLOAD),
        }
    }

    async fn send(&self, frames: &[Frame]) {
        let mut bytes = Vec::new();
        for frame in frames {
            bytes.extend_from_slice(&encode(frame));
        }
        self.input
            .send(Bytes::from(bytes))
            .await
            .expect("session input open");
    }

    /// The next frame the session sent, or `None` once its output closed.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self
                .decoder
                .next_frame()
                .expect("session sent a valid frame")
            {
                return Some(frame);
            }
            let chunk = self.output.recv().await?;
            self.decoder.push(&chunk);
        }
    }

    /// Asserts nothing is sent for a while.
    async fn quiet(&mut self, wait: Duration) {
        if let Ok(frame) = timeout(wait, self.frame()).await {
            panic!("expected no frame, got {frame:?}");
        }
    }
}

#[tokio::test]
async fn open_accept_and_data_both_ways() {
    within(async {
        let (client, server) = pair(Config::default(), 7);
        let mut a = client.open().await.unwrap();
        let mut b = client.open().await.unwrap();
        assert_eq!((a.id(), b.id()), (3, 5));
        let mut a2 = server.accept().await.unwrap();
        let mut b2 = server.accept().await.unwrap();
        assert_eq!((a2.id(), b2.id()), (3, 5));

        a.write_all(b"ping from a").await.unwrap();
        b.write_all(b"ping from b").await.unwrap();
        let mut buf = [0u8; 11];
        b2.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping from b");
        a2.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping from a");
        a2.write_all(b"pong").await.unwrap();
        let mut buf = [0u8; 4];
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");

        // The server role opens even ids.
        let mut c = server.open().await.unwrap();
        assert_eq!(c.id(), 2);
        let mut c2 = client.accept().await.unwrap();
        assert_eq!(c2.id(), 2);
        c.write_all(b"from the server").await.unwrap();
        c.shutdown().await.unwrap();
        let got = read_all(&mut c2).await;
        assert_eq!(got, b"from the server");
    })
    .await;
}

#[tokio::test]
async fn fin_ends_reads_but_not_the_other_direction() {
    within(async {
        let (client, server) = pair(Config::default(), 3);
        let mut local = client.open().await.unwrap();
        let mut remote = server.accept().await.unwrap();

        local.write_all(b"request").await.unwrap();
        local.shutdown().await.unwrap();
        local.shutdown().await.unwrap(); // idempotent
        let err = local.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);

        let got = read_all(&mut remote).await;
        assert_eq!(got, b"request");
        assert_eq!(
            remote.read(&mut [0u8; 8]).await.unwrap(),
            0,
            "EOF stays EOF"
        );

        // After the peer's FIN this side still writes, and the peer still reads.
        remote.write_all(b"response").await.unwrap();
        remote.write_all(b", in two writes").await.unwrap();
        remote.shutdown().await.unwrap();
        let got = read_all(&mut local).await;
        assert_eq!(got, b"response, in two writes");
    })
    .await;
}

#[tokio::test]
async fn data_sent_before_fin_is_read_before_eof() {
    within(async {
        let (server, mut raw) = Raw::server(Config::default());
        // SYN, data and FIN in one chunk: the reader must see the data first.
        raw.send(&[
            Frame::syn(3),
            Frame::psh(3, &b"abc"[..]),
            Frame::psh(3, &b"def"[..]),
            Frame::fin(3),
        ])
        .await;
        let mut stream = server.accept().await.unwrap();
        let got = read_all(&mut stream).await;
        assert_eq!(got, b"abcdef");
        // Data after FIN is a peer bug: EOF stays EOF.
        raw.send(&[Frame::psh(3, &b"late"[..])]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(stream.read(&mut [0u8; 8]).await.unwrap(), 0);

        stream.write_all(b"still here").await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::psh(3, &b"still here"[..])));
        stream.shutdown().await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::fin(3)));
        drop(stream);
        raw.quiet(Duration::from_millis(100)).await; // no second FIN
    })
    .await;
}

#[tokio::test]
async fn dropping_a_stream_sends_fin_once() {
    within(async {
        let (client, mut raw) = Raw::client(Config::default());
        let mut first = client.open().await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::syn(3)));
        first.write_all(b"x").await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::psh(3, &b"x"[..])));
        drop(first);
        assert_eq!(raw.frame().await, Some(Frame::fin(3)));

        let mut second = client.open().await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::syn(5)));
        second.shutdown().await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::fin(5)));
        drop(second);
        raw.quiet(Duration::from_millis(100)).await;

        // Frames for the dropped stream are ignored; the session carries on.
        raw.send(&[Frame::psh(3, &b"late"[..]), Frame::fin(3)])
            .await;
        let _third = client.open().await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::syn(7)));
        assert!(!client.is_closed());
    })
    .await;
}

#[tokio::test]
async fn dropping_a_stream_is_eof_for_the_peer() {
    within(async {
        let (client, server) = pair(Config::default(), 1024);
        let mut local = client.open().await.unwrap();
        local.write_all(b"bye").await.unwrap();
        drop(local);
        let mut remote = server.accept().await.unwrap();
        let got = read_all(&mut remote).await;
        assert_eq!(got, b"bye");
    })
    .await;
}

#[tokio::test]
async fn closing_the_session_ends_every_stream_on_both_sides() {
    within(async {
        let (client, server) = pair(Config::default(), 1024);
        let mut local = client.open().await.unwrap();
        let mut other = client.open().await.unwrap();
        local.write_all(b"before close").await.unwrap();
        let mut remote = server.accept().await.unwrap();
        let mut buf = [0u8; 12];
        remote.read_exact(&mut buf).await.unwrap();

        client.close();
        assert!(client.is_closed());
        assert_eq!(client.closed().await, None);
        assert_eq!(local.read(&mut [0u8; 4]).await.unwrap(), 0);
        assert_eq!(other.read(&mut [0u8; 4]).await.unwrap(), 0);
        assert_eq!(
            local.write_all(b"x").await.unwrap_err().kind(),
            std::io::ErrorKind::BrokenPipe
        );
        assert!(client.open().await.is_err());
        assert!(client.accept().await.is_none());

        // The client's output closed, so the server's input did: its streams end too.
        assert_eq!(server.closed().await, None);
        assert_eq!(remote.read(&mut [0u8; 4]).await.unwrap(), 0);
        assert!(remote.write_all(b"x").await.is_err());
        // The second stream was opened but never accepted before the end: still handed out.
        let mut late = server.accept().await.unwrap();
        assert_eq!(late.id(), 5);
        assert_eq!(late.read(&mut [0u8; 4]).await.unwrap(), 0);
        assert!(server.accept().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn dropping_every_handle_ends_the_session() {
    within(async {
        let (client, mut raw) = Raw::client(Config::default());
        let clone = client.clone();
        let stream = client.open().await.unwrap();
        drop(client);
        drop(clone);
        assert_eq!(raw.frame().await, Some(Frame::syn(3)));
        raw.quiet(Duration::from_millis(50)).await; // the stream keeps it alive
        drop(stream);
        assert_eq!(raw.frame().await, Some(Frame::fin(3)));
        assert_eq!(raw.frame().await, None, "output closes");
        raw.input.closed().await; // and input is dropped
    })
    .await;
}

#[tokio::test]
async fn a_bad_frame_ends_the_session_with_the_error() {
    within(async {
        let (server, mut raw) = Raw::server(Config::default());
        raw.send(&[Frame::syn(3), Frame::psh(3, &b"ok"[..])]).await;
        let mut stream = server.accept().await.unwrap();
        raw.input
            .send(Bytes::from_static(&[9, 0, 0, 0, 3, 0, 0, 0]))
            .await
            .unwrap();
        let expected = Error::BadVersion {
            offset: 18,
            version: 9,
        };
        assert_eq!(server.closed().await, Some(expected.clone()));
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(
            &buf, b"ok",
            "data that arrived before the error is still read"
        );
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), expected.to_string());
        assert_eq!(raw.frame().await, None, "output closes");
    })
    .await;
}

#[tokio::test]
async fn unknown_commands_and_truncated_input_are_errors() {
    within(async {
        let (server, raw) = Raw::server(Config::default());
        raw.input
            .send(Bytes::from_static(&[1, 4, 0, 0, 3, 0, 0, 0]))
            .await
            .unwrap();
        assert_eq!(
            server.closed().await,
            Some(Error::BadCommand { offset: 1, cmd: 4 })
        );

        let (server, raw) = Raw::server(Config::default());
        raw.send(&[Frame::nop()]).await;
        raw.input
            .send(Bytes::from_static(&[1, 2, 9, 0]))
            .await
            .unwrap();
        drop(raw);
        assert_eq!(
            server.closed().await,
            Some(Error::Truncated {
                offset: 8,
                buffered: 4
            })
        );

        // Input closing on a frame boundary is a clean end.
        let (server, raw) = Raw::server(Config::default());
        raw.send(&[Frame::nop()]).await;
        drop(raw);
        assert_eq!(server.closed().await, None);
    })
    .await;
}

#[tokio::test]
async fn frames_for_unknown_streams_and_nops_are_ignored() {
    within(async {
        let (server, raw) = Raw::server(Config::default());
        raw.send(&[
            Frame::psh(99, &b"zzz"[..]),
            Frame::fin(77),
            Frame::nop(),
            Frame::syn(3),
        ])
        .await;
        raw.send(&[
            Frame::nop(),
            Frame::syn(3),
            Frame::psh(3, &b"ok"[..]),
            Frame::nop(),
            Frame::fin(3),
        ])
        .await;
        let mut stream = server.accept().await.unwrap();
        assert_eq!(stream.id(), 3);
        let got = read_all(&mut stream).await;
        assert_eq!(got, b"ok");
        assert!(!server.is_closed());
        // The duplicate SYN did not make a second stream.
        assert!(
            timeout(Duration::from_millis(100), server.accept())
                .await
                .is_err()
        );
    })
    .await;
}

#[tokio::test]
async fn large_writes_are_split_into_max_frame_psh_frames() {
    within(async {
        let (client, mut raw) = Raw::client(Config::default());
        let mut stream = client.open().await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::syn(3)));
        let data = Rng::new(7).bytes(100_000);
        let writer = tokio::spawn(async move {
            stream.write_all(&data).await.unwrap();
            stream.shutdown().await.unwrap();
            data
        });
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        loop {
            let frame = raw.frame().await.unwrap();
            assert_eq!(frame.sid, 3);
            if frame.cmd == Cmd::Fin {
                break;
            }
            assert_eq!(frame.cmd, Cmd::Psh);
            sizes.push(frame.payload.len());
            got.extend_from_slice(&frame.payload);
        }
        assert_eq!(sizes, [32768, 32768, 32768, 1696]);
        assert_eq!(got, writer.await.unwrap());

        let config = Config {
            max_frame: 1000,
            ..Config::default()
        };
        let (client, mut raw) = Raw::client(config);
        let mut stream = client.open().await.unwrap();
        stream.write_all(&[5u8; 2500]).await.unwrap();
        assert_eq!(raw.frame().await, Some(Frame::syn(3)));
        for len in [1000, 1000, 500] {
            assert_eq!(raw.frame().await, Some(Frame::psh(3, vec![5u8; len])));
        }
    })
    .await;
}

#[tokio::test]
async fn keepalive_is_off_by_default_and_sends_nops_when_set() {
    within(async {
        let (_client, mut raw) = Raw::client(Config::default());
        raw.quiet(Duration::from_millis(200)).await;

        let config = Config {
            keepalive: Some(Duration::from_millis(20)),
            ..Config::default()
        };
        let (_client, mut raw) = Raw::client(config);
        assert_eq!(raw.frame().await, Some(Frame::nop()));
        assert_eq!(raw.frame().await, Some(Frame::nop()));
    })
    .await;
}

#[tokio::test]
async fn writes_wait_for_the_transport() {
    within(async {
        let config = Config {
            write_queue: 4,
            ..Config::default()
        };
        let (client, mut raw) = Raw::client(config);
        let mut stream = client.open().await.unwrap();
        let data = Rng::new(3).bytes(4 << 20);
        let sent = data.clone();
        let mut writer = tokio::spawn(async move {
            stream.write_all(&sent).await.unwrap();
            stream.shutdown().await.unwrap();
        });
        // Nobody takes output, so the write cannot finish: it is not buffered unboundedly.
        assert!(
            timeout(Duration::from_millis(300), &mut writer)
                .await
                .is_err()
        );
        let mut got = Vec::new();
        assert_eq!(raw.frame().await, Some(Frame::syn(3)));
        loop {
            let frame = raw.frame().await.unwrap();
            if frame.cmd == Cmd::Fin {
                break;
            }
            got.extend_from_slice(&frame.payload);
        }
        writer.await.unwrap();
        assert!(got == data, "data differs");
    })
    .await;
}

#[tokio::test]
async fn an_unread_stream_stops_the_session_reading_input() {
    within(async {
        let config = Config {
            stream_buffer: 4096,
            ..Config::default()
        };
        let (server, raw) = Raw::server(config);
        raw.send(&[Frame::syn(3)]).await;
        let mut stream = server.accept().await.unwrap();
        // 4 KiB buffered, then the session stops taking input: the input channel
        // (8 items) fills and the peer's sends wait, instead of buffering 1 MiB.
        let feeder = tokio::spawn(async move {
            for i in 0..256u32 {
                raw.send(&[Frame::psh(3, vec![i as u8; 4096])]).await;
            }
            raw.send(&[Frame::fin(3)]).await;
            raw
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!feeder.is_finished(), "1 MiB was taken with nobody reading");
        let got = read_all(&mut stream).await;
        let expected: Vec<u8> = (0..256u32).flat_map(|i| vec![i as u8; 4096]).collect();
        assert!(got == expected, "data differs");
        let _raw = feeder.await.unwrap();
    })
    .await;
}

/// Reads a stream to its end.
/// Writes `request` and half-closes while reading the whole answer, on any stream.
async fn exchange<S>(stream: S, request: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async {
        wr.write_all(request).await.expect("write the request");
        wr.shutdown().await.expect("half-close");
    };
    let reader = async {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.expect("read the answer");
        got
    };
    let ((), got) = tokio::join!(writer, reader);
    got
}

/// Everything `stream` yields, to its end.
async fn read_all(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.expect("read");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_reader_delays_but_loses_nothing() {
    within(async {
        // A small per-stream buffer: stream A's unread data blocks the whole session
        // (head-of-line), until A's reader catches up.
        let config = Config {
            stream_buffer: 4096,
            ..Config::default()
        };
        let (client, server) = pair(config, 1024);
        let mut a = client.open().await.unwrap();
        let mut b = client.open().await.unwrap();
        let a_data = Rng::new(10).bytes(1 << 20);
        let b_data = Rng::new(11).bytes(200_000);
        let (a_sent, b_sent) = (a_data.clone(), b_data.clone());
        tokio::spawn(async move {
            a.write_all(&a_sent).await.unwrap();
            a.shutdown().await.unwrap();
        });
        tokio::spawn(async move {
            b.write_all(&b_sent).await.unwrap();
            b.shutdown().await.unwrap();
        });
        let mut a2 = server.accept().await.unwrap();
        let mut b2 = server.accept().await.unwrap();
        let b_reader = tokio::spawn(async move { read_all(&mut b2).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(read_all(&mut a2).await == a_data, "stream A differs");
        assert!(b_reader.await.unwrap() == b_data, "stream B differs");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_stream_does_not_stall_the_others() {
    within(async {
        let config = Config {
            stream_buffer: 4096,
            ..Config::default()
        };
        let (client, server) = pair(config, 1024);
        let mut a = client.open().await.unwrap();
        let mut b = client.open().await.unwrap();
        let a_writer = tokio::spawn(async move {
            // The peer drops A; what A writes is discarded there, but writes succeed.
            a.write_all(&vec![1u8; 1 << 20]).await.unwrap();
            let rest = read_all(&mut a).await; // the drop's FIN
            rest
        });
        let a2 = server.accept().await.unwrap();
        let mut b2 = server.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(a2);
        b.write_all(b"through").await.unwrap();
        let mut buf = [0u8; 7];
        b2.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"through");
        assert!(a_writer.await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_streams_each_way_arrive_intact() {
    within(async {
        const STREAMS: u64 = 100;
        const LEN: usize = 300 * 1024;
        let (client, server) = pair(Config::default(), 1024);

        // Server: read each stream fully, check it, answer with its own data.
        let acceptor = tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Some(mut stream) = server.accept().await {
                tasks.push(tokio::spawn(async move {
                    let id = u64::from(stream.id());
                    let got = read_all(&mut stream).await;
                    assert!(
                        got == Rng::new(id).bytes(LEN),
                        "stream {id}: request differs"
                    );
                    stream
                        .write_all(&Rng::new(id + 1_000_000).bytes(LEN))
                        .await
                        .unwrap();
                    stream.shutdown().await.unwrap();
                }));
                if tasks.len() as u64 == STREAMS {
                    break;
                }
            }
            for task in tasks {
                task.await.unwrap();
            }
            server
        });

        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let stream = client.open().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let id = u64::from(stream.id());
                let got = exchange(stream, &Rng::new(id).bytes(LEN)).await;
                assert!(
                    got == Rng::new(id + 1_000_000).bytes(LEN),
                    "stream {id}: response differs"
                );
                id
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.unwrap());
        }
        assert_eq!(ids, (0..STREAMS).map(|i| 3 + 2 * i).collect::<Vec<_>>());
        let server = acceptor.await.unwrap();
        client.close();
        assert_eq!(server.closed().await, None);
    })
    .await;
}

// --- Against async_smux (an independent Rust implementation of xtaci's v1 framing:
// same header layout, SYN 0 / FIN 1 / PSH 2 / NOP 3, client ids odd from 3; it sends
// PSH frames of up to 65535 bytes and treats FIN as a half-close).

/// Runs a session's channels over a TCP connection, reading in ≤1024-byte pieces.
fn over_tcp(tcp: TcpStream) -> (mpsc::Receiver<Bytes>, mpsc::Sender<Bytes>) {
    let (mut rd, mut wr) = tcp.into_split();
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1024];
        while let Ok(n @ 1..) = rd.read(&mut buf).await {
            if in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    (in_rx, out_tx)
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (connected.expect("connect"), accepted.expect("accept").0)
}

/// What the echo side sends back for a request: each byte flipped, so data that merely
/// looped back would not pass.
fn answer(request: &[u8]) -> Vec<u8> {
    request.iter().map(|b| b ^ 0x5a).collect()
}

const COMPAT_STREAMS: u64 = 20;
const COMPAT_LEN: usize = 200 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_client_against_async_smux_server() {
    within(async {
        let (ours, theirs) = tcp_pair().await;
        let (_connector, mut acceptor, worker) = async_smux::MuxBuilder::server()
            .with_connection(theirs)
            .build();
        tokio::spawn(worker);
        let server = tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Some(mut stream) = acceptor.accept().await {
                tasks.push(tokio::spawn(async move {
                    let id = stream.get_stream_id();
                    let got = read_all(&mut stream).await;
                    stream.write_all(&answer(&got)).await.unwrap();
                    stream.shutdown().await.unwrap();
                    id
                }));
                if tasks.len() as u64 == COMPAT_STREAMS {
                    break;
                }
            }
            let mut ids = Vec::new();
            for task in tasks {
                ids.push(task.await.unwrap());
            }
            ids.sort();
            ids
        });

        let (input, output) = over_tcp(ours);
        let client = Session::client(input, output, Config::default());
        let mut tasks = Vec::new();
        for _ in 0..COMPAT_STREAMS {
            let stream = client.open().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let request = Rng::new(u64::from(stream.id())).bytes(COMPAT_LEN);
                let got = exchange(stream, &request).await;
                assert!(got == answer(&request), "response differs");
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let ids = server.await.unwrap();
        assert_eq!(
            ids,
            (0..COMPAT_STREAMS as u32)
                .map(|i| 3 + 2 * i)
                .collect::<Vec<_>>()
        );
        assert!(!client.is_closed(), "no protocol error");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_smux_client_against_our_server() {
    within(async {
        let (theirs, ours) = tcp_pair().await;
        let (input, output) = over_tcp(ours);
        let server = Session::server(input, output, Config::default());
        let echo = tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Some(mut stream) = server.accept().await {
                tasks.push(tokio::spawn(async move {
                    let got = read_all(&mut stream).await;
                    stream.write_all(&answer(&got)).await.unwrap();
                    stream.shutdown().await.unwrap();
                    stream.id()
                }));
                if tasks.len() as u64 == COMPAT_STREAMS {
                    break;
                }
            }
            let mut ids = Vec::new();
            for task in tasks {
                ids.push(task.await.unwrap());
            }
            ids.sort();
            (server, ids)
        });

        let (connector, _acceptor, worker) = async_smux::MuxBuilder::client()
            .with_connection(theirs)
            .build();
        tokio::spawn(worker);
        let mut tasks = Vec::new();
        for i in 0..COMPAT_STREAMS {
            let stream = connector.connect().unwrap();
            tasks.push(tokio::spawn(async move {
                let request = Rng::new(i + 500).bytes(COMPAT_LEN);
                let got = exchange(stream, &request).await;
                assert!(got == answer(&request), "response differs");
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let (server, ids) = echo.await.unwrap();
        let mut expected: Vec<u32> = (0..COMPAT_STREAMS as u32).map(|i| 3 + 2 * i).collect();
        expected.sort();
        assert_eq!(ids, expected);
        assert!(!server.is_closed(), "no protocol error");
    })
    .await;
}
