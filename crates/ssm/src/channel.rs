//! The data channel: numbered stream messages over a websocket, made reliable.
//!
//! Each side numbers its stream messages from 0 and keeps every one until it is
//! acknowledged, resending the oldest after an adaptive timeout; received messages are
//! delivered in order exactly once (those ahead are buffered, those behind re-acked).
//! The buffer of messages ahead is bounded, in count and in distance from the next
//! expected one, because its size is the peer's to choose: a peer past either bound
//! ends the session with an error saying so, and nothing it sent past them is kept.
//! The websocket may drop at any time: the [`Connector`] gives a new one (the client
//! asks `ssm:ResumeSession` for it; the agent waits for the client to come back) and
//! every unacknowledged message is sent again. One task drives it all; the
//! application talks to it through [`Sender`] and the [`Event`] receiver.
//!
//! Both roles are here, because the project's test double of the agent speaks the
//! same protocol back; [`Faults`] lets that double misbehave on purpose.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::message::{
    self, ACKNOWLEDGE, Acknowledge, CHANNEL_CLOSED, ChannelClosed, ClientMessage,
    INPUT_STREAM_DATA, OUTPUT_STREAM_DATA, PAUSE_PUBLICATION, PayloadType, START_PUBLICATION,
};

/// A websocket, whatever its transport (TLS client, upgraded server connection).
pub trait SocketLike:
    Stream<Item = Result<Message, tungstenite::Error>>
    + Sink<Message, Error = tungstenite::Error>
    + Send
    + Unpin
{
}
impl<T> SocketLike for T where
    T: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Send
        + Unpin
{
}

/// A boxed websocket.
pub type Socket = Pin<Box<dyn SocketLike>>;

/// Gives the channel its websockets: the first, and a new one after each drop.
pub trait Connector: Send + 'static {
    /// A connected, opened websocket; `resume` is false only for the first.
    fn connect(&mut self, resume: bool) -> BoxFuture<'_, Result<Socket, String>>;
}

/// Which end of the channel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// labctl: sends `input_stream_data`.
    Client,
    /// The agent (the test double): sends `output_stream_data`.
    Agent,
}

impl Role {
    fn sends(self) -> &'static str {
        match self {
            Role::Client => INPUT_STREAM_DATA,
            Role::Agent => OUTPUT_STREAM_DATA,
        }
    }
    fn receives(self) -> &'static str {
        match self {
            Role::Client => OUTPUT_STREAM_DATA,
            Role::Agent => INPUT_STREAM_DATA,
        }
    }
    fn peer(self) -> &'static str {
        match self {
            Role::Client => "the agent",
            Role::Agent => "the client",
        }
    }
}

/// Messages ahead of the next expected one kept at most: the official plugin's
/// incoming buffer capacity (10,000). At the agent's 1 KiB payloads, about 10 MiB.
pub const AHEAD_MAX_MESSAGES: usize = 10_000;

/// Unacknowledged messages the agent keeps at most (its outgoing buffer capacity).
const PEER_UNACKED_MAX: i64 = 100_000;

/// How far past the next expected message a sequence number may be. Every message
/// between the gap and a new one is either still unacknowledged by the peer (the
/// agent keeps at most 100,000) or acknowledged and kept here (at most
/// [`AHEAD_MAX_MESSAGES`]); one further ahead follows a gap that can never fill.
pub const AHEAD_MAX_DISTANCE: i64 = PEER_UNACKED_MAX + AHEAD_MAX_MESSAGES as i64;

/// Deliberate misbehaviour, for a test double to exercise a peer's recovery.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Do not acknowledge every n-th stream message received.
    pub drop_ack_every: Option<u64>,
    /// Send stream messages in swapped pairs (n+1 before n).
    pub reorder: bool,
    /// Send every stream message twice.
    pub duplicate: bool,
    /// After this many stream messages sent, pause the peer for the duration.
    pub pause_after: Option<(u64, Duration)>,
    /// After this many stream messages sent, close the websocket once.
    pub close_after: Option<u64>,
    /// After this many stream messages sent, number the following ones this much
    /// further ahead, leaving a gap that never fills.
    pub skip_ahead: Option<(u64, i64)>,
}

/// How the channel behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// This end's role.
    pub role: Role,
    /// Unacknowledged messages at most before sending waits (back-pressure).
    pub window: usize,
    /// How long to keep trying to get a websocket back after a drop.
    pub reconnect_for: Duration,
    /// Misbehaviour (test doubles only).
    pub faults: Faults,
}

impl Config {
    /// Defaults for a role.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            window: 1024,
            reconnect_for: Duration::from_secs(60),
            faults: Faults::default(),
        }
    }
}

/// Counters of what happened, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Stream messages sent for the first time.
    pub sent: AtomicU64,
    /// Stream messages sent again.
    pub retransmitted: AtomicU64,
    /// Stream messages delivered to the application.
    pub delivered: AtomicU64,
    /// Stream messages received that were already delivered.
    pub duplicates: AtomicU64,
    /// Stream messages received ahead of the next expected one.
    pub out_of_order: AtomicU64,
    /// Acknowledgements withheld by [`Faults::drop_ack_every`].
    pub acks_dropped: AtomicU64,
    /// Websockets replaced after a drop.
    pub reconnects: AtomicU64,
    /// Pauses the peer asked for.
    pub pauses: AtomicU64,
    /// Stream messages received while this end had paused the peer (agent role).
    pub received_while_paused: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the application receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A stream message's payload, in order, once.
    Data(PayloadType, Bytes),
    /// The service closed the channel; the text is for the user.
    Closed(String),
    /// The channel failed for good (no websocket could be had again).
    Failed(String),
}

enum Outgoing {
    Data(PayloadType, Bytes),
    /// An unnumbered message sent as it is (control messages of the service).
    Raw(ClientMessage),
    /// Close the websocket and end.
    Close,
    /// Once everything sent is acknowledged, send this, close and end.
    CloseWhenAcked(ClientMessage),
}

/// The channel ended; nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session's data channel is closed")]
pub struct ChannelGone;

/// Sends on a channel; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<Outgoing>,
}

impl Sender {
    /// Queues a stream message; waits while the window is full or the peer paused us.
    pub async fn send(&self, payload_type: PayloadType, payload: Bytes) -> Result<(), ChannelGone> {
        self.tx
            .send(Outgoing::Data(payload_type, payload))
            .await
            .map_err(|_| ChannelGone)
    }

    /// Sends an unnumbered message as it is (`channel_closed`, publication control).
    pub async fn send_raw(&self, message: ClientMessage) -> Result<(), ChannelGone> {
        self.tx
            .send(Outgoing::Raw(message))
            .await
            .map_err(|_| ChannelGone)
    }

    /// Closes the websocket once what is queued has been sent.
    pub async fn close(&self) {
        let _ = self.tx.send(Outgoing::Close).await;
    }

    /// Sends `last` (say, `channel_closed`) once the peer has acknowledged everything
    /// sent before it, then closes: nothing sent is lost to an early close.
    pub async fn close_when_acked(&self, last: ClientMessage) {
        let _ = self.tx.send(Outgoing::CloseWhenAcked(last)).await;
    }
}

/// A running channel.
pub struct Channel {
    /// Sends on it.
    pub sender: Sender,
    /// What arrives, in order.
    pub events: mpsc::Receiver<Event>,
    /// What happened so far.
    pub stats: Arc<Stats>,
}

/// Starts the channel's task; it connects through `connector` first.
pub fn spawn(connector: impl Connector, config: Config) -> Channel {
    let (tx, rx) = mpsc::channel(256);
    let (events_tx, events) = mpsc::channel(1024);
    let stats = Arc::new(Stats::default());
    let driver = Driver {
        config,
        connector: Box::new(connector),
        socket: None,
        next_seq: 0,
        unacked: BTreeMap::new(),
        expected: 0,
        ahead: BTreeMap::new(),
        rtt: Rtt::default(),
        paused: false,
        held: None,
        sent_count: 0,
        received_count: 0,
        pausing_until: None,
        pausing_since: None,
        closed_once: false,
        last: None,
        events: events_tx,
        stats: Arc::clone(&stats),
    };
    tokio::spawn(driver.run(rx));
    Channel {
        sender: Sender { tx },
        events,
        stats,
    }
}

struct Unacked {
    message: ClientMessage,
    wire: Bytes,
    last_sent: Instant,
    retransmitted: bool,
}

/// Round-trip estimate (Jacobson/Karels), as the official plugin keeps it.
struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
}

const RTO_INITIAL: Duration = Duration::from_millis(200);
const RTO_MAX: Duration = Duration::from_secs(1);
const RTO_MIN_VAR: Duration = Duration::from_millis(10);
const TICK: Duration = Duration::from_millis(20);
const KEEPALIVE: Duration = Duration::from_secs(300);
/// How long after a pause messages the peer had already sent may still arrive.
const PAUSE_GRACE: Duration = Duration::from_millis(50);

impl Default for Rtt {
    fn default() -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: RTO_INITIAL,
        }
    }
}

impl Rtt {
    fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar.mul_f64(0.75) + delta.mul_f64(0.25);
                self.srtt = Some(srtt.mul_f64(0.875) + rtt.mul_f64(0.125));
            }
        }
        let srtt = self.srtt.unwrap_or(RTO_INITIAL);
        self.rto = (srtt + (self.rttvar * 4).max(RTO_MIN_VAR)).min(RTO_MAX);
    }
}

struct Driver {
    config: Config,
    connector: Box<dyn Connector>,
    socket: Option<Socket>,
    next_seq: i64,
    unacked: BTreeMap<i64, Unacked>,
    expected: i64,
    ahead: BTreeMap<i64, ClientMessage>,
    rtt: Rtt,
    /// The peer asked us to stop sending.
    paused: bool,
    /// A message kept back to be sent after the next one ([`Faults::reorder`]).
    held: Option<(i64, Instant)>,
    sent_count: u64,
    received_count: u64,
    /// While we have paused the peer (agent role), until when, and since when.
    pausing_until: Option<Instant>,
    pausing_since: Option<Instant>,
    closed_once: bool,
    /// Sent when nothing is left unacknowledged, then the channel ends.
    last: Option<ClientMessage>,
    events: mpsc::Sender<Event>,
    stats: Arc<Stats>,
}

enum Step {
    Continue,
    End,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::Receiver<Outgoing>) {
        if let Err(e) = self.reconnect(false).await {
            let _ = self.events.send(Event::Failed(e)).await;
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The official plugin pings every 5 minutes, so an idle session stays open.
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        let mut app_done = false;
        loop {
            let can_send = !app_done && !self.paused && self.unacked.len() < self.config.window;
            let Some(socket) = self.socket.as_mut() else {
                if let Err(e) = self.reconnect(true).await {
                    let _ = self.events.send(Event::Failed(e)).await;
                    return;
                }
                continue;
            };
            let step = tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(frame)) => self.on_frame(frame).await,
                    Some(Err(e)) => {
                        tracing::debug!("websocket error: {e}");
                        self.socket = None;
                        Step::Continue
                    }
                    None => {
                        self.socket = None;
                        Step::Continue
                    }
                },
                out = rx.recv(), if can_send => match out {
                    Some(Outgoing::Data(pt, payload)) => self.send_data(pt, payload).await,
                    Some(Outgoing::Raw(m)) => {
                        self.on_raw_sent(&m);
                        self.transmit(Bytes::from(m.encode())).await;
                        Step::Continue
                    }
                    Some(Outgoing::Close) => {
                        self.flush_held().await;
                        if let Some(s) = self.socket.as_mut() {
                            let _ = s.close().await;
                        }
                        Step::End
                    }
                    Some(Outgoing::CloseWhenAcked(m)) => {
                        self.flush_held().await;
                        self.last = Some(m);
                        app_done = true;
                        Step::Continue
                    }
                    None => {
                        app_done = true;
                        Step::Continue
                    }
                },
                _ = tick.tick() => self.on_tick().await,
                _ = keepalive.tick(), if self.config.role == Role::Client => {
                    if let Some(s) = self.socket.as_mut()
                        && s.send(Message::Ping(Bytes::from_static(b"keepalive"))).await.is_err()
                    {
                        self.socket = None;
                    }
                    Step::Continue
                }
            };
            if let Step::End = step {
                return;
            }
            if self.unacked.is_empty()
                && let Some(last) = self.last.take()
            {
                self.transmit(Bytes::from(last.encode())).await;
                if let Some(s) = self.socket.as_mut() {
                    let _ = s.close().await;
                }
                return;
            }
        }
    }

    /// Gets a websocket back, resending what the peer has not acknowledged.
    async fn reconnect(&mut self, resume: bool) -> Result<(), String> {
        let deadline = Instant::now() + self.config.reconnect_for;
        let mut delay = Duration::from_millis(100);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, self.connector.connect(resume))
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()));
            match attempt {
                Ok(socket) => {
                    self.socket = Some(socket);
                    // A new socket learns whether its client may publish (what was sent on
                    // the old one may be lost).
                    if resume && self.config.role == Role::Agent {
                        let kind = if self.pausing_until.is_some() {
                            PAUSE_PUBLICATION
                        } else {
                            START_PUBLICATION
                        };
                        let m = ClientMessage::new(kind, 0, 0, PayloadType::Null, Bytes::new());
                        self.transmit(Bytes::from(m.encode())).await;
                    }
                    // A paused sender sends nothing, resends included; the tick resends
                    // once the peer starts publication again.
                    if resume && self.paused {
                        Stats::bump(&self.stats.reconnects);
                    } else if resume {
                        Stats::bump(&self.stats.reconnects);
                        let pending: Vec<Bytes> =
                            self.unacked.values().map(|u| u.wire.clone()).collect();
                        let now = Instant::now();
                        for u in self.unacked.values_mut() {
                            u.last_sent = now;
                            u.retransmitted = true;
                        }
                        for wire in pending {
                            self.transmit(wire).await;
                        }
                    }
                    return Ok(());
                }
                Err(e) if Instant::now() + delay > deadline => {
                    return Err(format!("could not reconnect the data channel: {e}"));
                }
                Err(e) => {
                    tracing::debug!("reconnect failed: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn transmit(&mut self, wire: Bytes) {
        if let Some(socket) = self.socket.as_mut()
            && let Err(e) = socket.send(Message::Binary(wire)).await
        {
            tracing::debug!("websocket send failed: {e}");
            self.socket = None;
        }
    }

    async fn send_data(&mut self, payload_type: PayloadType, payload: Bytes) -> Step {
        if let Some((after, by)) = self.config.faults.skip_ahead
            && self.sent_count == after
        {
            self.next_seq = self.next_seq.saturating_add(by);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let flags = if seq == 0 { message::FLAG_SYN } else { 0 };
        let m = ClientMessage::new(self.config.role.sends(), seq, flags, payload_type, payload);
        let wire = Bytes::from(m.encode());
        self.unacked.insert(
            seq,
            Unacked {
                message: m,
                wire: wire.clone(),
                last_sent: Instant::now(),
                retransmitted: false,
            },
        );
        Stats::bump(&self.stats.sent);
        self.sent_count += 1;
        let faults = self.config.faults;
        if faults.reorder && self.held.is_none() && seq % 2 == 0 {
            self.held = Some((seq, Instant::now()));
        } else {
            self.transmit(wire.clone()).await;
            if faults.duplicate {
                self.transmit(wire).await;
            }
            self.flush_held().await;
        }
        if let Some((after, pause)) = faults.pause_after
            && self.sent_count == after
        {
            let m = ClientMessage::new(PAUSE_PUBLICATION, 0, 0, PayloadType::Null, Bytes::new());
            self.transmit(Bytes::from(m.encode())).await;
            self.pausing_until = Some(Instant::now() + pause);
            self.pausing_since = Some(Instant::now());
        }
        if let Some(after) = faults.close_after
            && self.sent_count == after
            && !self.closed_once
        {
            self.closed_once = true;
            self.flush_held().await;
            if let Some(s) = self.socket.as_mut() {
                let _ = s.close().await;
            }
            self.socket = None;
        }
        Step::Continue
    }

    async fn flush_held(&mut self) {
        if let Some((seq, _)) = self.held.take()
            && let Some(u) = self.unacked.get(&seq)
        {
            let wire = u.wire.clone();
            self.transmit(wire).await;
        }
    }

    fn on_raw_sent(&mut self, m: &ClientMessage) {
        if m.message_type == PAUSE_PUBLICATION {
            self.pausing_until = Some(Instant::now() + Duration::from_secs(3600));
            self.pausing_since = Some(Instant::now());
        } else if m.message_type == START_PUBLICATION {
            self.pausing_until = None;
            self.pausing_since = None;
        }
    }

    async fn on_tick(&mut self) -> Step {
        let now = Instant::now();
        if let Some((_, since)) = self.held
            && now - since >= TICK
        {
            self.flush_held().await;
        }
        if let Some(until) = self.pausing_until
            && now >= until
            && self.config.faults.pause_after.is_some()
        {
            self.pausing_until = None;
            self.pausing_since = None;
            let m = ClientMessage::new(START_PUBLICATION, 0, 0, PayloadType::Null, Bytes::new());
            self.transmit(Bytes::from(m.encode())).await;
        }
        if self.paused {
            return Step::Continue;
        }
        // The oldest unacknowledged message, once its timeout has passed.
        let rto = self.rtt.rto;
        let held = self.held.map(|(s, _)| s);
        let due = self
            .unacked
            .iter_mut()
            .next()
            .filter(|(seq, u)| Some(**seq) != held && now - u.last_sent >= rto)
            .map(|(_, u)| {
                u.last_sent = now;
                u.retransmitted = true;
                u.wire.clone()
            });
        if let Some(wire) = due {
            Stats::bump(&self.stats.retransmitted);
            self.transmit(wire).await;
        }
        Step::Continue
    }

    async fn on_frame(&mut self, frame: Message) -> Step {
        let data = match frame {
            Message::Binary(data) => data,
            Message::Close(_) => {
                self.socket = None;
                return Step::Continue;
            }
            // Pings are answered by tungstenite; text frames carry nothing after the opening.
            _ => return Step::Continue,
        };
        let m = match ClientMessage::decode(&data) {
            Ok(m) => m,
            Err(e) => {
                // The sender keeps it until acknowledged, so a damaged copy is only dropped.
                tracing::warn!("dropping a damaged message: {e}");
                return Step::Continue;
            }
        };
        match m.message_type.as_str() {
            ACKNOWLEDGE => {
                self.on_ack(&m);
                Step::Continue
            }
            CHANNEL_CLOSED => {
                let text = serde_json::from_slice::<ChannelClosed>(&m.payload)
                    .map(|c| c.output)
                    .unwrap_or_default();
                let _ = self.events.send(Event::Closed(text)).await;
                Step::End
            }
            PAUSE_PUBLICATION => {
                Stats::bump(&self.stats.pauses);
                self.paused = true;
                Step::Continue
            }
            START_PUBLICATION => {
                self.paused = false;
                Step::Continue
            }
            t if t == self.config.role.receives() => self.on_stream(m).await,
            other => {
                tracing::debug!("ignoring a {other} message");
                Step::Continue
            }
        }
    }

    fn on_ack(&mut self, m: &ClientMessage) {
        let Ok(ack) = serde_json::from_slice::<Acknowledge>(&m.payload) else {
            tracing::warn!("an acknowledgement without a readable payload");
            return;
        };
        let seq = ack.acknowledged_message_sequence_number;
        let matches = self.unacked.get(&seq).is_some_and(|u| {
            u.message.message_id.hyphenated().to_string() == ack.acknowledged_message_id
        });
        if matches && let Some(u) = self.unacked.remove(&seq) {
            // Karn: only a message sent once times the round trip.
            if !u.retransmitted {
                self.rtt.sample(u.last_sent.elapsed());
            }
        }
    }

    async fn on_stream(&mut self, m: ClientMessage) -> Step {
        // Messages already in flight when the pause went out are fine.
        if self
            .pausing_since
            .is_some_and(|t| t.elapsed() > PAUSE_GRACE)
        {
            Stats::bump(&self.stats.received_while_paused);
        }
        let seq = m.sequence_number;
        if seq < self.expected || self.ahead.contains_key(&seq) {
            Stats::bump(&self.stats.duplicates);
            self.acknowledge(&m).await;
            return Step::Continue;
        }
        // Neither acknowledged nor kept: the session ends.
        if let Some(why) = self.beyond_bounds(seq) {
            tracing::debug!("{why}");
            let _ = self.events.send(Event::Failed(why)).await;
            if let Some(s) = self.socket.as_mut() {
                let _ = s.close().await;
            }
            return Step::End;
        }
        self.received_count += 1;
        if let Some(n) = self.config.faults.drop_ack_every
            && n > 0
            && self.received_count.is_multiple_of(n)
        {
            Stats::bump(&self.stats.acks_dropped);
            // Not acknowledged, not accepted: the peer must send it again.
            return Step::Continue;
        }
        self.acknowledge(&m).await;
        if seq > self.expected {
            Stats::bump(&self.stats.out_of_order);
            self.ahead.insert(seq, m);
            return Step::Continue;
        }
        self.deliver(m).await;
        while let Some(next) = self.ahead.remove(&self.expected) {
            self.deliver(next).await;
        }
        Step::Continue
    }

    /// Why message `seq`, not yet delivered nor buffered, cannot be kept, if it cannot.
    fn beyond_bounds(&self, seq: i64) -> Option<String> {
        let (peer, expected) = (self.config.role.peer(), self.expected);
        if seq.saturating_sub(expected) > AHEAD_MAX_DISTANCE {
            Some(format!(
                "{peer} sent message {seq} while {expected} was expected; \
                 more than {AHEAD_MAX_DISTANCE} ahead: ending the session"
            ))
        } else if seq > expected && self.ahead.len() >= AHEAD_MAX_MESSAGES {
            Some(format!(
                "{peer} sent message {seq} while {expected} was expected; \
                 {} messages past {expected} already wait, the most kept: ending the session",
                self.ahead.len()
            ))
        } else {
            None
        }
    }

    async fn acknowledge(&mut self, m: &ClientMessage) {
        let wire = Bytes::from(m.ack().encode());
        self.transmit(wire).await;
    }

    async fn deliver(&mut self, m: ClientMessage) {
        self.expected = m.sequence_number + 1;
        Stats::bump(&self.stats.delivered);
        let _ = self
            .events
            .send(Event::Data(m.payload_type, m.payload))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_follows_the_samples_within_bounds() {
        let mut rtt = Rtt::default();
        assert_eq!(rtt.rto, RTO_INITIAL);
        for _ in 0..50 {
            rtt.sample(Duration::from_millis(2));
        }
        assert!(
            rtt.rto >= Duration::from_millis(2) + RTO_MIN_VAR,
            "{:?}",
            rtt.rto
        );
        assert!(rtt.rto < Duration::from_millis(20), "{:?}", rtt.rto);
        for _ in 0..50 {
            rtt.sample(Duration::from_secs(3));
        }
        assert_eq!(rtt.rto, RTO_MAX);
    }
}
