//! The embedded TURN server's state machine (RFC 8656, UDP relays): allocations, permissions
//! and channels, long-term authentication. Sans-IO: datagrams and messages come in with `now`,
//! what to send leaves through [`TurnServer::poll_transmit`], relay sockets are opened and
//! closed by the driver on [`Event`]s.
//!
//! It relays only to this node's media ports ([`Peers`]): it exists so that participants who
//! cannot reach the SFU directly still can, not as an open relay into the node's network.

use super::allocation::{Allocation, CHANNEL_LIFETIME, PERMISSION_LIFETIME};
use super::auth::{Credentials, Key, Refusal};
use super::metrics::TurnMetrics;
use super::wire::{self, Builder, Class, Parsed, attr, method};
use rustc_hash::FxHashMap;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How often expired allocations, permissions and channels are swept.
const SWEEP: Duration = Duration::from_secs(1);
/// REQUESTED-TRANSPORT for UDP.
const UDP: u8 = 17;

/// A TCP or TLS connection of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// A relay socket the driver opened for an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayId(pub u64);

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The UDP listener.
    Udp,
    /// A TCP connection.
    Tcp(ConnId),
    /// A TLS connection.
    Tls(ConnId),
}

impl Transport {
    /// A stream (ChannelData is padded on it).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The connection, for streams.
    pub fn conn(self) -> Option<ConnId> {
        match self {
            Transport::Udp => None,
            Transport::Tcp(c) | Transport::Tls(c) => Some(c),
        }
    }
}

/// The client side of an allocation's 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    /// Transport and connection.
    pub transport: Transport,
    /// The client's address as seen by the server.
    pub addr: SocketAddr,
}

/// Something to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A STUN message or ChannelData to a client.
    Client {
        /// To whom.
        to: Client,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A payload from an allocation's relay socket to a peer.
    Peer {
        /// The relay socket.
        relay: RelayId,
        /// Where it goes (the media port's local address).
        to: SocketAddr,
        /// The payload.
        data: Vec<u8>,
    },
}

/// Work for the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Open a relay socket for `client`'s pending Allocate, then call
    /// [`TurnServer::relay_opened`].
    OpenRelay {
        /// Whose.
        client: Client,
    },
    /// Close a relay socket: its allocation ended.
    CloseRelay {
        /// Which.
        relay: RelayId,
    },
}

/// The peers clients may relay to: this node's media ports, by every address a client may
/// name them by (the announced ones), each mapped to where the relay sends (the local one).
#[derive(Debug, Clone, Default)]
pub struct Peers {
    to_local: FxHashMap<SocketAddr, SocketAddr>,
    ips: HashSet<IpAddr>,
}

impl Peers {
    /// Peers from `(named, local)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (SocketAddr, SocketAddr)>) -> Self {
        let mut p = Peers::default();
        for (named, local) in pairs {
            p.to_local.insert(named, local);
            p.to_local.insert(local, local);
            p.ips.insert(named.ip());
            p.ips.insert(local.ip());
        }
        p
    }

    /// Where a packet for `named` goes, if it is a media port.
    pub fn local(&self, named: SocketAddr) -> Option<SocketAddr> {
        self.to_local.get(&named).copied()
    }

    /// Whether a permission for `ip` may be installed.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.ips.contains(&ip)
    }
}

/// Caps on what clients may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Allocations at once.
    pub max_allocations: usize,
    /// Allocations at once per username (a participant's peer connections, each with a few
    /// TURN servers).
    pub per_username: usize,
    /// Longest allocation lifetime granted.
    pub max_lifetime: Duration,
    /// Lifetime when the client asks for none.
    pub default_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_allocations: 10_000,
            per_username: 16,
            max_lifetime: Duration::from_secs(3600),
            default_lifetime: Duration::from_secs(600),
        }
    }
}

/// Wall-clock time (credential and nonce expiry) derived from the monotonic `now`.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    at: Instant,
    unix: u64,
}

impl WallClock {
    fn unix(&self, now: Instant) -> u64 {
        self.unix + now.saturating_duration_since(self.at).as_secs()
    }
}

/// An Allocate waiting for its relay socket.
#[derive(Debug)]
struct Pending {
    txid: [u8; 12],
    username: String,
    key: Key,
    lifetime: Duration,
}

/// The TURN state machine.
pub struct TurnServer {
    creds: Credentials,
    peers: Peers,
    limits: Limits,
    clock: WallClock,
    allocations: FxHashMap<Client, Allocation>,
    pending: FxHashMap<Client, Pending>,
    by_relay: FxHashMap<RelayId, Client>,
    per_username: FxHashMap<String, usize>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    metrics: TurnMetrics,
    next_sweep: Instant,
}

/// A request's outcome: the label counted and, for errors, the response's code and reason.
type Outcome = Result<(), (u16, &'static str, &'static str)>;

impl TurnServer {
    /// A server checking `creds`, relaying to `peers`; `unix_now` is the wall clock at `now`.
    pub fn new(
        creds: Credentials,
        peers: Peers,
        limits: Limits,
        metrics: TurnMetrics,
        now: Instant,
        unix_now: u64,
    ) -> Self {
        TurnServer {
            creds,
            peers,
            limits,
            clock: WallClock { at: now, unix: unix_now },
            allocations: FxHashMap::default(),
            pending: FxHashMap::default(),
            by_relay: FxHashMap::default(),
            per_username: FxHashMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            metrics,
            next_sweep: now + SWEEP,
        }
    }

    /// Allocations held.
    pub fn allocations(&self) -> usize {
        self.allocations.len()
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing for the driver to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`TurnServer::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    fn drop(&self, reason: &str) {
        self.metrics.dropped.with_label_values(&[reason]).inc();
    }

    /// A datagram (UDP) or a framed message (TCP, TLS) from a client.
    pub fn handle_client(&mut self, now: Instant, client: Client, data: &[u8]) {
        if wire::is_channel_data(data) {
            return self.channel_data_from_client(now, client, data);
        }
        let Some(msg) = Parsed::read(data) else {
            return self.drop("malformed");
        };
        let request = |m| wire::message_type(m, Class::Request);
        match msg.ty {
            t if t == request(method::BINDING) => {
                let out = Builder::new(method::BINDING, Class::Success, msg.txid)
                    .xor_addr(attr::XOR_MAPPED_ADDRESS, client.addr)
                    .finish(None);
                self.transmits.push_back(Transmit::Client { to: client, data: out });
                self.count(method::BINDING, Ok(()));
            }
            t if t == request(method::ALLOCATE) => self.allocate(now, client, &msg, data),
            t if t == request(method::REFRESH)
                || t == request(method::CREATE_PERMISSION)
                || t == request(method::CHANNEL_BIND) =>
            {
                self.on_allocation(now, client, &msg, data)
            }
            t if t == wire::message_type(method::SEND, Class::Indication) => self.send_indication(now, client, &msg),
            t if wire::class_of(t) == Class::Request => {
                // another request: tell the client, unsigned
                self.reply_error_at(now, client, wire::method_of(t), msg.txid, 400, "Bad Request", false);
                self.count(0, Err((400, "unknown_method", "")));
            }
            _ => self.drop("unexpected_message"),
        }
    }

    fn count(&self, m: u16, outcome: Outcome) {
        let name = match m {
            method::BINDING => "binding",
            method::ALLOCATE => "allocate",
            method::REFRESH => "refresh",
            method::CREATE_PERMISSION => "create_permission",
            method::CHANNEL_BIND => "channel_bind",
            _ => "other",
        };
        let result = match outcome {
            Ok(()) => "ok",
            Err((_, label, _)) => label,
        };
        self.metrics.requests.with_label_values(&[name, result]).inc();
    }

    /// Checks a request's long-term credentials (RFC 8489 9.2.4); on refusal the error
    /// response is queued and the outcome returned.
    fn authenticate(
        &mut self,
        now: Instant,
        client: Client,
        m: u16,
        msg: &Parsed<'_>,
        raw: &[u8],
        allocate: bool,
    ) -> Result<(String, Key), ()> {
        let unix = self.clock.unix(now);
        let refuse = |this: &mut Self, r: Refusal, label: &'static str| {
            let (code, reason, challenge) = match r {
                Refusal::Incomplete => (400, "Bad Request", false),
                Refusal::StaleNonce => (438, "Stale Nonce", true),
                Refusal::Unauthorized => (401, "Unauthorized", true),
            };
            this.reply_error_at(now, client, m, msg.txid, code, reason, challenge);
            this.count(m, Err((code, label, reason)));
        };
        if msg.get(attr::MESSAGE_INTEGRITY).is_none() {
            refuse(self, Refusal::Unauthorized, "challenged");
            return Err(());
        }
        let (Some(username), Some(_realm), Some(nonce)) =
            (msg.text(attr::USERNAME), msg.text(attr::REALM), msg.text(attr::NONCE))
        else {
            refuse(self, Refusal::Incomplete, "bad_request");
            return Err(());
        };
        if let Err(r) = self.creds.check_nonce(nonce, unix) {
            refuse(self, r, if r == Refusal::StaleNonce { "stale_nonce" } else { "unauthorized" });
            return Err(());
        }
        let key = match self.creds.key(username, unix, allocate) {
            Ok(k) => k,
            Err(r) => {
                refuse(self, r, "unauthorized");
                return Err(());
            }
        };
        if !crate::udp::stun::integrity_ok_with_key(raw, &key) {
            refuse(self, Refusal::Unauthorized, "unauthorized");
            return Err(());
        }
        Ok((username.to_owned(), key))
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_error_at(
        &mut self,
        now: Instant,
        to: Client,
        m: u16,
        txid: [u8; 12],
        code: u16,
        reason: &str,
        challenge: bool,
    ) {
        let mut b = Builder::new(m, Class::Error, txid).error(code, reason);
        if challenge {
            let nonce = self.creds.nonce(self.clock.unix(now));
            b = b.attr(attr::REALM, self.creds.realm().as_bytes()).attr(attr::NONCE, nonce.as_bytes());
        }
        self.transmits.push_back(Transmit::Client { to, data: b.finish(None) });
    }

    fn allocate(&mut self, now: Instant, client: Client, msg: &Parsed<'_>, raw: &[u8]) {
        if let Some(a) = self.allocations.get(&client) {
            // a retransmission gets the same answer; another Allocate on the 5-tuple is refused
            if a.allocate_txid == msg.txid {
                let data = a.allocate_response.clone();
                self.transmits.push_back(Transmit::Client { to: client, data });
            } else {
                let key = a.key;
                self.reply_signed(client, method::ALLOCATE, msg.txid, 437, "Allocation Mismatch", &key);
                self.count(method::ALLOCATE, Err((437, "mismatch", "")));
            }
            return;
        }
        if self.pending.contains_key(&client) {
            return; // its relay is being opened; the answer follows
        }
        let Ok((username, key)) = self.authenticate(now, client, method::ALLOCATE, msg, raw, true) else { return };
        let refuse = |this: &mut Self, code: u16, label: &'static str, reason: &'static str| {
            this.reply_signed(client, method::ALLOCATE, msg.txid, code, reason, &key);
            this.count(method::ALLOCATE, Err((code, label, reason)));
        };
        match msg.get(attr::REQUESTED_TRANSPORT) {
            Some(v) if v.first() == Some(&UDP) => {}
            Some(_) => return refuse(self, 442, "unsupported_transport", "Unsupported Transport Protocol"),
            None => return refuse(self, 400, "bad_request", "Bad Request"),
        }
        if self.allocations.len() + self.pending.len() >= self.limits.max_allocations {
            return refuse(self, 508, "capacity", "Insufficient Capacity");
        }
        if self.per_username.get(&username).copied().unwrap_or(0) >= self.limits.per_username {
            return refuse(self, 486, "quota", "Allocation Quota Reached");
        }
        let lifetime = self.lifetime(msg);
        *self.per_username.entry(username.clone()).or_default() += 1;
        self.pending.insert(client, Pending { txid: msg.txid, username, key, lifetime });
        self.events.push_back(Event::OpenRelay { client });
    }

    fn lifetime(&self, msg: &Parsed<'_>) -> Duration {
        match msg.u32(attr::LIFETIME) {
            Some(s) => Duration::from_secs(u64::from(s)).min(self.limits.max_lifetime),
            None => self.limits.default_lifetime,
        }
    }

    fn reply_signed(&mut self, to: Client, m: u16, txid: [u8; 12], code: u16, reason: &str, key: &Key) {
        let out = Builder::new(m, Class::Error, txid).error(code, reason).finish(Some(key));
        self.transmits.push_back(Transmit::Client { to, data: out });
    }

    /// The driver opened (or failed to open) the relay socket of `client`'s pending Allocate;
    /// `relayed` is its address as clients are told it.
    pub fn relay_opened(&mut self, now: Instant, client: Client, opened: Option<(RelayId, SocketAddr)>) {
        let Some(p) = self.pending.remove(&client) else {
            // the client went away meanwhile
            if let Some((relay, _)) = opened {
                self.events.push_back(Event::CloseRelay { relay });
            }
            return;
        };
        let Some((relay, relayed)) = opened else {
            self.release_username(&p.username);
            self.reply_signed(client, method::ALLOCATE, p.txid, 508, "Insufficient Capacity", &p.key);
            self.count(method::ALLOCATE, Err((508, "relay_failed", "")));
            return;
        };
        let response = Builder::new(method::ALLOCATE, Class::Success, p.txid)
            .xor_addr(attr::XOR_RELAYED_ADDRESS, relayed)
            .attr(attr::LIFETIME, &(p.lifetime.as_secs() as u32).to_be_bytes())
            .xor_addr(attr::XOR_MAPPED_ADDRESS, client.addr)
            .finish(Some(&p.key));
        self.transmits.push_back(Transmit::Client { to: client, data: response.clone() });
        let a = Allocation::new(relay, p.username, p.key, now + p.lifetime, p.txid, response);
        self.allocations.insert(client, a);
        self.by_relay.insert(relay, client);
        self.metrics.allocations.set(self.allocations.len() as i64);
        self.count(method::ALLOCATE, Ok(()));
        tracing::debug!(?client, ?relayed, "TURN allocation");
    }

    fn release_username(&mut self, username: &str) {
        if let Some(n) = self.per_username.get_mut(username) {
            *n -= 1;
            if *n == 0 {
                self.per_username.remove(username);
            }
        }
    }

    fn remove(&mut self, client: Client) {
        if let Some(a) = self.allocations.remove(&client) {
            self.by_relay.remove(&a.relay);
            self.release_username(&a.username);
            self.events.push_back(Event::CloseRelay { relay: a.relay });
            self.metrics.allocations.set(self.allocations.len() as i64);
        }
    }

    /// Refresh, CreatePermission and ChannelBind: authenticated requests on an allocation.
    fn on_allocation(&mut self, now: Instant, client: Client, msg: &Parsed<'_>, raw: &[u8]) {
        let m = wire::method_of(msg.ty);
        let Ok((username, key)) = self.authenticate(now, client, m, msg, raw, false) else { return };
        let outcome = match self.allocations.get(&client) {
            None => Err((437, "no_allocation", "Allocation Mismatch")),
            Some(a) if a.username != username => Err((441, "wrong_credentials", "Wrong Credentials")),
            Some(_) => match m {
                method::REFRESH => self.refresh(now, client, msg, &key),
                method::CREATE_PERMISSION => self.create_permission(now, client, msg),
                _ => self.channel_bind(now, client, msg),
            },
        };
        if let Err((code, _, reason)) = outcome {
            self.reply_signed(client, m, msg.txid, code, reason, &key);
        } else if m != method::REFRESH {
            let out = Builder::new(m, Class::Success, msg.txid).finish(Some(&key));
            self.transmits.push_back(Transmit::Client { to: client, data: out });
        }
        self.count(m, outcome);
    }

    fn refresh(&mut self, now: Instant, client: Client, msg: &Parsed<'_>, key: &Key) -> Outcome {
        let lifetime = self.lifetime(msg);
        if lifetime.is_zero() {
            self.remove(client);
        } else if let Some(a) = self.allocations.get_mut(&client) {
            a.expires = now + lifetime;
        }
        let out = Builder::new(method::REFRESH, Class::Success, msg.txid)
            .attr(attr::LIFETIME, &(lifetime.as_secs() as u32).to_be_bytes())
            .finish(Some(key));
        self.transmits.push_back(Transmit::Client { to: client, data: out });
        Ok(())
    }

    fn create_permission(&mut self, now: Instant, client: Client, msg: &Parsed<'_>) -> Outcome {
        let mut ips = Vec::new();
        for v in msg.all(attr::XOR_PEER_ADDRESS) {
            let peer = wire::xor_decode(v, &msg.txid).ok_or((400, "bad_request", "Bad Request"))?;
            if !self.peers.allows_ip(peer.ip()) {
                return Err((403, "forbidden", "Forbidden"));
            }
            ips.push(peer.ip());
        }
        if ips.is_empty() {
            return Err((400, "bad_request", "Bad Request"));
        }
        let a = self.allocations.get_mut(&client).expect("checked by the caller");
        for ip in ips {
            a.permit(ip, now + PERMISSION_LIFETIME);
        }
        Ok(())
    }

    fn channel_bind(&mut self, now: Instant, client: Client, msg: &Parsed<'_>) -> Outcome {
        const BAD: (u16, &str, &str) = (400, "bad_request", "Bad Request");
        let channel = msg.get(attr::CHANNEL_NUMBER).and_then(|v| v.get(..2)).map(|v| u16::from_be_bytes([v[0], v[1]]));
        let channel = channel.filter(|c| (0x4000..=0x7FFF).contains(c)).ok_or(BAD)?;
        let peer = msg.get(attr::XOR_PEER_ADDRESS).and_then(|v| wire::xor_decode(v, &msg.txid)).ok_or(BAD)?;
        if self.peers.local(peer).is_none() {
            return Err((403, "forbidden", "Forbidden"));
        }
        let a = self.allocations.get_mut(&client).expect("checked by the caller");
        if !a.bind(channel, peer, now + CHANNEL_LIFETIME) {
            return Err(BAD);
        }
        a.permit(peer.ip(), now + PERMISSION_LIFETIME);
        Ok(())
    }

    fn send_indication(&mut self, now: Instant, client: Client, msg: &Parsed<'_>) {
        let (Some(peer), Some(data)) =
            (msg.get(attr::XOR_PEER_ADDRESS).and_then(|v| wire::xor_decode(v, &msg.txid)), msg.get(attr::DATA))
        else {
            return self.drop("malformed");
        };
        self.relay_to_peer(now, client, peer, data);
    }

    fn channel_data_from_client(&mut self, now: Instant, client: Client, data: &[u8]) {
        let Some((channel, payload)) = wire::channel_data(data) else {
            return self.drop("malformed");
        };
        let Some(peer) = self.allocations.get(&client).and_then(|a| a.channel_peer(channel, now)) else {
            return self.drop("unbound_channel");
        };
        self.relay_to_peer(now, client, peer, payload);
    }

    fn relay_to_peer(&mut self, now: Instant, client: Client, peer: SocketAddr, payload: &[u8]) {
        let Some(a) = self.allocations.get_mut(&client) else {
            return self.drop("no_allocation");
        };
        if !a.permitted(peer.ip(), now) {
            return self.drop("no_permission");
        }
        let Some(local) = self.peers.local(peer) else {
            return self.drop("forbidden_peer");
        };
        a.alias(local, peer);
        let relay = a.relay;
        let (packets, bytes) = &self.metrics.relayed[0];
        packets.inc();
        bytes.inc_by(payload.len() as u64);
        self.transmits.push_back(Transmit::Peer { relay, to: local, data: payload.to_vec() });
    }

    /// A datagram that arrived on relay socket `relay` from `from`.
    pub fn handle_relay(&mut self, now: Instant, relay: RelayId, from: SocketAddr, data: &[u8]) {
        let Some(&client) = self.by_relay.get(&relay) else {
            return self.drop("no_allocation");
        };
        let a = self.allocations.get(&client).expect("by_relay follows allocations");
        // the client knows the peer by the address it sent to
        let peer = a.named(from);
        if !a.permitted(peer.ip(), now) {
            return self.drop("no_permission");
        }
        let out = match a.channel_of(peer, now) {
            Some(channel) => wire::encode_channel_data(channel, data, client.transport.is_stream()),
            None => {
                let mut txid = [0u8; 12];
                rand::Rng::fill(&mut rand::rng(), &mut txid);
                Builder::new(method::DATA, Class::Indication, txid)
                    .xor_addr(attr::XOR_PEER_ADDRESS, peer)
                    .attr(attr::DATA, data)
                    .finish(None)
            }
        };
        let (packets, bytes) = &self.metrics.relayed[1];
        packets.inc();
        bytes.inc_by(data.len() as u64);
        self.transmits.push_back(Transmit::Client { to: client, data: out });
    }

    /// A client's TCP or TLS connection closed: its allocations end with it.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let gone: Vec<Client> = self
            .allocations
            .keys()
            .chain(self.pending.keys())
            .filter(|c| c.transport.conn() == Some(conn))
            .copied()
            .collect();
        for client in gone {
            if let Some(p) = self.pending.remove(&client) {
                self.release_username(&p.username);
            }
            self.remove(client);
        }
    }

    /// Ends expired allocations and forgets expired permissions and channels.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP;
        let expired: Vec<Client> = self.allocations.iter().filter(|(_, a)| a.expires <= now).map(|(c, _)| *c).collect();
        for client in expired {
            tracing::debug!(?client, "TURN allocation expired");
            self.remove(client);
        }
        for a in self.allocations.values_mut() {
            a.sweep(now);
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
