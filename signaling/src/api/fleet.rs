//! The fleet seen from this node: `GET /api/fleet` (the directory's live nodes) and
//! `GET /api/fleet/rooms/{room}` (which node hosts a room). Without `--redis` the node is its
//! own fleet: `enabled` false, no nodes.

use super::error::ApiError;
use crate::AppState;
use crate::fleet::{NodeId, NodeRecord};
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

/// `GET /api/fleet` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The node is part of a fleet (`--redis`).
    pub enabled: bool,
    /// This node's id in it.
    pub node: Option<NodeId>,
    /// Every live node in the directory, this one included, by id.
    pub nodes: Vec<NodeRecord>,
}

/// `GET /api/fleet/rooms/{room}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPlacement {
    /// Room name.
    pub room: String,
    /// The node hosting it (`null` without a fleet).
    pub node: Option<NodeId>,
    /// That node's HTTP URL, if its record is live.
    pub url: Option<String>,
    /// The room is on this node.
    pub local: bool,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("fleet directory unreachable: {e}"))
}

pub(super) async fn status(State(state): State<AppState>) -> Result<Json<FleetStatus>, ApiError> {
    let Some(fleet) = &state.fleet else {
        return Ok(Json(FleetStatus { enabled: false, node: None, nodes: vec![] }));
    };
    let nodes = fleet.directory().nodes().await.map_err(unavailable)?;
    Ok(Json(FleetStatus { enabled: true, node: Some(fleet.id().clone()), nodes }))
}

pub(super) async fn room(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<RoomPlacement>, ApiError> {
    let local = state.rooms.contains(&room);
    let not_found = || ApiError::NotFound(format!("room {room:?} is on no node"));
    let Some(fleet) = &state.fleet else {
        return if local { Ok(Json(RoomPlacement { room, node: None, url: None, local })) } else { Err(not_found()) };
    };
    let Some(node) = fleet.directory().owner(&room).await.map_err(unavailable)? else {
        return Err(not_found());
    };
    let url = fleet.directory().nodes().await.map_err(unavailable)?.into_iter().find(|n| n.id == node).map(|n| n.url);
    Ok(Json(RoomPlacement { room, node: Some(node), url, local }))
}
