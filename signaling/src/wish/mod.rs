//! WHIP (RFC 9725) and WHEP (the IETF WISH drafts): publishing and playing over plain HTTP
//! with one SDP offer and answer, for encoders (OBS, GStreamer) and players that do not speak
//! this server's WebSocket protocol. Each session is a participant of its room; this module
//! holds what both share: the sessions, their HTTP surface (errors, CORS, `PATCH` trickle,
//! `DELETE`) and the task that follows the room for them.

pub mod whep;
pub mod whip;

use crate::AppState;
use crate::api::Routes;
use crate::auth::{AuthError, JoinGrant};
use crate::protocol::{ErrorCode, IceCandidate, PcTarget, ServerMessage, valid_room_name};
use crate::room::{JoinError, Member, ParticipantId, RoomCommand, RoomSender};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long the room has to admit a session and to answer its offer.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Largest offer or fragment accepted.
const MAX_SDP: usize = 64 * 1024;
/// Content type of an SDP offer and answer.
pub(crate) const SDP: &str = "application/sdp";
/// Content type of a trickle or ICE restart fragment (RFC 8840).
pub(crate) const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Which of the two a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A publisher (`/whip`).
    Whip,
    /// A player (`/whep`).
    Whep,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }

    fn target(self) -> PcTarget {
        match self {
            Kind::Whip => PcTarget::Publisher,
            Kind::Whep => PcTarget::Subscriber,
        }
    }
}

/// The WHIP and WHEP sessions of this node, by id.
#[derive(Default)]
pub struct WishSessions {
    sessions: DashMap<String, Arc<Session>>,
}

impl WishSessions {
    /// Open sessions of `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        self.sessions.iter().filter(|s| s.kind == kind).count()
    }
}

pub(crate) struct Session {
    kind: Kind,
    room: String,
    participant: ParticipantId,
    sender: RoomSender,
    /// What an ICE restart changes; one PATCH at a time.
    ice: tokio::sync::Mutex<Ice>,
    /// Ends the session's task when the session is dropped.
    _end: oneshot::Sender<()>,
}

pub(crate) struct Ice {
    /// The offer in use (an ICE restart sends it again with new credentials).
    offer: String,
    /// The ICE username fragment of `offer`, whose change in a PATCH is a restart.
    ufrag: String,
    /// Bumped on every restart: the `ETag` a PATCH must match.
    generation: u32,
    /// The room's answers to restarts.
    answers: mpsc::Receiver<Result<String, String>>,
}

/// Adds the WHIP and WHEP routes.
pub(crate) fn register(r: Routes) -> Routes {
    use axum::routing::{delete, options, patch, post};
    r.public("POST", "/whip/{room}", post(whip::create))
        .public("OPTIONS", "/whip/{room}", options(preflight))
        .public("PATCH", "/whip/{room}/{session}", patch(whip::update))
        .public("DELETE", "/whip/{room}/{session}", delete(whip::end))
        .public("OPTIONS", "/whip/{room}/{session}", options(preflight))
        .public("POST", "/whep/{room}", post(whep::create))
        .public("OPTIONS", "/whep/{room}", options(preflight))
        .public("PATCH", "/whep/{room}/{session}", patch(whep::update))
        .public("DELETE", "/whep/{room}/{session}", delete(whep::end))
        .public("OPTIONS", "/whep/{room}/{session}", options(preflight))
}

/// An error: a status and a plain-text reason.
pub(crate) fn error(status: StatusCode, why: impl Into<String>) -> Response {
    let mut res = (status, format!("{}\n", why.into())).into_response();
    cors(res.headers_mut());
    res
}

/// Lets pages on other origins publish and play, and read the headers they need.
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

/// A `POST` checked: the room name, the offer, and a token with the grant `kind` needs.
pub(crate) struct Admitted {
    pub room: String,
    pub offer: String,
    pub grant: JoinGrant,
    /// The display name asked for with `?name=`.
    pub name: Option<String>,
}

/// Checks a `POST` of `kind`; the error response when it is refused.
pub(crate) async fn admit(
    state: &AppState,
    kind: Kind,
    room: String,
    name: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Admitted, Response> {
    if !valid_room_name(&room) {
        return Err(error(StatusCode::NOT_FOUND, "room names are 1-128 characters of A-Z a-z 0-9 _ . -"));
    }
    if content_type(headers) != SDP {
        return Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("the offer must be {SDP}")));
    }
    let Some(offer) = std::str::from_utf8(body).ok().filter(|s| !s.is_empty() && s.len() <= MAX_SDP) else {
        return Err(error(StatusCode::BAD_REQUEST, "the body must be an SDP offer (UTF-8, at most 64 KiB)"));
    };
    let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty() && n.chars().count() <= 128);
    let surface = kind.path();
    let grant = match state.auth.check_join(bearer(headers), &room, name.as_deref().unwrap_or(surface)) {
        Ok(g) => g,
        Err(e) => {
            state.metrics.auth_failure(surface, e.reason());
            let mut res = error(StatusCode::UNAUTHORIZED, format!("{}: {e}", e.reason()));
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(res);
        }
    };
    let missing = match kind {
        Kind::Whip => (!grant.grants.publish).then_some(AuthError::NoPublishGrant),
        Kind::Whep => (!grant.grants.subscribe).then_some(AuthError::NoSubscribeGrant),
    };
    if let Some(e) = missing {
        state.metrics.auth_failure(surface, e.reason());
        return Err(error(StatusCode::FORBIDDEN, e.to_string()));
    }
    // with a fleet, the session goes to the room's node
    if let Some(fleet) = &state.fleet
        && !state.rooms.contains(&room)
    {
        match fleet.place(&room, false).await {
            Ok(crate::fleet::Place::Local) => {}
            Ok(crate::fleet::Place::Relay(node)) => {
                let mut res = StatusCode::TEMPORARY_REDIRECT.into_response();
                let to = format!("{}/{surface}/{room}", node.url.trim_end_matches('/'));
                if let Ok(v) = HeaderValue::from_str(&to) {
                    res.headers_mut().insert(header::LOCATION, v);
                }
                cors(res.headers_mut());
                return Err(res);
            }
            Err(e) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        }
    }
    Ok(Admitted { room, offer: offer.to_owned(), grant, name })
}

/// What makes a session's participant: the room commands for its id, display name, offer and
/// event queue.
pub(crate) type JoinCommands =
    Box<dyn FnOnce(ParticipantId, String, String, mpsc::Sender<ServerMessage>) -> Vec<RoomCommand> + Send>;

/// A `POST` of `kind`: checked ([`admit`]), then opened ([`open`]).
pub(crate) async fn post(
    state: &AppState,
    kind: Kind,
    room: String,
    name: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
    join: JoinCommands,
) -> Response {
    match admit(state, kind, room, name, headers, body).await {
        Ok(a) => open(state, kind, a, join).await,
        Err(res) => res,
    }
}

/// Makes the session's participant and sends the room the commands `join` makes for it;
/// waits for the room's answer. On success the session is registered and followed, and the
/// response is `201 Created` with the answer.
pub(crate) async fn open(state: &AppState, kind: Kind, a: Admitted, join: JoinCommands) -> Response {
    let name = a.grant.name.clone().filter(|n| !n.trim().is_empty()).or(a.name).unwrap_or_else(|| kind.path().into());
    let participant = crate::session::new_participant_id();
    let member = Member { identity: a.grant.identity.clone(), name: name.clone() };
    let room = a.room;
    let sender = match state.rooms.join_as(&room, &participant, member) {
        Ok(s) => s,
        Err(e @ (JoinError::Draining | JoinError::RoomFull(_))) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    let (events_tx, mut events) = mpsc::channel(256);
    let commands = join(participant.clone(), name, a.offer.clone(), events_tx);
    let answer = async {
        for cmd in commands {
            sender.send(cmd).await.map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "the room stopped".to_owned()))?;
        }
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
            leave(state, &room, &sender, &participant).await;
            return error(status, why);
        }
        Err(_) => {
            leave(state, &room, &sender, &participant).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "the room did not answer in time");
        }
    };
    let prefix = match kind {
        Kind::Whip => "WH_",
        Kind::Whep => "WE_",
    };
    let id = crate::session::new_participant_id().replacen("PA_", prefix, 1);
    let (end_tx, end_rx) = oneshot::channel();
    let (answers_tx, answers) = mpsc::channel(4);
    let ufrag = ice_line(&a.offer, "ice-ufrag").unwrap_or_default().to_owned();
    let ice = Ice { offer: a.offer, ufrag, generation: 0, answers };
    let session = Session {
        kind,
        room: room.clone(),
        participant: participant.clone(),
        sender: sender.clone(),
        ice: tokio::sync::Mutex::new(ice),
        _end: end_tx,
    };
    state.wish.sessions.insert(id.clone(), Arc::new(session));
    let follow =
        Follow { state: state.clone(), id: id.clone(), room: room.clone(), participant: participant.clone(), sender };
    tokio::spawn(follow.run(events, answers_tx, end_rx));
    tracing::info!(%room, %participant, session = %id, identity = %a.grant.identity, kind = kind.path(), "session opened");

    let mut res = (StatusCode::CREATED, answer).into_response();
    let h = res.headers_mut();
    cors(h);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&format!("/{}/{room}/{id}", kind.path())) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::ETAG, etag(&id, 0));
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    for link in ice_server_links(state, &a.grant.identity) {
        h.append(header::LINK, link);
    }
    res
}

/// A session's task: passes the room's answers to restarts on, drops the other messages,
/// and ends the session when the room drops it or `DELETE` ends it.
struct Follow {
    state: AppState,
    id: String,
    room: String,
    participant: ParticipantId,
    sender: RoomSender,
}

impl Follow {
    async fn run(
        self,
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
        self.state.wish.sessions.remove(&self.id);
        leave(&self.state, &self.room, &self.sender, &self.participant).await;
        tracing::info!(room = %self.room, participant = %self.participant, session = %self.id, "session ended");
    }
}

async fn leave(state: &AppState, room: &str, sender: &RoomSender, participant: &str) {
    let _ = sender.send(RoomCommand::Leave { participant: participant.to_owned() }).await;
    state.rooms.leave_as(room, sender, participant);
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadSdp | ErrorCode::BadMessage | ErrorCode::LimitExceeded | ErrorCode::NoCodec => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::UnknownTrack => StatusCode::NOT_FOUND,
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

/// `PATCH` on a session: trickled candidates (`204`), or for WHIP an ICE restart (new
/// `ice-ufrag`/`ice-pwd`: the offer again with them, `200` with the answer's).
pub(crate) async fn update(
    state: AppState,
    kind: Kind,
    room: String,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if content_type(&headers) != SDPFRAG {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("a PATCH carries {SDPFRAG}"));
    }
    let Some(frag) = std::str::from_utf8(&body).ok().filter(|s| s.len() <= MAX_SDP) else {
        return error(StatusCode::BAD_REQUEST, "the body must be an SDP fragment (UTF-8, at most 64 KiB)");
    };
    let found = state.wish.sessions.get(&id).filter(|s| s.room == room && s.kind == kind).map(|s| s.clone());
    let Some(s) = found else {
        return error(StatusCode::NOT_FOUND, format!("no such {} session", kind.path().to_uppercase()));
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
        if kind == Kind::Whep {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ICE restarts of WHEP sessions are not supported: start a new one",
            );
        }
        // an ICE restart: the same offer with the new credentials
        let offer = replace_ice(&ice.offer, ufrag, pwd);
        let cmd =
            RoomCommand::Offer { participant: s.participant.clone(), sdp: offer.clone(), sources: Default::default() };
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
        let cmd = RoomCommand::Candidate { participant: s.participant.clone(), target: kind.target(), candidate: c };
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

/// `DELETE` on a session: its participant leaves.
pub(crate) async fn end(state: AppState, kind: Kind, room: String, id: String) -> Response {
    match state.wish.sessions.remove_if(&id, |_, s| s.room == room && s.kind == kind) {
        // dropping the session ends its task, which leaves the room
        Some(_) => {
            let mut res = StatusCode::OK.into_response();
            cors(res.headers_mut());
            res
        }
        None => error(StatusCode::NOT_FOUND, format!("no such {} session", kind.path().to_uppercase())),
    }
}

/// Axum extractors of a session's path.
pub(crate) type SessionPath = Path<(String, String)>;
/// The shared state.
pub(crate) type St = State<AppState>;

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
