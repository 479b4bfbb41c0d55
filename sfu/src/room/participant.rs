//! A participant as the room worker sees it.

use super::track::DownTrack;
use crate::udp::PeerKey;
use signaling::protocol::{ParticipantInfo, ServerMessage};
use signaling::room::EventSender;
use tokio::sync::mpsc::error::TrySendError;

/// One joined participant.
pub struct Participant {
    /// Id (`PA_...`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its signaling session.
    pub events: EventSender,
    /// Publisher connection, once it offered.
    pub publisher: Option<PeerKey>,
    /// Subscriber connection.
    pub subscriber: PeerKey,
    /// What it receives.
    pub downtracks: Vec<DownTrack>,
    /// A subscriber offer awaits its answer.
    pub offer_outstanding: bool,
    /// Tracks named in the outstanding offer: negotiated once it is answered.
    pub offered_tracks: Vec<String>,
    /// Tracks changed while an offer was outstanding: offer again after the answer.
    pub renegotiate: bool,
    /// May receive media (token's subscribe grant); without it, it still sees who is here.
    pub subscribe: bool,
    /// Simulcast rids per mid from its latest publisher offer.
    pub offered_rids: Vec<(String, Vec<String>)>,
    /// The others were told it is here (`participant_joined`); a viewer that joined a large
    /// room is announced when it first publishes.
    pub announced: bool,
}

impl Participant {
    /// Queues a message to its session. A full queue drops the message (warned); a closed one
    /// means the session ended and its leave is on the way (a room emptying at once sends
    /// every remaining participant a `participant_left` for each one gone: debug level).
    pub fn send(&self, msg: ServerMessage) {
        match self.events.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::warn!(participant = %self.id, "signaling queue full: message dropped"),
            Err(TrySendError::Closed(_)) => tracing::debug!(participant = %self.id, "signaling session already closed"),
        }
    }

    /// Public description, with the tracks it publishes.
    pub fn info(&self, tracks: Vec<signaling::protocol::TrackInfo>) -> ParticipantInfo {
        ParticipantInfo { id: self.id.clone(), name: self.name.clone(), tracks }
    }
}
