//! The room registry: which rooms exist on this node and how many participants each has.
//!
//! Signaling owns the registry; the media plane owns each room's worker. Joining and leaving
//! go through one map entry so a room is never closed while someone is joining it.

use crate::node::{Node, NodeState};
use crate::protocol::{IceCandidate, PcTarget, ServerMessage, SubscriptionRequest};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Unique participant id (`PA_...`).
pub type ParticipantId = String;

/// Channel on which a room worker talks to one participant's signaling session.
pub type EventSender = mpsc::Sender<ServerMessage>;

/// Commands signaling sends to a room worker.
#[derive(Debug)]
pub enum RoomCommand {
    /// A participant joins; the worker answers with `joined` on `events`.
    Join {
        /// Its id.
        participant: ParticipantId,
        /// Display name.
        name: String,
        /// Where to send its server messages.
        events: EventSender,
    },
    /// A participant left (socket closed or `leave`).
    Leave {
        /// Who.
        participant: ParticipantId,
    },
    /// Publisher-connection offer.
    Offer {
        /// From whom.
        participant: ParticipantId,
        /// SDP.
        sdp: String,
    },
    /// Subscriber-connection answer.
    Answer {
        /// From whom.
        participant: ParticipantId,
        /// SDP.
        sdp: String,
    },
    /// Trickled ICE candidate.
    Candidate {
        /// From whom.
        participant: ParticipantId,
        /// Which connection.
        target: PcTarget,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Layer / pause wish for one remote track.
    Subscription {
        /// From whom.
        participant: ParticipantId,
        /// Remote track id.
        track: String,
        /// The wish.
        request: SubscriptionRequest,
    },
    /// Tell every participant to reconnect elsewhere, then close them.
    Evacuate {
        /// Why.
        reason: String,
    },
}

/// Handle to a running room worker.
pub type RoomSender = mpsc::Sender<RoomCommand>;

/// Starts room workers; implemented by the media plane.
pub trait RoomFactory: Send + Sync + 'static {
    /// Spawns the worker of a new room and returns its command channel. The worker stops when
    /// every sender is dropped.
    fn spawn_room(&self, room: &str) -> RoomSender;
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The node is draining and the room does not exist here.
    #[error("node is draining and accepts no new rooms; connect to another node")]
    Draining,
    /// The room is at its participant limit.
    #[error("room is full ({0} participants)")]
    RoomFull(usize),
}

/// Summary of one room for APIs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomSummary {
    /// Room name.
    pub name: String,
    /// Participants currently joined.
    pub participants: usize,
    /// Participant limit.
    pub max_participants: usize,
}

struct RoomEntry {
    sender: RoomSender,
    participants: usize,
    max_participants: usize,
}

/// All rooms on this node.
pub struct Rooms {
    rooms: DashMap<String, RoomEntry>,
    factory: Arc<dyn RoomFactory>,
    node: Arc<Node>,
    default_max_participants: usize,
}

impl Rooms {
    /// A registry that starts rooms through `factory`.
    pub fn new(factory: Arc<dyn RoomFactory>, node: Arc<Node>, default_max_participants: usize) -> Self {
        Rooms { rooms: DashMap::new(), factory, node, default_max_participants }
    }

    /// Reserves a place in `room`, starting the room if needed.
    pub fn join(&self, room: &str) -> Result<RoomSender, JoinError> {
        let draining = self.node.state() != NodeState::Serving;
        let mut entry = match self.rooms.entry(room.to_string()) {
            Entry::Occupied(e) => e.into_ref(),
            Entry::Vacant(v) => {
                if draining {
                    return Err(JoinError::Draining);
                }
                tracing::info!(room, "room created");
                v.insert(RoomEntry {
                    sender: self.factory.spawn_room(room),
                    participants: 0,
                    max_participants: self.default_max_participants,
                })
            }
        };
        if entry.participants >= entry.max_participants {
            return Err(JoinError::RoomFull(entry.max_participants));
        }
        entry.participants += 1;
        let sender = entry.sender.clone();
        drop(entry);
        self.node.rooms_changed(self.rooms.len(), self.participants());
        Ok(sender)
    }

    /// Gives back a place reserved by [`Rooms::join`]; the last one closes the room.
    pub fn leave(&self, room: &str) {
        if let Entry::Occupied(mut e) = self.rooms.entry(room.to_string()) {
            let entry = e.get_mut();
            entry.participants = entry.participants.saturating_sub(1);
            if entry.participants == 0 {
                e.remove();
                tracing::info!(room, "room closed: last participant left");
            }
        }
        self.node.rooms_changed(self.rooms.len(), self.participants());
    }

    /// The rooms on this node, sorted by name.
    pub fn list(&self) -> Vec<RoomSummary> {
        let mut v: Vec<RoomSummary> = self
            .rooms
            .iter()
            .map(|e| RoomSummary {
                name: e.key().clone(),
                participants: e.participants,
                max_participants: e.max_participants,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Number of rooms.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// True when no room exists.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Participants over all rooms.
    pub fn participants(&self) -> usize {
        self.rooms.iter().map(|e| e.participants).sum()
    }

    /// Sends a command to every room (best effort).
    pub fn broadcast(&self, make: impl Fn() -> RoomCommand) {
        for e in self.rooms.iter() {
            let _ = e.sender.try_send(make());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountingFactory(AtomicUsize, std::sync::Mutex<Vec<mpsc::Receiver<RoomCommand>>>);
    impl RoomFactory for CountingFactory {
        fn spawn_room(&self, _room: &str) -> RoomSender {
            self.0.fetch_add(1, Ordering::SeqCst);
            let (tx, rx) = mpsc::channel(8);
            self.1.lock().unwrap().push(rx);
            tx
        }
    }

    #[test]
    fn join_leave_lifecycle_and_limits() {
        let factory = Arc::new(CountingFactory(AtomicUsize::new(0), Default::default()));
        let node = Arc::new(Node::new("test"));
        let rooms = Rooms::new(factory.clone(), node.clone(), 2);
        rooms.join("a").unwrap();
        rooms.join("a").unwrap();
        assert_eq!(rooms.join("a").err(), Some(JoinError::RoomFull(2)));
        assert_eq!(factory.0.load(Ordering::SeqCst), 1);
        assert_eq!(rooms.participants(), 2);
        rooms.leave("a");
        rooms.leave("a");
        assert!(rooms.is_empty());
        rooms.join("a").unwrap();
        assert_eq!(factory.0.load(Ordering::SeqCst), 2, "a closed room starts afresh");
        node.start_drain();
        rooms.join("a").expect("existing room still admits participants while draining");
        assert_eq!(rooms.join("b").err(), Some(JoinError::Draining));
    }
}
