//! [`Client`]: one participant, as tests and load scenarios drive it. Its peer connections
//! live in an [`Engine`] task (shared by many clients); its WebSocket in a small relay task.

use crate::engine::{ClientId, Command, Engine};
use crate::error::ClientError;
use crate::event::{Event, Role};
use crate::publisher::PublishOptions;
use crate::signal::{self, Outbound};
use crate::stats::ClientStats;
use signaling::protocol::{ClientMessage, ErrorCode, ParticipantInfo, ServerMessage};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How a client joins.
#[derive(Clone)]
pub struct JoinOptions {
    /// Engine to put the client's connections on; a new one is spawned when `None`.
    pub engine: Option<Engine>,
    /// Access token (not needed in dev mode).
    pub token: Option<String>,
    /// Time allowed for connecting and for the server's `joined`.
    pub timeout: Duration,
    /// Unconsumed events kept at most (the oldest are dropped beyond this).
    pub max_pending_events: usize,
    /// How the client's connections reach the server.
    pub transport: crate::MediaTransport,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            engine: None,
            token: None,
            timeout: Duration::from_secs(10),
            max_pending_events: 4096,
            transport: crate::MediaTransport::Udp,
        }
    }
}

impl JoinOptions {
    /// Options that put the client on `engine`.
    pub fn on(engine: &Engine) -> Self {
        JoinOptions { engine: Some(engine.clone()), ..Default::default() }
    }
}

/// A joined participant.
pub struct Client {
    id: ClientId,
    engine: Engine,
    outbound: mpsc::UnboundedSender<Outbound>,
    events: mpsc::UnboundedReceiver<Event>,
    pending: VecDeque<Event>,
    max_pending: usize,
    stats: watch::Receiver<ClientStats>,
    joined: signal::Joined,
    removed: bool,
}

impl Client {
    /// Connects to `url` (`ws://HOST:PORT/ws`), joins `room` as `name`, and starts relaying.
    pub async fn join(url: &str, room: &str, name: &str, options: JoinOptions) -> Result<Client, ClientError> {
        let connect = signal::connect(url);
        let (mut ws, local_ip) = tokio::time::timeout(options.timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout(format!("connecting to {url}")))??;
        let joined = signal::join(&mut ws, room, name, options.token.clone(), options.timeout).await?;
        let engine = options.engine.clone().unwrap_or_else(Engine::spawn);
        Client::with_signaling(engine, local_ip, joined, &options, move |id, engine, out_rx, ev_tx| {
            signal::run(ws, id, engine, out_rx, ev_tx)
        })
    }

    /// A client whose signaling is `run` (given the client's id, its engine, the frames the
    /// engine and the client send, and where server events go) instead of this server's
    /// WebSocket protocol: adaptors for other SFUs (`crate::janus`) drive the same engine.
    pub fn with_signaling<F>(
        engine: Engine,
        local_ip: std::net::IpAddr,
        joined: signal::Joined,
        options: &JoinOptions,
        run: impl FnOnce(
            crate::engine::ClientId,
            Engine,
            mpsc::UnboundedReceiver<Outbound>,
            mpsc::UnboundedSender<Event>,
        ) -> F,
    ) -> Result<Client, ClientError>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let path = crate::MediaPath::resolve(options.transport, &joined.ice_servers)?;
        let id = engine.new_client_id();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (stats_tx, stats_rx) = watch::channel(ClientStats::default());
        engine.send(Command::AddClient {
            id,
            local_ip,
            path,
            outbound: out_tx.clone(),
            events: ev_tx.clone(),
            stats: stats_tx,
        })?;
        tokio::spawn(run(id, engine.clone(), out_rx, ev_tx));
        Ok(Client {
            id,
            engine,
            outbound: out_tx,
            events: ev_rx,
            pending: VecDeque::new(),
            max_pending: options.max_pending_events.max(1),
            stats: stats_rx,
            joined,
            removed: false,
        })
    }

    /// This participant as the server describes it (its id is `participant().id`).
    pub fn participant(&self) -> &ParticipantInfo {
        &self.joined.participant
    }

    /// The other participants present at join time.
    pub fn participants_at_join(&self) -> &[ParticipantInfo] {
        &self.joined.participants
    }

    /// The engine this client's connections run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Opens the publisher connection with the default tracks (audio + q/h/f VP8) and offers.
    pub async fn publish(&self) -> Result<(), ClientError> {
        self.publish_with(PublishOptions::default()).await
    }

    /// Opens the publisher connection with `opts` and sends its offer.
    pub async fn publish_with(&self, opts: PublishOptions) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.engine.send(Command::Publish { id: self.id, opts, reply })?;
        rx.await.map_err(|_| ClientError::EngineGone)?
    }

    /// Sends a protocol message.
    pub fn send(&self, msg: ClientMessage) -> Result<(), ClientError> {
        self.outbound.send(Outbound::Message(msg)).map_err(|_| ClientError::Closed)
    }

    /// Sends an arbitrary frame (for testing how the server handles bad input).
    pub fn send_raw(&self, frame: Outbound) -> Result<(), ClientError> {
        self.outbound.send(frame).map_err(|_| ClientError::Closed)
    }

    /// Asks for at most `layer` (`"q"`, `"h"`, `"f"`) of remote video `track`; `None` clears it.
    pub fn set_layer(&self, track: &str, layer: Option<&str>) -> Result<(), ClientError> {
        self.send(ClientMessage::Subscription {
            track: track.to_owned(),
            paused: None,
            layer: Some(layer.map(str::to_owned)),
            width: None,
            height: None,
        })
    }

    /// Reports the size remote video `track` is rendered at.
    pub fn set_size(&self, track: &str, width: u32, height: u32) -> Result<(), ClientError> {
        self.send(ClientMessage::Subscription {
            track: track.to_owned(),
            paused: None,
            layer: None,
            width: Some(width),
            height: Some(height),
        })
    }

    /// Pauses or resumes remote video `track`.
    pub fn set_paused(&self, track: &str, paused: bool) -> Result<(), ClientError> {
        self.send(ClientMessage::Subscription {
            track: track.to_owned(),
            paused: Some(paused),
            layer: None,
            width: None,
            height: None,
        })
    }

    /// Emulates a downlink in front of this client's receiving connection: every datagram the
    /// server sends it crosses a link of `link`'s rate, delay, jitter, random loss and queue
    /// (tail drop) first, so the server sees real congestion on real UDP. `None` removes it.
    pub fn set_downlink(&self, link: Option<bwe::netem::LinkConfig>) -> Result<(), ClientError> {
        self.engine.send(Command::Downlink { id: self.id, link })
    }

    /// Sends raw datagrams from a connection's own socket to the server address it talks to.
    pub async fn inject_datagrams(&self, role: Role, datagrams: Vec<Vec<u8>>) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.engine.send(Command::Inject { id: self.id, role, datagrams, reply })?;
        rx.await.map_err(|_| ClientError::EngineGone)?
    }

    /// A fresh snapshot of this client's stats.
    pub async fn stats(&self) -> Result<ClientStats, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.engine.send(Command::Stats { id: self.id, reply })?;
        rx.await.map_err(|_| ClientError::EngineGone)
    }

    /// The periodically published stats (refreshed every [`crate::EngineOptions::stats_interval`]
    /// while something changed), as a receiver of its own: a load scenario can watch them
    /// while it waits for events.
    pub fn stats_watch(&self) -> watch::Receiver<ClientStats> {
        self.stats.clone()
    }

    /// Waits (at most `timeout`) until the periodically published stats satisfy `pred`.
    pub async fn wait_stats(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&ClientStats) -> bool,
    ) -> Result<ClientStats, ClientError> {
        let wait = async {
            loop {
                {
                    let s = self.stats.borrow_and_update();
                    if pred(&s) {
                        return Ok(s.clone());
                    }
                }
                if self.stats.changed().await.is_err() {
                    return Err(ClientError::EngineGone);
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => {
                let last = self.stats.borrow().clone();
                Err(ClientError::Timeout(format!("{what}; last stats: {last:?}")))
            }
        }
    }

    fn push_pending(&mut self, e: Event) {
        if self.pending.len() == self.max_pending {
            self.pending.pop_front();
        }
        self.pending.push_back(e);
    }

    /// Waits (at most `timeout`) for the first unconsumed event `matcher` accepts and consumes
    /// it; events it rejects stay queued for later waits.
    pub async fn wait_event<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut matcher: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T, ClientError> {
        while let Ok(e) = self.events.try_recv() {
            self.push_pending(e);
        }
        if let Some((i, v)) = self.pending.iter().enumerate().find_map(|(i, e)| matcher(e).map(|v| (i, v))) {
            self.pending.remove(i);
            return Ok(v);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => match matcher(&e) {
                    Some(v) => return Ok(v),
                    None => self.push_pending(e),
                },
                Ok(None) => return Err(ClientError::EngineGone),
                Err(_) => {
                    return Err(ClientError::Timeout(format!("{what}; unconsumed events: {:?}", self.pending)));
                }
            }
        }
    }

    /// Waits for the server's `error` and returns its code.
    pub async fn wait_error(&mut self, timeout: Duration) -> Result<(ErrorCode, String), ClientError> {
        self.wait_event(timeout, "an error message", |e| match e {
            Event::Server(ServerMessage::Error { code, message }) => Some((*code, message.clone())),
            _ => None,
        })
        .await
    }

    /// Waits until the connection `role` is connected.
    pub async fn wait_connected(&mut self, role: Role, timeout: Duration) -> Result<(), ClientError> {
        self.wait_event(timeout, &format!("{role:?} connected"), |e| (*e == Event::Connected(role)).then_some(())).await
    }

    /// Events received but not consumed by a wait yet, oldest first.
    pub fn pending_events(&mut self) -> Vec<Event> {
        while let Ok(e) = self.events.try_recv() {
            self.push_pending(e);
        }
        self.pending.iter().cloned().collect()
    }

    /// Sends `leave`, waits for the server to close the socket, and closes the connections.
    pub async fn leave(mut self, timeout: Duration) -> Result<(), ClientError> {
        self.send(ClientMessage::Leave {})?;
        let closed = self
            .wait_event(timeout, "socket close after leave", |e| (*e == Event::SignalingClosed).then_some(()))
            .await;
        self.remove();
        closed
    }

    fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            let _ = self.engine.send(Command::RemoveClient { id: self.id });
        }
    }
}

impl Drop for Client {
    /// Closes the connections; the dropped outbound queue closes the WebSocket.
    fn drop(&mut self) {
        self.remove();
    }
}
