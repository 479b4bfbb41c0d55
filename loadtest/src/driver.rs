//! The engine task: waits for a command, a datagram on any socket, or the earliest timer (a
//! connection's `poll_timeout` or a publisher's next frame); hands the input to the `rtc`
//! connection; then drains every connection it touched: datagrams go out on the connection's
//! socket, events and media come back into the publisher/subscriber logic.

use crate::engine::{ClientId, Command, EngineOptions, IdMap, PcId};
use crate::error::ClientError;
use crate::event::{Event, Role};
use crate::peer;
use crate::probe::WallClock;
use crate::publisher::{PublishOptions, Publisher};
use crate::recv::RtpView;
use crate::signal::Outbound;
use crate::socket::{Closer, PeerSocket, Received};
use crate::srtp_in::SrtpIn;
use crate::stats::ClientStats;
use crate::subscriber::Subscriber;
use crate::tunnel::{MediaPath, Tunnel};
use bwe::netem::Link;
use bytes::BytesMut;
use futures::stream::SelectAll;
use futures::{FutureExt, StreamExt};
use glue::timers::{TimerHeap, fire};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use signaling::protocol::{ClientMessage, TrackRef};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// Socket reads (a datagram or a GRO train each) handled per wake-up before output is flushed.
const BATCH: usize = 64;
/// A timer wake-up this late, or a flush this long, is logged: the engine's sockets overflow
/// and its connections' timers (ICE keepalives) run late meanwhile.
const STALL_WARN: Duration = Duration::from_millis(250);

enum Side {
    Publisher(Box<Publisher>),
    Subscriber(Box<Subscriber>),
}

/// One peer connection and its socket.
struct Pc {
    client: ClientId,
    role: Role,
    conn: RTCPeerConnection,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    remote: Option<SocketAddr>,
    side: Side,
    events: mpsc::UnboundedSender<Event>,
    /// Earliest `Timer::Pc` queued for it.
    armed: Option<Instant>,
    /// Earliest `Timer::Media` queued for it.
    media_armed: Option<Instant>,
    dirty: bool,
    stats_dirty: bool,
    /// Inbound RTP datagrams seen per SSRC (for simulated loss).
    rtp_in: Vec<(u32, u64)>,
    /// Sink mode: streams counted without decrypting.
    sink: Vec<crate::stats::SinkStream>,
    /// A subscriber's own inbound SRTP context, once connected (see [`crate::srtp_in`]).
    srtp_in: Option<SrtpIn>,
    /// Its way to the server when that is not straight UDP (ICE-TCP, TURN), once the
    /// server's SDP named its candidates.
    tunnel: Option<Tunnel>,
    _closer: Closer,
    _tunnel_closer: Option<Closer>,
}

struct ClientState {
    local_ip: IpAddr,
    path: MediaPath,
    outbound: mpsc::UnboundedSender<Outbound>,
    events: mpsc::UnboundedSender<Event>,
    stats: watch::Sender<ClientStats>,
    publisher: Option<PcId>,
    subscriber: Option<PcId>,
    /// The emulated downlink of its receiving connection, and the earliest `Timer::Link`
    /// queued for it.
    downlink: Option<(Link<(PcId, SocketAddr, BytesMut)>, Option<Instant>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Pc(PcId),
    Media(PcId),
    Stats,
    Link(ClientId),
}

/// State of the engine task.
pub(crate) struct Driver {
    opts: EngineOptions,
    clients: IdMap<ClientId, ClientState>,
    pcs: IdMap<PcId, Pc>,
    sockets: SelectAll<futures::stream::BoxStream<'static, Received>>,
    timers: TimerHeap<Timer>,
    /// When the next statistics are due (the stats timer's `armed`).
    stats_armed: Option<Instant>,
    dirty: Vec<PcId>,
    next_pc: u64,
    clock: WallClock,
}

impl Driver {
    pub(crate) fn new(opts: EngineOptions) -> Self {
        Driver {
            opts,
            clients: IdMap::default(),
            pcs: IdMap::default(),
            sockets: SelectAll::new(),
            timers: TimerHeap::default(),
            stats_armed: None,
            dirty: Vec::new(),
            next_pc: 1,
            clock: WallClock::new(),
        }
    }

    /// Runs until every engine handle is dropped.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let far = || Instant::now() + Duration::from_secs(3600);
        let mut sleep_at = far();
        let sleep = tokio::time::sleep_until(sleep_at.into());
        tokio::pin!(sleep);
        self.timers.arm(Timer::Stats, Instant::now() + self.opts.stats_interval, &mut self.stats_armed);
        loop {
            let next = self.timers.next().unwrap_or_else(far);
            if next != sleep_at {
                sleep.as_mut().reset(next.into());
                sleep_at = next;
            }
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd, Instant::now()),
                    None => break,
                },
                Some(rx) = self.sockets.next(), if !self.sockets.is_empty() => {
                    let now = Instant::now();
                    self.on_received(rx, now);
                    for _ in 0..BATCH {
                        match self.sockets.next().now_or_never() {
                            Some(Some(rx)) => self.on_received(rx, now),
                            _ => break,
                        }
                    }
                }
                () = &mut sleep => {
                    let now = Instant::now();
                    let late = now.saturating_duration_since(sleep_at);
                    if late > STALL_WARN {
                        // the task was not polled in time: the thread was busy elsewhere
                        tracing::warn!(late_ms = late.as_millis() as u64, pcs = self.pcs.len(), "engine woke late");
                    }
                    self.on_timers(now);
                }
            }
            let woke = Instant::now();
            self.flush();
            let took = woke.elapsed();
            if took > STALL_WARN {
                tracing::warn!(took_ms = took.as_millis() as u64, pcs = self.pcs.len(), "engine turn ran long");
            }
        }
        let ids: Vec<PcId> = self.pcs.keys().copied().collect();
        for id in ids {
            self.close_pc(id);
        }
    }

    fn mark(&mut self, id: PcId) {
        if let Some(pc) = self.pcs.get_mut(&id)
            && !pc.dirty
        {
            pc.dirty = true;
            self.dirty.push(id);
        }
    }

    fn on_received(&mut self, mut rx: Received, now: Instant) {
        while let Some(data) = rx.next_datagram() {
            let Some(pc) = self.pcs.get_mut(&rx.pc) else { return };
            let Some((from, data)) = (match pc.tunnel.as_mut() {
                Some(t) => t.receive(&pc.socket, rx.from, data),
                None => Some((rx.from, data)),
            }) else {
                continue;
            };
            self.on_datagram(rx.pc, from, data, now);
        }
    }

    fn on_datagram(&mut self, id: PcId, from: SocketAddr, data: BytesMut, now: Instant) {
        let Some(pc) = self.pcs.get(&id) else { return };
        if pc.role == Role::Subscriber
            && let Some(c) = self.clients.get_mut(&pc.client)
            && let Some((link, armed)) = c.downlink.as_mut()
        {
            let len = data.len();
            // a full queue or random loss drops it, as the link would
            let _ = link.send((id, from, data), len, now);
            if let Some(at) = link.next_arrival() {
                self.timers.arm(Timer::Link(pc.client), at, armed);
            }
            return;
        }
        self.on_arrived(id, from, data, now);
    }

    /// Datagrams of client `id`'s downlink that arrived by `now`, each handled at its arrival.
    fn on_link(&mut self, id: ClientId, now: Instant) {
        loop {
            let Some((link, _)) = self.clients.get_mut(&id).and_then(|c| c.downlink.as_mut()) else { return };
            let Some((at, (pc, from, data))) = link.recv(now) else { break };
            self.on_arrived(pc, from, data, at);
        }
        if let Some(c) = self.clients.get_mut(&id)
            && let Some((link, armed)) = c.downlink.as_mut()
            && let Some(at) = link.next_arrival()
        {
            self.timers.arm(Timer::Link(id), at, armed);
        }
    }

    /// A datagram that reached connection `id` at `now`.
    fn on_arrived(&mut self, id: PcId, from: SocketAddr, data: BytesMut, now: Instant) {
        let Some(pc) = self.pcs.get_mut(&id) else { return };
        if pc.role == Role::Subscriber && is_rtp(&data) {
            // SSRC and sequence number are in the clear in SRTP
            let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            let seq = u16::from_be_bytes([data[2], data[3]]);
            if let Some(every) = self.opts.drop_inbound_rtp_every {
                let i = match pc.rtp_in.iter().position(|(s, _)| *s == ssrc) {
                    Some(i) => i,
                    None => {
                        pc.rtp_in.push((ssrc, 0));
                        pc.rtp_in.len() - 1
                    }
                };
                pc.rtp_in[i].1 += 1;
                if pc.rtp_in[i].1 % u64::from(every.max(1)) == 0 {
                    return; // simulated loss
                }
            }
            if self.opts.sink_media {
                match pc.sink.iter_mut().find(|s| s.ssrc == ssrc) {
                    Some(s) => s.on_packet(seq),
                    None => pc.sink.push(crate::stats::SinkStream::new(ssrc, seq)),
                }
                pc.stats_dirty = true;
                return;
            }
            if let (Some(srtp), Side::Subscriber(sub)) = (&mut pc.srtp_in, &mut pc.side)
                && let Some(stream) = sub.own_stream(ssrc, seq)
            {
                let due = match srtp.open(data) {
                    Ok(clear) => {
                        sub.twcc.on_raw_header(&clear.packet[..clear.payload_at], now);
                        let view =
                            RtpView { seq: clear.seq, ts: clear.ts, marker: clear.marker, payload: clear.payload() };
                        sub.on_own_rtp(stream, view, now, self.clock.micros(now))
                    }
                    Err(e) => {
                        tracing::trace!(error = %e, ssrc, "inbound RTP dropped");
                        sub.on_undecryptable(stream);
                        false
                    }
                };
                pc.stats_dirty = true;
                if due {
                    self.mark(id);
                }
                return;
            }
        }
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: pc.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: data,
        };
        if let Err(e) = pc.conn.handle_read(msg) {
            tracing::trace!(error = %e, "datagram rejected");
        }
        self.mark(id);
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Pc(id) => {
                    let Some(pc) = self.pcs.get_mut(&id) else { continue };
                    if !fire(&mut pc.armed, at) {
                        continue; // superseded by an earlier one
                    }
                    tracing::trace!(pc = id.0, late_us = now.duration_since(at).as_micros() as u64, "handle_timeout");
                    if let Err(e) = pc.conn.handle_timeout(now) {
                        tracing::debug!(error = %e, "handle_timeout");
                    }
                    self.mark(id);
                }
                Timer::Media(id) => {
                    let Some(pc) = self.pcs.get_mut(&id) else { continue };
                    if !fire(&mut pc.media_armed, at) {
                        continue;
                    }
                    // a subscriber's feedback is sent by `drain`
                    if let Side::Publisher(p) = &mut pc.side {
                        p.on_timer(&mut pc.conn, now, &self.clock);
                        pc.stats_dirty = true;
                    }
                    self.mark(id);
                }
                Timer::Link(id) => {
                    let due = self
                        .clients
                        .get_mut(&id)
                        .and_then(|c| c.downlink.as_mut())
                        .is_some_and(|(_, armed)| fire(armed, at));
                    if due {
                        self.on_link(id, now);
                    }
                }
                Timer::Stats => {
                    if fire(&mut self.stats_armed, at) {
                        self.publish_stats();
                        self.timers.arm(Timer::Stats, now + self.opts.stats_interval, &mut self.stats_armed);
                    }
                }
            }
        }
    }

    fn flush(&mut self) {
        while let Some(id) = self.dirty.pop() {
            self.drain(id);
        }
    }

    /// Processes a connection's events and media, sends its datagrams, re-arms its timers.
    fn drain(&mut self, id: PcId) {
        let Some(pc) = self.pcs.get_mut(&id) else { return };
        pc.dirty = false;
        let now = Instant::now();
        while let Some(ev) = pc.conn.poll_event() {
            pc.on_event(ev, now, self.opts.decrypt_in_engine);
        }
        while let Some(msg) = pc.conn.poll_read() {
            match (&mut pc.side, msg.message) {
                (Side::Subscriber(s), RTCMessage::RtpPacket(track, pkt)) => {
                    s.on_rtp(&track, &pkt, msg.now, self.clock.micros(msg.now));
                    pc.stats_dirty = true;
                }
                (Side::Publisher(p), RTCMessage::RtcpPacket(_, pkts)) => {
                    p.on_rtcp(&pkts);
                    pc.stats_dirty = true;
                }
                (Side::Subscriber(s), RTCMessage::RtcpPacket(_, pkts)) => {
                    s.on_rtcp(&pkts, self.clock.micros(msg.now));
                    pc.stats_dirty = true;
                }
                _ => {}
            }
        }
        if let Side::Subscriber(s) = &mut pc.side {
            s.send_feedback(&mut pc.conn, now, self.clock.micros(now));
        }
        while let Some(out) = pc.conn.poll_write() {
            pc.remote = Some(out.transport.peer_addr);
            match pc.send(&out.message, out.transport.peer_addr) {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(pc = id.0, role = ?pc.role, error = %e, to = %out.transport.peer_addr, "send failed")
                }
            }
        }
        let next = pc.conn.poll_timeout();
        tracing::trace!(pc = id.0, in_ms = ?next.map(|t| t.saturating_duration_since(now).as_millis()), "poll_timeout");
        if let Some(t) = next {
            self.timers.arm(Timer::Pc(id), t, &mut pc.armed);
        }
        let media = match &pc.side {
            Side::Publisher(p) => p.next_due(),
            Side::Subscriber(s) => s.next_due(),
        };
        if let Some(t) = media {
            self.timers.arm(Timer::Media(id), t, &mut pc.media_armed);
        }
    }

    fn publish_stats(&mut self) {
        for (id, c) in &self.clients {
            let mut dirty = false;
            for pc in [c.publisher, c.subscriber].into_iter().flatten() {
                if let Some(pc) = self.pcs.get_mut(&pc) {
                    dirty |= std::mem::take(&mut pc.stats_dirty);
                }
            }
            if dirty && c.stats.receiver_count() > 0 {
                let snapshot = self.snapshot(*id);
                c.stats.send_replace(snapshot);
            }
        }
    }

    fn snapshot(&self, id: ClientId) -> ClientStats {
        let mut s = ClientStats::default();
        let Some(c) = self.clients.get(&id) else { return s };
        for pc in [c.publisher, c.subscriber].into_iter().flatten().filter_map(|p| self.pcs.get(&p)) {
            match &pc.side {
                Side::Publisher(p) => s.publisher = Some(p.stats.clone()),
                Side::Subscriber(sub) => {
                    s.tracks = sub.tracks.iter().map(|t| t.stats.clone()).collect();
                    s.sink = pc.sink.clone();
                }
            }
        }
        s
    }

    fn on_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::AddClient { id, local_ip, path, outbound, events, stats } => {
                let state = ClientState {
                    local_ip,
                    path,
                    outbound,
                    events,
                    stats,
                    publisher: None,
                    subscriber: None,
                    downlink: None,
                };
                self.clients.insert(id, state);
            }
            Command::Publish { id, opts, reply } => {
                let _ = reply.send(self.publish(id, opts, now));
            }
            Command::PublisherAnswer { id, sdp } => self.on_publisher_answer(id, sdp, now),
            Command::SubscriberOffer { id, sdp, tracks } => self.on_subscriber_offer(id, sdp, tracks, now),
            Command::Stats { id, reply } => {
                let _ = reply.send(self.snapshot(id));
            }
            Command::Inject { id, role, datagrams, reply } => {
                let _ = reply.send(self.inject(id, role, &datagrams));
            }
            Command::PublishLayers { id, active } => {
                let pc = self.clients.get(&id).and_then(|c| c.publisher).and_then(|p| self.pcs.get_mut(&p));
                if let Some(pc) = pc
                    && let Side::Publisher(p) = &mut pc.side
                {
                    p.set_active_layers(&active);
                    pc.stats_dirty = true;
                }
            }
            Command::ViewerOffer { id, kinds, reply } => {
                let _ = reply.send(self.viewer_offer(id, &kinds, now));
            }
            Command::ViewerAnswer { id, sdp, tracks } => self.viewer_answer(id, sdp, tracks, now),
            Command::Downlink { id, link } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    match (link, c.downlink.as_mut()) {
                        (Some(cfg), Some((l, _))) => l.set_config(cfg),
                        (Some(cfg), None) => c.downlink = Some((Link::new(cfg, id), None)),
                        (None, _) => c.downlink = None,
                    }
                }
            }
            Command::RemoveClient { id } => {
                if let Some(c) = self.clients.remove(&id) {
                    for pc in [c.publisher, c.subscriber].into_iter().flatten() {
                        self.close_pc(pc);
                    }
                }
            }
        }
    }

    /// Creates a connection with its own socket for `client`.
    /// A publisher connection is built with the tracks of `publish`.
    fn new_pc(&mut self, client: ClientId, publish: Option<PublishOptions>, now: Instant) -> Result<PcId, ClientError> {
        let c = self.clients.get(&client).ok_or(ClientError::Closed)?;
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(c.local_ip, 0))?;
        std_socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let local = socket.local_addr()?;
        let role = if publish.is_some() { Role::Publisher } else { Role::Subscriber };
        let mut conn = peer::new_connection_for(local, role, now)?;
        let side = match publish {
            Some(opts) => Side::Publisher(Box::new(Publisher::new(&mut conn, opts)?)),
            None => Side::Subscriber(Box::default()),
        };
        let id = PcId(self.next_pc);
        self.next_pc += 1;
        let (stream, closer) = PeerSocket::new(id, socket.clone());
        self.sockets.push(Box::pin(stream));
        let pc = Pc {
            client,
            role,
            conn,
            socket,
            local,
            remote: None,
            side,
            events: c.events.clone(),
            armed: None,
            media_armed: None,
            dirty: false,
            stats_dirty: false,
            rtp_in: Vec::new(),
            sink: Vec::new(),
            srtp_in: None,
            tunnel: None,
            _closer: closer,
            _tunnel_closer: None,
        };
        self.pcs.insert(id, pc);
        Ok(id)
    }

    fn publish(&mut self, client: ClientId, opts: PublishOptions, now: Instant) -> Result<(), ClientError> {
        let c = self.clients.get(&client).ok_or(ClientError::Closed)?;
        if c.publisher.is_some() {
            return Err(ClientError::Protocol("already publishing".into()));
        }
        let screen = opts.screen;
        let id = self.new_pc(client, Some(opts), now)?;
        let pc = self.pcs.get_mut(&id).expect("just inserted");
        let result = (|| {
            let offer = pc.conn.create_offer(None)?;
            pc.conn.set_local_description(now, offer)?;
            pc.conn.local_description().map(|d| d.sdp).ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)
        })();
        match result {
            Ok(sdp) => {
                let c = self.clients.get_mut(&client).expect("checked above");
                c.publisher = Some(id);
                let sources = crate::publisher::offer_sources(&sdp, screen);
                c.outbound
                    .send(Outbound::Message(ClientMessage::Offer { sdp, sources }))
                    .map_err(|_| ClientError::Closed)?;
                self.mark(id);
                Ok(())
            }
            Err(e) => {
                self.close_pc(id);
                Err(e.into())
            }
        }
    }

    fn on_publisher_answer(&mut self, client: ClientId, sdp: String, now: Instant) {
        let Some(id) = self.clients.get(&client).and_then(|c| c.publisher) else { return };
        let Some(pc) = self.pcs.get_mut(&id) else { return };
        let result = RTCSessionDescription::answer(sdp.clone()).and_then(|d| pc.conn.set_remote_description(now, d));
        let event = match result.map_err(|e| e.to_string()).and_then(|()| self.open_tunnel(client, id, &sdp)) {
            Ok(()) => Event::Negotiated { role: Role::Publisher, tracks: BTreeMap::new() },
            Err(error) => Event::NegotiationFailed { role: Role::Publisher, error },
        };
        if let Some(pc) = self.pcs.get(&id) {
            let _ = pc.events.send(event);
        }
        self.mark(id);
    }

    /// Sets up connection `id`'s way to the server its SDP describes, unless it is straight
    /// UDP or already set up.
    fn open_tunnel(&mut self, client: ClientId, id: PcId, remote_sdp: &str) -> Result<(), String> {
        let Some(path) = self.clients.get(&client).map(|c| c.path.clone()) else { return Ok(()) };
        let Some(pc) = self.pcs.get_mut(&id) else { return Ok(()) };
        if path == MediaPath::Direct || pc.tunnel.is_some() {
            return Ok(());
        }
        let (tunnel, stream) = crate::tunnel::open(id, &path, remote_sdp, &pc.socket).map_err(|e| e.to_string())?;
        tracing::debug!(pc = id.0, ?path, server = %tunnel.server, "media path set up");
        pc.tunnel = Some(tunnel);
        if let Some((stream, closer)) = stream {
            pc._tunnel_closer = Some(closer);
            self.sockets.push(Box::pin(stream));
        }
        Ok(())
    }

    fn on_subscriber_offer(&mut self, client: ClientId, sdp: String, tracks: BTreeMap<String, TrackRef>, now: Instant) {
        let Some(existing) = self.clients.get(&client).map(|c| c.subscriber) else { return };
        let id = match existing {
            Some(id) => id,
            None => match self.new_pc(client, None, now) {
                Ok(id) => {
                    self.clients.get_mut(&client).expect("checked above").subscriber = Some(id);
                    id
                }
                Err(e) => {
                    if let Some(c) = self.clients.get(&client) {
                        let _ =
                            c.events.send(Event::NegotiationFailed { role: Role::Subscriber, error: e.to_string() });
                    }
                    return;
                }
            },
        };
        if let Err(error) = self.open_tunnel(client, id, &sdp) {
            if let Some(pc) = self.pcs.get(&id) {
                let _ = pc.events.send(Event::NegotiationFailed { role: Role::Subscriber, error });
            }
            return;
        }
        let c = self.clients.get(&client).expect("checked above");
        let Some(pc) = self.pcs.get_mut(&id) else { return };
        let Side::Subscriber(sub) = &mut pc.side else { return };
        match sub.on_offer(&mut pc.conn, sdp, tracks.clone(), now) {
            Ok(answer) => {
                let _ = c.outbound.send(Outbound::Message(ClientMessage::Answer { sdp: answer }));
                let _ = pc.events.send(Event::Negotiated { role: Role::Subscriber, tracks });
            }
            Err(e) => {
                let _ = pc.events.send(Event::NegotiationFailed { role: Role::Subscriber, error: e.to_string() });
            }
        }
        self.mark(id);
    }

    /// A receive-only client's offer (WHEP): its receiving connection, made now.
    fn viewer_offer(
        &mut self,
        client: ClientId,
        kinds: &[signaling::protocol::TrackKind],
        now: Instant,
    ) -> Result<String, ClientError> {
        let id = self.new_pc(client, None, now)?;
        self.clients.get_mut(&client).ok_or(ClientError::Closed)?.subscriber = Some(id);
        let pc = self.pcs.get_mut(&id).ok_or(ClientError::Closed)?;
        let Side::Subscriber(sub) = &mut pc.side else { return Err(ClientError::Closed) };
        let sdp = sub.offer(&mut pc.conn, kinds, now).map_err(|e| ClientError::Rtc(e.to_string()))?;
        self.mark(id);
        Ok(sdp)
    }

    fn viewer_answer(&mut self, client: ClientId, sdp: String, tracks: BTreeMap<String, TrackRef>, now: Instant) {
        let Some(id) = self.clients.get(&client).and_then(|c| c.subscriber) else { return };
        let Some(pc) = self.pcs.get_mut(&id) else { return };
        let Side::Subscriber(sub) = &mut pc.side else { return };
        let event = match sub.on_answer(&mut pc.conn, sdp, tracks.clone(), now) {
            Ok(()) => Event::Negotiated { role: Role::Subscriber, tracks },
            Err(e) => Event::NegotiationFailed { role: Role::Subscriber, error: e.to_string() },
        };
        let _ = pc.events.send(event);
        self.mark(id);
    }

    fn inject(&mut self, client: ClientId, role: Role, datagrams: &[Vec<u8>]) -> Result<(), ClientError> {
        let c = self.clients.get(&client).ok_or(ClientError::Closed)?;
        let id = match role {
            Role::Publisher => c.publisher,
            Role::Subscriber => c.subscriber,
        };
        let pc = id.and_then(|id| self.pcs.get_mut(&id)).ok_or(ClientError::NoConnection(role))?;
        let to = pc.remote.ok_or(ClientError::NoConnection(role))?;
        for d in datagrams {
            pc.send(d, to)?;
        }
        Ok(())
    }

    fn close_pc(&mut self, id: PcId) {
        if let Some(mut pc) = self.pcs.remove(&id) {
            let _ = pc.conn.close();
            while let Some(out) = pc.conn.poll_write() {
                let _ = pc.send(&out.message, out.transport.peer_addr);
            }
            if let Some(t) = pc.tunnel.as_mut() {
                t.close(&pc.socket);
            }
            tracing::debug!(client = pc.client, role = ?pc.role, "peer connection closed");
        }
    }
}

impl Pc {
    /// Sends a datagram of its `rtc` connection: on its socket, or through its tunnel.
    fn send(&mut self, data: &[u8], to: SocketAddr) -> std::io::Result<()> {
        match &mut self.tunnel {
            Some(t) if to == t.server => t.send(&self.socket, data),
            Some(_) => Ok(()), // another candidate of the server: the tunnel carries one path
            None => self.socket.try_send_to(data, to).map(drop),
        }
    }

    fn on_event(&mut self, ev: RTCPeerConnectionEvent, now: Instant, decrypt_in_engine: bool) {
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                tracing::debug!(client = self.client, role = ?self.role, %state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        if let Side::Publisher(p) = &mut self.side {
                            p.start(now);
                        }
                        if self.role == Role::Subscriber && decrypt_in_engine && self.srtp_in.is_none() {
                            // the keys stay those of the first handshake (no DTLS renegotiation)
                            match self.conn.remote_srtp_keys().map(SrtpIn::new) {
                                Some(Ok(s)) => self.srtp_in = Some(s),
                                Some(Err(e)) => tracing::warn!(error = %e, "inbound RTP stays on rtc's path"),
                                None => tracing::warn!("no SRTP keys at connected: inbound RTP stays on rtc's path"),
                            }
                        }
                        let _ = self.events.send(Event::Connected(self.role));
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        let _ = self.events.send(Event::Disconnected(self.role));
                    }
                    RTCPeerConnectionState::Disconnected => {
                        let _ = self.events.send(Event::Interrupted(self.role));
                    }
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                if let Side::Subscriber(s) = &mut self.side {
                    s.on_track_open(&mut self.conn, &init);
                }
            }
            _ => {}
        }
    }
}

/// RTP (not RTCP, STUN or DTLS) by its first two bytes (RFC 7983, RFC 5761).
fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1])
}
