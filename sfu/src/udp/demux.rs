//! Routes datagrams of a media port to room workers: by the STUN USERNAME's local ufrag
//! first, then by the remote address learned from it.

use super::stun;
use crate::drop_reason::DropReason;
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

impl From<Unrouted> for DropReason {
    fn from(why: Unrouted) -> DropReason {
        match why {
            Unrouted::UnknownUfrag => DropReason::UnknownUfrag,
            Unrouted::UnknownSource => DropReason::UnknownSource,
            Unrouted::BadStun => DropReason::BadStun,
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
        self.dispatch(data, from, Route::clone)
    }

    /// Hands a datagram's route to `f` without copying it (no ufrag `String`, no queue sender
    /// cloned per datagram: the reader's path), learning the source address from STUN
    /// requests. `f` runs under the routing table's read lock: it must not register or
    /// unregister routes.
    pub fn dispatch<R>(&self, data: &[u8], from: SocketAddr, f: impl FnOnce(&Route) -> R) -> Result<R, Unrouted> {
        if stun::is_stun(data) {
            let Some(ufrag) = stun::local_ufrag(data) else {
                // STUN responses/indications from a known peer still belong to it
                return self.by_addr.get(&from).map(|r| f(&r)).ok_or(Unrouted::BadStun);
            };
            let route = self.by_ufrag.get(ufrag).map(|r| r.clone()).ok_or(Unrouted::UnknownUfrag)?;
            let known = self.by_addr.get(&from).is_some_and(|r| r.peer == route.peer);
            if !known {
                self.by_addr.insert(from, route.clone());
            }
            return Ok(f(&route));
        }
        self.by_addr.get(&from).map(|r| f(&r)).ok_or(Unrouted::UnknownSource)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request with USERNAME `username` (or none).
    fn stun(username: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        if let Some(u) = username {
            body.extend_from_slice(&0x0006u16.to_be_bytes());
            body.extend_from_slice(&(u.len() as u16).to_be_bytes());
            body.extend_from_slice(u.as_bytes());
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut pkt = vec![0x00, 0x01];
        pkt.extend_from_slice(&(body.len() as u16).to_be_bytes());
        pkt.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        pkt.extend_from_slice(&[7; 12]);
        pkt.extend_from_slice(&body);
        pkt
    }

    #[test]
    fn routes_by_ufrag_then_by_learned_address() {
        let demux = Demux::default();
        let mut queues = Vec::new();
        for (peer, ufrag) in [(1, "ufragA"), (2, "ufragB")] {
            let (tx, rx) = mpsc::channel(8);
            queues.push(rx);
            demux.register(Route { room: tx, peer: PeerKey(peer), ufrag: ufrag.to_owned() });
        }
        let (a1, a2, b1, other): (SocketAddr, SocketAddr, SocketAddr, SocketAddr) = (
            "127.0.0.1:5001".parse().unwrap(),
            "127.0.0.1:5002".parse().unwrap(),
            "127.0.0.1:6001".parse().unwrap(),
            "127.0.0.1:7001".parse().unwrap(),
        );
        let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        // columns: datagram, source, route (peer) or why not; in order (addresses are learned)
        let rows: Vec<(&str, Vec<u8>, SocketAddr, Result<u64, Unrouted>)> = vec![
            ("rtp before any check", rtp.to_vec(), a1, Err(Unrouted::UnknownSource)),
            ("check for A", stun(Some("ufragA:remote")), a1, Ok(1)),
            ("rtp from A's address", rtp.to_vec(), a1, Ok(1)),
            ("check for B", stun(Some("ufragB:remote")), b1, Ok(2)),
            ("rtp from B's address", rtp.to_vec(), b1, Ok(2)),
            ("A from a second address", stun(Some("ufragA:x")), a2, Ok(1)),
            ("rtp from it", rtp.to_vec(), a2, Ok(1)),
            ("unknown ufrag", stun(Some("nobody:x")), other, Err(Unrouted::UnknownUfrag)),
            ("stun without USERNAME, known address", stun(None), a1, Ok(1)),
            ("stun without USERNAME, unknown address", stun(None), other, Err(Unrouted::BadStun)),
            ("garbage from an unknown address", vec![0xff; 3], other, Err(Unrouted::UnknownSource)),
        ];
        for (what, data, from, want) in rows {
            let by_dispatch = demux.dispatch(&data, from, |r| r.peer.0);
            assert_eq!(by_dispatch, want, "{what}");
            assert_eq!(demux.route(&data, from).map(|r| r.peer.0), want, "{what}: route()");
        }
        demux.unregister("ufragA");
        assert_eq!(demux.dispatch(&rtp, a1, |r| r.peer.0), Err(Unrouted::UnknownSource), "A's addresses forgotten");
        assert_eq!(demux.dispatch(&rtp, a2, |r| r.peer.0), Err(Unrouted::UnknownSource));
        assert_eq!(demux.dispatch(&rtp, b1, |r| r.peer.0), Ok(2), "B unaffected");
        assert_eq!(demux.len(), 1);
    }
}
