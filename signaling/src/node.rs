//! Node state: serving -> draining, shared by signaling and the binary.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Default time a drain waits for rooms to end before telling participants to reconnect.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(2 * 3600);

/// Lifecycle state of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    started: Instant,
    drain_started: OnceLock<Instant>,
    drain_deadline: Duration,
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
            started: Instant::now(),
            drain_started: OnceLock::new(),
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
        }
    }

    /// Sets how long a drain waits for rooms to end before evacuating them.
    pub fn with_drain_deadline(mut self, deadline: Duration) -> Self {
        self.drain_deadline = deadline;
        self
    }

    /// How long a drain waits before evacuating.
    pub fn drain_deadline(&self) -> Duration {
        self.drain_deadline
    }

    /// When the drain started, if it did.
    pub fn drain_started(&self) -> Option<Instant> {
        self.drain_started.get().copied()
    }

    /// Time left until the drain deadline (`None` while serving; zero once passed).
    pub fn drain_remaining(&self) -> Option<Duration> {
        self.drain_started().map(|t| self.drain_deadline.saturating_sub(t.elapsed()))
    }

    /// Time since the node started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
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
            let _ = self.drain_started.set(Instant::now());
            tracing::warn!(
                rooms = self.rooms(),
                participants = self.participants(),
                deadline = %humantime::format_duration(self.drain_deadline),
                "node draining: no new rooms accepted"
            );
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
