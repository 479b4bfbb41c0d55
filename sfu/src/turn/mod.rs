//! The embedded TURN server (`--turn`, `--turn-tls`): for participants whose networks block UDP
//! to the node or allow only TLS. Credentials follow the coturn REST convention, so `joined`
//! hands them out exactly as it does for an external coturn. It relays only to this node's
//! own media ports, which its relay sockets reach locally: no relay ports to open in a
//! firewall, and no open relay into the node's network.
//!
//! [`server`] is the sans-IO state machine (with [`allocation`], [`auth`] and [`wire`]);
//! [`driver`] binds the sockets and runs it; [`framing`] reads TCP and TLS streams.

pub mod allocation;
pub mod auth;
pub mod driver;
pub mod framing;
pub mod metrics;
pub mod server;
pub mod wire;

pub use driver::Listeners;
pub use metrics::TurnMetrics;
pub use server::{Limits, Peers, TurnServer};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The realm in challenges.
pub const REALM: &str = "sfu";

/// Where a media port is reached from this host: its bound IP, or loopback when it is bound
/// to every interface.
fn local_ip(bound: IpAddr) -> IpAddr {
    match bound {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

/// The peers of this node: every media port under every announced IP, sent to locally.
pub fn media_peers(media_ports: &[SocketAddr], announce: &[IpAddr]) -> Peers {
    Peers::new(media_ports.iter().flat_map(|p| {
        let local = SocketAddr::new(local_ip(p.ip()), p.port());
        announce.iter().map(move |ip| (SocketAddr::new(*ip, p.port()), local))
    }))
}

/// The URLs clients are given for the bound listeners, naming `host`.
pub fn urls(host: &str, bound: &Listeners) -> Vec<String> {
    let host = match host.parse::<Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host.to_owned(),
    };
    let mut urls = Vec::new();
    if let Some(a) = bound.udp {
        urls.push(format!("turn:{host}:{}?transport=udp", a.port()));
    }
    if let Some(a) = bound.tcp {
        urls.push(format!("turn:{host}:{}?transport=tcp", a.port()));
    }
    if let Some(a) = bound.tls {
        urls.push(format!("turns:{host}:{}?transport=tcp", a.port()));
    }
    urls
}

/// A secret for this process when none is configured: credentials are then only good here.
pub fn random_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `start` needs from the node.
pub struct Embedded<'a> {
    /// `--turn`.
    pub plain: Option<SocketAddr>,
    /// `--turn-tls` and the certificate.
    pub tls: Option<(SocketAddr, Arc<crate::tls::Tls>)>,
    /// The shared secret.
    pub secret: String,
    /// The node's media ports as bound.
    pub media_ports: &'a [SocketAddr],
    /// The IPs announced in ICE candidates.
    pub announce: &'a [IpAddr],
}

/// Starts the embedded TURN server; its listeners as bound.
pub async fn start(
    e: Embedded<'_>,
    registry: &prometheus::Registry,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<Listeners> {
    let metrics = TurnMetrics::new(registry);
    let nonce_key: [u8; 32] = rand::random();
    let creds = auth::Credentials::new(e.secret, REALM.to_owned(), nonce_key);
    let peers = media_peers(e.media_ports, e.announce);
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let server = TurnServer::new(creds, peers, Limits::default(), metrics.clone(), Instant::now(), unix);
    let first = e.media_ports.first().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
    let setup = driver::Setup {
        plain: e.plain,
        tls: e.tls,
        relay_bind: local_ip(first),
        relayed_ip: e.announce.first().copied().unwrap_or(local_ip(first)),
    };
    driver::start(server, setup, metrics, stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_the_media_ports_under_every_name() {
        let ports: Vec<SocketAddr> = vec!["0.0.0.0:7882".parse().unwrap(), "0.0.0.0:7883".parse().unwrap()];
        let announce: Vec<IpAddr> = vec!["203.0.113.5".parse().unwrap(), "10.0.0.4".parse().unwrap()];
        let p = media_peers(&ports, &announce);
        // columns: address a client names, where the relay sends (None: refused)
        let rows = [
            ("203.0.113.5:7882", Some("127.0.0.1:7882")),
            ("10.0.0.4:7883", Some("127.0.0.1:7883")),
            ("127.0.0.1:7882", Some("127.0.0.1:7882")),
            ("203.0.113.5:22", None),
            ("192.0.2.1:7882", None),
        ];
        for (named, want) in rows {
            let want = want.map(|w| w.parse::<SocketAddr>().unwrap());
            assert_eq!(p.local(named.parse().unwrap()), want, "{named}");
        }
        assert!(p.allows_ip("203.0.113.5".parse().unwrap()));
        assert!(!p.allows_ip("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn urls_name_each_bound_listener() {
        let bound = Listeners {
            udp: Some("0.0.0.0:3478".parse().unwrap()),
            tcp: Some("0.0.0.0:3478".parse().unwrap()),
            tls: Some("0.0.0.0:5349".parse().unwrap()),
        };
        assert_eq!(
            urls("turn.example.com", &bound),
            vec![
                "turn:turn.example.com:3478?transport=udp",
                "turn:turn.example.com:3478?transport=tcp",
                "turns:turn.example.com:5349?transport=tcp"
            ]
        );
        assert_eq!(
            urls("::1", &Listeners { udp: bound.udp, ..Default::default() }),
            vec!["turn:[::1]:3478?transport=udp"]
        );
    }
}

/// A server holding one allocation with a permission and a channel to a media port, for the
/// fuzz target and tests that start past the handshake.
#[doc(hidden)]
pub mod testing {
    use super::server::{Client, ConnId, Event, RelayId, Transport};
    use super::wire::{Builder, Class, attr, method};
    use super::*;

    /// The media port the allocation may reach.
    pub const PEER: &str = "127.0.0.1:7882";

    /// A server, its allocated UDP client, a TCP client without allocation, and the time.
    pub fn allocated() -> (TurnServer, Client, Client, Instant) {
        let now = Instant::now();
        let peer: SocketAddr = PEER.parse().expect("an address");
        let creds = auth::Credentials::new("fuzz".into(), REALM.into(), [1; 32]);
        let mut s = TurnServer::new(
            creds,
            Peers::new([(peer, peer)]),
            Limits::default(),
            TurnMetrics::unregistered(),
            now,
            1_000,
        );
        let udp = Client { transport: Transport::Udp, addr: "127.0.0.2:5000".parse().expect("an address") };
        let tcp = Client { transport: Transport::Tcp(ConnId(1)), addr: "127.0.0.2:5001".parse().expect("an address") };
        let username = "9999999999:fuzz";
        let key = auth::long_term_key(username, REALM, &signaling::turn::credential("fuzz", username));
        let nonce = auth::Credentials::new("fuzz".into(), REALM.into(), [1; 32]).nonce(1_000);
        let signed = |m: u16, txid: u8, extra: &dyn Fn(Builder) -> Builder| {
            let b = Builder::new(m, Class::Request, [txid; 12])
                .attr(attr::USERNAME, username.as_bytes())
                .attr(attr::REALM, REALM.as_bytes())
                .attr(attr::NONCE, nonce.as_bytes());
            extra(b).finish(Some(&key))
        };
        s.handle_client(now, udp, &signed(method::ALLOCATE, 1, &|b| b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])));
        while let Some(e) = s.poll_event() {
            if let Event::OpenRelay { client } = e {
                s.relay_opened(now, client, Some((RelayId(1), "127.0.0.1:40000".parse().expect("an address"))));
            }
        }
        let bind = |b: Builder| b.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0]).xor_addr(attr::XOR_PEER_ADDRESS, peer);
        s.handle_client(now, udp, &signed(method::CHANNEL_BIND, 2, &bind));
        while s.poll_transmit().is_some() {}
        assert_eq!(s.allocations(), 1, "the fixture allocates");
        (s, udp, tcp, now)
    }
}
