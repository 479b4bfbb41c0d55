//! A room core driven in memory with a virtual clock, for tests: no socket, no tokio, no
//! sleeping. Each client is real `rtc` peer connections (ICE, DTLS, SRTP) with the load
//! tester's synthetic publisher and its receiving side, whose VP8 parser and statistics are
//! independent of the server's: the oracle. The "network" moves every datagram at once, or
//! loses the ones a test's filter picks.

use super::core::RoomCore;
use super::{MediaAddr, RoomContext};
use crate::metrics::MediaMetrics;
use crate::udp::{Datagram, Demux};
use bwe::netem::{Link, LinkConfig};
use bytes::BytesMut;
use loadtest::probe::WallClock;
use loadtest::publisher::{PublishOptions, Publisher};
use loadtest::stats::TrackStats;
use loadtest::subscriber::Subscriber;
use loadtest::{Role, peer};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use signaling::protocol::{ServerMessage, SubscriptionRequest, TrackInfo, TrackKind};
use signaling::room::RoomCommand;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The server's media address (never bound).
const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7882);

/// One step of the virtual clock.
pub const TICK: Duration = Duration::from_millis(5);

/// Which way a datagram goes, for a loss filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From client `usize`'s connection to the server.
    Up(usize, Role),
    /// From the server to client `usize`'s connection.
    Down(usize, Role),
}

/// Decides whether a datagram is lost on the way.
pub type LossFilter = Box<dyn FnMut(Dir, &[u8]) -> bool>;

/// One participant's side.
pub struct Client {
    /// Its participant id.
    pub id: String,
    events: mpsc::Receiver<ServerMessage>,
    /// Every server message it received, in order.
    pub log: Vec<ServerMessage>,
    subscriber_pc: Option<(RTCPeerConnection, SocketAddr)>,
    /// What it received.
    pub subscriber: Subscriber,
    publisher_pc: Option<(RTCPeerConnection, SocketAddr)>,
    /// What it sent, when it publishes.
    pub publisher: Option<Publisher>,
    /// It is in the room.
    pub present: bool,
}

impl Client {
    /// Statistics of the received track `track`.
    pub fn track(&self, track: &str) -> Option<&TrackStats> {
        self.subscriber.tracks.iter().map(|t| &t.stats).find(|s| s.track == track)
    }

    /// Tracks announced to it (`track_published`, or present at its join).
    pub fn known_tracks(&self) -> Vec<TrackInfo> {
        let mut out = Vec::new();
        for m in &self.log {
            match m {
                ServerMessage::Joined { participants, .. } => {
                    out.extend(participants.iter().flat_map(|p| p.tracks.iter().cloned()))
                }
                ServerMessage::TrackPublished { track, .. } => out.push(track.clone()),
                _ => {}
            }
        }
        out
    }
}

/// A room core, its clients, and the virtual clock.
pub struct Sim {
    /// The room under test.
    pub core: RoomCore,
    /// Its metrics (a registry of its own).
    pub metrics: Arc<MediaMetrics>,
    demux: Arc<Demux>,
    _routes: mpsc::Receiver<Datagram>,
    /// The participants, by join order.
    pub clients: Vec<Client>,
    /// The virtual clock.
    pub now: Instant,
    clock: WallClock,
    next_port: u16,
    /// Datagrams lost on the way (none by default).
    pub loss: Option<LossFilter>,
    /// Emulated downlinks of subscriber connections, by client (none: instant delivery).
    links: Vec<Option<Link<(BytesMut, SocketAddr)>>>,
}

impl Sim {
    /// An empty room.
    pub fn new() -> Sim {
        let now = Instant::now();
        let metrics = Arc::new(MediaMetrics::new(&prometheus::Registry::new()));
        let demux = Arc::new(Demux::default());
        let ctx = RoomContext {
            demux: demux.clone(),
            metrics: metrics.clone(),
            addr: MediaAddr { local: SERVER, announce: vec![SERVER.ip()], tcp: None },
            next_key: Arc::default(),
            send_batch: 64,
            gso: false,
            quiet_viewers_above: 0,
            bwe_allocate: true,
            inject_room_panic: None,
        };
        let (tx, rx) = mpsc::channel(1);
        let core = RoomCore::new("sim".into(), ctx, tx, now);
        Sim {
            core,
            metrics,
            demux,
            _routes: rx,
            clients: Vec::new(),
            now,
            clock: WallClock::new(),
            next_port: 40000,
            loss: None,
            links: Vec::new(),
        }
    }

    /// Client `i`'s subscriber connection receives through a link of `cfg` (rate, delay,
    /// queue: a slow downlink), from now on.
    pub fn cap_downlink(&mut self, i: usize, cfg: LinkConfig) {
        if self.links.len() <= i {
            self.links.resize_with(i + 1, || None);
        }
        match self.links[i].as_mut() {
            Some(link) => link.set_config(cfg),
            None => self.links[i] = Some(Link::new(cfg, i as u64 + 1)),
        }
    }

    fn port(&mut self) -> SocketAddr {
        self.next_port += 1;
        SocketAddr::new(SERVER.ip(), self.next_port)
    }

    /// A participant joins (receiving media unless `subscribe` is false); returns its index.
    pub fn join(&mut self, name: &str, subscribe: bool) -> usize {
        let (tx, rx) = mpsc::channel(4096);
        let id = format!("PA_{name}");
        let cmd = RoomCommand::Join { participant: id.clone(), name: name.into(), events: tx, subscribe };
        self.add_client(id, rx, None, Subscriber::default(), cmd)
    }

    /// Adds a client whose join is `cmd`; its index.
    fn add_client(
        &mut self,
        id: String,
        events: mpsc::Receiver<ServerMessage>,
        subscriber_pc: Option<(RTCPeerConnection, SocketAddr)>,
        subscriber: Subscriber,
        cmd: RoomCommand,
    ) -> usize {
        let c = Client {
            id,
            events,
            log: Vec::new(),
            subscriber_pc,
            subscriber,
            publisher_pc: None,
            publisher: None,
            present: true,
        };
        self.clients.push(c);
        self.core.handle_command(self.now, cmd);
        self.pump();
        self.clients.len() - 1
    }

    /// A receive-only viewer (WHEP) joins with an offer of one audio and one video section,
    /// watching `source` (an id or name; `None`: the first publisher); returns its index.
    pub fn join_viewer(&mut self, name: &str, source: Option<&str>) -> usize {
        let (tx, rx) = mpsc::channel(4096);
        let id = format!("PA_{name}");
        let addr = self.port();
        let mut pc = peer::new_connection_for(addr, Role::Subscriber, self.now).expect("viewer connection");
        let mut subscriber = Subscriber::default();
        let offer = subscriber.offer(&mut pc, &[TrackKind::Audio, TrackKind::Video], self.now).expect("viewer offer");
        let cmd = RoomCommand::JoinViewer {
            participant: id.clone(),
            name: name.into(),
            events: tx,
            offer,
            source: source.map(str::to_owned),
        };
        self.add_client(id, rx, Some((pc, addr)), subscriber, cmd)
    }

    /// Client `i` publishes (audio and q/h/f video by default) with `opts`.
    pub fn publish(&mut self, i: usize, opts: PublishOptions) {
        let addr = self.port();
        let mut pc = peer::new_connection_for(addr, Role::Publisher, self.now).expect("publisher connection");
        let screen = opts.screen;
        let publisher = Publisher::new(&mut pc, opts).expect("publisher");
        let offer = pc.create_offer(None).expect("offer");
        pc.set_local_description(self.now, offer).expect("local offer");
        let sdp = pc.local_description().expect("offer").sdp;
        let c = &mut self.clients[i];
        c.publisher_pc = Some((pc, addr));
        c.publisher = Some(publisher);
        let participant = c.id.clone();
        let sources = loadtest::publisher::offer_sources(&sdp, screen);
        self.core.handle_command(self.now, RoomCommand::Offer { participant, sdp, sources });
        self.pump();
    }

    /// Client `i` leaves.
    pub fn leave(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.present = false;
        c.subscriber_pc = None;
        c.publisher_pc = None;
        let participant = c.id.clone();
        self.core.handle_command(self.now, RoomCommand::Leave { participant });
        self.pump();
    }

    /// Client `i` asks for `track` as `request` says.
    pub fn subscription(&mut self, i: usize, track: &str, request: SubscriptionRequest) {
        let participant = self.clients[i].id.clone();
        self.core.handle_command(self.now, RoomCommand::Subscription { participant, track: track.into(), request });
        self.pump();
    }

    /// Any command, as signaling would send it.
    pub fn command(&mut self, cmd: RoomCommand) {
        self.core.handle_command(self.now, cmd);
        self.pump();
    }

    /// The id of the first track of `kind` that client `i` was told of.
    pub fn track_of(&self, i: usize, kind: TrackKind) -> String {
        let tracks = self.clients[i].known_tracks();
        tracks.iter().find(|t| t.kind == kind).map(|t| t.id.clone()).expect("a track of that kind")
    }

    /// Runs the clock for `d`, moving every datagram as it is sent.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += TICK;
            self.tick();
        }
    }

    /// Runs until `done` holds, at most `limit`; false if it never did.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        while !done(self) {
            if self.now >= end {
                return false;
            }
            self.now += TICK;
            self.tick();
        }
        true
    }

    /// Everyone's timers at `now`, then the traffic they cause.
    fn tick(&mut self) {
        let now = self.now;
        if self.core.poll_timeout() <= now {
            self.core.handle_timeout(now);
        }
        for c in &mut self.clients {
            if let Some((pc, _)) = c.publisher_pc.as_mut() {
                let _ = pc.handle_timeout(now);
                if let Some(p) = c.publisher.as_mut() {
                    p.on_timer(pc, now, &self.clock);
                }
            }
            if let Some((pc, _)) = c.subscriber_pc.as_mut() {
                let _ = pc.handle_timeout(now);
                c.subscriber.send_feedback(pc, now, 0);
            }
        }
        self.pump();
    }

    /// Moves signaling and datagrams until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = self.signal();
            moved |= self.uplink();
            moved |= self.downlink();
            if !moved {
                return;
            }
        }
    }

    /// Delivers the server's messages to each client and answers them as a client does.
    fn signal(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.clients.len() {
            while let Ok(m) = self.clients[i].events.try_recv() {
                moved = true;
                self.on_message(i, &m);
                self.clients[i].log.push(m);
            }
        }
        moved
    }

    fn on_message(&mut self, i: usize, m: &ServerMessage) {
        let now = self.now;
        match m {
            ServerMessage::Offer { sdp, tracks } => {
                if self.clients[i].subscriber_pc.is_none() {
                    let addr = self.port();
                    let pc = peer::new_connection_for(addr, Role::Subscriber, now).expect("subscriber connection");
                    self.clients[i].subscriber_pc = Some((pc, addr));
                }
                let c = &mut self.clients[i];
                let (pc, _) = c.subscriber_pc.as_mut().expect("just made");
                let answer = c.subscriber.on_offer(pc, sdp.clone(), tracks.clone(), now).expect("answer");
                let participant = c.id.clone();
                self.core.handle_command(now, RoomCommand::Answer { participant, sdp: answer });
            }
            ServerMessage::PublishLayers { active, .. } => {
                if let Some(p) = self.clients[i].publisher.as_mut() {
                    p.set_active_layers(active);
                }
            }
            ServerMessage::Answer { sdp } if self.clients[i].publisher_pc.is_none() => {
                // a viewer's answer: its sections carry what it watches
                let c = &mut self.clients[i];
                let (pc, _) = c.subscriber_pc.as_mut().expect("a viewer offered");
                let tracks = loadtest::wish::viewer_tracks();
                c.subscriber.on_answer(pc, sdp.clone(), tracks, now).expect("answer applies");
            }
            ServerMessage::Answer { sdp } => {
                let (pc, _) = self.clients[i].publisher_pc.as_mut().expect("a publisher offered");
                let answer = RTCSessionDescription::answer(sdp.clone()).expect("answer sdp");
                pc.set_remote_description(now, answer).expect("answer applies");
            }
            _ => {}
        }
    }

    /// Every client's datagrams to the server, through the demux as the reader routes them.
    fn uplink(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for (i, c) in self.clients.iter_mut().enumerate() {
            for (role, slot) in [(Role::Publisher, &mut c.publisher_pc), (Role::Subscriber, &mut c.subscriber_pc)] {
                let Some((pc, addr)) = slot.as_mut() else { continue };
                while let Some(out) = pc.poll_write() {
                    moved = true;
                    if self.loss.as_mut().is_some_and(|lose| lose(Dir::Up(i, role), &out.message)) {
                        continue;
                    }
                    let Ok(route) = self.demux.route(&out.message, *addr) else { continue };
                    let dg = Datagram { peer: route.peer, from: (*addr).into(), at: now, data: out.message };
                    self.core.handle_datagram(now, dg);
                }
                while let Some(e) = pc.poll_event() {
                    match (role, e) {
                        (Role::Publisher, RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s)) => {
                            if s == RTCPeerConnectionState::Connected
                                && let Some(p) = c.publisher.as_mut()
                            {
                                p.start(now);
                            }
                        }
                        (Role::Subscriber, RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))) => {
                            c.subscriber.on_track_open(pc, &init)
                        }
                        _ => {}
                    }
                }
                while let Some(m) = pc.poll_read() {
                    match (role, m.message) {
                        (Role::Publisher, RTCMessage::RtcpPacket(_, p)) => {
                            if let Some(publisher) = c.publisher.as_mut() {
                                publisher.on_rtcp(&p);
                            }
                        }
                        (Role::Subscriber, RTCMessage::RtpPacket(track, pkt)) => {
                            // when it arrived (a capped downlink delivers between ticks)
                            c.subscriber.on_rtp(&track, &pkt, m.now, 0);
                        }
                        (Role::Subscriber, RTCMessage::RtcpPacket(_, p)) => c.subscriber.on_rtcp(&p, 0),
                        _ => {}
                    }
                }
            }
        }
        moved
    }

    /// The server's datagrams to each client's connection.
    fn downlink(&mut self) -> bool {
        let now = self.now;
        let sends = self.core.transmit(now).take_for_test();
        if self.core.forwarded() {
            self.core.on_sent(now);
        }
        let mut moved = !sends.is_empty();
        let mut arrived = Vec::with_capacity(sends.len());
        for (data, to) in sends {
            let capped = self.clients.iter().position(|c| c.subscriber_pc.as_ref().is_some_and(|(_, a)| *a == to));
            match capped.and_then(|i| self.links.get_mut(i)).and_then(Option::as_mut) {
                Some(link) => {
                    let len = data.len();
                    // a full queue drops it, as a bottleneck does
                    let _ = link.send((data, to), len, now);
                }
                None => arrived.push((now, data, to)),
            }
        }
        for link in self.links.iter_mut().flatten() {
            while let Some((at, (data, to))) = link.recv(now) {
                arrived.push((at, data, to));
                moved = true;
            }
        }
        for (at, data, to) in arrived {
            let found = self.clients.iter_mut().enumerate().find_map(|(i, c)| {
                let publisher = c.publisher_pc.as_mut().filter(|(_, a)| *a == to).map(|(pc, _)| (pc, Role::Publisher));
                publisher
                    .or_else(|| {
                        c.subscriber_pc.as_mut().filter(|(_, a)| *a == to).map(|(pc, _)| (pc, Role::Subscriber))
                    })
                    .map(|(pc, role)| (i, role, pc))
            });
            let Some((i, role, pc)) = found else { continue };
            if self.loss.as_mut().is_some_and(|lose| lose(Dir::Down(i, role), &data)) {
                continue;
            }
            let transport = TransportContext {
                local_addr: to,
                peer_addr: SERVER,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            };
            let _ = pc.handle_read(TaggedBytesMut { now: at, transport, message: data });
        }
        moved
    }
}

/// True for an RTP datagram (not RTCP, STUN or DTLS).
pub fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1])
}
