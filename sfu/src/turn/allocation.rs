//! One TURN allocation: its relay, credentials, lifetime, permissions (by peer IP) and
//! channels (number <-> peer address), each with its own expiry.

use super::auth::Key;
use super::server::RelayId;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long a permission lasts without a refresh (RFC 8656 9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// How long a channel binding lasts without a refresh (RFC 8656 12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

/// A channel binding.
#[derive(Debug, Clone, Copy)]
struct Channel {
    peer: SocketAddr,
    expires: Instant,
}

/// An allocation's state.
#[derive(Debug)]
pub struct Allocation {
    /// Its relay socket.
    pub relay: RelayId,
    /// The username it was made with; later requests must use the same.
    pub username: String,
    /// That username's key.
    pub key: Key,
    /// When it ends without a refresh.
    pub expires: Instant,
    /// The Allocate that made it, answered again if retransmitted.
    pub allocate_txid: [u8; 12],
    /// That answer.
    pub allocate_response: Vec<u8>,
    permissions: FxHashMap<IpAddr, Instant>,
    channels: FxHashMap<u16, Channel>,
    channel_by_peer: FxHashMap<SocketAddr, u16>,
    /// Local peer address -> the address the client named it by (they differ behind NAT).
    names: FxHashMap<SocketAddr, SocketAddr>,
}

impl Allocation {
    /// A new allocation.
    pub fn new(
        relay: RelayId,
        username: String,
        key: Key,
        expires: Instant,
        allocate_txid: [u8; 12],
        allocate_response: Vec<u8>,
    ) -> Self {
        Allocation {
            relay,
            username,
            key,
            expires,
            allocate_txid,
            allocate_response,
            permissions: FxHashMap::default(),
            channels: FxHashMap::default(),
            channel_by_peer: FxHashMap::default(),
            names: FxHashMap::default(),
        }
    }

    /// Installs or refreshes the permission for `ip`.
    pub fn permit(&mut self, ip: IpAddr, until: Instant) {
        self.permissions.insert(ip, until);
    }

    /// Whether `ip` has a live permission.
    pub fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|&until| until > now)
    }

    /// Binds (or refreshes) `channel` to `peer`; false if either is bound to another.
    pub fn bind(&mut self, channel: u16, peer: SocketAddr, until: Instant) -> bool {
        match (self.channels.get(&channel), self.channel_by_peer.get(&peer)) {
            (Some(c), _) if c.peer != peer => false,
            (_, Some(&n)) if n != channel => false,
            _ => {
                self.channels.insert(channel, Channel { peer, expires: until });
                self.channel_by_peer.insert(peer, channel);
                true
            }
        }
    }

    /// The peer a live `channel` is bound to.
    pub fn channel_peer(&self, channel: u16, now: Instant) -> Option<SocketAddr> {
        self.channels.get(&channel).filter(|c| c.expires > now).map(|c| c.peer)
    }

    /// The live channel bound to `peer`.
    pub fn channel_of(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let n = *self.channel_by_peer.get(&peer)?;
        self.channel_peer(n, now).map(|_| n)
    }

    /// Remembers that the client names the peer at `local` as `named`.
    pub fn alias(&mut self, local: SocketAddr, named: SocketAddr) {
        if local != named {
            self.names.insert(local, named);
        }
    }

    /// The address the client knows the peer at `local` by.
    pub fn named(&self, local: SocketAddr) -> SocketAddr {
        self.names.get(&local).copied().unwrap_or(local)
    }

    /// Forgets expired permissions and channels.
    pub fn sweep(&mut self, now: Instant) {
        self.permissions.retain(|_, until| *until > now);
        let channels = &mut self.channels;
        channels.retain(|_, c| c.expires > now);
        self.channel_by_peer.retain(|_, n| channels.contains_key(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_bind_one_to_one_and_expire() {
        let t0 = Instant::now();
        let mut a = Allocation::new(RelayId(1), "u".into(), [0; 16], t0 + Duration::from_secs(600), [0; 12], vec![]);
        let p: SocketAddr = "192.0.2.1:7882".parse().unwrap();
        let q: SocketAddr = "192.0.2.1:7883".parse().unwrap();
        let until = t0 + CHANNEL_LIFETIME;
        // columns: channel, peer, bound
        let rows = [(0x4000, p, true), (0x4000, p, true), (0x4001, p, false), (0x4000, q, false), (0x4001, q, true)];
        for (n, peer, ok) in rows {
            assert_eq!(a.bind(n, peer, until), ok, "{n:#x} {peer}");
        }
        assert_eq!(a.channel_peer(0x4000, t0), Some(p));
        assert_eq!(a.channel_of(q, t0), Some(0x4001));
        assert_eq!(a.channel_peer(0x4000, until), None, "expired");
        a.sweep(until);
        assert!(a.bind(0x4002, p, until + CHANNEL_LIFETIME), "an expired binding frees its peer");
    }

    #[test]
    fn permissions_expire() {
        let t0 = Instant::now();
        let mut a = Allocation::new(RelayId(1), "u".into(), [0; 16], t0, [0; 12], vec![]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!a.permitted(ip, t0));
        a.permit(ip, t0 + PERMISSION_LIFETIME);
        assert!(a.permitted(ip, t0 + PERMISSION_LIFETIME - Duration::from_millis(1)));
        assert!(!a.permitted(ip, t0 + PERMISSION_LIFETIME));
    }
}
