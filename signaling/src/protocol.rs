//! WebSocket protocol messages (docs/protocol.md), one JSON object per text frame.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Largest accepted text frame, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The version of this protocol, sent in `joined` (docs/protocol.md).
pub const PROTOCOL_VERSION: u32 = 1;

fn version_1() -> u32 {
    1
}

/// Which of the client's two peer connections a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcTarget {
    /// Client -> server media; the client offers.
    Publisher,
    /// Server -> client media; the server offers.
    Subscriber,
}

/// An ICE candidate as the browser's `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// The `candidate:` line; empty means end of candidates.
    pub candidate: String,
    /// Media id the candidate belongs to.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// Media line index the candidate belongs to.
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    /// ICE username fragment.
    #[serde(default)]
    pub username_fragment: Option<String>,
}

/// A subscriber's wish for one remote video track.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionRequest {
    /// Pause or resume the track; `None` leaves it as it is.
    pub paused: Option<bool>,
    /// `Some(Some(rid))` caps the layer, `Some(None)` clears the cap, `None` leaves it.
    pub layer: Option<Option<String>>,
    /// Rendered size in pixels, if reported.
    pub size: Option<(u32, u32)>,
}

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Join a room; must come first.
    Join {
        /// Room name.
        room: String,
        /// Display name.
        name: String,
        /// Access token (required outside dev mode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Offer for the publisher connection.
    Offer {
        /// SDP text.
        sdp: String,
        /// What each media section sends, by mid (`screen` for a screen share); a section
        /// not named is a camera or a microphone.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        sources: BTreeMap<String, TrackSource>,
    },
    /// Answer to the server's subscriber offer.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// Which connection.
        target: PcTarget,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Layer / pause wish for a remote video track.
    Subscription {
        /// Track id.
        track: String,
        /// Pause or resume.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paused: Option<bool>,
        /// Highest layer wanted (`null` clears).
        #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
        layer: Option<Option<String>>,
        /// Rendered width.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        width: Option<u32>,
        /// Rendered height.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        height: Option<u32>,
    },
    /// Restart ICE on the subscriber connection (the client's network changed): the server
    /// answers with an `offer` carrying new ICE credentials. The publisher connection restarts
    /// as the client offers (`RTCPeerConnection.restartIce()`, then a new `offer`).
    IceRestart {},
    /// Leave the room.
    Leave {},
    /// Take back a session whose socket dropped, within its grace period (instead of `join`,
    /// as the first message on a new socket).
    Resume {
        /// The session's room.
        room: String,
        /// The `resume_token` of its `session` message.
        token: String,
    },
}

fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The message types a client may send, for telling `unknown_type` from `bad_message`.
pub const CLIENT_TYPES: &[&str] =
    &["join", "offer", "answer", "candidate", "subscription", "ice_restart", "leave", "resume"];

/// Why a frame could not be turned into a [`ClientMessage`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON, or no string `type`.
    #[error("bad_json: {0}")]
    BadJson(String),
    /// `type` is not a client message.
    #[error("unknown_type: {0}")]
    UnknownType(String),
    /// Known type, bad fields.
    #[error("bad_message: {0}")]
    BadMessage(String),
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("too_large: {0} bytes")]
    TooLarge(usize),
}

impl ParseError {
    /// The protocol error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::BadJson(_) => ErrorCode::BadJson,
            ParseError::UnknownType(_) => ErrorCode::UnknownType,
            ParseError::BadMessage(_) => ErrorCode::BadMessage,
            ParseError::TooLarge(_) => ErrorCode::TooLarge,
        }
    }
}

impl ClientMessage {
    /// Parses one text frame, classifying failures as the protocol's error codes.
    pub fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge(text.len()));
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ParseError::BadJson(e.to_string()))?;
        let ty = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| ParseError::BadJson("message needs a string field \"type\"".into()))?;
        if !CLIENT_TYPES.contains(&ty) {
            return Err(ParseError::UnknownType(format!("unknown message type {ty:?}")));
        }
        serde_json::from_value(value).map_err(|e| ParseError::BadMessage(e.to_string()))
    }

    /// The subscription fields as a request, if this is a `subscription`.
    pub fn subscription_request(&self) -> Option<(String, SubscriptionRequest)> {
        match self {
            ClientMessage::Subscription { track, paused, layer, width, height } => Some((
                track.clone(),
                SubscriptionRequest {
                    paused: *paused,
                    layer: layer.clone(),
                    size: match (width, height) {
                        (Some(w), Some(h)) => Some((*w, *h)),
                        (Some(w), None) => Some((*w, 0)),
                        (None, Some(h)) => Some((0, *h)),
                        _ => None,
                    },
                },
            )),
            _ => None,
        }
    }
}

/// Media kind of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// What a track carries, as its publisher says (`offer`'s `sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// A camera (video that is not a screen share).
    Camera,
    /// A microphone (audio that is not a screen share's).
    Microphone,
    /// A screen share: ranked above cameras when bandwidth is short.
    Screen,
    /// A screen share's audio.
    ScreenAudio,
}

impl TrackSource {
    /// What a track of `kind` carries when its publisher said nothing, or said something
    /// that does not fit the kind.
    pub fn for_kind(kind: TrackKind, said: Option<TrackSource>) -> TrackSource {
        match (kind, said) {
            (TrackKind::Video, Some(s @ (TrackSource::Camera | TrackSource::Screen))) => s,
            (TrackKind::Audio, Some(s @ (TrackSource::Microphone | TrackSource::ScreenAudio))) => s,
            (TrackKind::Video, _) => TrackSource::Camera,
            (TrackKind::Audio, _) => TrackSource::Microphone,
        }
    }
}

/// A published track as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Track id (`TR_...`).
    pub id: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Simulcast rids, lowest first; empty when not simulcast.
    pub layers: Vec<String>,
    /// What it carries (older servers sent none: a camera or microphone).
    #[serde(default = "unnamed_source")]
    pub source: TrackSource,
}

fn unnamed_source() -> TrackSource {
    TrackSource::Camera
}

/// A participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Participant id (`PA_...`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Published tracks.
    pub tracks: Vec<TrackInfo>,
}

/// Which remote track a subscriber transceiver carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRef {
    /// Publishing participant.
    pub participant: String,
    /// Track id.
    pub track: String,
    /// Audio or video.
    pub kind: TrackKind,
}

/// Error codes sent in `error` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON or no `type`.
    BadJson,
    /// Unknown `type`.
    UnknownType,
    /// Bad fields.
    BadMessage,
    /// Frame too large.
    TooLarge,
    /// Binary frame.
    BinaryUnsupported,
    /// Message before join.
    NotJoined,
    /// Second join.
    AlreadyJoined,
    /// Invalid room name.
    BadRoom,
    /// Unusable SDP.
    BadSdp,
    /// No usable codec in the offer.
    NoCodec,
    /// Unknown track id.
    UnknownTrack,
    /// Room at its participant limit.
    RoomFull,
    /// Token problem.
    Unauthorized,
    /// Node takes no new rooms (with a fleet: no node does).
    Draining,
    /// A service the join needs is unreachable for now (the fleet directory, or the node
    /// hosting the room): retry shortly.
    Unavailable,
    /// Server-side failure.
    Internal,
    /// A media connection did not connect in time or failed: the participant was removed.
    ConnectionFailed,
    /// A per-participant limit (media sections, tracks, candidates, messages per second): what
    /// went over it was refused; the message names the limit.
    LimitExceeded,
    /// A `resume` named no waiting session (wrong token, or its grace ran out): join anew.
    ResumeFailed,
}

/// Why the server stopped forwarding a track to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerReason {
    /// The subscriber's downlink does not carry even the track's lowest layer now; it resumes
    /// when bandwidth returns.
    Bandwidth,
}

/// A TURN server a client may relay through, as `RTCIceServer` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// `expiry:identity` (coturn REST convention).
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub credential: String,
}

/// One participant speaking, in `active_speakers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerLevel {
    /// Participant id.
    pub participant: String,
    /// Smoothed loudness, 0.0 (silence) to 1.0.
    pub level: f32,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Join accepted.
    Joined {
        /// The protocol version the server speaks ([`PROTOCOL_VERSION`]).
        #[serde(default = "version_1")]
        protocol: u32,
        /// Room name.
        room: String,
        /// The client itself.
        participant: ParticipantInfo,
        /// Everyone else.
        participants: Vec<ParticipantInfo>,
        /// TURN servers with credentials for this participant (with `--turn-secret`); the
        /// session fills them in.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
    /// Answer for the publisher connection.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// Offer for the subscriber connection.
    Offer {
        /// SDP text.
        sdp: String,
        /// mid -> remote track.
        tracks: BTreeMap<String, TrackRef>,
    },
    /// Who speaks now (from the audio levels publishers send, RFC 6464), loudest first, and
    /// the dominant speaker (who keeps the floor until someone else has been louder for a
    /// second); sent to everyone when it changes, at most every 400 ms.
    ActiveSpeakers {
        /// The participants speaking, loudest first (empty: silence).
        speakers: Vec<SpeakerLevel>,
        /// The dominant speaker, if anyone has spoken.
        dominant: Option<String>,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left.
    ParticipantLeft {
        /// Participant id.
        participant: String,
    },
    /// One of this client's own published tracks went live (its first packet arrived): its
    /// id, which `track_muted` and the admin API name it by.
    TrackOpened {
        /// The publisher connection's section that carries it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mid: Option<String>,
        /// The track.
        track: TrackInfo,
    },
    /// A remote track appeared.
    TrackPublished {
        /// Participant id.
        participant: String,
        /// The track.
        track: TrackInfo,
    },
    /// A remote track is gone.
    TrackUnpublished {
        /// Participant id.
        participant: String,
        /// Track id.
        track: String,
    },
    /// The server's estimate of this client's downlink (what its receiving connection
    /// carries), sent when it changes by a tenth or more, at most once a second.
    Bandwidth {
        /// Bits per second.
        estimate_bps: u64,
    },
    /// Dynacast: the layers of one of this client's published video tracks that some
    /// subscriber receives; the client stops encoding the others (`encodings[i].active =
    /// false`) and resumes them when a later message lists them again.
    PublishLayers {
        /// The published track.
        track: String,
        /// Rids to keep encoding, lowest first.
        active: Vec<String>,
    },
    /// The forwarded layer of a remote video track changed.
    LayerChanged {
        /// Track id.
        track: String,
        /// Layer rid, or `None` when nothing is forwarded.
        layer: Option<String>,
        /// Why nothing is forwarded, when the server paused the track.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<LayerReason>,
    },
    /// Sent after `joined`: how to take the session back if the socket drops (`resume` with
    /// this token on a new socket within `grace_ms`; the participant stays in the room and its
    /// messages wait meanwhile).
    Session {
        /// Secret that names this session.
        resume_token: String,
        /// How long the session waits for a `resume` after its socket dropped.
        grace_ms: u64,
    },
    /// A `resume` succeeded: the session goes on (messages that waited follow).
    Resumed {
        /// The participant id, as in `joined`.
        participant: String,
    },
    /// Reconnect elsewhere (node draining past its deadline); the server closes the socket.
    Reconnect {
        /// Why.
        reason: String,
        /// Suggested delay before reconnecting.
        delay_ms: u64,
    },
    /// An operator removed this participant (or deleted the room); the server closes the
    /// socket. Do not rejoin automatically.
    Removed {
        /// Why.
        reason: String,
    },
    /// An operator muted (or unmuted) a published track: while muted it is not forwarded.
    TrackMuted {
        /// Publishing participant id.
        participant: String,
        /// Track id.
        track: String,
        /// Muted now.
        muted: bool,
    },
    /// A request was rejected.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable text.
        message: String,
    },
}

impl ServerMessage {
    /// Builds an `error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error { code, message: message.into() }
    }
}

/// Checks a room name: 1-128 chars of `[A-Za-z0-9_.-]`.
pub fn valid_room_name(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= 128
        && room.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_classifies_errors() {
        let big = format!("{{\"type\":\"leave\",\"x\":\"{}\"}}", "a".repeat(MAX_MESSAGE_BYTES));
        let rows: &[(&str, Option<ErrorCode>)] = &[
            ("{\"type\":\"leave\"}", None),
            ("{not json", Some(ErrorCode::BadJson)),
            ("[1,2]", Some(ErrorCode::BadJson)),
            ("{\"type\":3}", Some(ErrorCode::BadJson)),
            ("{\"type\":\"dance\"}", Some(ErrorCode::UnknownType)),
            ("{\"type\":\"offer\"}", Some(ErrorCode::BadMessage)),
            ("{\"type\":\"offer\",\"sdp\":5}", Some(ErrorCode::BadMessage)),
            ("{\"type\":\"join\",\"room\":\"r\",\"name\":\"n\"}", None),
            (&big, Some(ErrorCode::TooLarge)),
        ];
        for (text, want) in rows {
            let got = ClientMessage::parse(text).err().map(|e| e.code());
            assert_eq!(got, *want, "input {:.60}", text);
        }
    }

    #[test]
    fn subscription_layer_null_clears() {
        let m = ClientMessage::parse(r#"{"type":"subscription","track":"T","layer":null}"#).unwrap();
        assert_eq!(m.subscription_request().unwrap().1.layer, Some(None));
        let m = ClientMessage::parse(r#"{"type":"subscription","track":"T","width":640}"#).unwrap();
        let (_, req) = m.subscription_request().unwrap();
        assert_eq!(req.layer, None);
        assert_eq!(req.size, Some((640, 0)));
    }

    #[test]
    fn server_messages_are_tagged() {
        let m = ServerMessage::error(ErrorCode::BadSdp, "nope");
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"type":"error","code":"bad_sdp","message":"nope"}"#);
        let m = ServerMessage::PublishLayers { track: "T".into(), active: vec!["q".into(), "h".into()] };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"type":"publish_layers","track":"T","active":["q","h"]}"#);
        let m = ServerMessage::LayerChanged { track: "T".into(), layer: None, reason: None };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"type":"layer_changed","track":"T","layer":null}"#);
        let m = ServerMessage::LayerChanged { track: "T".into(), layer: None, reason: Some(LayerReason::Bandwidth) };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"layer_changed","track":"T","layer":null,"reason":"bandwidth"}"#
        );
    }

    #[test]
    fn client_messages_round_trip() {
        let rows: &[(ClientMessage, &str)] = &[
            (
                ClientMessage::Join { room: "r".into(), name: "n".into(), token: None },
                r#"{"type":"join","room":"r","name":"n"}"#,
            ),
            (
                ClientMessage::Subscription {
                    track: "T".into(),
                    paused: None,
                    layer: Some(None),
                    width: None,
                    height: None,
                },
                r#"{"type":"subscription","track":"T","layer":null}"#,
            ),
            (
                ClientMessage::Subscription {
                    track: "T".into(),
                    paused: Some(false),
                    layer: Some(Some("h".into())),
                    width: Some(640),
                    height: None,
                },
                r#"{"type":"subscription","track":"T","paused":false,"layer":"h","width":640}"#,
            ),
            (
                ClientMessage::Subscription { track: "T".into(), paused: None, layer: None, width: None, height: None },
                r#"{"type":"subscription","track":"T"}"#,
            ),
            (ClientMessage::Leave {}, r#"{"type":"leave"}"#),
            (ClientMessage::IceRestart {}, r#"{"type":"ice_restart"}"#),
        ];
        for (msg, text) in rows {
            assert_eq!(serde_json::to_string(msg).unwrap(), *text);
            assert_eq!(&ClientMessage::parse(text).unwrap(), msg, "{text}");
        }
    }

    #[test]
    fn room_names() {
        for (name, ok) in [("demo", true), ("a.b-c_1", true), ("", false), ("a b", false), ("é", false)] {
            assert_eq!(valid_room_name(name), ok, "{name}");
        }
        assert!(!valid_room_name(&"a".repeat(129)));
    }
}
