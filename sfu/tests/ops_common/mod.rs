//! Shared setup of the operations tests (auth, REST API, drain): nodes on loopback ports, a
//! plain HTTP/1.0 caller, WebSocket participants that speak the protocol by hand, tokens.

#![allow(dead_code)]

use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use signaling::auth::{self, ApiKey, Grants, TokenRequest};
use signaling::protocol::ServerMessage;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Generous bound for one step.
pub const STEP: Duration = Duration::from_secs(10);
/// The production key of these tests.
pub const KEY: &str = "opskey";
/// Its secret.
pub const SECRET: &str = "ops-secret-ops-secret-ops-secret-0123";

pub fn key() -> ApiKey {
    ApiKey { key: KEY.into(), secret: SECRET.into() }
}

/// Starts an in-process node with the test key on loopback ports, plus `extra` flags.
pub async fn start_node(extra: &[&str]) -> sfu::server::Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls=error")),
        )
        .with_test_writer()
        .try_init();
    let keys = format!("{KEY}:{SECRET}");
    let mut args = vec!["sfu", "--keys", &keys, "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let config = sfu::config::Config::parse_from(args);
    sfu::server::start(&config).await.expect("server starts")
}

/// A token signed with `key`.
pub fn token(key: &ApiKey, identity: &str, room: Option<&str>, grants: Grants) -> String {
    let req = TokenRequest {
        identity: identity.into(),
        name: None,
        room: room.map(Into::into),
        grants,
        ttl: Duration::from_secs(600),
    };
    auth::issue(key, &req).unwrap().0
}

pub fn admin(key: &ApiKey) -> String {
    token(key, "ops", None, Grants { admin: true, ..Grants::default() })
}

pub fn join_token(room: &str, identity: &str) -> String {
    token(&key(), identity, Some(room), Grants::participant())
}

/// One HTTP/1.0 request; returns status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect http");
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut text = String::new();
    let read = tokio::time::timeout(STEP, s.read_to_string(&mut text)).await.expect("http answer in time");
    // A node that exits right after answering (drain) may reset the connection after the
    // response: what was read is the answer; a reset before any byte is a failure.
    if let Err(e) = read {
        assert!(text.contains("\r\n\r\n"), "http {method} {path}: read failed before a response: {e}");
    }
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// [`http`] with a JSON answer.
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let (s, b) = http(addr, method, path, token, body).await;
    (s, serde_json::from_str(&b).unwrap_or(serde_json::Value::Null))
}

/// The value of a metric line `name value` (labels included in `name`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok())?
    })
}

pub async fn metrics(addr: SocketAddr) -> String {
    http(addr, "GET", "/metrics", None, None).await.1
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A signaling session driven by hand (joins, never publishes).
pub struct Ws {
    pub ws: Socket,
}

impl Ws {
    pub async fn connect(http: SocketAddr) -> Ws {
        Ws { ws: tokio_tungstenite::connect_async(format!("ws://{http}/ws")).await.expect("ws connect").0 }
    }

    pub async fn send(&mut self, v: serde_json::Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.expect("ws send");
    }

    /// The next server message, or `None` once the server closed the socket.
    pub async fn recv(&mut self, within: Duration) -> Option<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(within, self.ws.next()).await.expect("a server message in time");
            match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("server json")),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Waits for the first message `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, within: Duration, mut pick: impl FnMut(&ServerMessage) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await.expect("socket open");
            if let Some(v) = pick(&m) {
                return v;
            }
        }
    }

    /// Sends `join` and returns the first answer (`joined` or `error`).
    pub async fn join(&mut self, room: &str, name: &str, token: Option<&str>) -> ServerMessage {
        let mut m = json!({"type": "join", "room": room, "name": name});
        if let Some(t) = token {
            m["token"] = json!(t);
        }
        self.send(m).await;
        self.recv(STEP).await.expect("an answer to join")
    }

    /// Joins and returns the participant id; panics unless joined.
    pub async fn joined(http: SocketAddr, room: &str, name: &str, token: Option<&str>) -> (Ws, String) {
        let mut ws = Ws::connect(http).await;
        match ws.join(room, name, token).await {
            ServerMessage::Joined { participant, .. } => (ws, participant.id),
            other => panic!("join {room} as {name}: {other:?}"),
        }
    }

    /// Waits until the server closes the socket (messages before are skipped).
    pub async fn closed(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.recv(deadline.saturating_duration_since(tokio::time::Instant::now())).await.is_some() {}
    }
}

/// Waits until `node` reports `pred` true, woken by its change notifications.
pub async fn until(node: &signaling::Node, within: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let mut changed = node.subscribe();
    tokio::time::timeout(within, async {
        while !pred() {
            changed.changed().await.expect("node alive");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}
