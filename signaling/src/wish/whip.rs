//! WHIP ingest (RFC 9725): `POST /whip/{room}` with a bearer token that may publish and an SDP
//! offer makes a participant of the room that publishes what the offer sends; `201 Created`
//! carries the answer and the session's URL (`Location`); `PATCH` on it trickles candidates or
//! restarts ICE (`application/trickle-ice-sdpfrag`); `DELETE` ends it. OBS, GStreamer and
//! hardware encoders publish this way. The session is a participant like any other: the room
//! sees its tracks, its leave, its drain.

use super::{Kind, SessionPath, St};
use crate::room::RoomCommand;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::Response;

/// Query of `POST /whip/{room}`.
#[derive(Debug, serde::Deserialize)]
pub struct CreateQuery {
    /// Display name of the publisher (else the token's, else `whip`).
    #[serde(default)]
    name: Option<String>,
}

/// `POST /whip/{room}`: admits the publisher and answers its offer.
pub(super) async fn create(
    state: St,
    Path(room): Path<String>,
    Query(q): Query<CreateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let join: super::JoinCommands = Box::new(|participant, name, offer, events| {
        vec![
            RoomCommand::Join { participant: participant.clone(), name, events, subscribe: false },
            RoomCommand::Offer { participant, sdp: offer, sources: Default::default() },
        ]
    });
    super::post(&state, Kind::Whip, room, q.name, &headers, &body, join).await
}

/// `PATCH /whip/{room}/{session}`.
pub(super) async fn update(state: St, Path((room, id)): SessionPath, headers: HeaderMap, body: Bytes) -> Response {
    super::update(state.0, Kind::Whip, room, id, headers, body).await
}

/// `DELETE /whip/{room}/{session}`: the publisher leaves.
pub(super) async fn end(state: St, Path((room, id)): SessionPath) -> Response {
    super::end(state.0, Kind::Whip, room, id).await
}
