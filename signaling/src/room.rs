//! The room registry: which rooms exist on this node and how many participants each has.
//!
//! Signaling owns the registry; the media plane owns each room's worker. Joining and leaving
//! go through one map entry so a room is never closed while someone is joining it.

use crate::node::{Node, NodeState};
use crate::protocol::{IceCandidate, PcTarget, ServerMessage, SubscriptionRequest, TrackKind};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

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
        /// May receive the room's media (the token's subscribe grant).
        subscribe: bool,
    },
    /// A receive-only viewer (WHEP) joins with its offer; the worker answers with `answer` on
    /// `events` (or `error`). It receives one participant's audio and video in the sections
    /// it offered, with no renegotiation, and is not announced to the others.
    JoinViewer {
        /// Its id.
        participant: ParticipantId,
        /// Display name.
        name: String,
        /// Where to send its server messages.
        events: EventSender,
        /// Its SDP offer (receive-only sections).
        offer: String,
        /// Whom to watch, by participant id or name; `None`: the first one that publishes.
        source: Option<String>,
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
        /// What each section sends, by mid (unnamed: camera or microphone).
        sources: std::collections::BTreeMap<String, crate::protocol::TrackSource>,
    },
    /// Subscriber-connection answer.
    Answer {
        /// From whom.
        participant: ParticipantId,
        /// SDP.
        sdp: String,
    },
    /// Restart ICE on the subscriber connection: a new offer with new credentials.
    IceRestart {
        /// From whom.
        participant: ParticipantId,
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
    /// Admin: describe every participant and its tracks.
    Participants {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<ParticipantDetail>>,
    },
    /// Admin: tell one participant it was removed (`removed`) and drop it from the room.
    Remove {
        /// Who.
        participant: ParticipantId,
        /// Shown to the participant.
        reason: String,
        /// True if the participant was in the room.
        reply: oneshot::Sender<bool>,
    },
    /// Admin: stop (or resume) forwarding a published track and tell the room (`track_muted`).
    MuteTrack {
        /// Publisher.
        participant: ParticipantId,
        /// Track id.
        track: String,
        /// Mute or unmute.
        muted: bool,
        /// The track as it is now, or `None` if the participant has no such track.
        reply: oneshot::Sender<Option<TrackDetail>>,
    },
    /// Admin: the room is deleted; tell everyone `removed`, drop them and admit nobody more.
    Close {
        /// Shown to the participants.
        reason: String,
    },
}

/// A published track as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrackDetail {
    /// Track id (`TR_...`).
    pub id: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Simulcast rids, lowest first.
    pub layers: Vec<String>,
    /// Muted by an operator: not forwarded.
    pub muted: bool,
}

/// A participant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParticipantDetail {
    /// Participant id (`PA_...`).
    pub id: String,
    /// Identity from its token (`sub`); filled in by signaling.
    #[serde(default)]
    pub identity: Option<String>,
    /// Display name.
    pub name: String,
    /// Tracks it publishes.
    pub tracks: Vec<TrackDetail>,
    /// Its receiving connection's bandwidth estimate, once its feedback arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downlink: Option<DownlinkDetail>,
    /// What it receives of each remote track.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionDetail>,
}

/// A receiving connection's congestion control state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DownlinkDetail {
    /// Bandwidth estimate, bits per second.
    pub estimate_bps: u64,
    /// Throughput the receiver acknowledged lately, bits per second.
    pub acked_bps: Option<u64>,
    /// Round trip seen through its feedback, milliseconds.
    pub rtt_ms: Option<u64>,
    /// Share of packets reported lost lately, per mille.
    pub loss_permille: u32,
    /// A probe for more bandwidth is running.
    pub probing: bool,
    /// Bytes waiting in its pacer.
    pub pacer_queue_bytes: u64,
}

/// One remote track as a participant receives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscriptionDetail {
    /// Track id.
    pub track: String,
    /// The layer forwarded now (rid), if any.
    pub layer: Option<String>,
    /// The highest layer its bandwidth allows (rid); `None`: no cap.
    pub bandwidth_cap: Option<String>,
    /// Paused because not even the lowest layer fits its bandwidth.
    pub paused_for_bandwidth: bool,
    /// The highest VP8 temporal layer (TID) forwarded when its bandwidth keeps the upper ones
    /// off; `None`: every temporal layer.
    #[serde(default)]
    pub temporal_layer: Option<u8>,
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
    /// The node is draining and the room does not exist here (or drain admission is off).
    #[error("node is draining and accepts no new rooms; connect to another node")]
    Draining,
    /// The room is at its participant limit.
    #[error("room is full ({0} participants)")]
    RoomFull(usize),
}

/// Why a room could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The node is draining.
    #[error("node is draining and accepts no new rooms; create the room on another node")]
    Draining,
    /// A room of that name exists.
    #[error("room {0:?} already exists")]
    Exists(String),
}

/// Summary of one room for APIs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoomSummary {
    /// Room name.
    pub name: String,
    /// Participants currently joined.
    pub participants: usize,
    /// Participant limit.
    pub max_participants: usize,
}

/// Who a joined participant is, as signaling knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Identity from its token.
    pub identity: String,
    /// Display name.
    pub name: String,
}

struct RoomEntry {
    sender: RoomSender,
    participants: usize,
    max_participants: usize,
    members: HashMap<ParticipantId, Member>,
}

/// All rooms on this node.
pub struct Rooms {
    rooms: DashMap<String, RoomEntry>,
    factory: Arc<dyn RoomFactory>,
    node: Arc<Node>,
    default_max_participants: usize,
    drain_admit: bool,
}

impl Rooms {
    /// A registry that starts rooms through `factory`; while draining, existing rooms still
    /// admit participants (see [`Rooms::with_drain_admit`]).
    pub fn new(factory: Arc<dyn RoomFactory>, node: Arc<Node>, default_max_participants: usize) -> Self {
        Rooms { rooms: DashMap::new(), factory, node, default_max_participants, drain_admit: true }
    }

    /// Whether existing rooms admit new participants (up to their limit) while draining.
    pub fn with_drain_admit(mut self, admit: bool) -> Self {
        self.drain_admit = admit;
        self
    }

    /// Participant limit of rooms created by a join.
    pub fn default_max_participants(&self) -> usize {
        self.default_max_participants
    }

    /// Reserves a place in `room`, starting the room if needed.
    pub fn join(&self, room: &str) -> Result<RoomSender, JoinError> {
        self.reserve(room, None)
    }

    /// Reserves a place in `room` for `participant`, remembered until [`Rooms::leave_as`].
    pub fn join_as(&self, room: &str, participant: &str, member: Member) -> Result<RoomSender, JoinError> {
        self.reserve(room, Some((participant.to_string(), member)))
    }

    fn reserve(&self, room: &str, member: Option<(ParticipantId, Member)>) -> Result<RoomSender, JoinError> {
        let draining = self.node.state() != NodeState::Serving;
        let mut entry = match self.rooms.entry(room.to_string()) {
            Entry::Occupied(mut e) if e.get().sender.is_closed() => {
                // its worker ended without closing the room (it failed): the room starts
                // anew; late leaves of the old one do not count (`leave_as`)
                if draining {
                    e.remove();
                    return Err(JoinError::Draining);
                }
                tracing::warn!(room, "room worker gone: the room starts anew");
                let max = e.get().max_participants;
                e.insert(self.new_entry(room, max));
                e.into_ref()
            }
            Entry::Occupied(e) => {
                if draining && !self.drain_admit {
                    return Err(JoinError::Draining);
                }
                e.into_ref()
            }
            Entry::Vacant(v) => {
                if draining {
                    return Err(JoinError::Draining);
                }
                tracing::info!(room, "room created");
                v.insert(self.new_entry(room, self.default_max_participants))
            }
        };
        if entry.participants >= entry.max_participants {
            return Err(JoinError::RoomFull(entry.max_participants));
        }
        entry.participants += 1;
        if let Some((id, m)) = member {
            entry.members.insert(id, m);
        }
        let sender = entry.sender.clone();
        drop(entry);
        self.changed();
        Ok(sender)
    }

    fn new_entry(&self, room: &str, max_participants: usize) -> RoomEntry {
        RoomEntry { sender: self.factory.spawn_room(room), participants: 0, max_participants, members: HashMap::new() }
    }

    /// Gives back a place reserved by [`Rooms::join`]; the last one closes the room.
    pub fn leave(&self, room: &str) {
        self.release(room, None, None);
    }

    /// Gives back `participant`'s place, if `room` is still the instance `sender` talks to (a
    /// deleted room's late leaves must not count against a new room of the same name).
    pub fn leave_as(&self, room: &str, sender: &RoomSender, participant: &str) {
        self.release(room, Some(sender), Some(participant));
    }

    fn release(&self, room: &str, sender: Option<&RoomSender>, participant: Option<&str>) {
        if let Entry::Occupied(mut e) = self.rooms.entry(room.to_string()) {
            let entry = e.get_mut();
            if sender.is_some_and(|s| !s.same_channel(&entry.sender)) {
                return;
            }
            if let Some(p) = participant
                && entry.members.remove(p).is_none()
            {
                return; // already removed (room deleted and recreated, or removed twice)
            }
            entry.participants = entry.participants.saturating_sub(1);
            if entry.participants == 0 {
                e.remove();
                tracing::info!(room, "room closed: last participant left");
            }
        }
        self.changed();
    }

    /// Creates an empty room with its own participant limit. It closes like any room once the
    /// last participant who joined it leaves, or when deleted.
    pub fn create(&self, room: &str, max_participants: Option<usize>) -> Result<RoomSummary, CreateError> {
        if self.node.state() != NodeState::Serving {
            return Err(CreateError::Draining);
        }
        let max_participants = max_participants.unwrap_or(self.default_max_participants);
        match self.rooms.entry(room.to_string()) {
            Entry::Occupied(_) => return Err(CreateError::Exists(room.to_string())),
            Entry::Vacant(v) => {
                v.insert(self.new_entry(room, max_participants));
            }
        }
        tracing::info!(room, max_participants, "room created by the API");
        self.changed();
        Ok(RoomSummary { name: room.to_string(), participants: 0, max_participants })
    }

    /// Removes a room from the registry at once and returns its worker's channel (to tell the
    /// worker to close); its sessions' later leaves are ignored.
    pub fn remove(&self, room: &str) -> Option<RoomSender> {
        let (_, entry) = self.rooms.remove(room)?;
        tracing::info!(room, participants = entry.participants, "room deleted");
        self.changed();
        Some(entry.sender)
    }

    /// One room's summary and worker channel.
    pub fn get(&self, room: &str) -> Option<(RoomSummary, RoomSender)> {
        self.rooms.get(room).map(|e| (summary(e.key(), &e), e.sender.clone()))
    }

    /// Identities of a room's participants, by participant id.
    pub fn members(&self, room: &str) -> HashMap<ParticipantId, Member> {
        self.rooms.get(room).map(|e| e.members.clone()).unwrap_or_default()
    }

    /// The rooms on this node, sorted by name.
    pub fn list(&self) -> Vec<RoomSummary> {
        let mut v: Vec<RoomSummary> = self.rooms.iter().map(|e| summary(e.key(), &e)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Number of rooms.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether `room` is on this node.
    pub fn contains(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// The names of the rooms on this node.
    pub fn names(&self) -> Vec<String> {
        self.rooms.iter().map(|e| e.key().clone()).collect()
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

    fn changed(&self) {
        self.node.rooms_changed(self.rooms.len(), self.participants());
    }
}

fn summary(name: &str, e: &RoomEntry) -> RoomSummary {
    RoomSummary { name: name.to_string(), participants: e.participants, max_participants: e.max_participants }
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
        assert_eq!(rooms.create("c", None).err(), Some(CreateError::Draining));
    }

    #[test]
    fn create_remove_and_stale_leaves() {
        let factory = Arc::new(CountingFactory(AtomicUsize::new(0), Default::default()));
        let node = Arc::new(Node::new("test"));
        let rooms = Rooms::new(factory.clone(), node.clone(), 5).with_drain_admit(false);
        assert_eq!(rooms.create("a", Some(1)).unwrap().max_participants, 1);
        assert_eq!(rooms.create("a", None).err(), Some(CreateError::Exists("a".into())));
        let member = Member { identity: "alice".into(), name: "Alice".into() };
        let old = rooms.join_as("a", "PA_1", member.clone()).unwrap();
        assert_eq!(rooms.join("a").err(), Some(JoinError::RoomFull(1)));
        assert_eq!(rooms.members("a").get("PA_1"), Some(&member));
        assert!(rooms.remove("a").is_some());
        rooms.create("a", None).unwrap();
        rooms.join_as("a", "PA_2", member.clone()).unwrap();
        rooms.leave_as("a", &old, "PA_1");
        assert_eq!(rooms.get("a").unwrap().0.participants, 1, "a late leave of the deleted room is ignored");
        node.start_drain();
        assert_eq!(rooms.join("a").err(), Some(JoinError::Draining), "drain admission off");
    }
}
