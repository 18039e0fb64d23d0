//! The data channel's binary frame (ClientMessage) and the JSON payloads that ride in it.
//!
//! Every websocket frame after the opening text frame is one ClientMessage. The layout
//! is fixed by the agent and the official plugin (all integers big-endian); parsing
//! reads the header length from the wire, since `channel_closed` has been seen with a
//! shorter header and a NUL-padded type name.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Header length the official clients write (it does not count PayloadLength).
pub const HEADER_LENGTH: u32 = 116;
/// Largest input payload the official plugin sends in one message.
pub const MAX_INPUT_CHUNK: usize = 1024;

/// Stream data from the client to the agent.
pub const INPUT_STREAM_DATA: &str = "input_stream_data";
/// Stream data from the agent to the client.
pub const OUTPUT_STREAM_DATA: &str = "output_stream_data";
/// Acknowledgement of one stream message (both ways).
pub const ACKNOWLEDGE: &str = "acknowledge";
/// The service ends the session.
pub const CHANNEL_CLOSED: &str = "channel_closed";
/// The service lets the client send again.
pub const START_PUBLICATION: &str = "start_publication";
/// The service asks the client to stop sending.
pub const PAUSE_PUBLICATION: &str = "pause_publication";

/// Flag bit: first message of a stream.
pub const FLAG_SYN: u64 = 1;
/// Flag bit: last message of a stream.
pub const FLAG_FIN: u64 = 2;

/// What a stream message's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// No payload type (acknowledgements and control messages).
    Null,
    /// Terminal or port bytes (keystrokes travel as Output too).
    Output,
    /// An error text.
    Error,
    /// Terminal size, JSON `{"cols":N,"rows":M}`.
    Size,
    /// Session parameters.
    Parameter,
    /// Agent's handshake request.
    HandshakeRequest,
    /// Client's handshake response.
    HandshakeResponse,
    /// Agent's handshake completion.
    HandshakeComplete,
    /// KMS challenge from the agent.
    EncChallengeRequest,
    /// KMS challenge answer.
    EncChallengeResponse,
    /// A u32 flag ([`PortFlag`]).
    Flag,
    /// Standard error of a command.
    StdErr,
    /// Exit code of a command.
    ExitCode,
    /// A type this code does not know.
    Other(u32),
}

impl PayloadType {
    /// The number on the wire.
    pub fn code(self) -> u32 {
        match self {
            PayloadType::Null => 0,
            PayloadType::Output => 1,
            PayloadType::Error => 2,
            PayloadType::Size => 3,
            PayloadType::Parameter => 4,
            PayloadType::HandshakeRequest => 5,
            PayloadType::HandshakeResponse => 6,
            PayloadType::HandshakeComplete => 7,
            PayloadType::EncChallengeRequest => 8,
            PayloadType::EncChallengeResponse => 9,
            PayloadType::Flag => 10,
            PayloadType::StdErr => 11,
            PayloadType::ExitCode => 12,
            PayloadType::Other(n) => n,
        }
    }

    /// The type for a number on the wire.
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => PayloadType::Null,
            1 => PayloadType::Output,
            2 => PayloadType::Error,
            3 => PayloadType::Size,
            4 => PayloadType::Parameter,
            5 => PayloadType::HandshakeRequest,
            6 => PayloadType::HandshakeResponse,
            7 => PayloadType::HandshakeComplete,
            8 => PayloadType::EncChallengeRequest,
            9 => PayloadType::EncChallengeResponse,
            10 => PayloadType::Flag,
            11 => PayloadType::StdErr,
            12 => PayloadType::ExitCode,
            n => PayloadType::Other(n),
        }
    }
}

/// The u32 carried by a [`PayloadType::Flag`] message in port sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortFlag {
    /// The local connection closed (agents without smux).
    DisconnectToPort = 1,
    /// The client ends the session.
    TerminateSession = 2,
    /// The agent could not connect to the port.
    ConnectToPortError = 3,
}

/// One ClientMessage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// `input_stream_data`, `acknowledge`, ... (trimmed of padding).
    pub message_type: String,
    /// Schema version (1).
    pub schema_version: u32,
    /// Epoch milliseconds.
    pub created_date: u64,
    /// Position in the sender's stream (0 for acknowledgements).
    pub sequence_number: i64,
    /// [`FLAG_SYN`], [`FLAG_FIN`]; acknowledgements carry 3.
    pub flags: u64,
    /// Unique id of this message.
    pub message_id: Uuid,
    /// What the payload is.
    pub payload_type: PayloadType,
    /// The payload.
    pub payload: Bytes,
}

/// Why bytes are not a ClientMessage; each names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header needs.
    #[error("message too short: {len} bytes, the header needs {need}")]
    Short {
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The header length field is impossible.
    #[error("bad header length {0} at offset 0")]
    HeaderLength(u32),
    /// The payload length disagrees with the frame's size.
    #[error("payload length {declared} at offset {offset}, but {available} bytes follow")]
    PayloadLength {
        /// Declared length.
        declared: u32,
        /// Where the length field is.
        offset: usize,
        /// Bytes actually there.
        available: usize,
    },
    /// The payload digest does not match.
    #[error("payload digest mismatch in {message_type} #{sequence_number} (offset 80)")]
    Digest {
        /// The message's type.
        message_type: String,
        /// The message's sequence number.
        sequence_number: i64,
    },
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ClientMessage {
    /// A new message with a fresh id and the current time.
    pub fn new(
        message_type: &str,
        sequence_number: i64,
        flags: u64,
        payload_type: PayloadType,
        payload: Bytes,
    ) -> Self {
        Self {
            message_type: message_type.to_owned(),
            schema_version: 1,
            created_date: now_millis(),
            sequence_number,
            flags,
            message_id: Uuid::new_v4(),
            payload_type,
            payload,
        }
    }

    /// The acknowledgement of this message.
    pub fn ack(&self) -> ClientMessage {
        let body = Acknowledge {
            acknowledged_message_type: self.message_type.clone(),
            acknowledged_message_id: self.message_id.hyphenated().to_string(),
            acknowledged_message_sequence_number: self.sequence_number,
            is_sequential_message: true,
        };
        let payload = serde_json::to_vec(&body).unwrap_or_default();
        ClientMessage::new(
            ACKNOWLEDGE,
            0,
            FLAG_SYN | FLAG_FIN,
            PayloadType::Null,
            payload.into(),
        )
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(120 + self.payload.len());
        out.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        let mut name = [b' '; 32];
        let bytes = self.message_type.as_bytes();
        let n = bytes.len().min(32);
        name[..n].copy_from_slice(&bytes[..n]);
        out.extend_from_slice(&name);
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.created_date.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&uuid_to_wire(&self.message_id));
        out.extend_from_slice(&Sha256::digest(&self.payload));
        out.extend_from_slice(&self.payload_type.code().to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses one message, checking its digest when it has a payload.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        if frame.len() < 4 {
            return Err(DecodeError::Short {
                len: frame.len(),
                need: 4,
            });
        }
        let hl = u32_at(frame, 0);
        // The fixed fields end at 112; 116 adds PayloadType.
        if !(112..=4096).contains(&hl) {
            return Err(DecodeError::HeaderLength(hl));
        }
        let hl = hl as usize;
        if frame.len() < hl + 4 {
            return Err(DecodeError::Short {
                len: frame.len(),
                need: hl + 4,
            });
        }
        let message_type = String::from_utf8_lossy(&frame[4..36])
            .trim_matches(|c: char| c == ' ' || c == '\0')
            .to_owned();
        let declared = u32_at(frame, hl);
        let available = frame.len() - hl - 4;
        if declared as usize != available {
            return Err(DecodeError::PayloadLength {
                declared,
                offset: hl,
                available,
            });
        }
        let payload = Bytes::copy_from_slice(&frame[hl + 4..]);
        let sequence_number = i64::from_be_bytes(array(&frame[48..56]));
        if !payload.is_empty() && Sha256::digest(&payload).as_slice() != &frame[80..112] {
            return Err(DecodeError::Digest {
                message_type,
                sequence_number,
            });
        }
        Ok(Self {
            message_type,
            schema_version: u32_at(frame, 36),
            created_date: u64::from_be_bytes(array(&frame[40..48])),
            sequence_number,
            flags: u64::from_be_bytes(array(&frame[56..64])),
            message_id: uuid_from_wire(&frame[64..80]),
            payload_type: if hl >= 116 {
                PayloadType::from_code(u32_at(frame, 112))
            } else {
                PayloadType::Null
            },
            payload,
        })
    }

    /// Whether this message is part of a numbered stream (acked, retransmitted).
    pub fn is_stream_data(&self) -> bool {
        self.message_type == INPUT_STREAM_DATA || self.message_type == OUTPUT_STREAM_DATA
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(&bytes[at..at + 4]))
}

/// The wire order of a message id: the UUID's two 8-byte halves swapped.
fn uuid_to_wire(id: &Uuid) -> [u8; 16] {
    let b = id.as_bytes();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&b[8..]);
    out[8..].copy_from_slice(&b[..8]);
    out
}

fn uuid_from_wire(wire: &[u8]) -> Uuid {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&wire[8..16]);
    b[8..].copy_from_slice(&wire[..8]);
    Uuid::from_bytes(b)
}

/// An acknowledgement's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Acknowledge {
    /// Type of the message acknowledged.
    pub acknowledged_message_type: String,
    /// Its id, hyphenated.
    pub acknowledged_message_id: String,
    /// Its sequence number.
    pub acknowledged_message_sequence_number: i64,
    /// Always true.
    pub is_sequential_message: bool,
}

/// The opening text frame a client sends on every (re)connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    /// "1.0".
    #[serde(rename = "MessageSchemaVersion")]
    pub message_schema_version: String,
    /// A fresh UUID per connection.
    #[serde(rename = "RequestId")]
    pub request_id: String,
    /// The token from StartSession or ResumeSession.
    #[serde(rename = "TokenValue")]
    pub token_value: String,
    /// The client's id, kept across reconnections.
    #[serde(rename = "ClientId")]
    pub client_id: String,
    /// The client version the agent adapts to (≥ 1.1.70: smux for port sessions).
    #[serde(rename = "ClientVersion")]
    pub client_version: String,
}

/// The version labctl announces: the protocol of the official plugin 1.2.x.
pub const CLIENT_VERSION: &str = "1.2.694.0";

/// One action in a handshake request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedAction {
    /// `SessionType` or `KMSEncryption`.
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// For `SessionType`: `{"SessionType": "...", "Properties": {...}}`.
    #[serde(rename = "ActionParameters", default)]
    pub action_parameters: serde_json::Value,
}

/// The agent's HandshakeRequest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeRequest {
    /// The agent's version.
    #[serde(rename = "AgentVersion", default)]
    pub agent_version: String,
    /// What the client must do.
    #[serde(rename = "RequestedClientActions", default)]
    pub requested_client_actions: Vec<RequestedAction>,
}

/// One processed action in a handshake response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedAction {
    /// The action's type.
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// 1 success, 2 failed, 3 unsupported.
    #[serde(rename = "ActionStatus")]
    pub action_status: u32,
    /// Result data, if any.
    #[serde(rename = "ActionResult", default)]
    pub action_result: serde_json::Value,
    /// Why it failed.
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// The client's HandshakeResponse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeResponse {
    /// The client's version.
    #[serde(rename = "ClientVersion")]
    pub client_version: String,
    /// One entry per requested action.
    #[serde(rename = "ProcessedClientActions")]
    pub processed_client_actions: Vec<ProcessedAction>,
    /// Errors, if any.
    #[serde(rename = "Errors", default)]
    pub errors: Vec<String>,
}

/// The agent's HandshakeComplete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeComplete {
    /// Nanoseconds the handshake took.
    #[serde(rename = "HandshakeTimeToComplete", default)]
    pub handshake_time_to_complete: u64,
    /// A message for the user, if any.
    #[serde(rename = "CustomerMessage", default)]
    pub customer_message: String,
}

/// `channel_closed`'s payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelClosed {
    /// Message id.
    #[serde(rename = "MessageId", default)]
    pub message_id: String,
    /// When.
    #[serde(rename = "CreatedDate", default)]
    pub created_date: String,
    /// Destination id.
    #[serde(rename = "DestinationId", default)]
    pub destination_id: String,
    /// The session.
    #[serde(rename = "SessionId", default)]
    pub session_id: String,
    /// `channel_closed`.
    #[serde(rename = "MessageType", default)]
    pub message_type: String,
    /// Schema version.
    #[serde(rename = "SchemaVersion", default)]
    pub schema_version: u32,
    /// Text to show the user.
    #[serde(rename = "Output", default)]
    pub output: String,
}

/// A resize, as the agent expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let m = ClientMessage::new(
            INPUT_STREAM_DATA,
            42,
            FLAG_SYN,
            PayloadType::Size,
            Bytes::from_static(br#"{"cols":80,"rows":24}"#),
        );
        let wire = m.encode();
        assert_eq!(wire.len(), 120 + m.payload.len());
        assert_eq!(&wire[..4], &116u32.to_be_bytes());
        assert_eq!(&wire[4..36], format!("{INPUT_STREAM_DATA:<32}").as_bytes());
        assert_eq!(ClientMessage::decode(&wire), Ok(m));
    }

    #[test]
    fn message_id_halves_are_swapped_on_the_wire() {
        let id = Uuid::from_bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        let mut m = ClientMessage::new(ACKNOWLEDGE, 0, 3, PayloadType::Null, Bytes::new());
        m.message_id = id;
        let wire = m.encode();
        assert_eq!(
            &wire[64..80],
            &[8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(ClientMessage::decode(&wire).map(|d| d.message_id), Ok(id));
    }

    #[test]
    fn short_header_and_nul_padded_type_parse() {
        // channel_closed as seen on the wire: HL 112, NUL padding, no PayloadType.
        let full = ClientMessage::new(CHANNEL_CLOSED, 7, 0, PayloadType::Null, "{}".into());
        let mut wire = full.encode();
        wire[..4].copy_from_slice(&112u32.to_be_bytes());
        for b in &mut wire[4 + CHANNEL_CLOSED.len()..36] {
            *b = 0;
        }
        wire.drain(112..116);
        let m = ClientMessage::decode(&wire).expect("parses");
        assert_eq!(m.message_type, CHANNEL_CLOSED);
        assert_eq!(m.payload_type, PayloadType::Null);
        assert_eq!(&m.payload[..], b"{}");
    }

    #[test]
    fn corrupt_frames_are_refused_with_where() {
        let m = ClientMessage::new(OUTPUT_STREAM_DATA, 1, 0, PayloadType::Output, "hi".into());
        let wire = m.encode();
        assert!(matches!(
            ClientMessage::decode(&wire[..50]),
            Err(DecodeError::Short { .. })
        ));
        let mut bad = wire.clone();
        bad[121] ^= 1;
        assert!(matches!(
            ClientMessage::decode(&bad),
            Err(DecodeError::Digest {
                sequence_number: 1,
                ..
            })
        ));
        let mut long = wire.clone();
        long.push(0);
        assert_eq!(
            ClientMessage::decode(&long),
            Err(DecodeError::PayloadLength {
                declared: 2,
                offset: 116,
                available: 3
            })
        );
        let mut hl = wire;
        hl[..4].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(
            ClientMessage::decode(&hl),
            Err(DecodeError::HeaderLength(5))
        );
    }

    #[test]
    fn ack_names_the_message() {
        let m = ClientMessage::new(OUTPUT_STREAM_DATA, 9, 0, PayloadType::Output, "x".into());
        let ack = m.ack();
        assert_eq!(ack.message_type, ACKNOWLEDGE);
        assert_eq!((ack.sequence_number, ack.flags), (0, 3));
        let body: Acknowledge = serde_json::from_slice(&ack.payload).expect("json");
        assert_eq!(body.acknowledged_message_sequence_number, 9);
        assert_eq!(
            body.acknowledged_message_id,
            m.message_id.hyphenated().to_string()
        );
        let json: serde_json::Value = serde_json::from_slice(&ack.payload).expect("json");
        assert!(json.get("AcknowledgedMessageType").is_some(), "{json}");
    }
}
