//! A Janus VideoRoom adaptor: the load tester's engine (publisher, subscribers, media, stats)
//! against Janus's HTTP API instead of this server's WebSocket protocol, so the same synthetic
//! publisher and the same receivers measure both servers (`fanout --peer janus`).
//!
//! One Janus session carries every client of a run: each client is a plugin handle on it, and
//! one long-poll task hands the session's events to their handles. A publisher joins a room as
//! `publisher` and publishes the engine's offer (audio + VP8 simulcast by rid); a subscriber
//! joins as `subscriber` of the publisher's feed, gets Janus's offer, and `start`s with the
//! engine's answer; a layer request becomes `configure` with the stream's `substream`.
//! `JANUS_DEBUG=1` prints the publisher's offer and Janus's answer.

use crate::client::{Client, JoinOptions};
use crate::engine::{ClientId, Command, Engine};
use crate::error::ClientError;
use crate::event::Event;
use crate::signal::{Joined, Outbound};
use serde_json::{Value, json};
use signaling::protocol::{ClientMessage, ParticipantInfo, TrackInfo, TrackKind, TrackRef};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The plugin every handle attaches to.
const VIDEOROOM: &str = "janus.plugin.videoroom";

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!("janus: {e}"))
}

/// One HTTP/1.0 exchange with Janus's HTTP transport; the JSON body of the answer.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut text = Vec::new();
    s.read_to_end(&mut text).await?;
    let text = String::from_utf8_lossy(&text);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| protocol("no HTTP header"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(protocol(format!("{method} {path}: {}", head.lines().next().unwrap_or(""))));
    }
    serde_json::from_str(body).map_err(|e| protocol(format!("{method} {path}: {e}: {body}")))
}

/// A Janus session shared by many clients.
pub struct Janus {
    addr: SocketAddr,
    /// This host's address toward Janus: where media sockets bind.
    local_ip: IpAddr,
    session: u64,
    /// Events of each handle, by handle id.
    handles: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
    next_transaction: AtomicU64,
}

/// A plugin handle and its events.
struct Handle {
    id: u64,
    events: mpsc::UnboundedReceiver<Value>,
}

impl Janus {
    /// Creates a session on the Janus at `addr` (its HTTP transport, `/janus`) and starts the
    /// long poll that carries its events.
    pub async fn connect(addr: SocketAddr) -> Result<Arc<Janus>, ClientError> {
        let local_ip = tokio::net::TcpStream::connect(addr).await?.local_addr()?.ip();
        let created = http(addr, "POST", "/janus", Some(&json!({"janus": "create", "transaction": "create"}))).await?;
        let session = created["data"]["id"].as_u64().ok_or_else(|| protocol(format!("create: {created}")))?;
        let janus = Arc::new(Janus {
            addr,
            local_ip,
            session,
            handles: Mutex::new(HashMap::new()),
            next_transaction: AtomicU64::new(1),
        });
        let poller = Arc::downgrade(&janus);
        tokio::spawn(async move {
            // ends when the last client (and so the Janus value) is gone
            while let Some(j) = poller.upgrade() {
                let path = format!("/janus/{}?maxev=50", j.session);
                let addr = j.addr;
                drop(j);
                let Ok(events) = http(addr, "GET", &path, None).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let Some(j) = poller.upgrade() else { break };
                let list = match events {
                    Value::Array(list) => list,
                    one => vec![one],
                };
                let handles = j.handles.lock().expect("not poisoned");
                for ev in list {
                    if let Some(tx) = ev["sender"].as_u64().and_then(|h| handles.get(&h)) {
                        let _ = tx.send(ev);
                    }
                }
            }
        });
        Ok(janus)
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next_transaction.fetch_add(1, Ordering::Relaxed))
    }

    async fn attach(&self) -> Result<Handle, ClientError> {
        let body = json!({"janus": "attach", "plugin": VIDEOROOM, "transaction": self.transaction()});
        let r = http(self.addr, "POST", &format!("/janus/{}", self.session), Some(&body)).await?;
        let id = r["data"]["id"].as_u64().ok_or_else(|| protocol(format!("attach: {r}")))?;
        let (tx, events) = mpsc::unbounded_channel();
        self.handles.lock().expect("not poisoned").insert(id, tx);
        Ok(Handle { id, events })
    }

    /// Sends a plugin message on `handle` (with `jsep`, if any); the synchronous answer.
    async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value, ClientError> {
        let mut m = json!({"janus": "message", "body": body, "transaction": self.transaction()});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let r = http(self.addr, "POST", &format!("/janus/{}/{handle}", self.session), Some(&m)).await?;
        match r["janus"].as_str() {
            Some("success" | "ack") => Ok(r),
            _ => Err(protocol(format!("{}: {r}", m["body"]))),
        }
    }

    /// Creates VideoRoom `room` for one publisher of audio and VP8 (no bitrate cap, keyframe
    /// requests to the publisher at most every 10 s as Janus's own default).
    pub async fn create_room(&self, room: u64) -> Result<(), ClientError> {
        let h = self.attach().await?;
        let body = json!({
            "request": "create", "room": room, "publishers": 4, "audiocodec": "opus", "videocodec": "vp8",
            "bitrate": 0, "fir_freq": 10, "notify_joining": false,
        });
        let r = self.message(h.id, body, None).await?;
        let data = &r["plugindata"]["data"];
        if data["videoroom"] != "created" && data["error_code"] != 427 {
            return Err(protocol(format!("create room: {r}")));
        }
        self.detach(h.id).await;
        Ok(())
    }

    /// Tells Janus this handle's candidates are all known (they are in its SDP).
    async fn end_of_candidates(&self, handle: u64) {
        let body = json!({"janus": "trickle", "candidate": {"completed": true}, "transaction": self.transaction()});
        let _ = http(self.addr, "POST", &format!("/janus/{}/{handle}", self.session), Some(&body)).await;
    }

    async fn detach(&self, handle: u64) {
        self.handles.lock().expect("not poisoned").remove(&handle);
        let body = json!({"janus": "detach", "transaction": self.transaction()});
        let _ = http(self.addr, "POST", &format!("/janus/{}/{handle}", self.session), Some(&body)).await;
    }

    /// Joins `room` as a publisher; the caller publishes with [`Client::publish_with`] as
    /// against this server. Returns the client and its feed id (what subscribers ask for).
    pub async fn publisher(
        self: &Arc<Self>,
        room: u64,
        name: &str,
        options: JoinOptions,
    ) -> Result<(Client, u64), ClientError> {
        let mut h = self.attach().await?;
        let body = json!({"request": "join", "ptype": "publisher", "room": room, "display": name});
        self.message(h.id, body, None).await?;
        let joined =
            next_event(&mut h, options.timeout, |ev| ev["plugindata"]["data"]["videoroom"] == "joined").await?;
        let feed = joined["plugindata"]["data"]["id"].as_u64().ok_or_else(|| protocol(format!("joined: {joined}")))?;
        let me = ParticipantInfo { id: feed.to_string(), name: name.to_owned(), tracks: vec![] };
        let info = Joined { room: room.to_string(), participant: me, participants: vec![], ice_servers: vec![] };
        let engine = options.engine.clone().unwrap_or_else(Engine::spawn);
        let janus = self.clone();
        let client = Client::with_signaling(engine, self.local_ip, info, &options, move |id, engine, out, ev| {
            publisher_task(janus, h, id, engine, out, ev)
        })?;
        Ok((client, feed))
    }

    /// Joins `room` as a subscriber of `feed` (audio and video), answering Janus's offer.
    pub async fn subscriber(
        self: &Arc<Self>,
        room: u64,
        feed: u64,
        name: &str,
        options: JoinOptions,
    ) -> Result<Client, ClientError> {
        self.subscriber_of(room, &[feed], name, options).await
    }

    /// Joins `room` as one subscriber of every feed of `feeds` (a conference participant's
    /// receiving side), answering Janus's offer. A feed Janus does not know yet (its publisher
    /// still connecting) is asked for again until `options.timeout`.
    pub async fn subscriber_of(
        self: &Arc<Self>,
        room: u64,
        feeds: &[u64],
        name: &str,
        options: JoinOptions,
    ) -> Result<Client, ClientError> {
        let deadline = tokio::time::Instant::now() + options.timeout;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let (h, attached) = loop {
            let mut h = self.attach().await?;
            let body = json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams});
            self.message(h.id, body, None).await?;
            match next_event(&mut h, options.timeout, |ev| ev["plugindata"]["data"]["videoroom"] == "attached").await {
                Ok(ev) => break (h, ev),
                Err(ClientError::Protocol(e))
                    if e.contains("No such feed") && tokio::time::Instant::now() < deadline =>
                {
                    self.detach(h.id).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    self.detach(h.id).await;
                    return Err(e);
                }
            }
        };
        let (offer, tracks) = offer_of(&attached)?;
        let publishers = feeds
            .iter()
            .map(|feed| ParticipantInfo {
                id: feed.to_string(),
                name: format!("publisher-{feed}"),
                tracks: tracks
                    .values()
                    .filter(|t| t.participant == feed.to_string())
                    .map(|t| TrackInfo {
                        id: t.track.clone(),
                        kind: t.kind,
                        layers: vec![],
                        source: signaling::protocol::TrackSource::for_kind(t.kind, None),
                    })
                    .collect(),
            })
            .collect();
        let me = ParticipantInfo { id: format!("sub-{}", h.id), name: name.to_owned(), tracks: vec![] };
        let info = Joined { room: room.to_string(), participant: me, participants: publishers, ice_servers: vec![] };
        let engine = options.engine.clone().unwrap_or_else(Engine::spawn);
        let janus = self.clone();
        Client::with_signaling(engine, self.local_ip, info, &options, move |id, engine, out, ev| {
            subscriber_task(janus, h, id, engine, out, ev, offer, tracks)
        })
    }
}

/// The next event of `h` that passes `want` (a plugin error ends the wait). Other events
/// (`webrtcup`, `media`, other publishers' notices) are skipped.
async fn next_event(h: &mut Handle, within: Duration, want: impl Fn(&Value) -> bool) -> Result<Value, ClientError> {
    let wait = async {
        while let Some(ev) = h.events.recv().await {
            let data = &ev["plugindata"]["data"];
            if data["error"].is_string() {
                return Err(protocol(format!("{}", data["error"])));
            }
            if want(&ev) {
                return Ok(ev);
            }
        }
        Err(ClientError::Closed)
    };
    tokio::time::timeout(within, wait).await.map_err(|_| ClientError::Timeout("janus event".into()))?
}

/// Janus's offer in a subscriber event, and which feed track each of its mids carries.
fn offer_of(ev: &Value) -> Result<(String, BTreeMap<String, TrackRef>), ClientError> {
    let sdp = ev["jsep"]["sdp"].as_str().ok_or_else(|| protocol(format!("no offer in {ev}")))?.to_owned();
    let mut tracks = BTreeMap::new();
    for s in ev["plugindata"]["data"]["streams"].as_array().into_iter().flatten() {
        let (Some(mid), Some(kind), Some(feed)) = (s["mid"].as_str(), s["type"].as_str(), s["feed_id"].as_u64()) else {
            continue;
        };
        let kind = match kind {
            "audio" => TrackKind::Audio,
            "video" => TrackKind::Video,
            _ => continue,
        };
        tracks.insert(mid.to_owned(), TrackRef { participant: feed.to_string(), track: format!("{feed}-{mid}"), kind });
    }
    Ok((sdp, tracks))
}

/// The publisher's signaling: its offer to `publish`, Janus's answer to the engine.
async fn publisher_task(
    janus: Arc<Janus>,
    mut h: Handle,
    id: ClientId,
    engine: Engine,
    mut out: mpsc::UnboundedReceiver<Outbound>,
    ev: mpsc::UnboundedSender<Event>,
) {
    while let Some(frame) = out.recv().await {
        match frame {
            Outbound::Message(ClientMessage::Offer { sdp, .. }) => {
                let offer_sdp = sdp.clone();
                let body = json!({"request": "publish", "audio": true, "video": true});
                // the engine's rids go lowest first (q;h;f); Janus assumes highest first
                let jsep = json!({"type": "offer", "sdp": sdp, "rid_order": "lmh"});
                let answer = match janus.message(h.id, body, Some(jsep)).await {
                    Ok(_) => {
                        janus.end_of_candidates(h.id).await;
                        next_event(&mut h, Duration::from_secs(20), |ev| ev["jsep"].is_object()).await
                    }
                    Err(e) => Err(e),
                };
                match answer.map(|a| a["jsep"]["sdp"].as_str().map(str::to_owned)) {
                    Ok(Some(sdp)) => {
                        if std::env::var_os("JANUS_DEBUG").is_some() {
                            eprintln!("OFFER\n{}\nANSWER\n{sdp}", offer_sdp);
                        }
                        let _ = engine.send(Command::PublisherAnswer { id, sdp });
                    }
                    Ok(None) => tracing::warn!("janus: publish answered without SDP"),
                    Err(e) => tracing::warn!("janus: publish: {e}"),
                }
            }
            Outbound::Message(ClientMessage::Leave {}) => break,
            _ => {}
        }
    }
    let _ = ev.send(Event::SignalingClosed);
    janus.detach(h.id).await;
}

/// A subscriber's signaling: Janus's offer to the engine, the engine's answer to `start`, layer
/// wishes to `configure`.
#[allow(clippy::too_many_arguments)]
async fn subscriber_task(
    janus: Arc<Janus>,
    h: Handle,
    id: ClientId,
    engine: Engine,
    mut out: mpsc::UnboundedReceiver<Outbound>,
    ev: mpsc::UnboundedSender<Event>,
    offer: String,
    tracks: BTreeMap<String, TrackRef>,
) {
    let mids: HashMap<String, String> = tracks.iter().map(|(mid, t)| (t.track.clone(), mid.clone())).collect();
    let _ = engine.send(Command::SubscriberOffer { id, sdp: offer, tracks });
    while let Some(frame) = out.recv().await {
        let (body, jsep) = match frame {
            Outbound::Message(ClientMessage::Answer { sdp }) => {
                (json!({"request": "start"}), Some(json!({"type": "answer", "sdp": sdp})))
            }
            Outbound::Message(ClientMessage::Subscription { track, layer: Some(layer), .. }) => {
                let Some(mid) = mids.get(&track) else { continue };
                let substream = match layer.as_deref() {
                    Some("q") => 0,
                    Some("h") => 1,
                    _ => 2,
                };
                (json!({"request": "configure", "streams": [{"mid": mid, "substream": substream}]}), None)
            }
            Outbound::Message(ClientMessage::Leave {}) => break,
            _ => continue,
        };
        let answered = jsep.is_some();
        if let Err(e) = janus.message(h.id, body, jsep).await {
            tracing::warn!("janus: subscriber: {e}");
        }
        if answered {
            janus.end_of_candidates(h.id).await;
        }
    }
    let _ = ev.send(Event::SignalingClosed);
    janus.detach(h.id).await;
}
