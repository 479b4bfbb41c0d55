//! One client's WebSocket session: parses frames, forwards commands to its room worker and
//! relays the worker's messages back.

use crate::AppState;
use crate::auth::{AuthError, Grants};
use crate::protocol::{ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, ServerMessage, valid_room_name};
use crate::room::{JoinError, Member, ParticipantId, RoomCommand, RoomSender};
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;

/// Per-participant queue of server messages. A client this far behind is removed by its room,
/// which drops its end of the queue: the session then closes the socket.
const EVENT_QUEUE: usize = 256;

/// A new random participant id.
pub fn new_participant_id() -> ParticipantId {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let tail: String = (0..12).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("PA_{tail}")
}

struct Joined {
    room: String,
    participant: ParticipantId,
    sender: RoomSender,
    grants: Grants,
}

/// Runs a session until the socket closes or the client leaves.
pub async fn run(socket: WebSocket, state: AppState) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (events_tx, mut events_rx) = mpsc::channel::<ServerMessage>(EVENT_QUEUE);
    // the session keeps its sender only until it joined: from then on the room holds the only
    // one, and the queue closing means the room dropped this participant
    let mut events_tx = Some(events_tx);
    let mut joined: Option<Joined> = None;

    loop {
        tokio::select! {
            frame = ws_rx.next() => {
                let Some(Ok(frame)) = frame else { break };
                let reply = match frame {
                    Message::Text(text) => {
                        let flow = handle_text(&text, &mut joined, events_tx.as_ref(), &state).await;
                        if joined.is_some() {
                            events_tx = None;
                        }
                        match flow {
                            Flow::Continue => None,
                            Flow::Reply(m) => Some(m),
                            Flow::Close => break,
                        }
                    }
                    Message::Binary(_) => Some(ServerMessage::error(
                        ErrorCode::BinaryUnsupported,
                        "binary frames are not supported; send JSON text frames",
                    )),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(m) = reply
                    && send(&mut ws_tx, &m).await.is_err()
                {
                    break;
                }
            }
            event = events_rx.recv(), if joined.is_some() => {
                let Some(event) = event else {
                    tracing::info!(participant = ?joined.as_ref().map(|j| &j.participant), "the room dropped the session");
                    break;
                };
                let closing = matches!(event, ServerMessage::Reconnect { .. } | ServerMessage::Removed { .. });
                if send(&mut ws_tx, &event).await.is_err() || closing {
                    break;
                }
            }
        }
    }

    if let Some(j) = joined {
        let _ = j.sender.send(RoomCommand::Leave { participant: j.participant.clone() }).await;
        state.rooms.leave_as(&j.room, &j.sender, &j.participant);
        tracing::info!(room = %j.room, participant = %j.participant, "participant left");
    }
    let _ = ws_tx.close().await;
}

enum Flow {
    Continue,
    Reply(ServerMessage),
    Close,
}

async fn send(
    ws_tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    m: &ServerMessage,
) -> Result<(), axum::Error> {
    let text = serde_json::to_string(m).expect("server messages always serialize");
    ws_tx.send(Message::Text(text.into())).await
}

async fn handle_text(
    text: &str,
    joined: &mut Option<Joined>,
    events_tx: Option<&mpsc::Sender<ServerMessage>>,
    state: &AppState,
) -> Flow {
    if text.len() > MAX_MESSAGE_BYTES {
        state.metrics.bad_message("too_large");
        return Flow::Reply(ServerMessage::error(
            ErrorCode::TooLarge,
            format!("message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES}", text.len()),
        ));
    }
    let msg = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => {
            state.metrics.bad_message(code_name(e.code()));
            return Flow::Reply(ServerMessage::error(e.code(), e.to_string()));
        }
    };
    let Some(j) = joined.as_ref() else {
        return match msg {
            ClientMessage::Join { room, name, token } => {
                let Some(events_tx) = events_tx else {
                    return Flow::Reply(ServerMessage::error(ErrorCode::Internal, "session cannot join again"));
                };
                match join(room, name, token, events_tx, state).await {
                    Ok(j) => {
                        *joined = Some(j);
                        Flow::Continue
                    }
                    Err(m) => Flow::Reply(m),
                }
            }
            _ => Flow::Reply(ServerMessage::error(ErrorCode::NotJoined, "send join first")),
        };
    };
    let participant = j.participant.clone();
    let cmd = match msg {
        ClientMessage::Join { .. } => {
            return Flow::Reply(ServerMessage::error(ErrorCode::AlreadyJoined, "already joined"));
        }
        ClientMessage::Leave {} => return Flow::Close,
        ClientMessage::Offer { .. } if !j.grants.publish => {
            state.metrics.auth_failure("ws", AuthError::NoPublishGrant.reason());
            return Flow::Reply(unauthorized(&AuthError::NoPublishGrant));
        }
        ClientMessage::Offer { sdp } => RoomCommand::Offer { participant, sdp },
        ClientMessage::Answer { sdp } => RoomCommand::Answer { participant, sdp },
        ClientMessage::Candidate { target, candidate } => RoomCommand::Candidate { participant, target, candidate },
        m @ ClientMessage::Subscription { .. } => {
            let (track, request) = m.subscription_request().expect("is a subscription");
            RoomCommand::Subscription { participant, track, request }
        }
    };
    if j.sender.send(cmd).await.is_err() {
        return Flow::Reply(ServerMessage::error(ErrorCode::Internal, "room is gone"));
    }
    Flow::Continue
}

async fn join(
    room: String,
    name: String,
    token: Option<String>,
    events_tx: &mpsc::Sender<ServerMessage>,
    state: &AppState,
) -> Result<Joined, ServerMessage> {
    if !valid_room_name(&room) {
        return Err(ServerMessage::error(ErrorCode::BadRoom, "room names are 1-128 characters of A-Z a-z 0-9 _ . -"));
    }
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ServerMessage::error(ErrorCode::BadMessage, "name must be 1-128 characters"));
    }
    let grant = match state.auth.check_join(token.as_deref(), &room, &name) {
        Ok(g) => g,
        Err(e) => {
            state.metrics.auth_failure("ws", e.reason());
            tracing::info!(%room, reason = e.reason(), "join refused: {e}");
            return Err(unauthorized(&e));
        }
    };
    let name = grant.name.filter(|n| !n.trim().is_empty()).unwrap_or(name);
    let participant = new_participant_id();
    let member = Member { identity: grant.identity.clone(), name: name.clone() };
    let sender = state.rooms.join_as(&room, &participant, member).map_err(|e| match e {
        JoinError::Draining => ServerMessage::error(ErrorCode::Draining, e.to_string()),
        JoinError::RoomFull(_) => ServerMessage::error(ErrorCode::RoomFull, e.to_string()),
    })?;
    let cmd = RoomCommand::Join {
        participant: participant.clone(),
        name,
        events: events_tx.clone(),
        subscribe: grant.grants.subscribe,
    };
    if sender.send(cmd).await.is_err() {
        state.rooms.leave_as(&room, &sender, &participant);
        return Err(ServerMessage::error(ErrorCode::Internal, "room worker stopped"));
    }
    tracing::info!(%room, %participant, identity = %grant.identity, "participant joined");
    Ok(Joined { room, participant, sender, grants: grant.grants })
}

/// The `unauthorized` error: the message starts with the machine-readable reason.
fn unauthorized(e: &AuthError) -> ServerMessage {
    ServerMessage::error(ErrorCode::Unauthorized, format!("{}: {e}", e.reason()))
}

fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadJson => "bad_json",
        ErrorCode::UnknownType => "unknown_type",
        ErrorCode::BadMessage => "bad_message",
        ErrorCode::TooLarge => "too_large",
        _ => "other",
    }
}
