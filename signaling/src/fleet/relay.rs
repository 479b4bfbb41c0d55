//! A session relayed to the node that hosts its room: the client's WebSocket stays on the node
//! it reached, which opens one to the room's node, hands it the client's `join` and then passes
//! every frame through both ways until either side closes. The room's node runs the session as
//! its own (auth, limits, room); this end keeps the client alive (pings, idle and send
//! deadlines) and counts it.

use super::{Fleet, NodeId, NodeRecord};
use crate::session::Limits;
use axum::extract::ws::{Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Header of a relaying node's WebSocket to the room's node, naming the relaying node: a join
/// that came through a relay is placed where it is or refused, never relayed again.
pub const RELAY_HEADER: &str = "x-sfu-relayed-by";

/// Longest wait for the room's node to accept the relay's WebSocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Upstream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The WebSocket URL of a node's signaling endpoint, from its HTTP base URL.
pub fn ws_url(http_base: &str) -> String {
    let base = http_base.trim_end_matches('/');
    let base = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => format!("ws://{base}"),
    };
    format!("{base}/ws")
}

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The room's node did not take the WebSocket.
    #[error("node {node} did not accept the relay: {reason}")]
    Connect {
        /// Which node.
        node: NodeId,
        /// What went wrong.
        reason: String,
    },
}

/// Opens the relay's WebSocket to `to`.
pub async fn connect(to: &NodeRecord, me: &NodeId) -> Result<Upstream, RelayError> {
    let fail = |reason: String| RelayError::Connect { node: to.id.clone(), reason };
    let mut request = ws_url(&to.url).into_client_request().map_err(|e| fail(e.to_string()))?;
    let value = me.as_str().parse().map_err(|_| fail("node id is not a header value".into()))?;
    request.headers_mut().insert(RELAY_HEADER, value);
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!("no answer within {CONNECT_TIMEOUT:?}"))),
    }
}

/// Why a relayed session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The client closed its socket (or left).
    Client,
    /// The client's socket went away without a close: the room's node sees the same, so the
    /// session there waits for a `resume`.
    ClientGone,
    /// The room's node closed.
    Upstream,
    /// The client went silent past the idle deadline.
    Idle,
    /// A frame was not taken in time by one side.
    SendTimeout,
}

/// Passes frames between the client and the room's node (the client's `join` first) until
/// either closes.
pub async fn pump(
    mut client_tx: SplitSink<WebSocket, Message>,
    mut client_rx: SplitStream<WebSocket>,
    upstream: Upstream,
    join: String,
    limits: Limits,
    fleet: &Fleet,
) -> RelayEnd {
    fleet.relayed_sessions(1);
    let (mut up_tx, mut up_rx) = upstream.split();
    let end = async {
        if !sent(up_tx.send(tungstenite::Message::Text(join.into())), limits.send).await {
            return RelayEnd::SendTimeout;
        }
        let mut heard = Instant::now();
        let mut pings = tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
        loop {
            tokio::select! {
                frame = client_rx.next() => {
                    let Some(Ok(frame)) = frame else { return RelayEnd::ClientGone };
                    heard = Instant::now();
                    let up = match frame {
                        Message::Text(t) => tungstenite::Message::Text(t.as_str().into()),
                        Message::Binary(b) => tungstenite::Message::Binary(b),
                        Message::Close(_) => return RelayEnd::Client,
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    if !sent(up_tx.send(up), limits.send).await {
                        return RelayEnd::SendTimeout;
                    }
                }
                frame = up_rx.next() => {
                    let Some(Ok(frame)) = frame else { return RelayEnd::Upstream };
                    let down = match frame {
                        tungstenite::Message::Text(t) => Message::Text(t.as_str().into()),
                        tungstenite::Message::Binary(b) => Message::Binary(b),
                        tungstenite::Message::Close(_) => return RelayEnd::Upstream,
                        _ => continue,
                    };
                    if !sent(client_tx.send(down), limits.send).await {
                        return RelayEnd::SendTimeout;
                    }
                }
                _ = pings.tick() => {
                    if heard.elapsed() >= limits.idle {
                        return RelayEnd::Idle;
                    }
                    if !sent(client_tx.send(Message::Ping(Default::default())), limits.send).await {
                        return RelayEnd::SendTimeout;
                    }
                }
            }
        }
    }
    .await;
    fleet.relayed_sessions(-1);
    // only a client's own close is passed on: a client that went away (or went silent) looks
    // the same to the room's node, whose session then waits for a resume
    if end == RelayEnd::Client {
        let _ = tokio::time::timeout(limits.send, up_tx.close()).await;
    }
    let _ = tokio::time::timeout(limits.send, client_tx.close()).await;
    end
}

/// Whether `sending` finished in time and without error.
async fn sent<E>(sending: impl Future<Output = Result<(), E>>, limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, sending).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls() {
        let rows = [
            ("http://10.0.0.5:7880", "ws://10.0.0.5:7880/ws"),
            ("http://10.0.0.5:7880/", "ws://10.0.0.5:7880/ws"),
            ("https://sfu-1.example.com", "wss://sfu-1.example.com/ws"),
            ("127.0.0.1:7880", "ws://127.0.0.1:7880/ws"),
        ];
        for (base, want) in rows {
            assert_eq!(ws_url(base), want, "{base}");
        }
    }
}
