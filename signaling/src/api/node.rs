//! Node status, drain, and the development token endpoint.

use super::error::ApiError;
use crate::AppState;
use crate::auth::{self, Claims, Grants, TokenRequest};
use crate::node::NodeState;
use crate::protocol::valid_room_name;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Lifetime of development tokens.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// `GET /api/node` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `serving` or `draining`.
    pub state: NodeState,
    /// Software version.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// Rooms on this node.
    pub rooms: usize,
    /// Participants on this node.
    pub participants: usize,
    /// Configured drain deadline, seconds.
    pub drain_deadline_seconds: u64,
    /// Seconds left until the drain deadline (`null` while serving).
    pub drain_remaining_seconds: Option<u64>,
}

/// `GET /api/dev/token` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevToken {
    /// The join token.
    pub token: String,
    /// Its room.
    pub room: String,
    /// Its identity.
    pub identity: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// `GET /api/dev/token` query.
#[derive(Debug, Deserialize)]
pub(super) struct DevTokenQuery {
    room: Option<String>,
    name: Option<String>,
}

/// The node's state now.
pub fn node_status(state: &AppState) -> NodeStatus {
    let node = &state.node;
    NodeStatus {
        state: node.state(),
        version: node.version().to_string(),
        uptime_seconds: node.uptime().as_secs(),
        rooms: state.rooms.len(),
        participants: state.rooms.participants(),
        drain_deadline_seconds: node.drain_deadline().as_secs(),
        drain_remaining_seconds: node.drain_remaining().map(|d| d.as_secs()),
    }
}

pub(super) async fn status(State(state): State<AppState>) -> Json<NodeStatus> {
    Json(node_status(&state))
}

pub(super) async fn drain(
    State(state): State<AppState>,
    Extension(who): Extension<Claims>,
) -> (StatusCode, Json<NodeStatus>) {
    if state.node.start_drain() {
        tracing::warn!(by = %who.sub, "api: drain requested");
    }
    debug_assert_eq!(state.node.state(), NodeState::Draining);
    (StatusCode::ACCEPTED, Json(node_status(&state)))
}

pub(super) async fn dev_token(
    State(state): State<AppState>,
    Query(q): Query<DevTokenQuery>,
) -> Result<Json<DevToken>, ApiError> {
    if !state.auth.is_dev() {
        return Err(ApiError::NotFound("development tokens exist only in dev mode".into()));
    }
    let room = q.room.unwrap_or_default();
    if !valid_room_name(&room) {
        return Err(ApiError::BadRequest("query parameter room: 1-128 characters of A-Z a-z 0-9 _ . -".into()));
    }
    let name = q.name.unwrap_or_default();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ApiError::BadRequest("name must be 1-128 characters".into()));
    }
    let req = TokenRequest {
        identity: name.to_string(),
        name: Some(name.to_string()),
        room: Some(room.clone()),
        grants: Grants::participant(),
        ttl: DEV_TOKEN_TTL,
    };
    let (token, claims) =
        auth::issue(&auth::dev_key(), &req).map_err(|e| ApiError::Internal(format!("signing: {e}")))?;
    Ok(Json(DevToken { token, room, identity: claims.sub, expires_at: claims.exp }))
}
