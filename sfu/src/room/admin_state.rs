//! What operators changed in a room (through the REST API, see `admin.rs`).

use std::collections::HashSet;

/// What operators changed in a room.
#[derive(Debug, Default)]
pub struct AdminState {
    /// Published tracks an operator muted: not forwarded while here.
    pub muted: HashSet<String>,
    /// Set when the room was deleted: later joins are told `removed`.
    pub closed: Option<String>,
}

impl AdminState {
    /// True if an operator muted `track` (cheap when nothing is muted).
    pub fn is_muted(&self, track: &str) -> bool {
        !self.muted.is_empty() && self.muted.contains(track)
    }
}
