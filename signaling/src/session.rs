//! One client's WebSocket session: parses frames, forwards commands to its room worker and
//! relays the worker's messages back.

use crate::AppState;
use crate::auth::{AuthError, Grants};
use crate::fleet::{NodeRecord, Place, PlaceError, relay};
use crate::protocol::{ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, ServerMessage, valid_room_name};
use crate::rate::TokenBucket;
use crate::room::{JoinError, Member, ParticipantId, RoomCommand, RoomSender};
use crate::turn::TurnCredentials;
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Per-participant queue of server messages. A client this far behind is removed by its room,
/// which drops its end of the queue: the session then closes the socket.
const EVENT_QUEUE: usize = 256;

/// Deadlines of a session: a client that does not join, stops answering or stops reading is
/// closed instead of holding a socket (and a room slot) forever.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the socket's opening to its `join`.
    pub join: Duration,
    /// Between the server's pings.
    pub ping_interval: Duration,
    /// Without any frame from the client (a pong counts).
    pub idle: Duration,
    /// For one message to be taken by the client's socket.
    pub send: Duration,
    /// Messages a client may send per second on average.
    pub messages_per_second: f64,
    /// Messages a client may send at once.
    pub message_burst: f64,
    /// How long a joined session whose socket dropped waits for a `resume` (zero: it leaves
    /// at once).
    pub resume_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            join: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            idle: Duration::from_secs(45),
            send: Duration::from_secs(10),
            messages_per_second: 20.0,
            message_burst: 50.0,
            resume_grace: Duration::from_secs(20),
        }
    }
}

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
    /// Who the token says it is (TURN credentials name it).
    identity: String,
    sender: RoomSender,
    grants: Grants,
    /// The secret a `resume` names this session by.
    resume_token: String,
}

/// A joined session whose socket dropped, waiting for a `resume`: the participant stays in
/// its room, and the room's messages wait in its queue.
struct ParkedSession {
    joined: Joined,
    events: mpsc::Receiver<ServerMessage>,
}

/// The sessions waiting for a `resume`, by token.
#[derive(Default)]
pub struct Parking {
    sessions: dashmap::DashMap<String, ParkedSession>,
}

impl Parking {
    /// Sessions waiting now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when none waits.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Why a session's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The socket went away without a close (dropped, silent, not reading): a joined session
    /// waits for a resume.
    Gone,
    /// The client left (`leave` or a WebSocket close), or the room closed the session.
    Over,
}

/// A new resume token: 128 random bits.
fn new_resume_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a session's socket reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From a client.
    Client,
    /// Through another node's relay ([`relay::RELAY_HEADER`]): its join is never relayed again.
    Relay,
}

/// Runs a session until the socket closes or the client leaves.
pub async fn run(socket: WebSocket, state: AppState, origin: Origin) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (events_tx, mut events_rx) = mpsc::channel::<ServerMessage>(EVENT_QUEUE);
    // the session keeps its sender only until it joined: from then on the room holds the only
    // one, and the queue closing means the room dropped this participant
    let mut events_tx = Some(events_tx);
    let mut joined: Option<Joined> = None;
    let limits = state.limits;
    let join_by = Instant::now() + limits.join;
    let mut heard = Instant::now();
    let mut pings = tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    let mut limited = false;
    let mut budget = TokenBucket::new(limits.messages_per_second, limits.message_burst, heard.into_std());
    let mut relay_to = None;
    let mut end = End::Gone;

    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(join_by), if joined.is_none() => {
                state.metrics.session_timeout("join");
                let m = ServerMessage::error(ErrorCode::NotJoined, format!("no join within {} s", limits.join.as_secs_f32()));
                let _ = send(&mut ws_tx, &m, limits.send).await;
                break;
            }
            _ = pings.tick() => {
                if heard.elapsed() >= limits.idle {
                    state.metrics.session_timeout("idle");
                    tracing::info!(participant = ?joined.as_ref().map(|j| &j.participant), "closing a silent session");
                    break;
                }
                if let Err(e) = timed(limits.send, ws_tx.send(Message::Ping(Default::default()))).await {
                    e.count(&state);
                    break;
                }
            }
            frame = ws_rx.next() => {
                let Some(Ok(frame)) = frame else { break };
                heard = Instant::now();
                let reply = match frame {
                    Message::Text(_) | Message::Binary(_) if !budget.take(heard.into_std()) => {
                        // told once per stretch of dropped messages: a flood gets no flood back
                        state.metrics.bad_message("rate_limited");
                        (!std::mem::replace(&mut limited, true)).then(|| ServerMessage::error(
                            ErrorCode::LimitExceeded,
                            format!("more than {} messages at once or {} per second: dropped", limits.message_burst, limits.messages_per_second),
                        ))
                    }
                    Message::Text(text) => {
                        limited = false;
                        let flow = handle_text(&text, &mut joined, events_tx.as_ref(), &state, origin).await;
                        if joined.is_some() {
                            events_tx = None;
                        }
                        match flow {
                            Flow::Continue => None,
                            Flow::Reply(m) => Some(m),
                            Flow::Close => {
                                end = End::Over;
                                break;
                            }
                            Flow::Relay(to) => {
                                relay_to = Some((to, text.to_string()));
                                break;
                            }
                            Flow::Resumed(events, participant) => {
                                // the queue that waited (and what it holds) is this session's now
                                events_rx = events;
                                state.metrics.session_resumed();
                                tracing::info!(%participant, "session resumed");
                                Some(ServerMessage::Resumed { participant })
                            }
                        }
                    }
                    Message::Binary(_) => Some(ServerMessage::error(
                        ErrorCode::BinaryUnsupported,
                        "binary frames are not supported; send JSON text frames",
                    )),
                    Message::Close(_) => {
                        // a clean close is a leave; only a socket that just went away waits
                        end = End::Over;
                        break;
                    }
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(m) = reply
                    && let Err(e) = send(&mut ws_tx, &m, limits.send).await
                {
                    e.count(&state);
                    break;
                }
            }
            event = events_rx.recv(), if joined.is_some() => {
                let Some(event) = event else {
                    tracing::info!(participant = ?joined.as_ref().map(|j| &j.participant), "the room dropped the session");
                    end = End::Over;
                    break;
                };
                let closing = matches!(event, ServerMessage::Reconnect { .. } | ServerMessage::Removed { .. });
                let event = with_turn(event, joined.as_ref(), state.turn.as_deref());
                let session = match (&event, &joined) {
                    (ServerMessage::Joined { .. }, Some(j)) if !limits.resume_grace.is_zero() => Some(ServerMessage::Session {
                        resume_token: j.resume_token.clone(),
                        grace_ms: limits.resume_grace.as_millis() as u64,
                    }),
                    _ => None,
                };
                let mut sent = send(&mut ws_tx, &event, limits.send).await;
                if let (Ok(()), Some(m)) = (&sent, session) {
                    sent = send(&mut ws_tx, &m, limits.send).await;
                }
                match sent {
                    Ok(()) if !closing => {}
                    Ok(()) => {
                        end = End::Over;
                        break;
                    }
                    Err(e) => {
                        e.count(&state);
                        break;
                    }
                }
            }
        }
    }

    if let (Some((to, join)), Some(fleet)) = (relay_to, state.fleet.as_ref()) {
        match relay::connect(&to, fleet.id()).await {
            Ok(upstream) => {
                fleet.count_join("relayed");
                tracing::debug!(node = %to.id, "session relayed");
                let end = relay::pump(ws_tx, ws_rx, upstream, join, limits, fleet).await;
                tracing::debug!(node = %to.id, ?end, "relayed session ended");
                return;
            }
            Err(e) => {
                fleet.count_join("refused");
                tracing::warn!(error = %e, "relay failed");
                let m = ServerMessage::error(ErrorCode::Unavailable, format!("{e}; retry shortly"));
                let _ = send(&mut ws_tx, &m, limits.send).await;
            }
        }
    }

    match joined {
        Some(j) if end == End::Gone && !limits.resume_grace.is_zero() => park(j, events_rx, &state),
        Some(j) => leave(j, &state.rooms).await,
        None => {}
    }
    let _ = timed(limits.send, ws_tx.close()).await;
}

/// The participant leaves its room.
async fn leave(j: Joined, rooms: &crate::room::Rooms) {
    let _ = j.sender.send(RoomCommand::Leave { participant: j.participant.clone() }).await;
    rooms.leave_as(&j.room, &j.sender, &j.participant);
    tracing::info!(room = %j.room, participant = %j.participant, "participant left");
}

/// Keeps a session whose socket dropped for its grace period; it leaves unless resumed.
fn park(j: Joined, events: mpsc::Receiver<ServerMessage>, state: &AppState) {
    let token = j.resume_token.clone();
    tracing::info!(room = %j.room, participant = %j.participant, grace = ?state.limits.resume_grace, "socket gone: the session waits for a resume");
    state.parking.sessions.insert(token.clone(), ParkedSession { joined: j, events });
    let (parking, rooms, grace) = (state.parking.clone(), state.rooms.clone(), state.limits.resume_grace);
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        if let Some((_, p)) = parking.sessions.remove(&token) {
            leave(p.joined, &rooms).await;
        }
    });
}

enum Flow {
    Continue,
    Reply(ServerMessage),
    Close,
    /// The room is on another node: relay the session there.
    Relay(NodeRecord),
    /// A waiting session was taken back: its queue, and its participant id.
    Resumed(mpsc::Receiver<ServerMessage>, ParticipantId),
}

/// Why a frame did not go out.
#[derive(Debug, PartialEq, Eq)]
enum SendError {
    /// The client's socket did not take it in time (it stopped reading).
    Timeout,
    /// The socket is gone.
    Closed,
}

impl SendError {
    /// Counts a timeout (a closed socket is the client's own doing).
    fn count(&self, state: &AppState) {
        if *self == SendError::Timeout {
            state.metrics.session_timeout("send");
        }
    }
}

/// `sending` within `limit`.
async fn timed(limit: Duration, sending: impl Future<Output = Result<(), axum::Error>>) -> Result<(), SendError> {
    match tokio::time::timeout(limit, sending).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SendError::Closed),
        Err(_) => Err(SendError::Timeout),
    }
}

async fn send(
    ws_tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    m: &ServerMessage,
    limit: Duration,
) -> Result<(), SendError> {
    let text = serde_json::to_string(m).expect("server messages always serialize");
    timed(limit, ws_tx.send(Message::Text(text.into()))).await
}

async fn handle_text(
    text: &str,
    joined: &mut Option<Joined>,
    events_tx: Option<&mpsc::Sender<ServerMessage>>,
    state: &AppState,
    origin: Origin,
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
                match place(&room, &name, token.as_deref(), state, origin, true).await {
                    Ok(None) => {}
                    Ok(Some(to)) => return Flow::Relay(to),
                    Err(m) => return Flow::Reply(m),
                }
                match join(room, name, token, events_tx, state).await {
                    Ok(j) => {
                        *joined = Some(j);
                        Flow::Continue
                    }
                    Err(m) => Flow::Reply(m),
                }
            }
            ClientMessage::Resume { room, token } => {
                match place(&room, "", None, state, origin, false).await {
                    Ok(Some(to)) => return Flow::Relay(to),
                    Ok(None) => {}
                    Err(m) => return Flow::Reply(m),
                }
                match state.parking.sessions.remove_if(&token, |_, p| p.joined.room == room) {
                    Some((_, p)) => {
                        let participant = p.joined.participant.clone();
                        *joined = Some(p.joined);
                        Flow::Resumed(p.events, participant)
                    }
                    None => {
                        state.metrics.bad_message("resume_failed");
                        Flow::Reply(ServerMessage::error(
                            ErrorCode::ResumeFailed,
                            "no session waits for this token (its grace ran out?): join anew",
                        ))
                    }
                }
            }
            _ => Flow::Reply(ServerMessage::error(ErrorCode::NotJoined, "send join first")),
        };
    };
    let participant = j.participant.clone();
    let cmd = match msg {
        ClientMessage::Join { .. } | ClientMessage::Resume { .. } => {
            return Flow::Reply(ServerMessage::error(ErrorCode::AlreadyJoined, "already joined"));
        }
        ClientMessage::Leave {} => return Flow::Close,
        ClientMessage::Offer { .. } if !j.grants.publish => {
            state.metrics.auth_failure("ws", AuthError::NoPublishGrant.reason());
            return Flow::Reply(unauthorized(&AuthError::NoPublishGrant));
        }
        ClientMessage::Offer { sdp, sources } => RoomCommand::Offer { participant, sdp, sources },
        ClientMessage::Answer { sdp } => RoomCommand::Answer { participant, sdp },
        ClientMessage::Candidate { target, candidate } => RoomCommand::Candidate { participant, target, candidate },
        ClientMessage::IceRestart {} => RoomCommand::IceRestart { participant },
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

/// With a fleet: `None` to join here, or the node to relay the session to. Only a join
/// with a valid room and token reaches the directory.
async fn place(
    room: &str,
    name: &str,
    token: Option<&str>,
    state: &AppState,
    origin: Origin,
    authenticate: bool,
) -> Result<Option<NodeRecord>, ServerMessage> {
    let Some(fleet) = &state.fleet else { return Ok(None) };
    if !valid_room_name(room) || state.rooms.contains(room) {
        // refused or joined by `join` as without a fleet
        return Ok(None);
    }
    // a resume carries no access token: its own token is checked by the room's node
    if let Err(e) = authenticate.then(|| state.auth.check_join(token, room, name.trim())).transpose() {
        state.metrics.auth_failure("ws", e.reason());
        tracing::debug!(%room, reason = e.reason(), "join refused: {e}");
        return Err(unauthorized(&e));
    }
    match fleet.place(room, origin == Origin::Relay).await {
        Ok(Place::Local) => {
            fleet.count_join("local");
            Ok(None)
        }
        Ok(Place::Relay(to)) => Ok(Some(to)),
        Err(e) => {
            fleet.count_join("refused");
            let code = match e {
                PlaceError::NoNode => ErrorCode::Draining,
                PlaceError::Unavailable | PlaceError::Moved(_) => ErrorCode::Unavailable,
            };
            Err(ServerMessage::error(code, e.to_string()))
        }
    }
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
            // counted in sfu_auth_failures_total; per attempt only at debug, so a client
            // retrying bad tokens cannot flood the log
            tracing::debug!(%room, reason = e.reason(), "join refused: {e}");
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
    Ok(Joined {
        room,
        participant,
        identity: grant.identity,
        sender,
        grants: grant.grants,
        resume_token: new_resume_token(),
    })
}

/// `joined` with the TURN servers and credentials the participant may relay through, when the
/// node hands them out (`--turn-secret`).
fn with_turn(event: ServerMessage, joined: Option<&Joined>, turn: Option<&TurnCredentials>) -> ServerMessage {
    match (event, joined, turn) {
        (ServerMessage::Joined { protocol, room, participant, participants, .. }, Some(j), Some(turn)) => {
            ServerMessage::Joined {
                protocol,
                room,
                participant,
                participants,
                ice_servers: turn.ice_servers(&j.identity, std::time::SystemTime::now()),
            }
        }
        (event, ..) => event,
    }
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
