//! The signaling client: the WebSocket to `ws://HOST/ws`, the `join` handshake, and the task
//! that relays frames between the socket, the engine and the client's event queue.

use crate::engine::{ClientId, Command, Engine};
use crate::error::ClientError;
use crate::event::Event;
use futures::{SinkExt, StreamExt};
use signaling::protocol::{ClientMessage, ParticipantInfo, ServerMessage};
use std::net::IpAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The client's WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A frame to send to the server.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A protocol message, as JSON text.
    Message(ClientMessage),
    /// Arbitrary text (for testing the server's input checks).
    Text(String),
    /// A binary frame (which the protocol does not allow).
    Binary(Vec<u8>),
}

/// What the server said when the join was accepted.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Room name.
    pub room: String,
    /// The client itself.
    pub participant: ParticipantInfo,
    /// Everyone else at join time.
    pub participants: Vec<ParticipantInfo>,
    /// TURN servers the client may relay through.
    pub ice_servers: Vec<signaling::protocol::IceServer>,
}

/// Read buffer of one client WebSocket. tungstenite zero-fills the free part of its read
/// buffer before every read: its 128 KiB default costs a 128 KiB memset per received message
/// (a third of the load tester's CPU while a 1000-viewer room fills up and every join is
/// announced to everyone); server messages are mostly under 1 KiB.
const WS_READ_BUFFER: usize = 4 * 1024;

/// Connects to `url` (e.g. `ws://127.0.0.1:7880/ws`); also returns the local IP the host uses
/// to reach the server, which is where media sockets get bound.
pub async fn connect(url: &str) -> Result<(Ws, IpAddr), ClientError> {
    let config = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let ip = match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr()?.ip(),
        _ => IpAddr::from([127, 0, 0, 1]),
    };
    Ok((ws, ip))
}

/// Sends one message.
pub async fn send(ws: &mut Ws, msg: &ClientMessage) -> Result<(), ClientError> {
    let text = serde_json::to_string(msg).expect("client messages always serialize");
    ws.send(Message::Text(text.into())).await?;
    Ok(())
}

/// Receives the next server message, skipping control frames.
pub async fn recv(ws: &mut Ws) -> Result<ServerMessage, ClientError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| ClientError::Protocol(format!("bad server message: {e}")));
            }
            Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Sends `join` and waits for `joined` (or the server's `error`).
pub async fn join(
    ws: &mut Ws,
    room: &str,
    name: &str,
    token: Option<String>,
    timeout: Duration,
) -> Result<Joined, ClientError> {
    let msg = ClientMessage::Join { room: room.to_owned(), name: name.to_owned(), token };
    send(ws, &msg).await?;
    let reply = tokio::time::timeout(timeout, recv(ws)).await.map_err(|_| ClientError::Timeout("joined".into()))??;
    match reply {
        ServerMessage::Joined { room, participant, participants, ice_servers, .. } => {
            Ok(Joined { room, participant, participants, ice_servers })
        }
        ServerMessage::Error { code, message } => Err(ClientError::Rejected { code, message }),
        other => Err(ClientError::Protocol(format!("expected joined, got {other:?}"))),
    }
}

/// Relays until the socket closes or `outbound` is dropped: offers and answers go to the
/// engine, everything else to `events`.
pub async fn run(
    mut ws: Ws,
    id: ClientId,
    engine: Engine,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    events: mpsc::UnboundedSender<Event>,
) {
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let msg = match serde_json::from_str::<ServerMessage>(&t) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "unparseable server message");
                            continue;
                        }
                    };
                    let forwarded = match msg {
                        ServerMessage::Answer { sdp } => engine.send(Command::PublisherAnswer { id, sdp }),
                        ServerMessage::Offer { sdp, tracks } => engine.send(Command::SubscriberOffer { id, sdp, tracks }),
                        ServerMessage::PublishLayers { track, active } => {
                            // the publisher follows (as a browser sets encodings[i].active); the
                            // test sees the message too
                            let _ = events.send(Event::Server(ServerMessage::PublishLayers {
                                track: track.clone(),
                                active: active.clone(),
                            }));
                            engine.send(Command::PublishLayers { id, active })
                        }
                        other => {
                            let _ = events.send(Event::Server(other));
                            Ok(())
                        }
                    };
                    if forwarded.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = outbound.recv() => {
                let frame = match out {
                    Some(Outbound::Message(m)) => Message::Text(serde_json::to_string(&m).expect("serializable").into()),
                    Some(Outbound::Text(t)) => Message::Text(t.into()),
                    Some(Outbound::Binary(b)) => Message::Binary(b.into()),
                    None => {
                        let _ = ws.close(None).await;
                        break;
                    }
                };
                if ws.send(frame).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = events.send(Event::SignalingClosed);
}
