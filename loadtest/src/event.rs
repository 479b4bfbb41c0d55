//! What a client observes: server messages and the state of its own connections.

use signaling::protocol::{ServerMessage, TrackRef};
use std::collections::BTreeMap;

/// Which of a client's two peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Client -> server media; the client offers.
    Publisher,
    /// Server -> client media; the server offers.
    Subscriber,
}

/// Something that happened to a client, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A server message other than `offer` and `answer` (those become [`Event::Negotiated`]).
    Server(ServerMessage),
    /// An offer/answer exchange completed: the server's answer was applied (publisher), or the
    /// server's offer was answered (subscriber; `tracks` is its mid -> track map).
    Negotiated {
        /// Which connection.
        role: Role,
        /// mid -> remote track (empty for the publisher).
        tracks: BTreeMap<String, TrackRef>,
    },
    /// An offer or answer from the server could not be applied.
    NegotiationFailed {
        /// Which connection.
        role: Role,
        /// Why.
        error: String,
    },
    /// ICE and DTLS are up on a connection.
    Connected(Role),
    /// A connection failed or closed.
    Disconnected(Role),
    /// ICE reported a connection disconnected (nothing received for a while); like a browser's
    /// `disconnected` state it may recover, so the client is not counted as dropped.
    Interrupted(Role),
    /// The WebSocket closed.
    SignalingClosed,
}

impl Event {
    /// The server error code, if this is an `error` message.
    pub fn error_code(&self) -> Option<signaling::protocol::ErrorCode> {
        match self {
            Event::Server(ServerMessage::Error { code, .. }) => Some(*code),
            _ => None,
        }
    }
}
