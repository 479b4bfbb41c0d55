//! Node state: serving -> draining, shared by signaling and the binary.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use tokio::sync::watch;

/// Lifecycle state of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Takes new rooms.
    Serving,
    /// Takes no new rooms; exits when the last room is empty.
    Draining,
}

/// This node's state and occupancy.
pub struct Node {
    state: AtomicU8,
    rooms: AtomicUsize,
    participants: AtomicUsize,
    version: String,
    changed: watch::Sender<()>,
}

impl Node {
    /// A serving node.
    pub fn new(version: impl Into<String>) -> Self {
        Node {
            state: AtomicU8::new(0),
            rooms: AtomicUsize::new(0),
            participants: AtomicUsize::new(0),
            version: version.into(),
            changed: watch::channel(()).0,
        }
    }

    /// Current state.
    pub fn state(&self) -> NodeState {
        match self.state.load(Ordering::Acquire) {
            0 => NodeState::Serving,
            _ => NodeState::Draining,
        }
    }

    /// Starts draining; returns false if it already was.
    pub fn start_drain(&self) -> bool {
        let first = self.state.swap(1, Ordering::AcqRel) == 0;
        if first {
            tracing::warn!("node draining: no new rooms accepted");
        }
        self.changed.send_replace(());
        first
    }

    /// Software version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Rooms on this node.
    pub fn rooms(&self) -> usize {
        self.rooms.load(Ordering::Acquire)
    }

    /// Participants on this node.
    pub fn participants(&self) -> usize {
        self.participants.load(Ordering::Acquire)
    }

    pub(crate) fn rooms_changed(&self, rooms: usize, participants: usize) {
        self.rooms.store(rooms, Ordering::Release);
        self.participants.store(participants, Ordering::Release);
        self.changed.send_replace(());
    }

    /// Notified on every state or occupancy change.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}
