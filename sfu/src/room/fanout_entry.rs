//! The entries of a track's subscriber list (see `fanout.rs`): plain data, so the track that
//! holds the list needs nothing of the fan-out itself.

use crate::forward::selector::Layer;

/// One subscriber of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// Index into the room's participants.
    pub participant: u32,
    /// Index into that participant's downtracks.
    pub downtrack: u32,
    /// The layer its selector forwards and targets, when both are the same (see
    /// `fanout::settled_on`); `None` until it was visited since the last rebuild.
    pub settled: Option<Layer>,
}

/// Addresses of a subscriber's state as its last visit found them (kept beside the list, in
/// `PublishedTrack::hints`, so the list itself stays small for the packets that skip most of
/// it): its downtrack, its
/// connection's slot in the room's map, the connection's fields the visit reads, and its
/// output's AES-GCM key schedule. They are only ever prefetched, never read through: one that
/// went stale (the state moved or was freed) costs a useless prefetch and changes nothing.
/// Zero: not known yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hint {
    /// The downtrack.
    pub downtrack: usize,
    /// The connection's entry (its `Box`) in the room's map of connections.
    pub slot: usize,
    /// `Peer::connected` and the fields of its output `send_rtp` reads (one line each).
    pub fields: [usize; 4],
    /// The output's key schedule, and its size.
    pub cipher: (usize, usize),
}
