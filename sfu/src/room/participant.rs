//! A participant as the room worker sees it.

use super::track::DownTrack;
use crate::udp::PeerKey;
use signaling::protocol::{ParticipantInfo, ServerMessage};
use signaling::room::EventSender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// What each section of its latest publisher offer sends, by mid, as it said.
    pub offered_sources: std::collections::BTreeMap<String, signaling::protocol::TrackSource>,
    /// The id of the audio level extension in its latest publisher offer.
    pub audio_level_ext: Option<u8>,
    /// The others were told it is here (`participant_joined`); a viewer that joined a large
    /// room is announced when it first publishes.
    pub announced: bool,
    /// Its signaling queue overflowed: the room removes it (see [`queue`]).
    pub overflowed: AtomicBool,
    /// The room's flag that some participant overflowed.
    pub room_overflow: Arc<AtomicBool>,
    /// The downlink estimate last told to the client (`bandwidth`), and when.
    pub reported_estimate: Option<(u64, std::time::Instant)>,
    /// A receive-only viewer (WHEP): the sections it offered, bound to what it watches.
    pub viewer: Option<super::viewer::Viewer>,
}

/// Queues `msg` to a participant's session. A full queue means the client stopped reading
/// (its WebSocket is hundreds of messages behind on top of the kernel's buffers): dropping the
/// message would leave it out of sync (a lost offer stalls its media), so the participant is
/// marked for removal instead; the room drops its sender, the session sees its queue close
/// and closes the socket, and the client can rejoin with a fresh state. A closed queue means
/// the session already ended (its leave is on the way).
pub fn queue(events: &EventSender, overflowed: &AtomicBool, room_overflow: &AtomicBool, id: &str, msg: ServerMessage) {
    match events.try_send(msg) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            if !overflowed.swap(true, Ordering::Relaxed) {
                room_overflow.store(true, Ordering::Relaxed);
                tracing::warn!(participant = %id, "signaling queue full: the participant is removed and its session closed");
            }
        }
        Err(TrySendError::Closed(_)) => tracing::debug!(participant = %id, "signaling session already closed"),
    }
}

impl Participant {
    /// A participant that receives media, is announced, and publishes nothing yet.
    pub fn new(
        id: String,
        name: String,
        events: EventSender,
        subscriber: PeerKey,
        room_overflow: Arc<AtomicBool>,
    ) -> Self {
        Participant {
            id,
            name,
            events,
            publisher: None,
            subscriber,
            downtracks: Vec::new(),
            offer_outstanding: false,
            offered_tracks: Vec::new(),
            renegotiate: false,
            offered_rids: Vec::new(),
            offered_sources: Default::default(),
            audio_level_ext: None,
            subscribe: true,
            announced: true,
            overflowed: Default::default(),
            room_overflow,
            reported_estimate: None,
            viewer: None,
        }
    }

    /// Queues a message to its session (see [`queue`]).
    pub fn send(&self, msg: ServerMessage) {
        queue(&self.events, &self.overflowed, &self.room_overflow, &self.id, msg);
    }

    /// Public description, with the tracks it publishes.
    pub fn info(&self, tracks: Vec<signaling::protocol::TrackInfo>) -> ParticipantInfo {
        ParticipantInfo { id: self.id.clone(), name: self.name.clone(), tracks }
    }
}
