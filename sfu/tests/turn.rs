//! TURN credentials against a real TURN server: Debian's coturn (`turnserver`, started here on
//! a loopback port with `use-auth-secret`) takes the credentials a node with `--turn-secret`
//! hands out in `joined`, and refuses forged and expired ones. Skipped, saying why, where
//! `turnserver` is not installed (the test command installs coturn).

mod common;
mod ops_common;

use common::Harness;
use ops_common::Ws;
use rtc::stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use rtc::stun::error_code::ErrorCodeAttribute;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{
    CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_ALLOCATE, Message, MessageType, Setter, TransactionId,
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
    let provider = rtc::crypto::default_provider().unwrap();
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
        Box::new(RequestedTransport { protocol: PROTO_UDP }),
    ];
    if let Some((username, password, nonce)) = auth {
        setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, username.to_owned())));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, REALM.to_owned())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.to_owned())));
        setters.push(Box::new(
            MessageIntegrity::new_long_term_integrity_with_provider(
                username.to_owned(),
                REALM.to_owned(),
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

/// What the TURN server answers to `request`: `Ok(())` for a success, else the error code
/// and the nonce it names.
async fn exchange(socket: &UdpSocket, to: SocketAddr, request: &[u8]) -> Result<(), (u16, Option<String>)> {
    let mut buf = vec![0u8; 1500];
    for _ in 0..50 {
        socket.send_to(request, to).await.unwrap();
        let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await else {
            continue; // not listening yet, or lost
        };
        let mut m = Message::new();
        m.unmarshal_binary(&buf[..n]).expect("a STUN answer");
        if m.typ.class == CLASS_SUCCESS_RESPONSE {
            return Ok(());
        }
        let mut code = ErrorCodeAttribute::default();
        code.get_from(&m).expect("an error code");
        let nonce = TextAttribute::get_from_as(&m, ATTR_NONCE).ok().map(|t| t.text);
        return Err((code.code.0, nonce));
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
