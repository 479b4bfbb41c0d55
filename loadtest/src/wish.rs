//! WHIP publishers (RFC 9725) and WHEP players on the load tester's engine, as encoders and
//! players use a server: the engine's offer goes to `POST /whip/{room}` or `/whep/{room}` with
//! the bearer token, the `201`'s answer comes back, `DELETE` on its `Location` ends it. Also
//! the plain HTTP requests the tests need.

use crate::client::{Client, JoinOptions};
use crate::engine::{Command, Engine};
use crate::error::ClientError;
use crate::event::{Event, Role};
use crate::signal::{Joined, Outbound};
use signaling::protocol::{ClientMessage, ParticipantInfo, TrackKind, TrackRef};
use std::collections::BTreeMap;
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

/// A WHIP or WHEP session as the client holds it.
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

/// What a client learned from its `POST`, once answered: the session, or why not.
pub type SessionSlot = Arc<Mutex<Option<Result<WhipSession, String>>>>;

/// The address this host reaches `server` from: where media sockets bind.
fn local_ip_toward(server: SocketAddr) -> std::io::Result<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind(SocketAddr::new(std::net::IpAddr::from([0, 0, 0, 0]), 0))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

/// What the client calls its join: it gets no `joined` from the server.
fn joined_as(room: &str, name: &str) -> Joined {
    let me = ParticipantInfo { id: format!("{name}-{room}"), name: name.into(), tracks: vec![] };
    Joined { room: room.to_owned(), participant: me, participants: vec![], ice_servers: vec![] }
}

/// `POST`s `offer` to `path`: the session and the answer from a `201`, else why not.
async fn post_offer(
    http: SocketAddr,
    path: &str,
    token: Option<&str>,
    offer: String,
) -> Result<(WhipSession, String), String> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/sdp")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    match request(http, "POST", path, &headers, &offer).await {
        Ok(r) if r.status == 201 => {
            let s = WhipSession {
                location: r.header("location").unwrap_or_default().to_owned(),
                etag: r.header("etag").map(str::to_owned),
                links: r.headers_named("link").map(str::to_owned).collect(),
                offer,
            };
            Ok((s, r.body))
        }
        Ok(r) => Err(format!("{}: {}", r.status, r.body.trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// Records the outcome of a `POST` in `slot` (and a failure as the client's event); the
/// session's location on success.
fn record(
    slot: &SessionSlot,
    result: Result<WhipSession, String>,
    ev: &mpsc::UnboundedSender<Event>,
    role: Role,
) -> Option<String> {
    if let Err(e) = &result {
        let _ = ev.send(Event::NegotiationFailed { role, error: e.clone() });
    }
    let location = result.as_ref().ok().map(|s| s.location.clone());
    *slot.lock().expect("not poisoned") = Some(result);
    location
}

/// Ends the session when the client leaves or is dropped.
async fn close(
    http: SocketAddr,
    location: Option<String>,
    mut out: mpsc::UnboundedReceiver<Outbound>,
    ev: mpsc::UnboundedSender<Event>,
) {
    while let Some(frame) = out.recv().await {
        if let Outbound::Message(ClientMessage::Leave {}) = frame {
            break;
        }
    }
    if let Some(l) = location {
        let _ = request(http, "DELETE", &l, &[], "").await;
    }
    let _ = ev.send(Event::SignalingClosed);
}

/// A client that publishes through WHIP at `http` into `room`. Call
/// [`Client::publish_with`] to send the offer; the slot then says where the session is.
pub fn publisher(
    http: SocketAddr,
    room: &str,
    token: Option<String>,
    options: JoinOptions,
) -> Result<(Client, SessionSlot), ClientError> {
    let engine = options.engine.clone().unwrap_or_else(Engine::spawn);
    let session: SessionSlot = Arc::new(Mutex::new(None));
    let slot = session.clone();
    let path = format!("/whip/{room}");
    let info = joined_as(room, "whip");
    let client = Client::with_signaling(
        engine,
        local_ip_toward(http)?,
        info,
        &options,
        move |id, engine, mut out, ev| async move {
            // the engine's offer, once the client publishes
            let mut location = None;
            while let Some(frame) = out.recv().await {
                match frame {
                    Outbound::Message(ClientMessage::Offer { sdp, .. }) => {
                        let result = post_offer(http, &path, token.as_deref(), sdp).await.map(|(s, answer)| {
                            let _ = engine.send(Command::PublisherAnswer { id, sdp: answer });
                            s
                        });
                        location = record(&slot, result, &ev, Role::Publisher);
                        break;
                    }
                    Outbound::Message(ClientMessage::Leave {}) => break,
                    _ => {}
                }
            }
            close(http, location, out, ev).await;
        },
    )?;
    Ok((client, session))
}

/// What a WHEP viewer's sections carry, by mid, as its stats name them (`audio`, `video`).
pub fn viewer_tracks() -> BTreeMap<String, TrackRef> {
    let track = |kind, name: &str| TrackRef { participant: "source".into(), track: name.into(), kind };
    [("0".to_owned(), track(TrackKind::Audio, "audio")), ("1".to_owned(), track(TrackKind::Video, "video"))]
        .into_iter()
        .collect()
}

/// A receive-only client that plays `room` through WHEP at `http` (`source`: whom to watch,
/// by participant id or name). Its receiving connection offers one audio and one video
/// section ([`viewer_tracks`]).
pub async fn viewer(
    http: SocketAddr,
    room: &str,
    source: Option<&str>,
    token: Option<String>,
    options: JoinOptions,
) -> Result<(Client, SessionSlot), ClientError> {
    let engine = options.engine.clone().unwrap_or_else(Engine::spawn);
    let session: SessionSlot = Arc::new(Mutex::new(None));
    let slot = session.clone();
    let mut path = format!("/whep/{room}");
    if let Some(s) = source {
        path.push_str(&format!("?source={s}"));
    }
    let info = joined_as(room, "whep");
    let client = Client::with_signaling(
        engine,
        local_ip_toward(http)?,
        info,
        &options,
        move |id, engine, out, ev| async move {
            let (reply, offer) = tokio::sync::oneshot::channel();
            let kinds = vec![TrackKind::Audio, TrackKind::Video];
            let offer = match engine.send(Command::ViewerOffer { id, kinds, reply }) {
                Ok(()) => {
                    offer.await.map_err(|_| "the engine stopped".to_owned()).and_then(|r| r.map_err(|e| e.to_string()))
                }
                Err(e) => Err(e.to_string()),
            };
            let result = match offer {
                Ok(sdp) => post_offer(http, &path, token.as_deref(), sdp).await.map(|(s, answer)| {
                    let _ = engine.send(Command::ViewerAnswer { id, sdp: answer, tracks: viewer_tracks() });
                    s
                }),
                Err(e) => Err(e),
            };
            let location = record(&slot, result, &ev, Role::Subscriber);
            close(http, location, out, ev).await;
        },
    )?;
    Ok((client, session))
}
