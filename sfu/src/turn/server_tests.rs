//! The TURN state machine driven with a virtual clock and no sockets: a client as Chromium's
//! TURN port behaves (challenge, allocate, permission, channel, refresh), credentials and peers
//! refused, relaying both ways, expiry and connection loss.

use super::*;
use crate::turn::auth::{self, long_term_key};
use crate::udp::stun::integrity_ok_with_key;

const SECRET: &str = "north";
const REALM: &str = "sfu";
const UNIX: u64 = 1_700_000_000;

fn media() -> SocketAddr {
    "127.0.0.1:7882".parse().unwrap()
}
fn announced() -> SocketAddr {
    "203.0.113.5:7882".parse().unwrap()
}
fn udp_client() -> Client {
    Client { transport: Transport::Udp, addr: "198.51.100.7:50000".parse().unwrap() }
}
fn tcp_client() -> Client {
    Client { transport: Transport::Tcp(ConnId(4)), addr: "198.51.100.7:50001".parse().unwrap() }
}

struct Harness {
    server: TurnServer,
    now: Instant,
    metrics: TurnMetrics,
    next_relay: u64,
    txid: u8,
    /// Events seen while answering requests, other than the relays opened.
    seen: Vec<Event>,
}

/// What one response says.
#[derive(Debug)]
struct Reply {
    class: Class,
    code: Option<u16>,
    raw: Vec<u8>,
}

impl Reply {
    fn parsed(&self) -> Parsed<'_> {
        Parsed::read(&self.raw).expect("a STUN message")
    }
}

fn user(expiry: u64, who: &str) -> String {
    format!("{expiry}:{who}")
}

fn password(username: &str) -> String {
    signaling::turn::credential(SECRET, username)
}

impl Harness {
    fn new(limits: Limits) -> Self {
        let now = Instant::now();
        let metrics = TurnMetrics::unregistered();
        let creds = Credentials::new(SECRET.into(), REALM.into(), [5; 32]);
        let peers = Peers::new([(announced(), media())]);
        let server = TurnServer::new(creds, peers, limits, metrics.clone(), now, UNIX);
        Harness { server, now, metrics, next_relay: 1, txid: 0, seen: Vec::new() }
    }

    fn txid(&mut self) -> [u8; 12] {
        self.txid += 1;
        [self.txid; 12]
    }

    fn send(&mut self, client: Client, data: &[u8]) -> Vec<Transmit> {
        self.server.handle_client(self.now, client, data);
        std::iter::from_fn(|| self.server.poll_transmit()).collect()
    }

    /// The one reply to `data`.
    fn request(&mut self, client: Client, data: &[u8]) -> Reply {
        let mut out = self.send(client, data);
        // an Allocate waits for its relay: open it as the driver would
        while let Some(e) = self.server.poll_event() {
            let Event::OpenRelay { client } = e else {
                self.seen.push(e);
                continue;
            };
            let relay = RelayId(self.next_relay);
            self.next_relay += 1;
            let relayed = SocketAddr::new(announced().ip(), 40000 + relay.0 as u16);
            self.server.relay_opened(self.now, client, Some((relay, relayed)));
            out.extend(std::iter::from_fn(|| self.server.poll_transmit()));
        }
        assert_eq!(out.len(), 1, "one reply: {out:?}");
        let Transmit::Client { to, data } = out.remove(0) else { panic!("a reply to the client") };
        assert_eq!(to, client);
        let p = Parsed::read(&data).expect("STUN");
        let code = p.get(attr::ERROR_CODE).map(|v| u16::from(v[2]) * 100 + u16::from(v[3]));
        Reply { class: wire::class_of(p.ty), code, raw: data }
    }

    /// A nonce from a challenge (to the client's address on another port: the client itself
    /// may hold an allocation already, which an unsigned Allocate would not reach).
    fn nonce(&mut self, client: Client) -> String {
        let txid = self.txid();
        let probe = Client { transport: Transport::Udp, addr: SocketAddr::new(client.addr.ip(), 1) };
        let r = self.request(probe, &allocate_unsigned(txid));
        assert_eq!(r.code, Some(401));
        r.parsed().text(attr::NONCE).unwrap().to_owned()
    }

    /// An allocation for `client` made with `username`; its relay address.
    fn allocate(&mut self, client: Client, username: &str) -> SocketAddr {
        let nonce = self.nonce(client);
        let txid = self.txid();
        let r = self.request(
            client,
            &signed(method::ALLOCATE, txid, username, &password(username), &nonce, |b| {
                b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            }),
        );
        assert_eq!((r.class, r.code), (Class::Success, None), "allocate");
        let p = r.parsed();
        wire::xor_decode(p.get(attr::XOR_RELAYED_ADDRESS).unwrap(), &p.txid).unwrap()
    }

    fn authed(&mut self, client: Client, m: u16, username: &str, attrs: impl FnOnce(Builder) -> Builder) -> Reply {
        let nonce = self.nonce(client);
        let txid = self.txid();
        self.request(client, &signed(m, txid, username, &password(username), &nonce, attrs))
    }

    fn dropped(&self, reason: &str) -> u64 {
        self.metrics.dropped.with_label_values(&[reason]).get()
    }

    fn events(&mut self) -> Vec<Event> {
        let mut all = std::mem::take(&mut self.seen);
        all.extend(std::iter::from_fn(|| self.server.poll_event()));
        all
    }
}

fn allocate_unsigned(txid: [u8; 12]) -> Vec<u8> {
    Builder::new(method::ALLOCATE, Class::Request, txid).attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).finish(None)
}

/// A request signed with the long-term key of `username`/`password`.
fn signed(
    m: u16,
    txid: [u8; 12],
    username: &str,
    password: &str,
    nonce: &str,
    attrs: impl FnOnce(Builder) -> Builder,
) -> Vec<u8> {
    let b = Builder::new(m, Class::Request, txid)
        .attr(attr::USERNAME, username.as_bytes())
        .attr(attr::REALM, REALM.as_bytes())
        .attr(attr::NONCE, nonce.as_bytes());
    attrs(b).finish(Some(&long_term_key(username, REALM, password)))
}

fn send_indication(to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let txid = [0xEE; 12];
    Builder::new(method::SEND, Class::Indication, txid)
        .xor_addr(attr::XOR_PEER_ADDRESS, to)
        .attr(attr::DATA, payload)
        .finish(None)
}

#[test]
fn a_client_is_challenged_then_allocated_and_a_retransmission_is_answered_alike() {
    let mut h = Harness::new(Limits::default());
    let c = udp_client();
    let first = h.request(c, &allocate_unsigned([1; 12]));
    assert_eq!((first.class, first.code), (Class::Error, Some(401)));
    assert_eq!(first.parsed().text(attr::REALM), Some(REALM));
    let nonce = first.parsed().text(attr::NONCE).unwrap().to_owned();

    let username = user(UNIX + 60, "alice");
    let req = signed(method::ALLOCATE, [2; 12], &username, &password(&username), &nonce, |b| {
        b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).attr(attr::LIFETIME, &7200u32.to_be_bytes())
    });
    let ok = h.request(c, &req);
    assert_eq!((ok.class, ok.code), (Class::Success, None));
    let key = long_term_key(&username, REALM, &password(&username));
    assert!(integrity_ok_with_key(&ok.raw, &key), "signed with the client's key");
    let p = ok.parsed();
    assert_eq!(wire::xor_decode(p.get(attr::XOR_MAPPED_ADDRESS).unwrap(), &p.txid), Some(c.addr));
    assert_eq!(
        wire::xor_decode(p.get(attr::XOR_RELAYED_ADDRESS).unwrap(), &p.txid),
        Some("203.0.113.5:40001".parse().unwrap())
    );
    assert_eq!(p.u32(attr::LIFETIME), Some(3600), "capped at the longest lifetime");
    assert_eq!(h.server.allocations(), 1);
    assert_eq!(h.metrics.allocations.get(), 1);

    // the same request again (a lost answer) gets the same answer, no second relay
    let again = h.send(c, &req);
    assert_eq!(again, vec![Transmit::Client { to: c, data: ok.raw.clone() }]);
    assert!(h.events().is_empty());
    // a new Allocate on the same 5-tuple is refused
    let other = signed(method::ALLOCATE, [3; 12], &username, &password(&username), &nonce, |b| {
        b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    });
    assert_eq!(h.request(c, &other).code, Some(437));
}

#[test]
fn credentials_and_requests_that_are_refused() {
    let good = user(UNIX + 60, "alice");
    let expired = user(UNIX - 1, "alice");
    let udp = |b: Builder| b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    // columns: case, username, password, nonce (None: a forged one), extra attributes, code
    let rows: Vec<(&str, String, String, Option<()>, fn(Builder) -> Builder, u16)> = vec![
        ("wrong password", good.clone(), "guess".into(), Some(()), udp, 401),
        ("another secret", good.clone(), signaling::turn::credential("south", &good), Some(()), udp, 401),
        ("expired", expired.clone(), password(&expired), Some(()), udp, 401),
        ("no expiry", "alice".into(), password("alice"), Some(()), udp, 401),
        ("forged nonce", good.clone(), password(&good), None, udp, 401),
        ("no transport", good.clone(), password(&good), Some(()), |b| b, 400),
        (
            "TCP relay",
            good.clone(),
            password(&good),
            Some(()),
            |b| b.attr(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0]),
            442,
        ),
    ];
    for (case, username, pass, nonce, attrs, code) in rows {
        let mut h = Harness::new(Limits::default());
        let c = udp_client();
        let real = h.nonce(c);
        let nonce = match nonce {
            Some(()) => real,
            None => format!("{:016x}{}", UNIX + 99_999, "0".repeat(16)),
        };
        let r = h.request(c, &signed(method::ALLOCATE, [9; 12], &username, &pass, &nonce, attrs));
        assert_eq!(r.code, Some(code), "{case}");
        assert_eq!(h.server.allocations(), 0, "{case}");
        assert!(h.events().is_empty(), "{case}: no relay opened");
    }
}

#[test]
fn a_stale_nonce_is_replaced_and_the_request_then_succeeds() {
    let mut h = Harness::new(Limits::default());
    let c = udp_client();
    let nonce = h.nonce(c);
    h.now += auth::NONCE_LIFETIME + Duration::from_secs(5);
    let username = user(UNIX + 99_999, "alice");
    let r = h.request(
        c,
        &signed(method::ALLOCATE, [2; 12], &username, &password(&username), &nonce, |b| {
            b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        }),
    );
    assert_eq!(r.code, Some(438));
    let fresh = r.parsed().text(attr::NONCE).unwrap().to_owned();
    assert_ne!(fresh, nonce);
    let r = h.request(
        c,
        &signed(method::ALLOCATE, [3; 12], &username, &password(&username), &fresh, |b| {
            b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        }),
    );
    assert_eq!(r.class, Class::Success);
}

#[test]
fn only_this_nodes_media_ports_are_peers() {
    let mut h = Harness::new(Limits::default());
    let c = udp_client();
    let alice = user(UNIX + 60, "alice");
    h.allocate(c, &alice);
    let elsewhere: SocketAddr = "10.0.0.9:22".parse().unwrap();
    // columns: case, peer, code of CreatePermission (None: success)
    let rows = [
        ("media port as announced", announced(), None),
        ("media port locally", media(), None),
        ("anything else", elsewhere, Some(403)),
    ];
    for (case, to, code) in rows {
        let r = h.authed(c, method::CREATE_PERMISSION, &alice, |b| b.xor_addr(attr::XOR_PEER_ADDRESS, to));
        assert_eq!(r.code, code, "{case}");
    }
    let r = h.authed(c, method::CHANNEL_BIND, &alice, |b| {
        b.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0])
            .xor_addr(attr::XOR_PEER_ADDRESS, "203.0.113.5:22".parse().unwrap())
    });
    assert_eq!(r.code, Some(403), "a channel to another port of the node's address");
    // a Send to a peer without permission is dropped
    assert!(h.send(c, &send_indication(elsewhere, b"x")).is_empty());
    assert_eq!(h.dropped("no_permission"), 1);
    // another user's credentials on this allocation
    let bob = user(UNIX + 60, "bob");
    let r = h.authed(c, method::REFRESH, &bob, |b| b);
    assert_eq!(r.code, Some(441));
}

#[test]
fn data_relays_both_ways_by_indication_then_by_channel() {
    for (client, padded) in [(udp_client(), false), (tcp_client(), true)] {
        let mut h = Harness::new(Limits::default());
        let alice = user(UNIX + 60, "alice");
        h.allocate(client, &alice);
        let relay = RelayId(1);
        let r =
            h.authed(client, method::CREATE_PERMISSION, &alice, |b| b.xor_addr(attr::XOR_PEER_ADDRESS, announced()));
        assert_eq!(r.code, None);

        // client -> peer by Send indication: to the media port's local address
        let out = h.send(client, &send_indication(announced(), b"check"));
        assert_eq!(out, vec![Transmit::Peer { relay, to: media(), data: b"check".to_vec() }]);
        // peer -> client as a Data indication naming the peer as the client knows it
        h.server.handle_relay(h.now, relay, media(), b"answer");
        let Some(Transmit::Client { to, data }) = h.server.poll_transmit() else { panic!("relayed") };
        assert_eq!(to, client);
        let p = Parsed::read(&data).unwrap();
        assert_eq!(p.ty, wire::message_type(method::DATA, Class::Indication));
        assert_eq!(wire::xor_decode(p.get(attr::XOR_PEER_ADDRESS).unwrap(), &p.txid), Some(announced()));
        assert_eq!(p.get(attr::DATA), Some(&b"answer"[..]));

        // then a channel: ChannelData both ways, padded on a stream
        let r = h.authed(client, method::CHANNEL_BIND, &alice, |b| {
            b.attr(attr::CHANNEL_NUMBER, &[0x40, 0x01, 0, 0]).xor_addr(attr::XOR_PEER_ADDRESS, announced())
        });
        assert_eq!(r.code, None, "channel bound");
        let out = h.send(client, &wire::encode_channel_data(0x4001, b"rtp", padded));
        assert_eq!(out, vec![Transmit::Peer { relay, to: media(), data: b"rtp".to_vec() }]);
        h.server.handle_relay(h.now, relay, media(), b"rtcp!");
        let want = wire::encode_channel_data(0x4001, b"rtcp!", padded);
        assert_eq!(h.server.poll_transmit(), Some(Transmit::Client { to: client, data: want.clone() }));
        assert_eq!(want.len(), if padded { 12 } else { 9 });
        // an unbound channel and a stranger's datagram are dropped
        assert!(h.send(client, &wire::encode_channel_data(0x4444, b"x", padded)).is_empty());
        h.server.handle_relay(h.now, relay, "127.0.0.2:9".parse().unwrap(), b"spoof");
        assert_eq!(h.server.poll_transmit(), None);
        assert_eq!((h.dropped("unbound_channel"), h.dropped("no_permission")), (1, 1));
        assert_eq!(h.metrics.relayed_packets.with_label_values(&["to_peer"]).get(), 2);
        assert_eq!(h.metrics.relayed_packets.with_label_values(&["to_client"]).get(), 2);
    }
}

#[test]
fn allocations_end_by_refresh_expiry_or_connection_loss() {
    let alice = user(UNIX + 60, "alice");
    // refresh with lifetime 0
    let mut h = Harness::new(Limits::default());
    h.allocate(udp_client(), &alice);
    let r = h.authed(udp_client(), method::REFRESH, &alice, |b| b.attr(attr::LIFETIME, &0u32.to_be_bytes()));
    assert_eq!((r.class, r.parsed().u32(attr::LIFETIME)), (Class::Success, Some(0)));
    assert_eq!(h.events(), vec![Event::CloseRelay { relay: RelayId(1) }]);
    assert_eq!(h.server.allocations(), 0);

    // a refresh keeps it past its first lifetime; silence then ends it
    let mut h = Harness::new(Limits::default());
    h.allocate(udp_client(), &alice);
    h.now += Duration::from_secs(500);
    // the credential expired meanwhile: a refresh of an allocation still succeeds
    let r = h.authed(udp_client(), method::REFRESH, &alice, |b| b.attr(attr::LIFETIME, &600u32.to_be_bytes()));
    assert_eq!(r.class, Class::Success);
    h.now += Duration::from_secs(599);
    h.server.handle_timeout(h.now);
    assert!(h.events().is_empty(), "refreshed");
    h.now += Duration::from_secs(2);
    h.server.handle_timeout(h.now);
    assert_eq!(h.events(), vec![Event::CloseRelay { relay: RelayId(1) }]);
    assert_eq!(h.metrics.allocations.get(), 0);

    // a TCP connection that closes takes its allocation with it
    let mut h = Harness::new(Limits::default());
    h.allocate(tcp_client(), &alice);
    h.allocate(udp_client(), &alice);
    h.server.connection_closed(ConnId(4));
    assert_eq!(h.events(), vec![Event::CloseRelay { relay: RelayId(1) }]);
    assert_eq!(h.server.allocations(), 1);
}

#[test]
fn allocations_are_capped_per_username_and_in_all() {
    let mut h = Harness::new(Limits { per_username: 2, max_allocations: 3, ..Limits::default() });
    let alice = user(UNIX + 60, "alice");
    let bob = user(UNIX + 60, "bob");
    let client =
        |n: u16| Client { transport: Transport::Udp, addr: SocketAddr::new("198.51.100.7".parse().unwrap(), 100 + n) };
    h.allocate(client(1), &alice);
    h.allocate(client(2), &alice);
    let udp = |b: Builder| b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    assert_eq!(h.authed(client(3), method::ALLOCATE, &alice, udp).code, Some(486));
    h.allocate(client(4), &bob);
    assert_eq!(h.authed(client(5), method::ALLOCATE, &bob, udp).code, Some(508));
    // a freed allocation frees its place
    h.server.relay_opened(h.now, client(9), None);
    let r = h.authed(client(1), method::REFRESH, &alice, |b| b.attr(attr::LIFETIME, &0u32.to_be_bytes()));
    assert_eq!(r.class, Class::Success);
    h.allocate(client(3), &alice);
}

#[test]
fn a_relay_that_cannot_be_opened_is_an_error_and_frees_the_quota() {
    let mut h = Harness::new(Limits { per_username: 1, ..Limits::default() });
    let alice = user(UNIX + 60, "alice");
    let c = udp_client();
    let nonce = h.nonce(c);
    let req = signed(method::ALLOCATE, [7; 12], &alice, &password(&alice), &nonce, |b| {
        b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    });
    assert!(h.send(c, &req).is_empty(), "waits for its relay");
    assert!(h.send(c, &req).is_empty(), "a retransmission meanwhile is not a second allocation");
    assert_eq!(h.events(), vec![Event::OpenRelay { client: c }]);
    h.server.relay_opened(h.now, c, None);
    let Some(Transmit::Client { data, .. }) = h.server.poll_transmit() else { panic!("an answer") };
    let p = Parsed::read(&data).unwrap();
    assert_eq!(p.get(attr::ERROR_CODE).map(|v| v[2..4].to_vec()), Some(vec![5, 8]));
    h.allocate(c, &alice);
}

#[test]
fn bindings_and_unknown_requests_are_answered_and_junk_is_counted() {
    let mut h = Harness::new(Limits::default());
    let c = udp_client();
    let r = h.request(c, &Builder::new(method::BINDING, Class::Request, [4; 12]).finish(None));
    let p = r.parsed();
    assert_eq!(wire::xor_decode(p.get(attr::XOR_MAPPED_ADDRESS).unwrap(), &p.txid), Some(c.addr));
    let r = h.request(c, &Builder::new(0x00A, Class::Request, [4; 12]).finish(None));
    assert_eq!(r.code, Some(400));
    for junk in [
        &b""[..],
        b"\x00\x01",
        b"\xff\xffgarbage",
        &[0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
    ] {
        assert!(h.send(c, junk).is_empty(), "{junk:?}");
    }
    assert!(h.dropped("malformed") >= 3);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Any bytes from a client or a relay are answered or dropped, never a panic.
    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), stun in proptest::prelude::any::<bool>()) {
        let mut h = Harness::new(Limits::default());
        let alice = user(UNIX + 60, "alice");
        h.allocate(udp_client(), &alice);
        let mut data = data;
        if stun && data.len() >= 20 {
            // a STUN header so the attribute parser is reached
            data[0] &= 0x3F;
            data[4..8].copy_from_slice(&wire::MAGIC_COOKIE.to_be_bytes());
            let len = (data.len() - 20) as u16;
            data[2..4].copy_from_slice(&len.to_be_bytes());
        }
        h.server.handle_client(h.now, udp_client(), &data);
        h.server.handle_client(h.now, tcp_client(), &data);
        h.server.handle_relay(h.now, RelayId(1), media(), &data);
        h.server.handle_relay(h.now, RelayId(77), media(), &data);
        while h.server.poll_transmit().is_some() {}
    }
}
