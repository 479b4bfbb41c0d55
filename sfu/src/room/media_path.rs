//! The media path of the room: a publisher's RTP packet is ingested (its track, layer and
//! unwrapped numbers; cached; parsed), then for each subscriber of its track the room decides
//! (selector or audio policy) and emits (switch, munge, rewrite, protect, queue).

use super::core::RoomCore;
use super::egress::{Egress, EgressError};
use super::fanout::{Subscriber, WARM_AHEAD, hint_of, settled_elsewhere, settled_on, warm_at};
use super::participant::Participant;
use super::peer::{Peer, Role};
use super::track::{Allocated, CACHE_EXPIRE_PER_INSERT, CachedPacket, Codec, DownTrack, LayerIn, PublishedTrack};
use crate::drop_reason::DropReason;
use crate::forward::audio::audio_action;
use crate::forward::selector::{Action, Layer, Wish};
use crate::forward::switch_hint::switch_hint;
use crate::forward::temporal::{FrameInfo, Tid};
use crate::forward::{h264, vp8};
use crate::metrics::MediaMetrics;
use crate::udp::{PeerKey, SendBatch};
use glue::replay::Seen;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::sender_report::SenderReport;
use signaling::protocol::{ServerMessage, TrackKind};
use std::time::Instant;

/// A publisher packet once ingested: where it belongs and what it is.
struct Ingested {
    /// Index of its track in the room's tracks.
    tidx: usize,
    layer: Layer,
    /// Extended sequence number and timestamp on its layer.
    seq: u64,
    ts: u64,
    /// It starts a keyframe (every audio packet does).
    keyframe: bool,
    /// Its track is video (audio has one layer and its own policy).
    is_video: bool,
    /// Its VP8 descriptor, rewritten per subscriber.
    desc: Option<vp8::Vp8Descriptor>,
    /// The track is muted by an operator: handled like a pause.
    muted: bool,
}

impl RoomCore {
    /// Media and RTCP that a connection's `rtc` stack delivered.
    pub(super) fn on_peer_message(&mut self, key: PeerKey, role: Role, msg: TaggedRTCMessage, now: Instant) {
        match (role, msg.message) {
            (Role::Publisher, RTCMessage::RtpPacket(track_id, pkt)) => {
                self.forward_rtp(key, &track_id, pkt, msg.now, now)
            }
            (Role::Publisher, RTCMessage::RtcpPacket(_, pkts)) => {
                for sr in pkts.iter().filter_map(|p| p.as_any().downcast_ref::<SenderReport>()) {
                    self.on_sender_report(key, sr);
                }
            }
            (Role::Subscriber, RTCMessage::RtcpPacket(track_id, pkts)) => {
                self.on_subscriber_rtcp(key, &track_id, &pkts, now)
            }
            _ => {}
        }
    }

    /// Fans one publisher packet out to every subscriber of its track.
    pub(super) fn forward_rtp(
        &mut self,
        key: PeerKey,
        rtc_track_id: &str,
        pkt: rtc::rtp::Packet,
        arrived: Instant,
        now: Instant,
    ) {
        if self.roster_changed() {
            self.rebuild_fanout();
        }
        #[cfg(debug_assertions)]
        self.check_fanout();
        self.ctx.metrics.rtp_in_packets.inc();
        let packet = match self.ingest(key, rtc_track_id, &pkt, now) {
            Ok(p) => p,
            Err(why) => return self.ctx.metrics.count_drop(why),
        };
        if !packet.is_video {
            let track = &self.tracks[packet.tidx];
            // RFC 6464: one byte, voice-activity bit then the level in -dBov
            if let Some(level) =
                track.level_ext.and_then(|id| pkt.header.get_extension(id)).and_then(|e| e.first().copied())
            {
                self.speakers.on_level(&track.publisher, level & 0x7f, arrived);
            }
        }
        let (forwarded, want_keyframe) = self.fan_out(&packet, &pkt, now);
        self.ctx.metrics.rtp_forwarded.inc_by(forwarded);
        if forwarded > 0 {
            // observed once its copies left (`RoomCore::on_sent`)
            self.forwarded_arrivals.push(arrived);
        }
        if let Some(l) = want_keyframe {
            let id = self.tracks[packet.tidx].id.clone();
            self.request_keyframe(&id, l, now);
        }
    }

    /// Finds the packet's track and layer, unwraps its numbers, caches it for retransmission
    /// and parses its payload. Padding is dropped here, after telling the mungers (no false
    /// gap for subscribers).
    fn ingest(
        &mut self,
        key: PeerKey,
        rtc_track_id: &str,
        pkt: &rtc::rtp::Packet,
        now: Instant,
    ) -> Result<Ingested, DropReason> {
        let (tidx, layer) = self.stream_of(key, rtc_track_id, pkt.header.ssrc).ok_or(DropReason::UnknownTrack)?;
        let track = &mut self.tracks[tidx];
        let layer_in = track.layers[layer.index()].as_mut().expect("layer just ensured");
        let seq = layer_in.seq.unwrap(pkt.header.sequence_number);
        match layer_in.seen.check(seq) {
            Seen::New => layer_in.seen.accept(seq),
            Seen::Duplicate => return Err(DropReason::Duplicate),
            Seen::TooOld => return Err(DropReason::TooLate),
        }
        let ts = layer_in.ts.unwrap(pkt.header.timestamp);
        if pkt.payload.is_empty() {
            drop_padding(track, &mut self.participants, layer, seq);
            return Err(DropReason::PaddingOnly);
        }
        let cached =
            CachedPacket { ts: pkt.header.timestamp, marker: pkt.header.marker, payload: pkt.payload.clone(), at: now };
        layer_in.cache.insert(seq, cached);
        layer_in.expire_cache(now, CACHE_EXPIRE_PER_INSERT);
        let (keyframe, desc) = match track.codec {
            Codec::Vp8 => {
                let d = vp8::parse(&pkt.payload).map_err(|_| DropReason::BadVp8)?;
                if d.is_keyframe
                    && let Some((w, h)) = vp8::keyframe_size(&pkt.payload, &d)
                {
                    track.activity.set_size(layer, u32::from(w), u32::from(h));
                }
                (d.is_keyframe, Some(d))
            }
            Codec::H264 => (h264::is_keyframe(&pkt.payload), None),
            Codec::Opus | Codec::Other => (true, None),
        };
        let layer_in = track.layers[layer.index()].as_mut().expect("layer just ensured");
        layer_in.rate.on_packet(pkt.payload.len(), Tid::of(desc.and_then(|d| d.tid)), now);
        track.activity.on_packet(layer, now);
        let muted = self.admin.is_muted(&track.id);
        let is_video = track.kind == TrackKind::Video;
        Ok(Ingested { tidx, layer, seq, ts, keyframe, is_video, desc, muted })
    }

    /// The track and layer of a publisher connection's stream: one lookup by (connection,
    /// SSRC) in the room's index, checked against the layer (an SSRC bound anew since); else
    /// found by the connection's track id and remembered.
    fn stream_of(&mut self, key: PeerKey, rtc_track_id: &str, ssrc: u32) -> Option<(usize, Layer)> {
        if let Some(&(tidx, layer)) = self.streams.get(&(key, ssrc)) {
            let track = &self.tracks[tidx as usize];
            if track.layers[layer.index()].as_ref().is_some_and(|l| l.ssrc == ssrc) {
                return Some((tidx as usize, layer));
            }
        }
        let tidx = self.tracks.iter().position(|t| t.peer == key && t.rtc_track_id == rtc_track_id)?;
        let layer = self.bind_layer(tidx, key, ssrc);
        self.streams.insert((key, ssrc), (tidx as u32, layer));
        Some((tidx, layer))
    }

    /// The layer of `ssrc` on track `tidx`; a new SSRC (its first packet may come before its
    /// `OnOpen`) gets the layer of its rid, asked of the receiver.
    fn bind_layer(&mut self, tidx: usize, key: PeerKey, ssrc: u32) -> Layer {
        let track = &mut self.tracks[tidx];
        if let Some(l) = track.layer_of(ssrc) {
            return l;
        }
        let rid = self
            .peers
            .get_mut(&key)
            .and_then(|p| p.pc.rtp_receiver(track.receiver_id))
            .and_then(|r| r.track().rid(ssrc).cloned());
        let l = track.layer_for_rid(rid.as_deref());
        track.layers[l.index()] = Some(LayerIn::new(ssrc));
        l
    }

    /// Visits every subscriber of the packet's track: decide, then emit. Returns the copies
    /// queued and the highest layer a selector wants a keyframe of.
    fn fan_out(&mut self, packet: &Ingested, pkt: &rtc::rtp::Packet, now: Instant) -> (u64, Option<Layer>) {
        let track = &mut self.tracks[packet.tidx];
        let is_video = packet.is_video;
        let mut want_keyframe: Option<Layer> = None;
        let mut forwarded = 0u64;
        // taken out so the loop can borrow the rest of the track; put back after it (the loop
        // has no early return)
        let mut subscribers = std::mem::take(&mut track.fanout);
        let mut hints = std::mem::take(&mut track.hints);
        let activity = &track.activity;
        let skips = |s: &Subscriber| is_video && settled_elsewhere(s.settled, packet.layer, activity, now);
        // the state of a visit is fetched into the cache two visits ahead (`fanout::warm`)
        for j in 0..WARM_AHEAD {
            warm_at(&self.participants, &subscribers, &hints, j, skips);
        }
        for i in 0..subscribers.len() {
            warm_at(&self.participants, &subscribers, &hints, i + WARM_AHEAD, skips);
            let s = &mut subscribers[i];
            if skips(s) {
                // a packet of another layer than the one it settled on: nothing to decide, and
                // neither its downtrack nor its connection is touched (most packets at a low
                // layer: q subscribers see h and f packets too)
                continue;
            }
            let Some(p) = self.participants.get_mut(s.participant as usize) else { continue };
            let Some(dt) = p.downtracks.get_mut(s.downtrack as usize).filter(|d| d.track_key == track.key) else {
                continue;
            };
            // one lookup of the subscriber's connection per packet
            let Some(peer) = self.peers.get_mut(&p.subscriber).filter(|peer| peer.connected) else { continue };
            if let (Some(egress), Some(h)) = (&peer.egress, hints.get_mut(i)) {
                *h = hint_of(dt, peer, egress);
            }
            // media flows once the connection has its SRTP output and the track is negotiated
            // (so selection starts at a keyframe)
            if peer.egress.is_none() || !dt.negotiated {
                continue;
            }
            let action = decide(dt, packet, activity, now);
            if is_video {
                s.settled = settled_on(&dt.selector);
                if let Some(l) = dt.selector.wants_keyframe() {
                    want_keyframe = Some(want_keyframe.map_or(l, |w| w.max(l)));
                }
            }
            let out = Emit { track, packet, pkt, metrics: &self.ctx.metrics, sends: &mut self.sends, now };
            if out.emit(action, p, s.downtrack as usize, peer) {
                forwarded += 1;
            }
            if let Some(e) = peer.egress.as_mut().filter(|e| e.newly_queued) {
                e.newly_queued = false;
                if !self.scheduled.contains(&peer.key) {
                    self.scheduled.push(peer.key);
                }
                self.next_egress = Some(self.next_egress.map_or(now, |t| t.min(now)));
            }
        }
        track.fanout = subscribers;
        track.hints = hints;
        (forwarded, want_keyframe)
    }
}

/// Tells the mungers of the subscribers forwarding `layer` that a padding packet took `seq`.
fn drop_padding(track: &PublishedTrack, participants: &mut [Participant], layer: Layer, seq: u64) {
    for s in &track.fanout {
        let dt = participants.get_mut(s.participant as usize).and_then(|p| p.downtracks.get_mut(s.downtrack as usize));
        if let Some(dt) = dt.filter(|d| d.track_key == track.key && d.selector.current() == Some(layer)) {
            dt.munger.drop_packet(seq);
        }
    }
}

/// What one subscriber gets of the packet: video asks its selector (which tracks the wanted
/// and available layers), then the temporal filter of the layer it forwards; audio its
/// policy. A pause (wish) and an operator's mute are alike.
fn decide(dt: &mut DownTrack, packet: &Ingested, activity: &crate::forward::LayerActivity, now: Instant) -> Action {
    let paused = dt.wish.paused || packet.muted;
    if packet.is_video {
        let (bandwidth_paused, bandwidth) = match dt.allocated {
            Allocated::Unlimited => (false, None),
            Allocated::UpTo(l, _) => (false, Some(l)),
            Allocated::Paused => (true, None),
        };
        let wish = Wish { paused: paused || bandwidth_paused, bandwidth, ..dt.wish };
        dt.selector.update_target(&wish, activity, now);
        let action = dt.selector.on_packet(packet.layer, packet.keyframe);
        let Some(desc) = packet.desc.as_ref().filter(|_| action != Action::Drop) else { return action };
        dt.temporal.set_target(temporal_target(dt.allocated, dt.selector.current()));
        if matches!(action, Action::Switch { .. }) {
            dt.temporal.on_switch();
        }
        let frame = FrameInfo {
            tid: desc.tid,
            layer_sync: desc.layer_sync,
            frame_start: desc.start_of_partition && desc.partition_index == 0,
            keyframe: desc.is_keyframe,
        };
        if dt.temporal.on_packet(frame) { action } else { Action::Drop }
    } else {
        audio_action(paused, dt.munger.has_source(), packet.layer)
    }
}

/// The highest temporal layer to forward: the granted one on the granted layer; the base
/// alone on a layer above it (over the grant until the lower layer's keyframe comes, so the
/// cheapest part of it); every one below it.
fn temporal_target(allocated: Allocated, current: Option<Layer>) -> Tid {
    match (allocated, current) {
        (Allocated::UpTo(l, t), Some(c)) if c == l => t,
        (Allocated::UpTo(l, _), Some(c)) if c > l => Tid::BASE,
        _ => Tid::TOP,
    }
}

/// The emit step of one packet: the shared inputs of every subscriber's copy.
struct Emit<'a> {
    track: &'a PublishedTrack,
    packet: &'a Ingested,
    pkt: &'a rtc::rtp::Packet,
    metrics: &'a MediaMetrics,
    sends: &'a mut SendBatch,
    now: Instant,
}

impl Emit<'_> {
    /// Carries out `action` for the downtrack `d` of subscriber `p` on its connection: a drop
    /// is told to the munger, a switch moves the munger to the new source (aligned by sender
    /// reports when both layers have them), then the copy is munged, rewritten, protected and
    /// queued. True when a copy was queued.
    fn emit(self, action: Action, p: &mut Participant, d: usize, peer: &mut Peer) -> bool {
        let Emit { track, packet, pkt, metrics, sends, now } = self;
        let dt = &mut p.downtracks[d];
        let is_video = packet.is_video;
        match action {
            Action::Drop => {
                if dt.selector.current() == Some(packet.layer) || !is_video {
                    // a packet of the forwarded layer dropped: a temporal layer kept off (or
                    // an audio pause); it takes no sequence number and its picture no id
                    dt.munger.drop_packet(packet.seq);
                    if let Some(d) = &packet.desc {
                        dt.vp8.drop_packet(d);
                        metrics.bwe_temporal_drops.inc();
                    }
                }
                return false;
            }
            Action::Switch { from, to } => {
                let clock = |l: Layer| track.layers[l.index()].as_ref().and_then(|l| l.clock);
                let hint = switch_hint(
                    from.and_then(clock),
                    clock(to),
                    pkt.header.timestamp,
                    dt.last_in_ts,
                    dt.munger.last_out_ts(),
                    track.rtc_codec.clock_rate,
                );
                dt.munger.switch_source(packet.seq, packet.ts, hint, now);
                dt.vp8.switch_source();
                if is_video {
                    metrics.layer_switches.inc();
                }
                tracing::debug!(subscriber = %p.id, track = %dt.track, ?from, ?to, sr_aligned = hint.is_some(), "layer switch");
            }
            Action::Forward => {}
        }
        if dt.announced != dt.selector.current() {
            dt.announced = dt.selector.current();
            let layer = dt.announced.map(|l| track.rid_name(l));
            let msg = ServerMessage::LayerChanged { track: dt.track.clone(), layer, reason: None };
            super::participant::queue(&p.events, &p.overflowed, &p.room_overflow, &p.id, msg);
        }
        let Some((out_seq, out_ts)) = dt.munger.forward(packet.seq, packet.ts, now) else {
            metrics.count_drop(DropReason::MungerRejected);
            return false;
        };
        let Some(pt) = payload_type(dt, peer, track) else {
            metrics.count_drop(DropReason::NotNegotiated);
            return false;
        };
        let Some(egress) = peer.egress.as_mut() else { return false };
        let fields = (pkt.header.marker, pt, out_seq, out_ts);
        match send_copy(egress, dt, fields, &pkt.payload, packet.desc.as_ref(), sends, now) {
            Ok(Some(_)) => {
                dt.frame_end = pkt.header.marker;
                dt.last_in_ts = Some(packet.ts);
                dt.ts_offset = out_ts.wrapping_sub(pkt.header.timestamp);
                dt.retransmit_budget.on_forwarded();
                true
            }
            Ok(None) => {
                metrics.count_drop(DropReason::BadVp8);
                false
            }
            Err(e) => {
                metrics.count_drop(DropReason::SrtpProtectFailed);
                tracing::debug!(error = %e, "forwarded packet not protected");
                false
            }
        }
    }
}

/// The downtrack's outgoing payload type: the one its connection negotiated for the track's
/// codec, looked up once (with the connection's transport-wide extension id, once known).
fn payload_type(dt: &mut DownTrack, peer: &mut Peer, track: &PublishedTrack) -> Option<u8> {
    if dt.payload_type.is_none() {
        let mut sender = peer.pc.rtp_sender(dt.sender_id)?;
        let params = &sender.get_parameters().rtp_parameters;
        dt.payload_type = params
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&track.rtc_codec.mime_type))
            .map(|c| c.payload_type);
        let twcc = params
            .header_extensions
            .iter()
            .find(|e| e.uri == super::congestion::TRANSPORT_CC_URI && (1..=14).contains(&e.id))
            .map(|e| e.id as u8);
        if let (Some(egress), Some(id)) = (peer.egress.as_mut(), twcc)
            && egress.cc.ext_id.is_none()
        {
            egress.cc.ext_id = Some(id);
        }
    }
    dt.payload_type
}

/// One copy of a packet to a subscriber: a fresh header from `(marker, payload type, seq,
/// timestamp)` (no CSRCs and no header extensions: their ids are the publisher connection's),
/// the VP8 descriptor rewritten through the downtrack's munger, protected and queued, and
/// counted for its sender reports. `Ok(None)`: the VP8 payload could not be rewritten.
pub(super) fn send_copy(
    egress: &mut Egress,
    dt: &mut DownTrack,
    (marker, payload_type, sequence_number, timestamp): (bool, u8, u16, u32),
    payload: &[u8],
    desc: Option<&vp8::Vp8Descriptor>,
    sends: &mut SendBatch,
    now: Instant,
) -> Result<Option<usize>, EgressError> {
    let header = rtc::rtp::Header {
        version: 2,
        marker,
        payload_type,
        sequence_number,
        timestamp,
        ssrc: dt.ssrc,
        ..Default::default()
    };
    let vp8 = &mut dt.vp8;
    let rewrite = |b: &mut [u8]| match desc {
        Some(d) => vp8::write(b, d, &vp8.munge(d)).is_ok(),
        None => true,
    };
    let sent = egress.send_rtp(&header, payload, rewrite, &mut dt.rollover, sends, now)?;
    if let Some(len) = sent {
        dt.sent.on_sent(timestamp, len, now);
    }
    Ok(sent)
}
