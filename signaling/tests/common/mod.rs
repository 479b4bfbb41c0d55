//! Shared setup of the signaling tests: a fake media plane whose room workers answer every
//! command the way the real one does (without media), tokens, and a oneshot HTTP caller.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use signaling::auth::{self, ApiKey, Grants, TokenRequest};
use signaling::protocol::{ParticipantInfo, ServerMessage, TrackKind};
use signaling::room::{EventSender, ParticipantDetail, RoomCommand, RoomFactory, RoomSender, TrackDetail};
use signaling::{AppState, Auth, Metrics, Node, Rooms};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tower::ServiceExt;

/// The production key of the tests.
pub const KEY: &str = "k1";
/// Its secret (32+ bytes).
pub const SECRET: &str = "test-secret-test-secret-test-secret";

pub fn key() -> ApiKey {
    ApiKey { key: KEY.into(), secret: SECRET.into() }
}

/// What the fake room workers saw, for assertions that nothing leaked.
#[derive(Default)]
pub struct Seen {
    /// Rooms started.
    pub rooms: Vec<String>,
    /// Offers that reached a worker: (participant, sdp).
    pub offers: Vec<(String, String)>,
}

/// A media plane without media: one task per room that keeps a participant list, gives every
/// participant one audio track `TR_<participant id>` and answers admin queries.
#[derive(Default)]
pub struct FakePlane {
    pub seen: Arc<Mutex<Seen>>,
}

struct FakeParticipant {
    id: String,
    name: String,
    events: EventSender,
    muted: bool,
}

impl RoomFactory for FakePlane {
    fn spawn_room(&self, room: &str) -> RoomSender {
        self.seen.lock().unwrap().rooms.push(room.to_string());
        let (tx, mut rx) = mpsc::channel::<RoomCommand>(64);
        let seen = self.seen.clone();
        let room = room.to_string();
        tokio::spawn(async move {
            let mut ps: Vec<FakeParticipant> = Vec::new();
            let mut closed = false;
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    RoomCommand::Join { participant, name, events, .. } => {
                        if closed {
                            let _ = events.try_send(ServerMessage::Removed { reason: "closed".into() });
                            continue;
                        }
                        let info = |p: &FakeParticipant| ParticipantInfo {
                            id: p.id.clone(),
                            name: p.name.clone(),
                            tracks: vec![],
                        };
                        let me = FakeParticipant { id: participant, name, events, muted: false };
                        let _ = me.events.try_send(ServerMessage::Joined {
                            protocol: signaling::protocol::PROTOCOL_VERSION,
                            room: room.clone(),
                            participant: info(&me),
                            participants: ps.iter().map(info).collect(),
                            ice_servers: vec![],
                        });
                        ps.push(me);
                    }
                    RoomCommand::Leave { participant } => ps.retain(|p| p.id != participant),
                    RoomCommand::Offer { participant, sdp, .. } => {
                        seen.lock().unwrap().offers.push((participant.clone(), sdp));
                        if let Some(p) = ps.iter().find(|p| p.id == participant) {
                            let _ = p.events.try_send(ServerMessage::Answer { sdp: "v=0 fake".into() });
                        }
                    }
                    RoomCommand::Participants { reply } => {
                        let _ = reply.send(ps.iter().map(detail).collect());
                    }
                    RoomCommand::Remove { participant, reason, reply } => {
                        let found = ps.iter().position(|p| p.id == participant);
                        if let Some(i) = found {
                            let p = ps.remove(i);
                            let _ = p.events.try_send(ServerMessage::Removed { reason });
                        }
                        let _ = reply.send(found.is_some());
                    }
                    RoomCommand::MuteTrack { participant, track, muted, reply } => {
                        let Some(i) = ps.iter().position(|p| p.id == participant && track == format!("TR_{}", p.id))
                        else {
                            let _ = reply.send(None);
                            continue;
                        };
                        ps[i].muted = muted;
                        let d = detail(&ps[i]).tracks.remove(0);
                        for p in &ps {
                            let _ = p.events.try_send(ServerMessage::TrackMuted {
                                participant: participant.clone(),
                                track: track.clone(),
                                muted,
                            });
                        }
                        let _ = reply.send(Some(d));
                    }
                    RoomCommand::Close { reason } => {
                        closed = true;
                        for p in ps.drain(..) {
                            let _ = p.events.try_send(ServerMessage::Removed { reason: reason.clone() });
                        }
                    }
                    RoomCommand::Evacuate { reason } => {
                        for p in &ps {
                            let _ = p.events.try_send(ServerMessage::Reconnect { reason: reason.clone(), delay_ms: 0 });
                        }
                    }
                    _ => {}
                }
            }
        });
        tx
    }
}

fn detail(p: &FakeParticipant) -> ParticipantDetail {
    ParticipantDetail {
        id: p.id.clone(),
        identity: None,
        name: p.name.clone(),
        tracks: vec![TrackDetail {
            id: format!("TR_{}", p.id),
            kind: TrackKind::Audio,
            layers: vec![],
            muted: p.muted,
        }],
        downlink: None,
        subscriptions: vec![],
    }
}

/// A node with the test key (and, if `dev`, dev mode) on a fake plane.
pub fn state(dev: bool) -> (AppState, Arc<Mutex<Seen>>) {
    let plane = FakePlane::default();
    let seen = plane.seen.clone();
    let node = Arc::new(Node::new("test").with_drain_deadline(Duration::from_secs(3600)));
    let rooms = Arc::new(Rooms::new(Arc::new(plane), node.clone(), 10));
    let auth = Arc::new(Auth::new(&[key()], dev).unwrap());
    let state = AppState {
        rooms,
        node,
        auth,
        metrics: Arc::new(Metrics::new()),
        assets: &[],
        limits: Default::default(),
        fleet: None,
        parking: Default::default(),
        turn: None,
        wish: Default::default(),
    };
    (state, seen)
}

/// A token signed with `key` for `room` (or none) with `grants`, valid for `ttl`.
pub fn token_with(key: &ApiKey, room: Option<&str>, grants: Grants) -> String {
    let req = TokenRequest {
        identity: "alice".into(),
        name: Some("Alice".into()),
        room: room.map(Into::into),
        grants,
        ttl: Duration::from_secs(600),
    };
    auth::issue(key, &req).unwrap().0
}

pub fn admin_token() -> String {
    token_with(&key(), None, Grants { admin: true, ..Grants::default() })
}

pub fn join_token(room: &str) -> String {
    token_with(&key(), Some(room), Grants::participant())
}

/// A token with arbitrary claims (for expired or malformed ones), signed with `key`, `kid` set.
pub fn raw_token(key: &ApiKey, claims: serde_json::Value) -> String {
    signaling::jwt_hs256::install();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.key.clone());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(key.secret.as_bytes())).unwrap()
}

/// An admin token that expired an hour ago.
pub fn expired_admin_token() -> String {
    let now = auth::unix_now();
    raw_token(
        &key(),
        serde_json::json!({"sub": "ops", "exp": now - 3600, "nbf": now - 7200, "grants": {"admin": true}}),
    )
}

/// An admin token signed with the right key id but another secret.
pub fn forged_admin_token() -> String {
    token_with(
        &ApiKey { key: KEY.into(), secret: "forged-forged-forged-forged-forged".into() },
        None,
        Grants { admin: true, ..Grants::default() },
    )
}

/// An admin token signed by a key the node does not know.
pub fn unknown_key_admin_token() -> String {
    token_with(&ApiKey { key: "k9".into(), secret: SECRET.into() }, None, Grants { admin: true, ..Grants::default() })
}

/// Calls the router without a socket; returns status and body (JSON, or a JSON string for text).
pub async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// The value of an unlabelled metric (or one with the given label text), parsed from the
/// Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok())?
    })
}

/// Sends a `Join` for `participant` to a room through the registry, as a session does, and
/// returns its event queue.
pub async fn fake_join(
    state: &AppState,
    room: &str,
    participant: &str,
    identity: &str,
) -> mpsc::Receiver<ServerMessage> {
    let (tx, mut rx) = mpsc::channel(16);
    let member = signaling::room::Member { identity: identity.into(), name: identity.into() };
    let sender = state.rooms.join_as(room, participant, member).unwrap();
    sender
        .send(RoomCommand::Join { participant: participant.into(), name: identity.into(), events: tx, subscribe: true })
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap() {
        Some(ServerMessage::Joined { .. }) => {}
        other => panic!("expected joined, got {other:?}"),
    }
    rx
}

/// Paths of the OpenAPI document with their methods, in the router's `{param}` syntax.
pub fn openapi_operations(doc: &serde_json::Value) -> BTreeMap<(String, String), ()> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.insert((method.to_uppercase(), path.clone()), ());
        }
    }
    ops
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves `state`'s app on a loopback port.
pub async fn serve(state: signaling::AppState) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, signaling::app(state)).await.unwrap() });
    addr
}

/// A WebSocket to the node's `/ws`.
pub async fn connect(addr: std::net::SocketAddr) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap().0
}

/// Sends one JSON message.
pub async fn send(ws: &mut Ws, v: serde_json::Value) {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(v.to_string().into())).await.unwrap();
}

/// The next server message but `session` (5 s at most); panics if the socket closes first.
pub async fn recv(ws: &mut Ws) -> ServerMessage {
    loop {
        match recv_any(ws).await {
            ServerMessage::Session { .. } => continue,
            m => return m,
        }
    }
}

/// The next server message, `session` included (5 s at most); panics if the socket closes
/// first.
pub async fn recv_any(ws: &mut Ws) -> ServerMessage {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a server message in time");
        match frame.expect("socket open").unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(_) => panic!("socket closed"),
            _ => {}
        }
    }
}

/// Joins `room` as "n" (with `token`); returns the server's answer.
pub async fn join(ws: &mut Ws, room: &str, token: Option<String>) -> ServerMessage {
    let mut m = serde_json::json!({"type": "join", "room": room, "name": "n"});
    if let Some(t) = token {
        m["token"] = serde_json::json!(t);
    }
    send(ws, m).await;
    recv(ws).await
}
