//! Both ends of the data channel over real websockets (tungstenite on an in-process
//! duplex pipe), with the agent's end misbehaving as the protocol's hard cases demand:
//! withheld acknowledgements, reordered and duplicated messages, a pause, and a closed
//! socket that the client must replace. Every byte must arrive once and in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use labctl_ssm::channel::{self, Channel, Config, Connector, Event, Faults, Role, Socket, Stats};
use labctl_ssm::message::PayloadType;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

/// The client's connector: a fresh pipe per connection, the far end handed to the agent.
struct Pipes {
    to_agent: mpsc::Sender<Socket>,
    connects: Arc<AtomicU64>,
}

impl Connector for Pipes {
    fn connect(&mut self, _resume: bool) -> BoxFuture<'_, Result<Socket, String>> {
        Box::pin(async move {
            self.connects.fetch_add(1, Ordering::Relaxed);
            let (a, b) = tokio::io::duplex(1 << 20);
            let client = WebSocketStream::from_raw_socket(a, WsRole::Client, None).await;
            let agent = WebSocketStream::from_raw_socket(b, WsRole::Server, None).await;
            self.to_agent
                .send(Box::pin(agent))
                .await
                .map_err(|_| "agent gone".to_owned())?;
            Ok(Box::pin(client) as Socket)
        })
    }
}

struct Waiting(mpsc::Receiver<Socket>);

impl Connector for Waiting {
    fn connect(&mut self, _resume: bool) -> BoxFuture<'_, Result<Socket, String>> {
        Box::pin(async move { self.0.recv().await.ok_or_else(|| "no client".to_owned()) })
    }
}

fn pair(faults: Faults) -> (Channel, Channel, Arc<AtomicU64>) {
    let (to_agent, sockets) = mpsc::channel(4);
    let connects = Arc::new(AtomicU64::new(0));
    let client = channel::spawn(
        Pipes {
            to_agent,
            connects: Arc::clone(&connects),
        },
        Config::new(Role::Client),
    );
    let mut config = Config::new(Role::Agent);
    config.faults = faults;
    let agent = channel::spawn(Waiting(sockets), config);
    (client, agent, connects)
}

/// Sends `count` numbered messages from `from` and checks `to` receives exactly them.
async fn exchange(from: &Channel, to: &mut Channel, count: u32) {
    let sender = from.sender.clone();
    let send = tokio::spawn(async move {
        for i in 0..count {
            let body = Bytes::from(format!("message {i:05}"));
            sender.send(PayloadType::Output, body).await.expect("send");
        }
    });
    for i in 0..count {
        let event = tokio::time::timeout(Duration::from_secs(20), to.events.recv())
            .await
            .unwrap_or_else(|_| panic!("message {i} never arrived"))
            .expect("channel open");
        assert_eq!(
            event,
            Event::Data(PayloadType::Output, Bytes::from(format!("message {i:05}"))),
            "message {i}"
        );
    }
    send.await.expect("sender task");
}

fn stat(c: &Channel, f: impl Fn(&Stats) -> &AtomicU64) -> u64 {
    Stats::get(f(&c.stats))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_channel_delivers_both_ways() {
    let (client, mut agent, _) = pair(Faults::default());
    exchange(&client, &mut agent, 300).await;
    let mut client = client;
    exchange(&agent, &mut client, 300).await;
    assert_eq!(stat(&client, |s| &s.retransmitted), 0);
    assert_eq!(stat(&agent, |s| &s.duplicates), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_acks_are_made_good_by_retransmission() {
    let faults = Faults {
        drop_ack_every: Some(4),
        ..Faults::default()
    };
    let (client, mut agent, _) = pair(faults);
    exchange(&client, &mut agent, 200).await;
    assert!(stat(&agent, |s| &s.acks_dropped) > 0);
    assert!(stat(&client, |s| &s.retransmitted) > 0, "the client resent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_and_duplicated_messages_arrive_once_in_order() {
    let faults = Faults {
        reorder: true,
        duplicate: true,
        ..Faults::default()
    };
    let (mut client, agent, _) = pair(faults);
    exchange(&agent, &mut client, 400).await;
    assert!(
        stat(&client, |s| &s.out_of_order) > 0,
        "reordering happened"
    );
    assert!(stat(&client, |s| &s.duplicates) > 0, "duplicates happened");
    assert_eq!(stat(&client, |s| &s.delivered), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_socket_is_replaced_and_nothing_is_lost() {
    let faults = Faults {
        close_after: Some(50),
        ..Faults::default()
    };
    let (mut client, mut agent, connects) = pair(faults);
    exchange(&agent, &mut client, 300).await;
    exchange(&client, &mut agent, 100).await;
    assert!(
        connects.load(Ordering::Relaxed) >= 2,
        "the client reconnected"
    );
    assert!(stat(&client, |s| &s.reconnects) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_client_sends_nothing_until_started_again() {
    let faults = Faults {
        pause_after: Some((1, Duration::from_millis(400))),
        ..Faults::default()
    };
    let (client, mut agent, _) = pair(faults);
    let mut client = client;
    // The agent's first message pauses the client.
    exchange(&agent, &mut client, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    exchange(&client, &mut agent, 20).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "input waited for start_publication: {:?}",
        started.elapsed()
    );
    assert_eq!(stat(&client, |s| &s.pauses), 1);
    assert_eq!(stat(&agent, |s| &s.received_while_paused), 0);
}
