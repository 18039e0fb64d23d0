//! The Session Manager data channel, as `labctl ssm-shell` and `labctl forward` speak it
//! after `ssm:StartSession`, and as the project's test double of the agent speaks it
//! back from the public sources of the official plugin and agent.
//!
//! - [`message`]: the binary ClientMessage frame, its types and payloads;
//! - [`channel`]: sequence numbers, acknowledgements, retransmission, reordering and
//!   reconnection over a websocket, for either end;
//! - [`connect`]: a client's signed websocket upgrade and opening frame;
//! - [`smux`]: smux v1, which port sessions carry inside their byte stream.

pub mod channel;
pub mod connect;
pub mod message;
pub mod smux;
