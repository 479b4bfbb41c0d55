//! Errors of the client library.

use crate::event::Role;
use signaling::protocol::ErrorCode;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// A socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an `error` message.
    #[error("server rejected the request: {code:?}: {message}")]
    Rejected {
        /// Protocol error code.
        code: ErrorCode,
        /// Server's explanation.
        message: String,
    },
    /// A wait ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The signaling connection is closed.
    #[error("signaling connection closed")]
    Closed,
    /// The engine task stopped.
    #[error("the engine task stopped")]
    EngineGone,
    /// The WebRTC stack refused something.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// The server sent something the protocol does not allow here.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The client has no such connection (yet).
    #[error("no {0:?} connection")]
    NoConnection(Role),
}

impl From<rtc::shared::error::Error> for ClientError {
    fn from(e: rtc::shared::error::Error) -> Self {
        ClientError::Rtc(e.to_string())
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}
