//! A WHIP publisher (RFC 9725) on the load tester's engine, as an encoder would publish: the
//! engine's offer goes to `POST /whip/{room}` with the bearer token, the `201`'s answer comes
//! back, `DELETE` on its `Location` ends it. Also the plain HTTP requests the tests need.

use crate::client::{Client, JoinOptions};
use crate::engine::{ClientId, Command, Engine};
use crate::error::ClientError;
use crate::event::Event;
use crate::signal::{Joined, Outbound};
use signaling::protocol::{ClientMessage, ParticipantInfo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every header named `name` (lower case).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request (`headers` as `name: value` lines).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response, ClientError> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| ClientError::Protocol("no HTTP header".into()))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("no status line: {head}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Response { status, headers, body: body.to_owned() })
}

/// A WHIP session as the publisher holds it.
#[derive(Debug, Clone, Default)]
pub struct WhipSession {
    /// The session's URL path (`Location`).
    pub location: String,
    /// The answer's `ETag`.
    pub etag: Option<String>,
    /// `Link` headers (`rel="ice-server"`).
    pub links: Vec<String>,
    /// The offer that made it.
    pub offer: String,
}

/// What a WHIP publisher learned from its `POST`, once answered: the session, or why not.
pub type SessionSlot = Arc<Mutex<Option<Result<WhipSession, String>>>>;

/// A client that publishes through WHIP at `http` into `room`. Call
/// [`Client::publish_with`] to send the offer; the slot then says where the session is.
pub fn publisher(
    http: SocketAddr,
    room: &str,
    token: Option<String>,
    options: JoinOptions,
) -> Result<(Client, SessionSlot), ClientError> {
    let me = ParticipantInfo { id: format!("whip-{room}"), name: "whip".into(), tracks: vec![] };
    let info = Joined { room: room.to_owned(), participant: me, participants: vec![], ice_servers: vec![] };
    let engine = options.engine.clone().unwrap_or_else(Engine::spawn);
    // the address this host reaches the server from: where media sockets bind
    let probe = std::net::UdpSocket::bind(SocketAddr::new(std::net::IpAddr::from([0, 0, 0, 0]), 0))?;
    probe.connect(http)?;
    let local_ip = probe.local_addr()?.ip();
    let session = Arc::new(Mutex::new(None));
    let out = session.clone();
    let path = format!("/whip/{room}");
    let client = Client::with_signaling(engine, local_ip, info, &options, move |id, engine, rx, ev| {
        task(http, path, token, id, engine, rx, ev, out)
    })?;
    Ok((client, session))
}

#[allow(clippy::too_many_arguments)]
async fn task(
    http: SocketAddr,
    path: String,
    token: Option<String>,
    id: ClientId,
    engine: Engine,
    mut out: mpsc::UnboundedReceiver<Outbound>,
    ev: mpsc::UnboundedSender<Event>,
    session: SessionSlot,
) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut location = None;
    while let Some(frame) = out.recv().await {
        match frame {
            Outbound::Message(ClientMessage::Offer { sdp }) if location.is_none() => {
                let mut headers = vec![("Content-Type", "application/sdp")];
                if let Some(a) = &auth {
                    headers.push(("Authorization", a.as_str()));
                }
                let result = match request(http, "POST", &path, &headers, &sdp).await {
                    Ok(r) if r.status == 201 => {
                        let s = WhipSession {
                            location: r.header("location").unwrap_or_default().to_owned(),
                            etag: r.header("etag").map(str::to_owned),
                            links: r.headers_named("link").map(str::to_owned).collect(),
                            offer: sdp.clone(),
                        };
                        location = Some(s.location.clone());
                        let _ = engine.send(Command::PublisherAnswer { id, sdp: r.body });
                        Ok(s)
                    }
                    Ok(r) => Err(format!("{}: {}", r.status, r.body.trim())),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &result {
                    let _ = ev.send(Event::NegotiationFailed { role: crate::event::Role::Publisher, error: e.clone() });
                }
                *session.lock().expect("not poisoned") = Some(result);
            }
            Outbound::Message(ClientMessage::Leave {}) => break,
            _ => {}
        }
    }
    if let Some(l) = location {
        let _ = request(http, "DELETE", &l, &[], "").await;
    }
    let _ = ev.send(Event::SignalingClosed);
}
