//! Routes datagrams of the one media port to room workers: by the STUN USERNAME's local ufrag
//! first, then by the remote address learned from it.

use super::stun;
use bytes::BytesMut;
use dashmap::DashMap;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::mpsc;

/// Identifies one peer connection inside a room worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

/// A datagram on its way to a room worker.
#[derive(Debug)]
pub struct Datagram {
    /// Which peer connection it belongs to.
    pub peer: PeerKey,
    /// Sender address.
    pub from: SocketAddr,
    /// When it arrived: the kernel's receive stamp (`SO_TIMESTAMPNS`), else when it was read.
    pub at: Instant,
    /// The bytes.
    pub data: BytesMut,
}

/// Where a peer connection's datagrams go.
#[derive(Debug, Clone)]
pub struct Route {
    /// The room worker's datagram queue.
    pub room: mpsc::Sender<Datagram>,
    /// The peer connection.
    pub peer: PeerKey,
    /// Its local ufrag.
    pub ufrag: String,
}

/// Why a datagram was not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrouted {
    /// STUN for a ufrag nobody registered.
    UnknownUfrag,
    /// Not STUN, from an address no STUN request came from.
    UnknownSource,
    /// Not a STUN request we can route (no USERNAME).
    BadStun,
}

impl Unrouted {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Unrouted::UnknownUfrag => "unknown_ufrag",
            Unrouted::UnknownSource => "unknown_source",
            Unrouted::BadStun => "bad_stun",
        }
    }
}

/// The routing tables of the media port.
#[derive(Default)]
pub struct Demux {
    by_ufrag: DashMap<String, Route>,
    by_addr: DashMap<SocketAddr, Route>,
}

impl Demux {
    /// Routes STUN requests carrying `route.ufrag` (and then their source address) to `route`.
    pub fn register(&self, route: Route) {
        self.by_ufrag.insert(route.ufrag.clone(), route);
    }

    /// Forgets a peer connection's ufrag and learned addresses.
    pub fn unregister(&self, ufrag: &str) {
        if self.by_ufrag.remove(ufrag).is_some() {
            self.by_addr.retain(|_, r| r.ufrag != ufrag);
        }
    }

    /// Finds the route of a datagram, learning the source address from STUN requests.
    pub fn route(&self, data: &[u8], from: SocketAddr) -> Result<Route, Unrouted> {
        if stun::is_stun(data) {
            let Some(ufrag) = stun::local_ufrag(data) else {
                // STUN responses/indications from a known peer still belong to it
                return self.by_addr.get(&from).map(|r| r.clone()).ok_or(Unrouted::BadStun);
            };
            let route = self.by_ufrag.get(ufrag).map(|r| r.clone()).ok_or(Unrouted::UnknownUfrag)?;
            let known = self.by_addr.get(&from).is_some_and(|r| r.peer == route.peer);
            if !known {
                self.by_addr.insert(from, route.clone());
            }
            return Ok(route);
        }
        self.by_addr.get(&from).map(|r| r.clone()).ok_or(Unrouted::UnknownSource)
    }

    /// Number of registered peer connections.
    pub fn len(&self) -> usize {
        self.by_ufrag.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.by_ufrag.is_empty()
    }
}
