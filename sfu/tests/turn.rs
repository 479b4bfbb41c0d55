//! TURN credentials against a real TURN server: Debian's coturn (`turnserver`, started here on
//! a loopback port with `use-auth-secret`) takes the credentials a node with `--turn-secret`
//! hands out in `joined`, and refuses forged and expired ones (skipped, saying why, where
//! `turnserver` is not installed: the test command installs coturn). The embedded TURN server
//! (`--turn`) is held to the same table, over UDP and TCP, and relays only to the node.

mod common;
mod ops_common;

use common::Harness;
use ops_common::Ws;
use rtc::stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use rtc::stun::error_code::ErrorCodeAttribute;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{
    CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_ALLOCATE, Message, MessageType, Method, Setter, TransactionId,
};
use rtc::stun::textattrs::TextAttribute;
use rtc::turn::proto::PROTO_UDP;
use rtc::turn::proto::reqtrans::RequestedTransport;
use signaling::protocol::{IceServer, ServerMessage};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

const SECRET: &str = "north-wind";
const REALM: &str = "sfu.test";

/// A `turnserver` on a loopback UDP port, killed when dropped.
struct Coturn {
    child: Child,
    addr: SocketAddr,
}

impl Coturn {
    fn start() -> Option<Coturn> {
        if Command::new("turnserver").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return None;
        }
        // a free port now; coturn binds it right after
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--no-tls", "--no-dtls", "--no-cli"])
            .arg(format!("--listening-port={port}"))
            .args(["--use-auth-secret", &format!("--static-auth-secret={SECRET}"), &format!("--realm={REALM}")])
            .args(["--allow-loopback-peers", "--no-multicast-peers", "--min-port=49400", "--max-port=49500"])
            .args(["--log-file=stdout", "--simple-log", "--pidfile=/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        Some(Coturn { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) })
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Allocate request, signed with the long-term credential `(username, password)` under
/// `nonce` when given.
fn allocate(auth: Option<(&str, &str, &str)>) -> Vec<u8> {
    allocate_in(REALM, auth)
}

/// [`allocate`] in `realm`.
fn allocate_in(realm: &str, auth: Option<(&str, &str, &str)>) -> Vec<u8> {
    request(METHOD_ALLOCATE, realm, auth, vec![Box::new(RequestedTransport { protocol: PROTO_UDP })])
}

/// A `method` request with `attrs`, signed with the long-term credential `(username, password)`
/// under `nonce` in `realm` when given.
fn request(method: Method, realm: &str, auth: Option<(&str, &str, &str)>, attrs: Vec<Box<dyn Setter>>) -> Vec<u8> {
    let provider = rtc::crypto::default_provider().unwrap();
    let mut setters: Vec<Box<dyn Setter>> =
        vec![Box::new(TransactionId::new()), Box::new(MessageType::new(method, CLASS_REQUEST))];
    setters.extend(attrs);
    if let Some((username, password, nonce)) = auth {
        setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, username.to_owned())));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.to_owned())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.to_owned())));
        setters.push(Box::new(
            MessageIntegrity::new_long_term_integrity_with_provider(
                username.to_owned(),
                realm.to_owned(),
                password.to_owned(),
                provider.crypto(),
            )
            .unwrap(),
        ));
    }
    let mut m = Message::new();
    m.build(&setters).unwrap();
    m.raw.clone()
}

/// A TURN answer: `Ok(())` for a success, else the error code and the nonce it names.
fn verdict(raw: &[u8]) -> Result<(), (u16, Option<String>)> {
    let mut m = Message::new();
    m.unmarshal_binary(raw).expect("a STUN answer");
    if m.typ.class == CLASS_SUCCESS_RESPONSE {
        return Ok(());
    }
    let mut code = ErrorCodeAttribute::default();
    code.get_from(&m).expect("an error code");
    Err((code.code.0, TextAttribute::get_from_as(&m, ATTR_NONCE).ok().map(|t| t.text)))
}

/// What the TURN server answers to `request`: `Ok(())` for a success, else the error code
/// and the nonce it names.
async fn exchange(socket: &UdpSocket, to: SocketAddr, request: &[u8]) -> Result<(), (u16, Option<String>)> {
    let mut buf = vec![0u8; 1500];
    for _ in 0..50 {
        socket.send_to(request, to).await.unwrap();
        let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await else {
            continue; // not listening yet, or lost
        };
        return verdict(&buf[..n]);
    }
    panic!("no answer from the TURN server at {to}");
}

/// Allocates with `(username, password)` on a fresh socket: the first answer brings the
/// nonce, the second is the verdict (`Ok`, or the error code).
async fn try_allocate(turn: SocketAddr, username: &str, password: &str) -> Result<(), u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let nonce = match exchange(&socket, turn, &allocate(None)).await {
        Err((401, Some(nonce))) => nonce,
        other => panic!("an unauthenticated Allocate is challenged: {other:?}"),
    };
    exchange(&socket, turn, &allocate(Some((username, password, &nonce)))).await.map_err(|(code, _)| code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_takes_the_credentials_in_joined_and_refuses_forged_or_expired_ones() {
    let Some(coturn) = Coturn::start() else {
        eprintln!("skipped: turnserver (coturn) is not installed");
        return;
    };
    let urls = format!("turn:{}?transport=udp", coturn.addr);
    let h = Harness::start_with(&["--turn-secret", SECRET, "--turn-urls", &urls, "--turn-ttl", "10m"]).await;
    let mut ws = Ws::connect(h.server.http).await;
    let (identity, ice_servers) = match ws.join("turn", "alice", None).await {
        ServerMessage::Joined { participant, ice_servers, .. } => (participant.name, ice_servers),
        other => panic!("joined: {other:?}"),
    };
    let [IceServer { urls: got_urls, username, credential }] = &ice_servers[..] else {
        panic!("one TURN server in joined: {ice_servers:?}")
    };
    assert_eq!(got_urls, &vec![urls.clone()]);
    let (expiry, who) = username.split_once(':').expect("expiry:identity");
    assert_eq!(who, identity, "the credential names the participant's identity");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().expect("Unix seconds");
    assert!((now + 590..=now + 610).contains(&expiry), "expires after --turn-ttl: {expiry} vs now {now}");

    let past = format!("{}:{identity}", now - 60);
    // columns: case, username, password, what coturn answers
    let rows: Vec<(&str, String, String, Result<(), u16>)> = vec![
        ("the credential from joined", username.clone(), credential.clone(), Ok(())),
        ("a forged password", username.clone(), "Zm9yZ2VkIHBhc3N3b3Jk".into(), Err(401)),
        ("another identity with this password", format!("{expiry}:mallory"), credential.clone(), Err(401)),
        ("a longer lifetime than granted", format!("{}:{identity}", expiry + 3600), credential.clone(), Err(401)),
        ("expired, though signed with the secret", past.clone(), signaling::turn::credential(SECRET, &past), Err(401)),
    ];
    for (case, user, pass, want) in rows {
        assert_eq!(try_allocate(coturn.addr, &user, &pass).await, want, "{case}");
    }
}

/// A signed CreatePermission for `peer`.
fn create_permission(username: &str, password: &str, nonce: &str, peer: SocketAddr) -> Vec<u8> {
    let peer = rtc::turn::proto::peeraddr::PeerAddress { ip: peer.ip(), port: peer.port() };
    let auth = Some((username, password, nonce));
    request(rtc::stun::message::METHOD_CREATE_PERMISSION, sfu::turn::REALM, auth, vec![Box::new(peer)])
}

/// One request and its answer over a TCP connection (STUN messages frame themselves).
async fn exchange_tcp(stream: &mut tokio::net::TcpStream, request: &[u8]) -> Result<(), (u16, Option<String>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.unwrap();
    let mut header = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header)).await.expect("an answer").unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([header[2], header[3]]))];
    stream.read_exact(&mut body).await.unwrap();
    verdict(&[&header[..], &body[..]].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_turn_server_takes_the_credentials_in_joined_and_relays_only_to_the_node() {
    let h = Harness::start_with(&["--turn", "127.0.0.1:0", "--turn-secret", SECRET, "--turn-ttl", "10m"]).await;
    let turn = h.server.turn;
    let (udp, tcp) = (turn.udp.expect("TURN over UDP"), turn.tcp.expect("TURN over TCP"));
    assert_eq!(udp.port(), tcp.port(), "UDP and TCP on one port number");
    let mut ws = Ws::connect(h.server.http).await;
    let (identity, ice_servers) = match ws.join("turn", "alice", None).await {
        ServerMessage::Joined { participant, ice_servers, .. } => (participant.name, ice_servers),
        other => panic!("joined: {other:?}"),
    };
    let [IceServer { urls, username, credential }] = &ice_servers[..] else {
        panic!("one TURN server in joined: {ice_servers:?}")
    };
    assert_eq!(
        urls,
        &vec![
            format!("turn:127.0.0.1:{}?transport=udp", udp.port()),
            format!("turn:127.0.0.1:{}?transport=tcp", tcp.port())
        ]
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (expiry, _) = username.split_once(':').unwrap();
    let past = format!("{}:{identity}", now - 60);
    // columns: case, username, password, what the embedded server answers
    let rows: Vec<(&str, String, String, Result<(), u16>)> = vec![
        ("the credential from joined", username.clone(), credential.clone(), Ok(())),
        ("a forged password", username.clone(), "Zm9yZ2VkIHBhc3N3b3Jk".into(), Err(401)),
        ("another identity with this password", format!("{expiry}:mallory"), credential.clone(), Err(401)),
        ("expired, though signed with the secret", past.clone(), signaling::turn::credential(SECRET, &past), Err(401)),
    ];
    for (case, user, pass, want) in rows {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let nonce = match exchange(&socket, udp, &allocate_in(sfu::turn::REALM, None)).await {
            Err((401, Some(nonce))) => nonce,
            other => panic!("challenged: {other:?}"),
        };
        let got = exchange(&socket, udp, &allocate_in(sfu::turn::REALM, Some((&user, &pass, &nonce)))).await;
        assert_eq!(got.map_err(|(c, _)| c), want, "{case}");
        if want.is_ok() {
            // the node's media port may be a peer; nothing else may
            let media = h.server.media_ports[0];
            let elsewhere: SocketAddr = "10.1.2.3:7882".parse().unwrap();
            // columns: peer, answer
            // (a permission is by IP; what is relayed must still go to a media port)
            for (peer, want) in [(media, Ok(())), (elsewhere, Err(403)), (SocketAddr::new(media.ip(), 22), Ok(()))] {
                let got = exchange(&socket, udp, &create_permission(&user, &pass, &nonce, peer)).await;
                assert_eq!(got.map_err(|(c, _)| c), want, "permission for {peer}");
            }
        }
    }

    // over TCP, the same credential
    let mut stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let nonce = match exchange_tcp(&mut stream, &allocate_in(sfu::turn::REALM, None)).await {
        Err((401, Some(nonce))) => nonce,
        other => panic!("challenged over TCP: {other:?}"),
    };
    let got = exchange_tcp(&mut stream, &allocate_in(sfu::turn::REALM, Some((username, credential, &nonce)))).await;
    assert_eq!(got, Ok(()), "allocated over TCP");

    let text = h.metrics().await;
    let metric = |name: &str| ops_common::metric(&text, name);
    assert_eq!(metric("sfu_turn_allocations"), Some(2.0), "one over UDP, one over TCP");
    assert_eq!(metric(r#"sfu_turn_requests_total{method="create_permission",result="forbidden"}"#), Some(1.0));
    assert_eq!(metric(r#"sfu_turn_connections{transport="tcp"}"#), Some(1.0));
    // the connection's allocation ends with it
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ops_common::metric(&h.metrics().await, "sfu_turn_allocations") != Some(1.0) {
        assert!(tokio::time::Instant::now() < deadline, "the TCP allocation ended with its connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tester_clients_receive_over_ice_tcp_and_turn_over_udp_and_tcp() {
    use loadtest::{Client, ClientStats, JoinOptions, MediaTransport, Role};
    use signaling::protocol::TrackKind;
    let h = Harness::start_with(&["--turn", "127.0.0.1:0"]).await;
    let publisher = h.publisher("paths", "pub").await;
    // columns: transport of a receiving client (and of its own publisher connection, unused)
    let transports = [MediaTransport::IceTcp, MediaTransport::TurnUdp, MediaTransport::TurnTcp];
    let mut clients = Vec::new();
    for t in transports {
        let opts = JoinOptions { transport: t, ..JoinOptions::on(&h.engine) };
        let mut c = Client::join(&h.url, "paths", &format!("via-{t}"), opts).await.expect("join");
        c.wait_connected(Role::Subscriber, common::STEP).await.unwrap_or_else(|e| panic!("{t}: {e}"));
        clients.push((t, c));
    }
    let enough = |s: &ClientStats| {
        s.first_of(TrackKind::Video).is_some_and(|v| v.frames >= 50)
            && s.first_of(TrackKind::Audio).is_some_and(|a| a.packets >= 100)
    };
    for (t, c) in &mut clients {
        let s =
            c.wait_stats(common::STEP, &format!("media over {t}"), enough).await.unwrap_or_else(|e| panic!("{t}: {e}"));
        let v = s.first_of(TrackKind::Video).unwrap();
        assert!(v.lost * 100 <= v.packets, "{t}: lost {} of {}", v.lost, v.packets);
    }
    let text = h.metrics().await;
    let metric = |name: &str| ops_common::metric(&text, name).unwrap_or(0.0);
    assert_eq!(metric("sfu_tcp_connections"), 1.0, "the ICE-TCP client's connection");
    assert_eq!(metric("sfu_turn_allocations"), 2.0, "one allocation per TURN client");
    assert_eq!(metric(r#"sfu_turn_connections{transport="tcp"}"#), 1.0);
    assert!(metric(r#"sfu_turn_relayed_packets_total{direction="to_client"}"#) > 300.0, "{text}");
    drop(publisher);
}
