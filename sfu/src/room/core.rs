//! The room core: every peer connection, track and forwarding state of one room, sans-IO.
//!
//! Inputs come in with the time they are handled at: [`RoomCore::handle_command`],
//! [`RoomCore::handle_datagram`], [`RoomCore::handle_timeout`] (when [`RoomCore::poll_timeout`]
//! says). [`RoomCore::transmit`] then runs what they caused (it drains every connection they
//! touched: events and media come back into the core, see `media_path.rs`) and hands out the
//! datagrams to send. Signaling leaves through each participant's event queue. The driver
//! (`driver.rs`) owns the socket and the clock; tests drive a core with a virtual clock and no
//! socket (`core_tests.rs`).

use super::RoomContext;
use super::participant::Participant;
use super::peer::{self, Liveness, Peer, Role};
use super::track::PublishedTrack;
use crate::drop_reason::DropReason;
use crate::udp::{Datagram, Path, PeerKey, Route, SendBatch};
use glue::timers::{TimerHeap, fire};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::TaggedRTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext};
use rustc_hash::FxHashMap;
use signaling::protocol::{ErrorCode, ServerMessage};
use signaling::room::RoomCommand;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Reconnects after a drain deadline are spread over this many milliseconds.
const EVACUATE_SPREAD_MS: u64 = 2000;

/// Sender reports go out in this many slices per interval, so a large room never sends all of
/// them in one burst.
pub(super) const REPORT_SLICES: u32 = 10;

/// State of one room, owned by its driver task.
pub struct RoomCore {
    pub(super) name: String,
    pub(super) ctx: RoomContext,
    pub(super) datagrams: mpsc::Sender<Datagram>,
    pub(super) participants: Vec<Participant>,
    pub(super) tracks: Vec<PublishedTrack>,
    /// Boxed: the map's slots stay small and cache-resident (a connection is ~9 KB), so the
    /// fan-out's lookup per subscriber costs no miss of its own.
    pub(super) peers: FxHashMap<PeerKey, Box<Peer>>,
    /// Publishers' streams by (connection, SSRC): the track index and layer, so a packet finds
    /// its track without a scan. Cleared when the tracks move (`roster_changed`).
    pub(super) streams: FxHashMap<(PeerKey, u32), (u32, crate::forward::Layer)>,
    /// Peer timers by due time; an entry is live while it equals its peer's `armed`.
    timers: TimerHeap<PeerKey>,
    /// Connections with pending output.
    pub(super) queued: Vec<PeerKey>,
    /// Datagrams produced since the last [`RoomCore::transmit`] was sent.
    pub(super) sends: SendBatch,
    /// Operator state: muted tracks, deleted room (see `admin.rs`).
    pub(super) admin: super::admin_state::AdminState,
    events_buf: Vec<RTCPeerConnectionEvent>,
    reads_buf: Vec<TaggedRTCMessage>,
    /// Arrival times of the packets forwarded since the last [`RoomCore::on_sent`] (forwarding
    /// delay).
    pub(super) forwarded_arrivals: Vec<Instant>,
    /// Source of [`PublishedTrack::key`]s.
    pub(super) next_track_key: u32,
    /// Who is talking, from publishers' audio levels (`active_speakers`).
    pub(super) speakers: crate::forward::speaker::Speakers<String>,
    /// Participants or downtracks changed: every track's [`PublishedTrack::fanout`] is rebuilt
    /// before the next packet is forwarded.
    pub(super) fanout_stale: bool,
    /// When the next slice of sender reports is due.
    next_reports: Instant,
    /// Slices sent so far (participant `i` reports in slice `i % REPORT_SLICES`).
    pub(super) report_slice: u32,
    /// Some participant's signaling queue overflowed (see `participant::queue`).
    pub(super) overflow: Arc<AtomicBool>,
    /// Subscriber connections with paced packets waiting or a probe cluster running (see
    /// `probing.rs`).
    pub(super) scheduled: Vec<PeerKey>,
    /// When one of them is next due.
    pub(super) next_egress: Option<Instant>,
    /// An instant and the wall clock (NTP) at it: sender reports derive NTP times from `now`.
    ntp_base: (Instant, u64),
}

impl RoomCore {
    /// A room with no participants; the demux routes its connections' datagrams to
    /// `datagrams`.
    pub fn new(name: String, ctx: RoomContext, datagrams: mpsc::Sender<Datagram>, now: Instant) -> Self {
        let (send_batch, gso) = (ctx.send_batch, ctx.gso);
        RoomCore {
            name,
            ctx,
            datagrams,
            participants: Vec::new(),
            tracks: Vec::new(),
            peers: FxHashMap::default(),
            streams: FxHashMap::default(),
            timers: TimerHeap::default(),
            admin: Default::default(),
            queued: Vec::new(),
            sends: {
                let mut b = SendBatch::new(send_batch);
                b.set_gso(gso);
                b
            },
            events_buf: Vec::new(),
            reads_buf: Vec::new(),
            forwarded_arrivals: Vec::new(),
            next_track_key: 0,
            speakers: Default::default(),
            fanout_stale: false,
            next_reports: now,
            report_slice: 0,
            overflow: Arc::default(),
            scheduled: Vec::new(),
            next_egress: None,
            ntp_base: (now, super::egress::ntp_now()),
        }
    }

    /// The wall clock at `now`, as an NTP timestamp (32.32).
    pub(super) fn ntp_at(&self, now: Instant) -> u64 {
        let (at, ntp) = self.ntp_base;
        let d = now.saturating_duration_since(at);
        ntp.wrapping_add((d.as_secs() << 32) + ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000))
    }

    /// A command from signaling.
    pub fn handle_command(&mut self, now: Instant, cmd: RoomCommand) {
        self.on_command(cmd, now);
    }

    /// A datagram the demux routed to one of the room's connections.
    pub fn handle_datagram(&mut self, now: Instant, dg: Datagram) {
        self.on_datagram(dg, now);
    }

    /// Runs the timers due at `now` (see [`RoomCore::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.on_timeout(now);
    }

    /// When the core next wants [`RoomCore::handle_timeout`].
    pub fn poll_timeout(&self) -> Instant {
        let t = self.timers.next().map_or(self.next_reports, |t| t.min(self.next_reports));
        self.next_egress.map_or(t, |p| p.min(t))
    }

    /// Runs what the inputs since the last call caused (participants whose signaling queue
    /// overflowed leave; every touched connection is drained, which forwards its media) and
    /// returns the datagrams to send: the caller sends them, then reports with
    /// [`RoomCore::on_sent`].
    pub fn transmit(&mut self, now: Instant) -> &mut SendBatch {
        loop {
            while let Some(key) = self.queued.pop() {
                self.drain_peer(key, now);
            }
            if !self.overflow.swap(false, Ordering::Relaxed) {
                return &mut self.sends;
            }
            self.remove_overflowed(now);
        }
    }

    /// Packets were forwarded since the last [`RoomCore::on_sent`].
    pub fn forwarded(&self) -> bool {
        !self.forwarded_arrivals.is_empty()
    }

    /// The datagrams of the last [`RoomCore::transmit`] were handed to the kernel at `sent`:
    /// the forwarding delay of each packet they carried.
    pub fn on_sent(&mut self, sent: Instant) {
        for arrived in self.forwarded_arrivals.drain(..) {
            self.ctx.metrics.forward_delay.observe(sent.saturating_duration_since(arrived).as_secs_f64());
        }
    }

    /// Removes the participants whose signaling queue overflowed: dropping their event sender
    /// ends their session, which closes the socket (the client may rejoin).
    fn remove_overflowed(&mut self, now: Instant) {
        let ids: Vec<String> =
            self.participants.iter().filter(|p| p.overflowed.load(Ordering::Relaxed)).map(|p| p.id.clone()).collect();
        for id in ids {
            self.ctx.metrics.signaling_overflows.inc();
            tracing::warn!(room = %self.name, participant = %id, "removed: its signaling queue overflowed");
            self.leave(&id, now);
        }
    }

    /// Removes the participants with a connection that never connected in time or failed:
    /// they hold a slot and would never receive (or send) media; the client is told why and
    /// may join again.
    fn remove_dead(&mut self, now: Instant) {
        let dead: Vec<String> = self.peers.values().filter(|p| p.dead(now)).map(|p| p.owner.clone()).collect();
        for id in dead {
            if self.participant_index(&id).is_none() {
                continue; // both of its connections were dead
            }
            self.ctx.metrics.connection_failures.inc();
            tracing::warn!(room = %self.name, participant = %id, "removed: a media connection did not connect or failed");
            self.reply_error(
                &id,
                ErrorCode::ConnectionFailed,
                "a media connection did not connect in time or failed; join again",
            );
            self.leave(&id, now);
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if self.next_egress.is_some_and(|t| t <= now) {
            self.service_egress(now);
        }
        if now >= self.next_reports {
            if self.report_slice.is_multiple_of(REPORT_SLICES) {
                self.remove_dead(now); // once a second
            }
            self.send_sender_reports(now);
            self.expire_caches(now);
            self.update_dynacast(now);
            self.report_speakers(now);
            self.next_reports = now + super::egress::SR_INTERVAL / REPORT_SLICES;
        }
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            if !fire(&mut peer.armed, at) {
                continue; // superseded by an earlier entry
            }
            match peer.next_timeout {
                Some(t) if t <= now => {
                    if let Err(e) = peer.pc.handle_timeout(now) {
                        tracing::debug!(room = %self.name, error = %e, "handle_timeout");
                    }
                    peer.next_timeout = None;
                    if peer.mark_queued() {
                        self.queued.push(key);
                    }
                }
                // moved later since it was armed
                Some(t) => self.timers.arm(key, t, &mut peer.armed),
                None => {}
            }
        }
    }

    fn on_datagram(&mut self, dg: Datagram, now: Instant) {
        if is_stale_media(&dg.data, dg.at, now) {
            // the worker fell behind: forwarding it now helps nobody, and skipping it is how
            // the worker catches up before ICE consent answers (queued behind it) come too late
            self.ctx.metrics.count_drop(DropReason::Stale);
            return;
        }
        let Some(peer) = self.peers.get_mut(&dg.peer) else {
            self.ctx.metrics.count_drop(DropReason::PeerGone);
            return;
        };
        let local_addr = self.ctx.addr.ice_local(dg.from);
        // RTP keeps its arrival time (the TWCC feedback the publisher's bandwidth estimate
        // reads); STUN, DTLS and RTCP run the connection's clock, which must not step back
        // by a datagram's time in the socket's buffer
        let msg = TaggedBytesMut {
            now: if is_rtp(&dg.data) { dg.at } else { now },
            transport: TransportContext {
                local_addr,
                peer_addr: dg.from.addr(),
                ecn: None,
                transport_protocol: dg.from.protocol(),
            },
            message: dg.data,
        };
        if let Err(e) = peer.pc.handle_read(msg) {
            // garbage, failed SRTP authentication, replays: counted and dropped
            self.ctx.metrics.count_drop(DropReason::RejectedByPeer);
            tracing::trace!(room = %self.name, peer = dg.peer.0, error = %e, "datagram rejected");
        }
        if peer.mark_queued() {
            self.queued.push(dg.peer);
        }
    }

    /// Lists a connection for the next [`RoomCore::transmit`] to drain (once, however often it
    /// is called).
    pub(super) fn mark_queued(&mut self, key: PeerKey) {
        if let Some(peer) = self.peers.get_mut(&key)
            && peer.mark_queued()
        {
            self.queued.push(key);
        }
    }

    fn drain_peer(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        // output this drain causes on the connection itself lists it again
        peer.queued = false;
        while let Some(out) = peer.pc.poll_write() {
            self.sends.push(out.message, Path::new(out.transport.peer_addr, out.transport.transport_protocol));
        }
        let mut events = std::mem::take(&mut self.events_buf);
        let mut reads = std::mem::take(&mut self.reads_buf);
        while let Some(e) = peer.pc.poll_event() {
            events.push(e);
        }
        while let Some(m) = peer.pc.poll_read() {
            reads.push(m);
        }
        peer.next_timeout = peer.pc.poll_timeout();
        if let Some(t) = peer.next_timeout {
            self.timers.arm(key, t, &mut peer.armed);
        }
        // ICE may nominate another pair (a consent check from a new address, or over TCP)
        if peer.egress.is_some()
            && let Some(remote) = selected_path(peer)
            && let Some(egress) = peer.egress.as_mut()
        {
            egress.remote = remote;
        }
        let role = peer.role;
        for e in events.drain(..) {
            self.on_peer_event(key, role, e, now);
        }
        for m in reads.drain(..) {
            self.on_peer_message(key, role, m, now);
        }
        self.events_buf = events;
        self.reads_buf = reads;
    }

    fn on_peer_event(&mut self, key: PeerKey, role: Role, event: RTCPeerConnectionEvent, now: Instant) {
        use rtc::peer_connection::event::RTCTrackEvent;
        let owner = self.peers.get(&key).map(|p| p.owner.clone()).unwrap_or_default();
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                tracing::info!(room = %self.name, participant = %owner, ?role, %state, "peer connection state");
                if let Some(peer) = self.peers.get_mut(&key) {
                    match state {
                        RTCPeerConnectionState::Connected => {
                            peer.connected = true;
                            peer.liveness = Liveness::Connected;
                            if role == Role::Subscriber {
                                let keep = match (&peer.egress, peer.pc.local_srtp_keys()) {
                                    (Some(e), Some(keys)) => e.same_keys(keys),
                                    _ => false,
                                };
                                if !keep {
                                    peer.egress = new_egress(peer);
                                }
                                if peer.egress.is_none() {
                                    tracing::error!(room = %self.name, participant = %owner, "no SRTP keys or path after connecting: media to it is dropped");
                                }
                            }
                        }
                        RTCPeerConnectionState::Failed => {
                            peer.connected = false;
                            peer.liveness = Liveness::Failed;
                        }
                        RTCPeerConnectionState::Closed => peer.connected = false,
                        _ => {}
                    }
                }
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
                tracing::debug!(room = %self.name, participant = %owner, ?role, %state, "ice state");
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) if role == Role::Publisher => {
                self.on_track_open(key, &owner, init, now);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) if role == Role::Publisher => {
                self.unpublish(&owner, Some(&track_id), now);
            }
            _ => {}
        }
    }

    /// Creates a connection for `owner` and routes its ufrag to this room.
    pub(super) fn add_peer(
        &mut self,
        owner: &str,
        role: Role,
        now: Instant,
    ) -> Result<PeerKey, rtc::shared::error::Error> {
        let key = PeerKey(self.ctx.next_key.fetch_add(1, Ordering::Relaxed));
        let peer = peer::new_peer(key, owner, role, &self.ctx.addr, now)?;
        self.peers.insert(key, Box::new(peer));
        self.route(key);
        Ok(key)
    }

    /// Has the media port route the connection's current ufrag (checked with its password)
    /// to this room.
    pub(super) fn route(&self, key: PeerKey) {
        if let Some(peer) = self.peers.get(&key) {
            let route =
                Route { room: self.datagrams.clone(), peer: key, ufrag: peer.ufrag.clone(), pwd: peer.pwd.clone() };
            self.ctx.demux.register(route);
        }
    }

    /// Closes a connection and forgets its routes.
    pub(super) fn remove_peer(&mut self, key: PeerKey) {
        if let Some(mut peer) = self.peers.remove(&key) {
            self.ctx.demux.unregister(&peer.ufrag);
            if let Some(retired) = &peer.retired_ufrag {
                self.ctx.demux.unregister(retired);
            }
            let _ = peer.pc.close();
            while let Some(out) = peer.pc.poll_write() {
                self.sends.push(out.message, Path::new(out.transport.peer_addr, out.transport.transport_protocol));
            }
        }
    }

    fn on_command(&mut self, cmd: RoomCommand, now: Instant) {
        match cmd {
            RoomCommand::Join { participant, name, events, subscribe } => {
                self.admit(participant, name, events, subscribe, now)
            }
            RoomCommand::JoinViewer { participant, name, events, offer, source } => {
                self.join_viewer(participant, name, events, offer, source, now)
            }
            RoomCommand::Leave { participant } => self.leave(&participant, now),
            RoomCommand::Offer { participant, sdp, sources } => {
                self.on_publisher_offer(&participant, sdp, sources, now)
            }
            RoomCommand::Answer { participant, sdp } => self.on_subscriber_answer(&participant, sdp, now),
            RoomCommand::Candidate { participant, target, candidate } => {
                self.on_candidate(&participant, target, candidate)
            }
            RoomCommand::IceRestart { participant } => self.on_ice_restart(&participant, now),
            RoomCommand::Subscription { participant, track, request } => {
                self.on_subscription(&participant, &track, request, now)
            }
            cmd @ (RoomCommand::Participants { .. }
            | RoomCommand::Remove { .. }
            | RoomCommand::MuteTrack { .. }
            | RoomCommand::Close { .. }) => self.on_admin_command(cmd, now),
            RoomCommand::Evacuate { reason } => {
                // spread the reconnects so the next node is not hit by every client at once
                for p in &self.participants {
                    let delay_ms = rand::random_range(0..EVACUATE_SPREAD_MS);
                    p.send(ServerMessage::Reconnect { reason: reason.clone(), delay_ms });
                }
            }
        }
    }

    pub(super) fn participant_index(&self, id: &str) -> Option<usize> {
        self.participants.iter().position(|p| p.id == id)
    }

    /// Sends an error to one participant.
    pub(super) fn reply_error(&self, participant: &str, code: ErrorCode, message: impl Into<String>) {
        if let Some(i) = self.participant_index(participant) {
            self.participants[i].send(ServerMessage::error(code, message));
        }
    }

    /// Sends a message to everyone but `except`.
    pub(super) fn broadcast(&self, except: &str, msg: &ServerMessage) {
        for p in self.participants.iter().filter(|p| p.id != except) {
            p.send(msg.clone());
        }
    }
}

impl Drop for RoomCore {
    /// The room ends: it closed, or its worker panicked and this runs while unwinding. Either
    /// way its routes and gauges go; after a panic the connections' state is not trusted (no
    /// `rtc` call) and every participant is told `error internal` before its session closes
    /// (its events sender is dropped with the room).
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        if panicked {
            let msg = ServerMessage::error(ErrorCode::Internal, "the room failed on the server; join again");
            for p in &self.participants {
                let _ = p.events.try_send(msg.clone());
            }
            for peer in self.peers.values() {
                self.ctx.demux.unregister(&peer.ufrag);
                if let Some(retired) = &peer.retired_ufrag {
                    self.ctx.demux.unregister(retired);
                }
            }
            self.peers.clear();
        } else {
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                self.remove_peer(key);
            }
        }
        let subscribed: usize = self.participants.iter().map(|p| p.downtracks.len()).sum();
        self.ctx.metrics.subscribed_tracks.sub(subscribed as i64);
        self.ctx.metrics.published_tracks.sub(self.tracks.len() as i64);
    }
}

/// Media older than this when the worker gets to it is dropped (`reason="stale"`).
const STALE_MEDIA: Duration = Duration::from_millis(250);

/// True for an RTP packet (not RTCP, STUN or DTLS: RFC 7983 demultiplexing) that waited
/// longer than [`STALE_MEDIA`] since it arrived (in the socket's buffer, then the room's queue).
fn is_stale_media(data: &[u8], arrived: Instant, now: Instant) -> bool {
    is_rtp(data) && now.saturating_duration_since(arrived) > STALE_MEDIA
}

/// True for an RTP packet: not RTCP (payload types 192-223), STUN or DTLS (RFC 7983, 5761).
fn is_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && (128..=191).contains(&data[0]) && !(192..=223).contains(&data[1])
}

/// A subscriber connection's SRTP output, from its DTLS keys and ICE-selected path.
fn new_egress(peer: &Peer) -> Option<super::egress::Egress> {
    let keys = peer.pc.local_srtp_keys()?;
    let remote = selected_path(peer)?;
    super::egress::Egress::new(keys, remote).map_err(|e| tracing::error!(error = %e, "srtp context")).ok()
}

/// Where the connection's ICE-selected pair points: a UDP address or an ICE-TCP connection.
fn selected_path(peer: &Peer) -> Option<Path> {
    let (addr, protocol) = peer.pc.selected_remote_path()?;
    Some(Path::new(addr, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_media_that_waited_too_long_is_stale() {
        let t0 = Instant::now();
        let late = t0 + STALE_MEDIA + Duration::from_millis(1);
        let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        let rtcp_rr = [0x81u8, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2];
        let stun = [0x00u8, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0];
        let dtls = [22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        // columns: datagram, read at, handled at, stale
        let rows: &[(&[u8], Instant, Instant, bool)] = &[
            (&rtp, t0, t0, false),
            (&rtp, t0, t0 + STALE_MEDIA, false),
            (&rtp, t0, late, true),
            (&rtcp_rr, t0, late, false), // feedback is always handled
            (&stun, t0, late, false),    // ICE consent must be answered
            (&dtls, t0, late, false),
            (&rtp[..8], t0, late, false), // too short for RTP: rtc rejects it
        ];
        for (i, &(data, at, now, want)) in rows.iter().enumerate() {
            assert_eq!(is_stale_media(data, at, now), want, "row {i}");
        }
    }
}
