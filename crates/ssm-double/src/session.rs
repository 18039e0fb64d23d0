//! Sessions: `StartSession`, `ResumeSession`, `TerminateSession`, and the data channel
//! websocket behind them, served as the SSM agent would serve it.
//!
//! A shell session runs a real shell in a pseudo-terminal; so does an interactive
//! command (`AWS-StartInteractiveCommand`), as `sh -c <command>`; a port session
//! carries smux v1 (the client announces a version that asks for it) and dials a real
//! TCP port per stream. Tokens are single-use, as the service's are: a reconnection
//! needs `ResumeSession`. [`Faults`] makes the agent's side misbehave on purpose, and
//! the counters of every session are served for tests to check that it did.
//!
//! Neither kind of shell session sends an `ExitCode` message when its program ends, as
//! the agent sends none for them: a client learns the shell's status only from what the
//! shell itself prints (see [`Sessions::shell`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use labctl_ssm::channel::{self, Channel, Config, Connector, Event, Faults, Role, Socket, Stats};
use labctl_ssm::message::{
    self, CHANNEL_CLOSED, ClientMessage, HandshakeComplete, HandshakeRequest, Opening, PayloadType,
    RequestedAction, Size,
};
use labctl_ssm::smux;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use crate::api::ApiError;
use crate::pty::PtyShell;

/// How sessions behave.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `ws://host:port`, the base of every StreamUrl.
    pub base: String,
    /// The shell a shell session runs, with its arguments.
    pub shell: Vec<String>,
    /// Misbehaviour of the agent's side of every session.
    pub faults: Faults,
    /// Largest output payload the agent sends in one message.
    pub chunk: usize,
    /// Shell sessions ask for KMS encryption in a handshake, as with the account
    /// preference on.
    pub kms: bool,
    /// A shell's output message ends right after each occurrence of any of these, so
    /// tests can split what a client must join at the bytes they choose.
    pub split_after: Vec<Vec<u8>>,
}

/// The standard shell session (`Standard_Stream`), what StartSession runs by default.
const RUN_SHELL: &str = "SSM-SessionManagerRunShell";
/// One command in a pseudo-terminal (`InteractiveCommands`), its `command` parameter.
const INTERACTIVE_COMMAND: &str = "AWS-StartInteractiveCommand";
/// Port forwarding (`Port`).
const PORT_FORWARDING: &str = "AWS-StartPortForwardingSession";

struct Entry {
    target: String,
    document: String,
    parameters: Value,
    /// The token the next websocket must present (single use).
    token: Option<String>,
    /// Where websockets for this session go once opened.
    sockets: mpsc::Sender<Socket>,
    /// Taken by the first websocket, which starts the agent's side.
    agent: Option<mpsc::Receiver<Socket>>,
    stats: Option<Arc<Stats>>,
    terminated: bool,
    resumes: u64,
    /// Websocket upgrades SigV4-signed for `ssmmessages`, as current plugins sign them.
    signed_upgrades: u64,
}

/// Every session the double has started.
pub struct Sessions {
    config: SessionConfig,
    map: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// No sessions yet.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stream_url(&self, id: &str) -> String {
        format!(
            "{}/v1/data-channel/{id}?role=publish_subscribe",
            self.config.base
        )
    }

    /// `StartSession`.
    pub fn start(&self, body: &Value) -> Result<Value, ApiError> {
        let target = body["Target"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::validation("Target is required"))?
            .to_owned();
        let document = body["DocumentName"]
            .as_str()
            .unwrap_or(RUN_SHELL)
            .to_owned();
        if !matches!(
            document.as_str(),
            RUN_SHELL | INTERACTIVE_COMMAND | PORT_FORWARDING
        ) {
            return Err(ApiError::new(
                "InvalidDocument",
                format!("the double runs no document {document}"),
            ));
        }
        if document == INTERACTIVE_COMMAND {
            interactive_command(&body["Parameters"])?;
        }
        let id = format!("labctl-{}", uuid::Uuid::new_v4().simple());
        let token = uuid::Uuid::new_v4().to_string();
        let (sockets, agent) = mpsc::channel(4);
        self.lock().insert(
            id.clone(),
            Entry {
                target,
                document,
                parameters: body["Parameters"].clone(),
                token: Some(token.clone()),
                sockets,
                agent: Some(agent),
                stats: None,
                terminated: false,
                resumes: 0,
                signed_upgrades: 0,
            },
        );
        Ok(json!({ "SessionId": id, "TokenValue": token, "StreamUrl": self.stream_url(&id) }))
    }

    /// `ResumeSession`: a new token for a session whose websocket dropped.
    pub fn resume(&self, body: &Value) -> Result<Value, ApiError> {
        let id = body["SessionId"].as_str().unwrap_or_default().to_owned();
        let mut map = self.lock();
        let entry = map
            .get_mut(&id)
            .filter(|e| !e.terminated)
            .ok_or_else(|| ApiError::new("DoesNotExistException", format!("no session {id}")))?;
        let token = uuid::Uuid::new_v4().to_string();
        entry.token = Some(token.clone());
        entry.resumes += 1;
        drop(map);
        Ok(json!({ "SessionId": id, "TokenValue": token, "StreamUrl": self.stream_url(&id) }))
    }

    /// `TerminateSession`.
    pub fn terminate(&self, body: &Value) -> Result<Value, ApiError> {
        let id = body["SessionId"].as_str().unwrap_or_default().to_owned();
        if let Some(e) = self.lock().get_mut(&id) {
            e.terminated = true;
        }
        Ok(json!({ "SessionId": id }))
    }

    /// Every session's document, parameters and counters, for tests:
    /// `{"<id>": {"target":..., "parameters":..., "retransmitted":...}}`.
    pub fn stats(&self) -> Value {
        let map = self.lock();
        let mut out = serde_json::Map::new();
        for (id, e) in map.iter() {
            let mut s = json!({
                "target": e.target,
                "document": e.document,
                "parameters": e.parameters,
                "resumes": e.resumes,
                "signed_upgrades": e.signed_upgrades,
                "terminated": e.terminated,
            });
            if let Some(st) = &e.stats {
                for (name, counter) in [
                    ("sent", &st.sent),
                    ("retransmitted", &st.retransmitted),
                    ("delivered", &st.delivered),
                    ("duplicates", &st.duplicates),
                    ("out_of_order", &st.out_of_order),
                    ("acks_dropped", &st.acks_dropped),
                    ("reconnects", &st.reconnects),
                    ("received_while_paused", &st.received_while_paused),
                ] {
                    s[name] = json!(Stats::get(counter));
                }
            }
            out.insert(id.clone(), s);
        }
        Value::Object(out)
    }

    /// `GET /v1/data-channel/<id>`: the websocket upgrade.
    pub fn data_channel(self: &Arc<Self>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
        let id = req
            .uri()
            .path()
            .trim_start_matches("/v1/data-channel/")
            .to_owned();
        let Some(key) = req
            .headers()
            .get("sec-websocket-key")
            .and_then(|k| k.to_str().ok())
            .map(|k| derive_accept_key(k.as_bytes()))
        else {
            return crate::plain(StatusCode::BAD_REQUEST, "a websocket upgrade is expected");
        };
        let signed = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| {
                a.starts_with("AWS4-HMAC-SHA256 Credential=")
                    && a.contains("/ssmmessages/aws4_request")
                    && a.contains("Signature=")
            });
        match self.lock().get_mut(&id) {
            Some(entry) => entry.signed_upgrades += u64::from(signed),
            None => return crate::plain(StatusCode::NOT_FOUND, "no such session"),
        }
        let sessions = Arc::clone(self);
        tokio::spawn(async move {
            match hyper::upgrade::on(&mut req).await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        WsRole::Server,
                        None,
                    )
                    .await;
                    if let Err(e) = sessions.opened(&id, Box::pin(ws)).await {
                        tracing::warn!("session {id}: {e}");
                    }
                }
                Err(e) => tracing::warn!("session {id}: upgrade failed: {e}"),
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", key)
            .body(Full::new(Bytes::new()))
            .unwrap_or_else(|_| crate::plain(StatusCode::INTERNAL_SERVER_ERROR, "response"))
    }

    /// A websocket for session `id`: its opening frame must carry the current token.
    async fn opened(self: &Arc<Self>, id: &str, mut ws: Socket) -> Result<(), String> {
        let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| "no opening frame".to_owned())?;
        let Some(Ok(Message::Text(text))) = first else {
            return Err("the first frame is not the opening text frame".into());
        };
        let opening: Opening =
            serde_json::from_str(&text).map_err(|e| format!("bad opening frame: {e}"))?;
        let (sockets, agent, document, parameters) = {
            let mut map = self.lock();
            let entry = map.get_mut(id).ok_or("no such session")?;
            if entry.terminated {
                return Err("the session was terminated".into());
            }
            if entry.token.as_deref() != Some(opening.token_value.as_str()) {
                return Err("the opening frame's token is not the session's current one".into());
            }
            entry.token = None;
            (
                entry.sockets.clone(),
                entry.agent.take(),
                entry.document.clone(),
                entry.parameters.clone(),
            )
        };
        sockets.send(ws).await.map_err(|_| "the session ended")?;
        if let Some(rx) = agent {
            let mut config = Config::new(Role::Agent);
            config.faults = self.config.faults;
            let channel = channel::spawn(Waiting(rx), config);
            if let Some(e) = self.lock().get_mut(id) {
                e.stats = Some(Arc::clone(&channel.stats));
            }
            let sessions = Arc::clone(self);
            let id = id.to_owned();
            let client_version = opening.client_version;
            tokio::spawn(async move {
                let result = match document.as_str() {
                    PORT_FORWARDING => sessions.port(channel, &parameters, &client_version).await,
                    INTERACTIVE_COMMAND => match interactive_command(&parameters) {
                        Ok(command) => sessions.shell(channel, Some(command)).await,
                        Err(e) => Err(e.message),
                    },
                    _ => sessions.shell(channel, None).await,
                };
                if let Err(e) = result {
                    tracing::warn!("session {id}: {e}");
                }
            });
        }
        Ok(())
    }

    /// A real shell in a pseudo-terminal, until its output ends: the configured shell
    /// for a standard session, `sh -c <command>` for an interactive command.
    ///
    /// The agent (amazon-ssm-agent, `agent/session/shell/shell_unix.go`,
    /// `StartCommandExecutor`) starts `sh` for `Standard_Stream` and
    /// `sh -c <commands>` for `InteractiveCommands`, both in a pty; the double's
    /// `--shell` stands in for that `sh`, while a command runs as the agent runs it.
    async fn shell(&self, channel: Channel, command: Option<String>) -> Result<(), String> {
        let Channel {
            sender, mut events, ..
        } = channel;
        if self.config.kms {
            // The agent asks every session but port forwarding for KMS when the
            // preference is on (`agent/session/plugins/sessionplugin/sessionplugin.go`,
            // `isEncryptionEnabled`).
            let request = HandshakeRequest {
                agent_version: "3.3.1957.0".into(),
                requested_client_actions: vec![RequestedAction {
                    action_type: "KMSEncryption".into(),
                    action_parameters: json!({ "KMSKeyId": "arn:aws:kms:eu-north-1:000000000000:key/double" }),
                }],
            };
            let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
            let _ = sender
                .send(PayloadType::HandshakeRequest, body.into())
                .await;
            // A client that can't do KMS ends the session; one that answers gets no shell.
            while let Some(Event::Data(..)) = events.recv().await {}
            return Ok(());
        }
        let (program, args): (&str, Vec<&str>) = match &command {
            Some(command) => ("sh", vec!["-c", command.as_str()]),
            None => {
                let (program, args) = self
                    .config
                    .shell
                    .split_first()
                    .ok_or("no shell configured")?;
                (program.as_str(), args.iter().map(String::as_str).collect())
            }
        };
        // The prompt a fresh Ubuntu instance shows Session Manager users, near enough.
        let env = [("PS1".to_owned(), "ssm-user$ ".to_owned())];
        let mut shell = PtyShell::spawn(program, &args, &env, 80, 24).map_err(|e| e.to_string())?;
        let chunk = self.config.chunk.max(1);
        loop {
            tokio::select! {
                out = shell.read() => match out {
                    Some(bytes) => {
                        for piece in split_after(bytes, &self.config.split_after) {
                            if send_chunked(&sender, piece, chunk).await.is_err() {
                                shell.kill();
                                return Ok(());
                            }
                        }
                    }
                    None => break,
                },
                event = events.recv() => match event {
                    Some(Event::Data(PayloadType::Output, bytes)) => {
                        shell.write(&bytes).await.map_err(|e| e.to_string())?;
                    }
                    Some(Event::Data(PayloadType::Size, bytes)) => {
                        if let Ok(size) = serde_json::from_slice::<Size>(&bytes) {
                            shell.resize(size.cols as u16, size.rows as u16);
                        }
                    }
                    Some(Event::Data(PayloadType::Flag, bytes)) if flag(&bytes) == Some(2) => {
                        shell.kill();
                        break;
                    }
                    Some(Event::Data(..)) => {}
                    Some(Event::Closed(_)) | Some(Event::Failed(_)) | None => {
                        shell.kill();
                        return Ok(());
                    }
                },
            }
        }
        let _ = shell.wait().await;
        // No ExitCode message, whatever the status. In `agent/session/shell/shell.go`
        // the pty path (`executeCommandsWithPty`, which serves Standard_Stream and
        // InteractiveCommands) ends with `PrepareToCloseChannel` and an
        // AgentSessionState message only; `sendExitCode` ("EXIT_CODE: N", payload type
        // ExitCode) is called only by `processCommandsWithOutputStreamSeparate`, for
        // NonInteractiveCommands with separate output streams, which the double does not
        // run.
        sender
            .close_when_acked(channel_closed("Exiting session."))
            .await;
        Ok(())
    }

    /// Port forwarding: handshake, then smux with one TCP connection per stream.
    async fn port(
        &self,
        channel: Channel,
        parameters: &Value,
        client_version: &str,
    ) -> Result<(), String> {
        let Channel {
            sender, mut events, ..
        } = channel;
        let port: u16 = parameters["portNumber"][0]
            .as_str()
            .and_then(|p| p.parse().ok())
            .ok_or("portNumber is missing")?;
        let request = HandshakeRequest {
            agent_version: "3.3.1957.0".into(),
            requested_client_actions: vec![RequestedAction {
                action_type: "SessionType".into(),
                action_parameters: json!({
                    "SessionType": "Port",
                    "Properties": { "portNumber": port.to_string(), "type": "LocalPortForwarding" }
                }),
            }],
        };
        let started = std::time::Instant::now();
        let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        sender
            .send(PayloadType::HandshakeRequest, body.into())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match events.recv().await {
                Some(Event::Data(PayloadType::HandshakeResponse, _)) => break,
                Some(Event::Data(..)) => continue,
                _ => return Ok(()),
            }
        }
        let complete = HandshakeComplete {
            handshake_time_to_complete: started.elapsed().as_nanos() as u64,
            customer_message: String::new(),
        };
        let body = serde_json::to_vec(&complete).map_err(|e| e.to_string())?;
        sender
            .send(PayloadType::HandshakeComplete, body.into())
            .await
            .map_err(|e| e.to_string())?;
        if !smux_capable(client_version) {
            return Err(format!(
                "client version {client_version} predates smux; the double serves smux only"
            ));
        }
        let (to_smux, smux_in) = mpsc::channel::<Bytes>(256);
        let (smux_out, mut from_smux) = mpsc::channel::<Bytes>(256);
        let session = smux::Session::server(smux_in, smux_out, smux::Config::default());
        let chunk = self.config.chunk.max(1);
        let out_sender = sender.clone();
        let pump = tokio::spawn(async move {
            while let Some(bytes) = from_smux.recv().await {
                if send_chunked(&out_sender, bytes, chunk).await.is_err() {
                    return;
                }
            }
        });
        let accept = {
            let session = session.clone();
            tokio::spawn(async move {
                while let Some(stream) = session.accept().await {
                    tokio::spawn(dial(stream, port));
                }
            })
        };
        loop {
            match events.recv().await {
                Some(Event::Data(PayloadType::Output, bytes)) => {
                    if to_smux.send(bytes).await.is_err() {
                        break;
                    }
                }
                Some(Event::Data(PayloadType::Flag, bytes)) if flag(&bytes) == Some(2) => break,
                Some(Event::Data(..)) => {}
                _ => break,
            }
        }
        session.close();
        accept.abort();
        pump.abort();
        sender.close_when_acked(channel_closed("")).await;
        Ok(())
    }
}

/// One forwarded connection: the smux stream to a real TCP connection on loopback.
/// A port nothing listens on closes the stream at once, as the agent does.
async fn dial(mut stream: smux::Stream, port: u16) {
    match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(mut tcp) => {
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
        }
        Err(e) => tracing::info!("cannot connect to port {port}: {e}"),
    }
    let _ = stream.shutdown().await;
}

/// The command of an `AWS-StartInteractiveCommand` session: its one `command` value.
///
/// The agent puts it into the document's `commands` (`{{command}}`) with
/// `ReplaceParameter` (`agent/framework/docparser/parameters/parameters.go`), which
/// turns every `$$` of a value into `$`; so does the double. The double refuses an
/// empty command at StartSession already; the agent fails such a session as it starts
/// (`validateProperties`, `agent/session/plugins/singlecommand/singlecommand_unix.go`).
fn interactive_command(parameters: &Value) -> Result<String, ApiError> {
    let values = parameters["command"].as_array().map(Vec::as_slice);
    let [Value::String(command)] = values.unwrap_or_default() else {
        return Err(ApiError::validation(format!(
            "{INTERACTIVE_COMMAND} takes one `command` value, not {}",
            parameters["command"]
        )));
    };
    if command.trim().is_empty() {
        return Err(ApiError::validation(
            "Commands cannot be empty for session type InteractiveCommands",
        ));
    }
    Ok(command.replace("$$", "$"))
}

/// `bytes` cut right after each occurrence of any of `patterns` (within these bytes).
fn split_after(mut bytes: Bytes, patterns: &[Vec<u8>]) -> Vec<Bytes> {
    let mut cuts: Vec<usize> = patterns
        .iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            bytes
                .windows(p.len())
                .enumerate()
                .filter(move |(_, w)| w == p)
                .map(move |(at, _)| at + p.len())
        })
        .filter(|&cut| cut < bytes.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut taken = 0;
    for cut in cuts {
        pieces.push(bytes.split_to(cut - taken));
        taken = cut;
    }
    pieces.push(bytes);
    pieces
}

/// Client versions from 1.1.70 get smux, as the agent decides.
fn smux_capable(version: &str) -> bool {
    let parts: Vec<u64> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.as_slice() >= [1, 1, 70].as_slice()
}

fn flag(bytes: &[u8]) -> Option<u32> {
    let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn channel_closed(output: &str) -> ClientMessage {
    let body = message::ChannelClosed {
        message_type: CHANNEL_CLOSED.into(),
        schema_version: 1,
        output: output.into(),
        ..Default::default()
    };
    ClientMessage::new(
        CHANNEL_CLOSED,
        0,
        0,
        PayloadType::Null,
        serde_json::to_vec(&body).unwrap_or_default().into(),
    )
}

/// `bytes` as output messages of at most `chunk` bytes each, split without copying.
async fn send_chunked(
    sender: &channel::Sender,
    mut bytes: Bytes,
    chunk: usize,
) -> Result<(), channel::ChannelGone> {
    while !bytes.is_empty() {
        let piece = bytes.split_to(bytes.len().min(chunk));
        sender.send(PayloadType::Output, piece).await?;
    }
    Ok(())
}

/// The agent's connector: it waits for the client's next websocket.
struct Waiting(mpsc::Receiver<Socket>);

impl Connector for Waiting {
    fn connect(&mut self, _resume: bool) -> BoxFuture<'_, Result<Socket, String>> {
        Box::pin(async move {
            self.0
                .recv()
                .await
                .ok_or_else(|| "the session ended".to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactive_command_is_one_value_with_dollars_halved() {
        let one = json!({ "command": ["echo $$HOME $?"] });
        assert_eq!(
            interactive_command(&one).expect("one value"),
            "echo $HOME $?"
        );
        for bad in [
            json!({}),
            json!({ "command": [] }),
            json!({ "command": ["a", "b"] }),
            json!({ "command": ["  "] }),
        ] {
            assert!(interactive_command(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn split_after_cuts_after_each_pattern() {
        let cut = |text: &str, patterns: &[&str]| -> Vec<String> {
            let patterns: Vec<Vec<u8>> = patterns.iter().map(|p| p.as_bytes().to_vec()).collect();
            split_after(Bytes::copy_from_slice(text.as_bytes()), &patterns)
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        };
        assert_eq!(cut("abc", &[]), ["abc"]);
        assert_eq!(cut("a;b;c", &[";"]), ["a;", "b;", "c"]);
        assert_eq!(cut("x]y;z;", &["]", ";"]), ["x]", "y;", "z;"]);
        assert_eq!(cut("aaa", &["a", "aa"]), ["a", "a", "a"]);
    }

    #[test]
    fn smux_from_1_1_70() {
        assert!(smux_capable("1.2.694.0"));
        assert!(smux_capable("1.1.70"));
        assert!(!smux_capable("1.1.61.0"));
    }
}
