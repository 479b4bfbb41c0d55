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
    /// Where it came from: a UDP address, or an ICE-TCP connection.
    pub from: super::Path,
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
    /// Its local ICE password (STUN short-term credential).
    pub pwd: String,
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
    /// A STUN request from a new address whose MESSAGE-INTEGRITY is missing or not made with
    /// the password of the connection it names.
    Unauthenticated,
    /// A STUN request naming one connection from an address another connection was learned at.
    AddressTaken,
    /// A STUN request from a new address of a connection that has as many as it may.
    TooManyAddresses,
}

impl From<Unrouted> for DropReason {
    fn from(why: Unrouted) -> DropReason {
        match why {
            Unrouted::UnknownUfrag => DropReason::UnknownUfrag,
            Unrouted::UnknownSource => DropReason::UnknownSource,
            Unrouted::BadStun => DropReason::BadStun,
            Unrouted::Unauthenticated => DropReason::StunUnauthenticated,
            Unrouted::AddressTaken => DropReason::AddressTaken,
            Unrouted::TooManyAddresses => DropReason::TooManyAddresses,
        }
    }
}

/// The routing tables of the media port.
#[derive(Default)]
pub struct Demux {
    by_ufrag: DashMap<String, Route>,
    by_addr: DashMap<SocketAddr, Route>,
    /// Addresses learned per connection.
    addrs: DashMap<PeerKey, usize>,
}

/// Addresses one connection may be learned at (its candidate pairs and path changes): more is
/// a client spraying checks, or an attack.
pub const MAX_ADDRS_PER_PEER: usize = 8;

impl Demux {
    /// Routes STUN requests carrying `route.ufrag` (and then their source address) to `route`.
    pub fn register(&self, route: Route) {
        self.by_ufrag.insert(route.ufrag.clone(), route);
    }

    /// Forgets a peer connection's ufrag and learned addresses.
    pub fn unregister(&self, ufrag: &str) {
        if let Some((_, route)) = self.by_ufrag.remove(ufrag) {
            self.by_addr.retain(|_, r| r.ufrag != ufrag);
            self.addrs.remove(&route.peer);
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
            match self.by_addr.get(&from).map(|r| r.peer) {
                Some(peer) if peer == route.peer => {}
                // never moved to another connection: a check naming B from A's address would
                // black-hole A's media
                Some(_) => return Err(Unrouted::AddressTaken),
                None => self.learn(data, from, &route)?,
            }
            return Ok(f(&route));
        }
        self.by_addr.get(&from).map(|r| f(&r)).ok_or(Unrouted::UnknownSource)
    }

    /// The route of an ICE-TCP connection's first frame: an authenticated STUN request naming a
    /// registered connection, which has room for one more address (a TCP connection counts as
    /// one). Nothing is learned by address: the connection carries the route itself.
    pub fn route_stream(&self, data: &[u8]) -> Result<Route, Unrouted> {
        if !stun::is_stun(data) {
            return Err(Unrouted::UnknownSource);
        }
        let ufrag = stun::local_ufrag(data).ok_or(Unrouted::BadStun)?;
        let route = self.by_ufrag.get(ufrag).map(|r| r.clone()).ok_or(Unrouted::UnknownUfrag)?;
        if !stun::integrity_ok(data, &route.pwd) {
            return Err(Unrouted::Unauthenticated);
        }
        self.count_address(route.peer)?;
        Ok(route)
    }

    /// An ICE-TCP connection of `peer` closed: its address slot is free again (a client whose
    /// TCP path keeps breaking reconnects as often as it needs).
    pub fn release_stream(&self, peer: PeerKey) {
        if let Some(mut n) = self.addrs.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
    }

    /// True while `ufrag` is registered (an ICE-TCP connection of a connection that is gone
    /// closes).
    pub fn is_registered(&self, ufrag: &str) -> bool {
        self.by_ufrag.contains_key(ufrag)
    }

    fn count_address(&self, peer: PeerKey) -> Result<(), Unrouted> {
        let mut n = self.addrs.entry(peer).or_insert(0);
        if *n >= MAX_ADDRS_PER_PEER {
            return Err(Unrouted::TooManyAddresses);
        }
        *n += 1;
        Ok(())
    }

    /// Learns `from` as an address of `route`'s connection, if the request that came from it
    /// is authenticated with the connection's password and the connection has room for one more.
    fn learn(&self, data: &[u8], from: SocketAddr, route: &Route) -> Result<(), Unrouted> {
        if !stun::integrity_ok(data, &route.pwd) {
            return Err(Unrouted::Unauthenticated);
        }
        self.count_address(route.peer)?;
        self.by_addr.insert(from, route.clone());
        Ok(())
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
    use super::super::stun::testing::request as stun;
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn routes_by_ufrag_then_by_authenticated_learned_address() {
        let demux = Demux::default();
        let mut queues = Vec::new();
        for (peer, ufrag, pwd) in [(1, "ufragA", "pwdA"), (2, "ufragB", "pwdB")] {
            let (tx, rx) = mpsc::channel(8);
            queues.push(rx);
            demux.register(Route { room: tx, peer: PeerKey(peer), ufrag: ufrag.to_owned(), pwd: pwd.to_owned() });
        }
        let (a1, a2, b1, other, attacker) = (addr(5001), addr(5002), addr(6001), addr(7001), addr(9001));
        let a = |pwd| stun(Some("ufragA:remote"), pwd);
        let b = |pwd| stun(Some("ufragB:remote"), pwd);
        let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        // columns: datagram, source, route (peer) or why not; in order (addresses are learned)
        let rows: Vec<(&str, Vec<u8>, SocketAddr, Result<u64, Unrouted>)> = vec![
            ("rtp before any check", rtp.to_vec(), a1, Err(Unrouted::UnknownSource)),
            ("check for A", a(Some("pwdA")), a1, Ok(1)),
            ("rtp from A's address", rtp.to_vec(), a1, Ok(1)),
            ("check for B", b(Some("pwdB")), b1, Ok(2)),
            ("rtp from B's address", rtp.to_vec(), b1, Ok(2)),
            ("A from a second address", a(Some("pwdA")), a2, Ok(1)),
            ("rtp from it", rtp.to_vec(), a2, Ok(1)),
            ("A again from its address, unsigned: rtc checks it", a(None), a1, Ok(1)),
            // an attacker who knows A's ufrag but not its password learns no route to A
            ("A's ufrag, no integrity", a(None), attacker, Err(Unrouted::Unauthenticated)),
            ("A's ufrag, another password", a(Some("pwdB")), attacker, Err(Unrouted::Unauthenticated)),
            ("rtp from the attacker", rtp.to_vec(), attacker, Err(Unrouted::UnknownSource)),
            // a check for B (even signed) from A's address never moves it to B
            ("B from A's address", b(Some("pwdB")), a1, Err(Unrouted::AddressTaken)),
            ("rtp from A's address after it", rtp.to_vec(), a1, Ok(1)),
            ("unknown ufrag", stun(Some("nobody:x"), Some("x")), other, Err(Unrouted::UnknownUfrag)),
            ("stun without USERNAME, known address", stun(None, None), a1, Ok(1)),
            ("stun without USERNAME, unknown address", stun(None, None), other, Err(Unrouted::BadStun)),
            ("garbage from an unknown address", vec![0xff; 3], other, Err(Unrouted::UnknownSource)),
        ];
        for (what, data, from, want) in rows {
            let by_dispatch = demux.dispatch(&data, from, |r| r.peer.0);
            assert_eq!(by_dispatch, want, "{what}");
            assert_eq!(demux.route(&data, from).map(|r| r.peer.0), want, "{what}: route()");
        }
        // A has 2 addresses: 6 more fit, then no more
        for port in 0..(MAX_ADDRS_PER_PEER as u16 - 2) {
            assert_eq!(demux.dispatch(&a(Some("pwdA")), addr(10_000 + port), |r| r.peer.0), Ok(1));
        }
        assert_eq!(demux.dispatch(&a(Some("pwdA")), addr(11_000), |r| r.peer.0), Err(Unrouted::TooManyAddresses));
        // a TCP connection's first frame: authenticated, counted as one of A's addresses (A is
        // full now), never learned by address
        let rows: Vec<(&str, Vec<u8>, Result<u64, Unrouted>)> = vec![
            ("B, signed", b(Some("pwdB")), Ok(2)),
            ("B, unsigned", b(None), Err(Unrouted::Unauthenticated)),
            ("B, A's password", b(Some("pwdA")), Err(Unrouted::Unauthenticated)),
            ("A, signed, but A has all its addresses", a(Some("pwdA")), Err(Unrouted::TooManyAddresses)),
            ("unknown ufrag", stun(Some("nobody:x"), Some("x")), Err(Unrouted::UnknownUfrag)),
            ("no USERNAME", stun(None, None), Err(Unrouted::BadStun)),
            ("not STUN", rtp.to_vec(), Err(Unrouted::UnknownSource)),
        ];
        for (what, data, want) in rows {
            assert_eq!(demux.route_stream(&data).map(|r| r.peer.0), want, "stream: {what}");
        }
        assert!(demux.is_registered("ufragA") && !demux.is_registered("nobody"));
        // a closed TCP connection frees its slot: A may connect once more, not twice
        demux.release_stream(PeerKey(1));
        assert_eq!(demux.route_stream(&a(Some("pwdA"))).map(|r| r.peer.0), Ok(1));
        assert_eq!(demux.route_stream(&a(Some("pwdA"))).map(|r| r.peer.0), Err(Unrouted::TooManyAddresses));
        demux.unregister("ufragA");
        assert!(!demux.is_registered("ufragA"));
        assert_eq!(demux.dispatch(&rtp, a1, |r| r.peer.0), Err(Unrouted::UnknownSource), "A's addresses forgotten");
        assert_eq!(demux.dispatch(&rtp, a2, |r| r.peer.0), Err(Unrouted::UnknownSource));
        assert_eq!(demux.dispatch(&rtp, b1, |r| r.peer.0), Ok(2), "B unaffected");
        assert_eq!(demux.len(), 1);
        assert!(demux.addrs.get(&PeerKey(1)).is_none(), "A's address count forgotten");
    }
}
