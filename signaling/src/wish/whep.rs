//! WHEP playback (the IETF WISH draft): `POST /whep/{room}` with a bearer token that may
//! subscribe and an SDP offer of receive-only sections makes a viewer of the room that
//! receives one participant's audio and video (`?source=` names it by id or name; else the
//! first one publishing); `201 Created` carries the answer; `PATCH` trickles candidates;
//! `DELETE` ends it. A plain `<video>` page plays it (`/watch?room=R`). The viewer is not
//! announced to the room, and the room's layer allocation serves it like any subscriber.

use super::{Kind, SessionPath, St};
use crate::room::RoomCommand;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::Response;

/// Query of `POST /whep/{room}`.
#[derive(Debug, serde::Deserialize)]
pub struct CreateQuery {
    /// The participant to watch, by id (`PA_...`) or display name [default: the first one
    /// that publishes].
    #[serde(default)]
    source: Option<String>,
    /// Display name of the viewer (else the token's, else `whep`).
    #[serde(default)]
    name: Option<String>,
}

/// `POST /whep/{room}`: admits the viewer and answers its offer.
pub(super) async fn create(
    state: St,
    Path(room): Path<String>,
    Query(q): Query<CreateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let source = q.source.filter(|s| !s.trim().is_empty());
    let join: super::JoinCommands = Box::new(move |participant, name, offer, events| {
        vec![RoomCommand::JoinViewer { participant, name, events, offer, source }]
    });
    super::post(&state, Kind::Whep, room, q.name, &headers, &body, join).await
}

/// `PATCH /whep/{room}/{session}`: trickled candidates.
pub(super) async fn update(state: St, Path((room, id)): SessionPath, headers: HeaderMap, body: Bytes) -> Response {
    super::update(state.0, Kind::Whep, room, id, headers, body).await
}

/// `DELETE /whep/{room}/{session}`: the viewer leaves.
pub(super) async fn end(state: St, Path((room, id)): SessionPath) -> Response {
    super::end(state.0, Kind::Whep, room, id).await
}
