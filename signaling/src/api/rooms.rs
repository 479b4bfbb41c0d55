//! Rooms, participants and tracks. Live details come from the room worker through a
//! [`RoomCommand`] with a oneshot reply; identities come from the registry.

use super::error::{ApiError, ApiJson};
use crate::AppState;
use crate::auth::Claims;
use crate::protocol::valid_room_name;
use crate::room::{CreateError, ParticipantDetail, RoomCommand, RoomSender, RoomSummary, TrackDetail};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::oneshot;

/// Largest `max_participants` a room may be created with.
pub const MAX_ROOM_LIMIT: usize = 10_000;
/// How long a room worker may take to answer a query.
const WORKER_TIMEOUT: Duration = Duration::from_secs(5);

/// `POST /api/rooms` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// Room name (1-128 of `[A-Za-z0-9_.-]`).
    pub name: String,
    /// Participant limit; the node's `--max-participants` when absent.
    #[serde(default)]
    pub max_participants: Option<usize>,
}

/// `GET /api/rooms` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    /// Every room, by name.
    pub rooms: Vec<RoomSummary>,
}

/// `GET /api/rooms/{room}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomDetail {
    /// Name, occupancy and limit.
    pub room: RoomSummary,
    /// Who is in it.
    pub participants: Vec<ParticipantDetail>,
}

/// `GET /api/rooms/{room}/participants` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantList {
    /// Who is in the room.
    pub participants: Vec<ParticipantDetail>,
}

/// `POST .../tracks/{track}/mute` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuteRequest {
    /// True to stop forwarding, false to resume.
    pub muted: bool,
}

fn room_sender(state: &AppState, room: &str) -> Result<(RoomSummary, RoomSender), ApiError> {
    state.rooms.get(room).ok_or_else(|| ApiError::NotFound(format!("room {room:?} does not exist")))
}

/// Sends a query to a room worker and waits for its answer.
async fn ask<T>(
    room: &str,
    sender: &RoomSender,
    make: impl FnOnce(oneshot::Sender<T>) -> RoomCommand,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    if sender.send(make(tx)).await.is_err() {
        return Err(ApiError::NotFound(format!("room {room:?} has closed")));
    }
    match tokio::time::timeout(WORKER_TIMEOUT, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(ApiError::NotFound(format!("room {room:?} has closed"))),
        Err(_) => Err(ApiError::Internal(format!("room {room:?} worker did not answer within {WORKER_TIMEOUT:?}"))),
    }
}

async fn participant_details(
    state: &AppState,
    room: &str,
    sender: &RoomSender,
) -> Result<Vec<ParticipantDetail>, ApiError> {
    let mut list = ask(room, sender, |reply| RoomCommand::Participants { reply }).await?;
    let members = state.rooms.members(room);
    for p in &mut list {
        p.identity = members.get(&p.id).map(|m| m.identity.clone());
    }
    Ok(list)
}

pub(super) async fn list(State(state): State<AppState>) -> Json<RoomList> {
    Json(RoomList { rooms: state.rooms.list() })
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(who): Extension<Claims>,
    ApiJson(body): ApiJson<CreateRoom>,
) -> Result<(StatusCode, Json<RoomSummary>), ApiError> {
    if !valid_room_name(&body.name) {
        return Err(ApiError::BadRequest("room names are 1-128 characters of A-Z a-z 0-9 _ . -".into()));
    }
    if let Some(n) = body.max_participants
        && (n == 0 || n > MAX_ROOM_LIMIT)
    {
        return Err(ApiError::BadRequest(format!("max_participants must be 1-{MAX_ROOM_LIMIT}")));
    }
    let summary = state.rooms.create(&body.name, body.max_participants).map_err(|e| match e {
        CreateError::Draining => ApiError::Draining(e.to_string()),
        CreateError::Exists(_) => ApiError::Conflict(e.to_string()),
    })?;
    tracing::info!(room = %summary.name, by = %who.sub, "api: room created");
    Ok((StatusCode::CREATED, Json(summary)))
}

pub(super) async fn get(State(state): State<AppState>, Path(room): Path<String>) -> Result<Json<RoomDetail>, ApiError> {
    let (_, sender) = room_sender(&state, &room)?;
    let participants = participant_details(&state, &room, &sender).await?;
    let (summary, _) = room_sender(&state, &room)?;
    Ok(Json(RoomDetail { room: summary, participants }))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(who): Extension<Claims>,
    Path(room): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sender =
        state.rooms.remove(&room).ok_or_else(|| ApiError::NotFound(format!("room {room:?} does not exist")))?;
    // The worker may already be gone (last participant just left): nothing to disconnect then.
    let _ = sender.send(RoomCommand::Close { reason: "the room was deleted by an operator".into() }).await;
    tracing::info!(%room, by = %who.sub, "api: room deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn participants(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<ParticipantList>, ApiError> {
    let (_, sender) = room_sender(&state, &room)?;
    Ok(Json(ParticipantList { participants: participant_details(&state, &room, &sender).await? }))
}

pub(super) async fn remove_participant(
    State(state): State<AppState>,
    Extension(who): Extension<Claims>,
    Path((room, participant)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (_, sender) = room_sender(&state, &room)?;
    let reason = "removed by an operator".to_string();
    let p = participant.clone();
    let found = ask(&room, &sender, |reply| RoomCommand::Remove { participant: p, reason, reply }).await?;
    if !found {
        return Err(ApiError::NotFound(format!("participant {participant:?} is not in room {room:?}")));
    }
    tracing::info!(%room, %participant, by = %who.sub, "api: participant removed");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn mute(
    State(state): State<AppState>,
    Extension(who): Extension<Claims>,
    Path((room, participant, track)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<MuteRequest>,
) -> Result<Json<TrackDetail>, ApiError> {
    let (_, sender) = room_sender(&state, &room)?;
    let (p, t) = (participant.clone(), track.clone());
    let muted = body.muted;
    let detail = ask(&room, &sender, |reply| RoomCommand::MuteTrack { participant: p, track: t, muted, reply })
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("participant {participant:?} publishes no track {track:?} in room {room:?}"))
        })?;
    tracing::info!(%room, %participant, %track, muted, by = %who.sub, "api: track mute changed");
    Ok(Json(detail))
}
