//! The client's buffer of messages that arrive ahead of the next expected one is
//! bounded, because the agent chooses what it holds. Over real loopback TCP websockets,
//! an agent played here frame by frame numbers its messages far ahead, or leaves a gap
//! and keeps sending past it: the session ends with an error saying which, and nothing
//! past the bounds is acknowledged or kept.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use labctl_ssm::channel::{
    self, AHEAD_MAX_DISTANCE, AHEAD_MAX_MESSAGES, Channel, Config, Connector, Event, Faults, Role,
    Socket, Stats,
};
use labctl_ssm::message::{
    ACKNOWLEDGE, Acknowledge, ClientMessage, OUTPUT_STREAM_DATA, PayloadType,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(20);

/// The client's connector: one TCP connection to the listener, no second one.
struct Dial {
    addr: SocketAddr,
    used: bool,
}

impl Connector for Dial {
    fn connect(&mut self, _resume: bool) -> BoxFuture<'_, Result<Socket, String>> {
        Box::pin(async move {
            if std::mem::replace(&mut self.used, true) {
                return Err("no second connection in this test".to_owned());
            }
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let (ws, _) = tokio_tungstenite::client_async(format!("ws://{}/", self.addr), tcp)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::pin(ws) as Socket)
        })
    }
}

/// The agent's connector for a real channel: the listener's next connection.
struct Accept(Option<TcpListener>);

impl Connector for Accept {
    fn connect(&mut self, _resume: bool) -> BoxFuture<'_, Result<Socket, String>> {
        Box::pin(async move {
            let listener = self.0.take().ok_or("no second connection in this test")?;
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let ws = tokio_tungstenite::accept_async(tcp)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::pin(ws) as Socket)
        })
    }
}

/// An agent played by hand: it sends stream messages numbered as told, and a reader
/// collects the sequence numbers the client acknowledges until the client closes.
struct HandAgent {
    sink: SplitSink<WebSocketStream<TcpStream>, Message>,
    acks: JoinHandle<Vec<i64>>,
}

impl HandAgent {
    async fn send(&mut self, seq: i64) {
        let m = ClientMessage::new(
            OUTPUT_STREAM_DATA,
            seq,
            0,
            PayloadType::Output,
            Bytes::from(format!("m{seq}")),
        );
        self.sink
            .send(Message::Binary(Bytes::from(m.encode())))
            .await
            .expect("send to the client");
    }

    /// Every acknowledgement the client sent, once it has closed the websocket.
    async fn acked_until_closed(self) -> Vec<i64> {
        tokio::time::timeout(T, self.acks)
            .await
            .expect("the client closed the websocket")
            .expect("ack reader")
    }
}

/// A client channel connected to a hand-played agent.
async fn client_and_hand_agent() -> (Channel, HandAgent) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = channel::spawn(Dial { addr, used: false }, Config::new(Role::Client));
    let (tcp, _) = tokio::time::timeout(T, listener.accept())
        .await
        .expect("the client connected")
        .expect("accept");
    let ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
    let (sink, mut stream) = ws.split();
    let acks = tokio::spawn(async move {
        let mut acks = Vec::new();
        while let Some(Ok(frame)) = stream.next().await {
            match frame {
                Message::Binary(data) => {
                    let m = ClientMessage::decode(&data).expect("a message from the client");
                    assert_eq!(m.message_type, ACKNOWLEDGE, "{m:?}");
                    let ack: Acknowledge = serde_json::from_slice(&m.payload).expect("ack");
                    acks.push(ack.acknowledged_message_sequence_number);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        acks
    });
    (client, HandAgent { sink, acks })
}

async fn next_event(client: &mut Channel) -> Option<Event> {
    tokio::time::timeout(T, client.events.recv())
        .await
        .expect("an event in time")
}

fn data(seq: i64) -> Event {
    Event::Data(PayloadType::Output, Bytes::from(format!("m{seq}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_far_ahead_ends_the_session_unkept() {
    let (mut client, mut agent) = client_and_hand_agent().await;
    agent.send(0).await;
    agent.send(1).await;
    assert_eq!(next_event(&mut client).await, Some(data(0)));
    assert_eq!(next_event(&mut client).await, Some(data(1)));
    // The farthest a sequence number may be is kept; one past it ends the session.
    let farthest = 2 + AHEAD_MAX_DISTANCE;
    agent.send(farthest).await;
    agent.send(farthest + 1).await;
    assert_eq!(
        next_event(&mut client).await,
        Some(Event::Failed(format!(
            "the agent sent message {} while 2 was expected; more than {AHEAD_MAX_DISTANCE} \
             ahead: ending the session",
            farthest + 1
        )))
    );
    assert_eq!(next_event(&mut client).await, None, "the channel ended");
    assert_eq!(agent.acked_until_closed().await, vec![0, 1, farthest]);
    assert_eq!(Stats::get(&client.stats.out_of_order), 1, "only one kept");
    assert_eq!(Stats::get(&client.stats.delivered), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_sequence_number_is_refused_without_overflow() {
    let (mut client, mut agent) = client_and_hand_agent().await;
    agent.send(i64::MAX).await;
    assert_eq!(
        next_event(&mut client).await,
        Some(Event::Failed(format!(
            "the agent sent message {} while 0 was expected; more than {AHEAD_MAX_DISTANCE} \
             ahead: ending the session",
            i64::MAX
        )))
    );
    assert_eq!(agent.acked_until_closed().await, Vec::<i64>::new());
    assert_eq!(Stats::get(&client.stats.out_of_order), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_that_never_fills_ends_the_session_at_the_most_kept() {
    let (mut client, mut agent) = client_and_hand_agent().await;
    // Message 0 never comes; everything after it is near enough, but only so many fit.
    let most = AHEAD_MAX_MESSAGES as i64;
    for seq in 1..=most + 1 {
        agent.send(seq).await;
    }
    assert_eq!(
        next_event(&mut client).await,
        Some(Event::Failed(format!(
            "the agent sent message {} while 0 was expected; {most} messages past 0 \
             already wait, the most kept: ending the session",
            most + 1
        )))
    );
    assert_eq!(next_event(&mut client).await, None, "nothing was delivered");
    let acks = agent.acked_until_closed().await;
    assert_eq!(acks, (1..=most).collect::<Vec<_>>());
    assert_eq!(
        Stats::get(&client.stats.out_of_order),
        AHEAD_MAX_MESSAGES as u64
    );
}

/// The fault the test double uses: a real agent channel that jumps ahead after three
/// messages. The client takes the three and refuses the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skip_ahead_fault_ends_the_clients_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = Config::new(Role::Agent);
    config.faults = Faults {
        skip_ahead: Some((3, 1_000_000)),
        ..Faults::default()
    };
    let agent = channel::spawn(Accept(Some(listener)), config);
    let mut client = channel::spawn(Dial { addr, used: false }, Config::new(Role::Client));
    for i in 0..5 {
        agent
            .sender
            .send(PayloadType::Output, Bytes::from(format!("m{i}")))
            .await
            .expect("agent send");
    }
    for i in 0..3 {
        assert_eq!(next_event(&mut client).await, Some(data(i)));
    }
    assert_eq!(
        next_event(&mut client).await,
        Some(Event::Failed(format!(
            "the agent sent message 1000003 while 3 was expected; more than \
             {AHEAD_MAX_DISTANCE} ahead: ending the session"
        )))
    );
    assert_eq!(next_event(&mut client).await, None);
    assert_eq!(Stats::get(&client.stats.out_of_order), 0);
}
