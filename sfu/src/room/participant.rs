//! A participant as the room worker sees it.

use super::track::DownTrack;
use crate::udp::PeerKey;
use signaling::protocol::{ParticipantInfo, ServerMessage};
use signaling::room::EventSender;

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
}

impl Participant {
    /// Queues a message to its session; a session that is this far behind is dropped by the
    /// session itself when the channel closes.
    pub fn send(&self, msg: ServerMessage) {
        if let Err(e) = self.events.try_send(msg) {
            tracing::warn!(participant = %self.id, error = %e, "signaling queue full or closed");
        }
    }

    /// Public description, with the tracks it publishes.
    pub fn info(&self, tracks: Vec<signaling::protocol::TrackInfo>) -> ParticipantInfo {
        ParticipantInfo { id: self.id.clone(), name: self.name.clone(), tracks }
    }
}
