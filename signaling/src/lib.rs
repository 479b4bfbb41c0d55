//! Control plane of the SFU: rooms, participants and node state over HTTP and WebSocket.
//!
//! It never touches RTP: room workers of the media plane are started through [`RoomFactory`]
//! and driven with [`RoomCommand`]s.

pub mod api;
pub mod auth;
pub mod drain;
pub mod fleet;
pub mod jwt_hs256;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod rate;
pub mod room;
pub mod session;
pub mod turn;
pub mod wish;

pub use api::RouteInfo;
pub use auth::Auth;
pub use metrics::Metrics;
pub use node::{Node, NodeState};
pub use room::{RoomCommand, RoomFactory, RoomSender, Rooms};

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// A static file served by the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// URL path, e.g. `/app.js`.
    pub path: &'static str,
    /// Content-Type header.
    pub content_type: &'static str,
    /// File contents.
    pub body: &'static str,
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// Rooms on this node.
    pub rooms: Arc<Rooms>,
    /// Node lifecycle.
    pub node: Arc<Node>,
    /// Join policy.
    pub auth: Arc<Auth>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Demo page files.
    pub assets: &'static [Asset],
    /// Deadlines of WebSocket sessions.
    pub limits: session::Limits,
    /// This node's part in a fleet (`--redis`); `None` runs it alone.
    pub fleet: Option<Arc<fleet::Fleet>>,
    /// Sessions whose socket dropped, waiting for a `resume`.
    pub parking: Arc<session::Parking>,
    /// TURN credentials handed out in `joined` (`--turn-secret`, `--turn-urls`).
    pub turn: Option<Arc<turn::TurnCredentials>>,
    /// WHIP publishers' and WHEP players' sessions.
    pub wish: Arc<wish::WishSessions>,
}

/// Largest WebSocket message the transport accepts before closing the socket; messages between
/// the protocol limit and this are answered with a `too_large` error instead.
const WS_TRANSPORT_LIMIT: usize = 1024 * 1024;

/// The HTTP router: demo page, `/ws`, `/healthz`, `/readyz`, `/metrics` and the `/api` routes.
pub fn app(state: AppState) -> Router {
    build(state).0
}

/// Every route of [`app`] except the demo page's files (what docs/openapi.json documents).
pub fn routes(state: &AppState) -> Vec<RouteInfo> {
    build(state.clone()).1
}

fn build(state: AppState) -> (Router, Vec<RouteInfo>) {
    let r = api::Routes::new(state.clone())
        .public("GET", "/ws", get(ws_upgrade))
        .public("GET", "/healthz", get(healthz))
        .public("GET", "/readyz", get(readyz))
        .public("GET", "/metrics", get(metrics));
    let (mut router, list) = wish::register(api::register(r)).finish();
    for asset in state.assets {
        let a = *asset;
        let handler = move || async move {
            ([(header::CONTENT_TYPE, a.content_type), (header::CACHE_CONTROL, "no-cache")], a.body)
        };
        router = router.route(a.path, get(handler));
    }
    (router.with_state(state), list)
}

/// Read buffer of one signaling WebSocket.
const WS_READ_BUFFER: usize = 4 * 1024;

async fn ws_upgrade(ws: WebSocketUpgrade, headers: axum::http::HeaderMap, State(state): State<AppState>) -> Response {
    let origin = match headers.contains_key(fleet::relay::RELAY_HEADER) {
        true => session::Origin::Relay,
        false => session::Origin::Client,
    };
    // tungstenite zero-fills the free part of its read buffer before every read: its 128 KiB
    // default would be 128 KiB of memory per participant and a 128 KiB memset per message, for
    // messages that are mostly under 1 KiB (larger frames still get the room they need).
    ws.max_message_size(WS_TRANSPORT_LIMIT)
        .max_frame_size(WS_TRANSPORT_LIMIT)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| session::run(socket, state, origin))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.node.state() {
        NodeState::Serving => (StatusCode::OK, "ready\n").into_response(),
        NodeState::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.rooms.set(state.rooms.len() as i64);
    state.metrics.participants.set(state.rooms.participants() as i64);
    state.metrics.draining.set((state.node.state() == NodeState::Draining) as i64);
    state.metrics.drain_remaining.set(state.node.drain_remaining().map_or(0, |d| d.as_secs()) as i64);
    for (kind, label) in [(wish::Kind::Whip, "whip"), (wish::Kind::Whep, "whep")] {
        state.metrics.wish_sessions.with_label_values(&[label]).set(state.wish.count(kind) as i64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
