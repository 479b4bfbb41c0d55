//! WHIP ingest (RFC 9725): `POST /whip/{room}` with a bearer token that may publish and an SDP
//! offer makes a participant of the room that publishes what the offer sends; `201 Created`
//! carries the answer and the session's URL (`Location`); `PATCH` on it trickles candidates or
//! restarts ICE (`application/trickle-ice-sdpfrag`); `DELETE` ends it. OBS, GStreamer and
//! hardware encoders publish this way. The session is a participant like any other: the room
//! sees its tracks, its leave, its drain.

use crate::AppState;
use crate::api::Routes;
use crate::auth::AuthError;
use crate::protocol::{ErrorCode, IceCandidate, PcTarget, ServerMessage, valid_room_name};
use crate::room::{JoinError, Member, ParticipantId, RoomCommand, RoomSender};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, options, patch, post};
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long the room has to admit the publisher and to answer its offer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Largest offer or fragment accepted.
const MAX_SDP: usize = 64 * 1024;
/// Content type of an SDP offer and answer.
const SDP: &str = "application/sdp";
/// Content type of a trickle or ICE restart fragment (RFC 8840).
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// The WHIP sessions of this node, by id.
#[derive(Default)]
pub struct WhipSessions {
    sessions: DashMap<String, Arc<Session>>,
}

impl WhipSessions {
    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

struct Session {
    room: String,
    participant: ParticipantId,
    sender: RoomSender,
    /// What an ICE restart changes; one PATCH at a time.
    ice: tokio::sync::Mutex<Ice>,
    /// Ends the session's task when the session is dropped.
    _end: oneshot::Sender<()>,
}

struct Ice {
    /// The offer in use (an ICE restart sends it again with new credentials).
    offer: String,
    /// The ICE username fragment of `offer`, whose change in a PATCH is a restart.
    ufrag: String,
    /// Bumped on every restart: the `ETag` a PATCH must match.
    generation: u32,
    /// The room's answers to restarts.
    answers: mpsc::Receiver<Result<String, String>>,
}

/// Adds the WHIP routes.
pub(crate) fn register(r: Routes) -> Routes {
    r.public("POST", "/whip/{room}", post(create))
        .public("OPTIONS", "/whip/{room}", options(preflight))
        .public("PATCH", "/whip/{room}/{session}", patch(update))
        .public("DELETE", "/whip/{room}/{session}", delete(end))
        .public("OPTIONS", "/whip/{room}/{session}", options(preflight))
}

/// A WHIP error: a status and a plain-text reason.
fn error(status: StatusCode, why: impl Into<String>) -> Response {
    let mut res = (status, format!("{}\n", why.into())).into_response();
    cors(res.headers_mut());
    res
}

/// Lets pages on other origins publish (browser WHIP clients) and read the headers they need.
fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location, Link, ETag, Accept-Patch"));
}

async fn preflight() -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    cors(h);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert("accept-post", HeaderValue::from_static(SDP));
    res
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or("", |v| v.split(';').next().unwrap_or("").trim())
}

/// Query of `POST /whip/{room}`.
#[derive(Debug, serde::Deserialize)]
pub struct CreateQuery {
    /// Display name of the publisher (else the token's, else `whip`).
    #[serde(default)]
    name: Option<String>,
}

/// `POST /whip/{room}`: admits the publisher and answers its offer.
async fn create(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<CreateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !valid_room_name(&room) {
        return error(StatusCode::NOT_FOUND, "room names are 1-128 characters of A-Z a-z 0-9 _ . -");
    }
    if content_type(&headers) != SDP {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("the offer must be {SDP}"));
    }
    let Some(offer) = std::str::from_utf8(&body).ok().filter(|s| !s.is_empty() && s.len() <= MAX_SDP) else {
        return error(StatusCode::BAD_REQUEST, "the body must be an SDP offer (UTF-8, at most 64 KiB)");
    };
    let name = q.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty() && n.chars().count() <= 128);
    let grant = match state.auth.check_join(bearer(&headers), &room, name.as_deref().unwrap_or("whip")) {
        Ok(g) if g.grants.publish => g,
        Ok(_) => {
            state.metrics.auth_failure("whip", AuthError::NoPublishGrant.reason());
            return error(StatusCode::FORBIDDEN, AuthError::NoPublishGrant.to_string());
        }
        Err(e) => {
            state.metrics.auth_failure("whip", e.reason());
            let mut res = error(StatusCode::UNAUTHORIZED, format!("{}: {e}", e.reason()));
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return res;
        }
    };
    // with a fleet, the publisher goes to the room's node
    if let Some(fleet) = &state.fleet
        && !state.rooms.contains(&room)
    {
        match fleet.place(&room, false).await {
            Ok(crate::fleet::Place::Local) => {}
            Ok(crate::fleet::Place::Relay(node)) => {
                let mut res = StatusCode::TEMPORARY_REDIRECT.into_response();
                let to = format!("{}/whip/{room}", node.url.trim_end_matches('/'));
                if let Ok(v) = HeaderValue::from_str(&to) {
                    res.headers_mut().insert(header::LOCATION, v);
                }
                cors(res.headers_mut());
                return res;
            }
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
    let name = grant.name.clone().filter(|n| !n.trim().is_empty()).or(name).unwrap_or_else(|| "whip".into());
    let participant = crate::session::new_participant_id();
    let member = Member { identity: grant.identity.clone(), name: name.clone() };
    let sender = match state.rooms.join_as(&room, &participant, member) {
        Ok(s) => s,
        Err(e @ JoinError::Draining) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e @ JoinError::RoomFull(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let (events_tx, mut events) = mpsc::channel(256);
    let join = RoomCommand::Join { participant: participant.clone(), name, events: events_tx, subscribe: false };
    let offer_cmd = RoomCommand::Offer { participant: participant.clone(), sdp: offer.to_owned() };
    let answer = async {
        sender.send(join).await.map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "the room stopped".to_owned()))?;
        sender.send(offer_cmd).await.map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "the room stopped".to_owned()))?;
        loop {
            match events.recv().await {
                Some(ServerMessage::Answer { sdp }) => return Ok(sdp),
                Some(ServerMessage::Error { code, message }) => return Err((status_of(code), message)),
                Some(_) => {}
                None => return Err((StatusCode::SERVICE_UNAVAILABLE, "the room closed".to_owned())),
            }
        }
    };
    let answer = match tokio::time::timeout(ANSWER_WITHIN, answer).await {
        Ok(Ok(sdp)) => sdp,
        Ok(Err((status, why))) => {
            leave(&state, &room, &sender, &participant).await;
            return error(status, why);
        }
        Err(_) => {
            leave(&state, &room, &sender, &participant).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "the room did not answer in time");
        }
    };
    let id = crate::session::new_participant_id().replacen("PA_", "WH_", 1);
    let (end_tx, end_rx) = oneshot::channel();
    let (answers_tx, answers) = mpsc::channel(4);
    let ufrag = ice_line(offer, "ice-ufrag").unwrap_or_default().to_owned();
    let ice = Ice { offer: offer.to_owned(), ufrag, generation: 0, answers };
    let session = Session {
        room: room.clone(),
        participant: participant.clone(),
        sender: sender.clone(),
        ice: tokio::sync::Mutex::new(ice),
        _end: end_tx,
    };
    state.whip.sessions.insert(id.clone(), Arc::new(session));
    tokio::spawn(follow(
        state.clone(),
        id.clone(),
        room.clone(),
        participant.clone(),
        sender,
        events,
        answers_tx,
        end_rx,
    ));
    tracing::info!(%room, %participant, session = %id, identity = %grant.identity, "WHIP publisher joined");

    let mut res = (StatusCode::CREATED, answer).into_response();
    let h = res.headers_mut();
    cors(h);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&format!("/whip/{room}/{id}")) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::ETAG, etag(&id, 0));
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    for link in ice_server_links(&state, &grant.identity) {
        h.append(header::LINK, link);
    }
    res
}

/// The session's task: passes the room's answers to restarts on, drops the other messages,
/// and ends the session when the room drops it or `DELETE` ends it.
#[allow(clippy::too_many_arguments)]
async fn follow(
    state: AppState,
    id: String,
    room: String,
    participant: ParticipantId,
    sender: RoomSender,
    mut events: mpsc::Receiver<ServerMessage>,
    answers: mpsc::Sender<Result<String, String>>,
    mut end: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            m = events.recv() => match m {
                Some(ServerMessage::Answer { sdp }) => { let _ = answers.try_send(Ok(sdp)); }
                Some(ServerMessage::Error { message, .. }) => { let _ = answers.try_send(Err(message)); }
                Some(ServerMessage::Removed { .. } | ServerMessage::Reconnect { .. }) | None => break,
                Some(_) => {}
            },
            _ = &mut end => break,
        }
    }
    state.whip.sessions.remove(&id);
    leave(&state, &room, &sender, &participant).await;
    tracing::info!(%room, %participant, session = %id, "WHIP session ended");
}

async fn leave(state: &AppState, room: &str, sender: &RoomSender, participant: &str) {
    let _ = sender.send(RoomCommand::Leave { participant: participant.to_owned() }).await;
    state.rooms.leave_as(room, sender, participant);
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadSdp | ErrorCode::BadMessage | ErrorCode::LimitExceeded => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::FORBIDDEN,
        ErrorCode::RoomFull | ErrorCode::Draining => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn etag(id: &str, generation: u32) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{id}-{generation}\"")).expect("an id and a number are a valid header")
}

/// The TURN servers of the node as `Link` headers (RFC 9725 4.6).
fn ice_server_links(state: &AppState, identity: &str) -> Vec<HeaderValue> {
    let Some(turn) = &state.turn else { return Vec::new() };
    turn.ice_servers(identity, std::time::SystemTime::now())
        .into_iter()
        .flat_map(|s| {
            let (user, cred) = (s.username, s.credential);
            s.urls.into_iter().filter_map(move |u| {
                HeaderValue::from_str(&format!(
                    "<{u}>; rel=\"ice-server\"; username=\"{user}\"; credential=\"{cred}\"; credential-type=\"password\""
                ))
                .ok()
            })
        })
        .collect()
}

/// The value of the first `a=NAME:` line.
fn ice_line<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=")?.strip_prefix(name)?.strip_prefix(':'))
}

/// `PATCH /whip/{room}/{session}`: trickled candidates (`204`), or an ICE restart (new
/// `ice-ufrag`/`ice-pwd`: the offer again with them, `200` with the answer's).
async fn update(
    State(state): State<AppState>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if content_type(&headers) != SDPFRAG {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("a PATCH carries {SDPFRAG}"));
    }
    let Some(frag) = std::str::from_utf8(&body).ok().filter(|s| s.len() <= MAX_SDP) else {
        return error(StatusCode::BAD_REQUEST, "the body must be an SDP fragment (UTF-8, at most 64 KiB)");
    };
    let Some(s) = state.whip.sessions.get(&id).filter(|s| s.room == room).map(|s| s.clone()) else {
        return error(StatusCode::NOT_FOUND, "no such WHIP session");
    };
    let mut ice = s.ice.lock().await;
    if let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
        && want != "*"
        && want != etag(&id, ice.generation)
    {
        return error(StatusCode::PRECONDITION_FAILED, "the session's ETag changed (another ICE restart)");
    }
    let (ufrag, pwd) = (ice_line(frag, "ice-ufrag"), ice_line(frag, "ice-pwd"));
    if let (Some(ufrag), Some(pwd)) = (ufrag, pwd)
        && ufrag != ice.ufrag
    {
        // an ICE restart: the same offer with the new credentials
        let offer = replace_ice(&ice.offer, ufrag, pwd);
        let cmd = RoomCommand::Offer { participant: s.participant.clone(), sdp: offer.clone() };
        if s.sender.send(cmd).await.is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the room stopped");
        }
        let answer = match tokio::time::timeout(ANSWER_WITHIN, ice.answers.recv()).await {
            Ok(Some(Ok(sdp))) => sdp,
            Ok(Some(Err(why))) => return error(StatusCode::BAD_REQUEST, why),
            _ => return error(StatusCode::GATEWAY_TIMEOUT, "the room did not answer the restart in time"),
        };
        ice.offer = offer;
        ice.ufrag = ufrag.to_owned();
        ice.generation += 1;
        let mut out = String::new();
        for name in ["ice-ufrag", "ice-pwd"] {
            if let Some(v) = ice_line(&answer, name) {
                out.push_str(&format!("a={name}:{v}\r\n"));
            }
        }
        for c in answer.lines().filter(|l| l.starts_with("a=candidate:")) {
            out.push_str(c.trim_end());
            out.push_str("\r\n");
        }
        let mut res = (StatusCode::OK, out).into_response();
        let h = res.headers_mut();
        cors(h);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
        h.insert(header::ETAG, etag(&id, ice.generation));
        return res;
    }
    let mid = ice_line(frag, "mid").map(str::to_owned);
    for line in frag.lines().map(str::trim_end).filter(|l| l.starts_with("a=candidate:") || *l == "a=end-of-candidates")
    {
        let candidate = line.strip_prefix("a=").unwrap_or(line);
        let candidate = if candidate == "end-of-candidates" { String::new() } else { candidate.to_owned() };
        let c = IceCandidate { candidate, sdp_mid: mid.clone(), sdp_mline_index: Some(0), username_fragment: None };
        let cmd =
            RoomCommand::Candidate { participant: s.participant.clone(), target: PcTarget::Publisher, candidate: c };
        if s.sender.send(cmd).await.is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the room stopped");
        }
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    cors(res.headers_mut());
    res
}

/// `offer` with its ICE credentials replaced.
fn replace_ice(offer: &str, ufrag: &str, pwd: &str) -> String {
    offer
        .split_inclusive('\n')
        .map(|l| {
            let eol = &l[l.trim_end().len()..];
            if l.starts_with("a=ice-ufrag:") {
                format!("a=ice-ufrag:{ufrag}{eol}")
            } else if l.starts_with("a=ice-pwd:") {
                format!("a=ice-pwd:{pwd}{eol}")
            } else {
                l.to_owned()
            }
        })
        .collect()
}

/// `DELETE /whip/{room}/{session}`: the publisher leaves.
async fn end(State(state): State<AppState>, Path((room, id)): Path<(String, String)>) -> Response {
    match state.whip.sessions.remove_if(&id, |_, s| s.room == room) {
        // dropping the session ends its task, which leaves the room
        Some(_) => {
            let mut res = StatusCode::OK.into_response();
            cors(res.headers_mut());
            res
        }
        None => error(StatusCode::NOT_FOUND, "no such WHIP session"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_credentials_are_read_and_replaced() {
        let offer =
            "v=0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpassword\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:old\r\n";
        assert_eq!(ice_line(offer, "ice-ufrag"), Some("old"));
        assert_eq!(ice_line(offer, "ice-pwd"), Some("oldpassword"));
        assert_eq!(ice_line(offer, "mid"), None);
        let new = replace_ice(offer, "new", "newpassword");
        assert_eq!(
            new,
            "v=0\r\na=ice-ufrag:new\r\na=ice-pwd:newpassword\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:new\r\n"
        );
    }
}
